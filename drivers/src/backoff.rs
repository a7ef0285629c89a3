//! Exponential backoff with jitter, as a pure state machine.
//!
//! The caller supplies the random numbers, so tests are deterministic and
//! the drivers can seed per device (jitter keeps a fleet of gateways from
//! reconnecting to a restarted PLC or gateway in lockstep).

use std::time::Duration;

use firmware_config::Backoff as BackoffConfig;

/// Tracks consecutive failures and the delay before the next attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    failures: u32,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Self {
        Self { cfg, failures: 0 }
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Record a success: the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Record a failure and return how long to wait before retrying.
    /// `unit` is a uniform random number in `[0, 1)`; the delay is
    /// `initial * 2^(n-1)` scaled by a factor in `[1 - jitter, 1 + jitter)`
    /// and then capped at `max`: the configured maximum is a maximum, so
    /// at the cap the jitter only ever shortens the wait (a fleet still
    /// spreads out, between `max * (1 - jitter)` and `max`).
    pub fn fail(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(30);
        let base = self.cfg.initial.saturating_mul(1u32 << exp);
        let jitter = self.cfg.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        base.min(self.cfg.max).mul_f64(factor).min(self.cfg.max)
    }

    /// The longest wait this backoff gives: what a failure that retrying
    /// cannot fix (a rejected password or certificate) waits at once.
    pub fn fail_max(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let jitter = self.cfg.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        self.cfg.max.mul_f64(factor).min(self.cfg.max)
    }
}

/// A small, fast, seedable PRNG (SplitMix64) for jitter; not for secrets.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seed from a name (e.g. the device name) and the clock, so devices
    /// and gateways differ.
    pub fn from_name(name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self(h ^ t)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(cfg(0.0));
        let d: Vec<u128> = (0..7).map(|_| b.fail(0.5).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.failures(), 7);
        b.reset();
        assert_eq!(b.fail(0.5), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let mut j = Jitter::new(42);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let mut b = Backoff::new(cfg(0.3));
            let d = b.fail(j.next_unit()).as_secs_f64();
            assert!((0.07..0.13).contains(&d), "{d}");
            seen.push(d);
        }
        let min = seen.iter().copied().fold(f64::MAX, f64::min);
        let max = seen.iter().copied().fold(0.0, f64::max);
        assert!(
            max - min > 0.05,
            "jitter should spread delays: {min}..{max}"
        );
        // Many failures never overflow, and the cap is a cap: jitter never
        // pushes a wait past it (it overshot by 30 % before), but still
        // spreads waits below it.
        let mut b = Backoff::new(cfg(0.3));
        let mut capped = Vec::new();
        for i in 0..100 {
            let d = b.fail(j.next_unit());
            assert!(d <= Duration::from_secs(2), "{d:?}");
            if i > 10 {
                capped.push(d);
            }
        }
        assert!(capped.iter().any(|d| *d < Duration::from_millis(1900)));
        assert!(capped.iter().all(|d| *d >= Duration::from_millis(1400)));
    }

    #[test]
    fn the_longest_wait_is_at_once_and_never_past_the_maximum() {
        let mut b = Backoff::new(cfg(0.3));
        let d = b.fail_max(0.999);
        assert!(
            d <= Duration::from_secs(2) && d >= Duration::from_millis(1900),
            "{d:?}"
        );
        // A success afterwards starts again from the initial delay.
        b.reset();
        assert!(b.fail(0.5) <= Duration::from_millis(130));
    }

    #[test]
    fn jitter_is_uniform_enough() {
        let mut j = Jitter::new(7);
        let n = 10_000;
        let mean: f64 = (0..n).map(|_| j.next_unit()).sum::<f64>() / f64::from(n);
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
