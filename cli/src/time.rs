//! Times as the command line prints them: ISO 8601 UTC and "3 min ago".

use outpost_core::Timestamp;

/// `2026-11-27T10:20:31.123Z` for a timestamp in milliseconds since the epoch.
pub(crate) fn iso8601(t: Timestamp) -> String {
    let ms = t.as_millis();
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// "3 min ago" style age of `t` relative to `now`.
pub(crate) fn age(now: Timestamp, t: Timestamp) -> String {
    let s = now.millis_since(t) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(iso8601(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(Timestamp(1_795_774_831_123)),
            "2026-11-27T10:20:31.123Z"
        );
        assert_eq!(
            iso8601(Timestamp(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn ages() {
        let now = Timestamp(10_000_000);
        assert_eq!(age(now, Timestamp(9_990_000)), "10 s ago");
        assert_eq!(age(now, Timestamp(10_000_000 - 180_000)), "3 min ago");
    }
}
