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

/// A time given on the command line: `2026-12-07`, `2026-12-07T10:00Z`,
/// `2026-12-07T10:00:30.5Z` (UTC), `90s`, `90m`, `2h`, `7d` (that long before `now`), or
/// milliseconds since the epoch.
pub(crate) fn parse_when(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    let bad = || {
        anyhow::anyhow!(
            "cannot read the time {s:?}: give a date like 2026-12-07 or 2026-12-07T10:00Z (UTC), \
             a time ago like 90m, 2h or 7d, or ms since the epoch"
        )
    };
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Timestamp(ms));
    }
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<u64>() {
            let ms = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return Ok(Timestamp(
                now.as_millis().saturating_sub(n.saturating_mul(ms)),
            ));
        }
    }
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let num = |t: &str| t.parse::<u32>().map_err(|_| bad());
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    let mut ms = days_from_civil(i64::from(y), m, d) as u64 * 86_400_000;
    let time = time.strip_suffix('Z').unwrap_or(time);
    if !time.is_empty() {
        let fields: Vec<&str> = time.split(':').collect();
        let (h, mi, sec) = match fields.as_slice() {
            [h, mi] => (num(h)?, num(mi)?, 0.0),
            [h, mi, sec] => (num(h)?, num(mi)?, sec.parse::<f64>().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || !(0.0..61.0).contains(&sec) {
            return Err(bad());
        }
        ms += u64::from(h) * 3_600_000 + u64::from(mi) * 60_000 + (sec * 1000.0) as u64;
    }
    Ok(Timestamp(ms))
}

/// Howard Hinnant's civil-to-days algorithm (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn reads_times() {
        let now = Timestamp(1_795_774_831_123);
        for t in [0, 951_782_400_000, 1_795_774_831_123] {
            let text = iso8601(Timestamp(t));
            assert_eq!(
                parse_when(&text, now).expect("reads"),
                Timestamp(t),
                "{text}"
            );
        }
        assert_eq!(
            parse_when("2026-11-27", now).expect("reads"),
            Timestamp(1_795_737_600_000)
        );
        assert_eq!(
            parse_when("2026-11-27T10:20Z", now).expect("reads"),
            Timestamp(1_795_774_800_000)
        );
        assert_eq!(
            parse_when("2h", now).expect("reads"),
            Timestamp(now.as_millis() - 7_200_000)
        );
        assert_eq!(parse_when("42", now).expect("reads"), Timestamp(42));
        for bad in ["yesterday", "2026-13-01", "2026-11-27T25:00Z", "h"] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages() {
        let now = Timestamp(10_000_000);
        assert_eq!(age(now, Timestamp(9_990_000)), "10 s ago");
        assert_eq!(age(now, Timestamp(10_000_000 - 180_000)), "3 min ago");
    }
}
