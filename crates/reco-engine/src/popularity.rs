//! Time-decayed popularity in the log domain.
//!
//! An article's popularity is `Σ wᵢ · 2^(-(now - tᵢ)/H)` over its events (weight `w`, time `t`,
//! half-life `H`). It is kept as `P = log2 Σ wᵢ · 2^(tᵢ/H)`, which never changes between events
//! and never overflows, so the order of articles by popularity only changes when an event
//! arrives; the value now is `2^(P - now/H)`.

use crate::model::Action;

/// Popularity weights and half-life.
#[derive(Clone, Debug, PartialEq)]
pub struct PopularityConfig {
    pub half_life_ms: f64,
    pub click: f64,
    pub collect: f64,
    pub share: f64,
    /// A read weighs `read` plus `read_per_minute` per minute read, at most `read_max`.
    pub read: f64,
    pub read_per_minute: f64,
    pub read_max: f64,
}

impl Default for PopularityConfig {
    fn default() -> Self {
        Self {
            half_life_ms: 6.0 * 3_600_000.0,
            click: 1.0,
            collect: 3.0,
            share: 4.0,
            read: 1.0,
            read_per_minute: 1.0,
            read_max: 4.0,
        }
    }
}

impl PopularityConfig {
    /// log2 of the event's contribution to `P`; `-inf` for exposures and dislikes (they count,
    /// but do not make an article popular).
    pub fn event_log2(&self, action: Action, time_ms: i64, read_ms: u64) -> f64 {
        let weight = match action {
            Action::Exposure | Action::Dislike => return f64::NEG_INFINITY,
            Action::Click => self.click,
            Action::Collect => self.collect,
            Action::Share => self.share,
            Action::Read => (self.read + self.read_per_minute * read_ms as f64 / 60_000.0).min(self.read_max),
        };
        weight.log2() + time_ms as f64 / self.half_life_ms
    }

    /// The decayed popularity at `now_ms` of an article whose log-sum is `log2_sum`.
    pub fn value(&self, log2_sum: f64, now_ms: i64) -> f64 {
        if log2_sum == f64::NEG_INFINITY {
            return 0.0;
        }
        (log2_sum - now_ms as f64 / self.half_life_ms).exp2()
    }
}

/// `log2(2^a + 2^b)` without overflow.
pub fn log2_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp2().ln_1p() / std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_add_matches_plain_sum() {
        assert!((log2_add(3.0, 3.0) - 4.0).abs() < 1e-12);
        assert!((log2_add(0.0, 1.0) - 3f64.log2()).abs() < 1e-12);
        assert_eq!(log2_add(f64::NEG_INFINITY, 5.0), 5.0);
        assert_eq!(log2_add(f64::NEG_INFINITY, f64::NEG_INFINITY), f64::NEG_INFINITY);
        // Far-apart magnitudes stay finite.
        assert!((log2_add(20_000.0, 1.0) - 20_000.0).abs() < 1e-9);
    }

    #[test]
    fn value_halves_every_half_life() {
        let cfg = PopularityConfig::default();
        let t = 1_763_900_000_000;
        let p = cfg.event_log2(Action::Share, t, 0);
        assert!((cfg.value(p, t) - 4.0).abs() < 1e-6);
        assert!((cfg.value(p, t + cfg.half_life_ms as i64) - 2.0).abs() < 1e-6);
        assert_eq!(cfg.value(cfg.event_log2(Action::Exposure, t, 0), t), 0.0);
    }

    #[test]
    fn long_reads_weigh_more_up_to_a_cap() {
        let cfg = PopularityConfig::default();
        let w = |ms| cfg.value(cfg.event_log2(Action::Read, 0, ms), 0);
        assert!((w(0) - 1.0).abs() < 1e-9);
        assert!((w(120_000) - 3.0).abs() < 1e-9);
        assert!((w(3_600_000) - 4.0).abs() < 1e-9);
    }
}
