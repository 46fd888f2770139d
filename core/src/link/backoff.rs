//! Exponential backoff with jitter for reconnecting to peers.

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with "equal jitter".
///
/// The `n`-th delay (from 0) is drawn uniformly from `[b/2, b]` where
/// `b = min(max, initial * 2^n)`: it always grows towards the cap, never waits less than
/// half the nominal delay (so a flapping peer is not hammered), and peers that lost the
/// same link do not all redial in the same millisecond. The rng is passed in so that
/// tests are deterministic.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 100 ms doubling up to a 10 s cap.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

impl Backoff {
    /// A backoff starting around `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call advances the backoff.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let jitter_ms = rng.random_range(0..=(nominal - half).as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// The delay without jitter for the next attempt.
    pub fn nominal(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Starts over from `initial` (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn doubles_up_to_the_cap_within_jitter_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::default();
        let mut nominal = Duration::from_millis(100);
        for _ in 0..20 {
            assert_eq!(b.nominal(), nominal);
            let d = b.next_delay(&mut rng);
            assert!(
                d >= nominal / 2 && d <= nominal,
                "{d:?} not in [{:?}, {nominal:?}]",
                nominal / 2
            );
            nominal = (nominal * 2).min(Duration::from_secs(10));
        }
        assert_eq!(b.nominal(), Duration::from_secs(10));
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        for _ in 0..10 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.attempts(), 10);
        assert_eq!(b.nominal(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.nominal(), Duration::from_millis(50));
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(50));
    }

    #[test]
    fn jitter_spreads_and_is_deterministic_per_seed() {
        let delays = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            (0..50).map(|_| b.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        let a = delays(3);
        assert_eq!(a, delays(3));
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 10, "jitter should spread delays: {a:?}");
    }

    #[test]
    fn survives_many_attempts() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..1000 {
            assert!(b.next_delay(&mut rng) <= Duration::from_secs(10));
        }
    }
}
