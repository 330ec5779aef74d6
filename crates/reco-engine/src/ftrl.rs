//! Logistic regression trained online with FTRL-Proximal (McMahan et al., "Ad Click
//! Prediction: a View from the Trenches", 2013) over hashed binary features.
//!
//! Every feature is a `u64` hash with value 1, so a prediction is a sum of weights and an
//! update touches only the features present. Weights live in a sparse map: memory grows with
//! the features seen, never with the hash space, and nothing collides short of a 64-bit
//! collision. L1 keeps rare features at exactly zero until they have earned a weight.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Learning rate and regularisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtrlConfig {
    pub alpha: f64,
    pub beta: f64,
    pub l1: f64,
    pub l2: f64,
}

impl Default for FtrlConfig {
    fn default() -> Self {
        Self { alpha: 0.1, beta: 1.0, l1: 0.05, l2: 0.1 }
    }
}

/// Per feature: FTRL's `z` and `n` accumulators, and the weight they give (kept so that a
/// prediction is one lookup per feature; it changes only on update).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ftrl {
    slots: FxHashMap<u64, [f32; 3]>,
    pub updates: u64,
}

impl Ftrl {
    /// The weight of one feature now.
    /// The weight of one feature now (as of its last update: the model is trained with one
    /// configuration).
    pub fn weight(&self, feature: u64) -> f64 {
        self.slots.get(&feature).map_or(0.0, |s| f64::from(s[2]))
    }

    /// The logit of a feature set.
    pub fn logit(&self, features: &[u64]) -> f64 {
        features.iter().map(|f| self.weight(*f)).sum()
    }

    /// One gradient step towards `label` with importance `weight`. A feature without a slot
    /// gets one only while fewer than `cap` are held (see [`Ftrl::capacity_for`]): past it the
    /// step skips new features, so the table never grows past the size `cap` was chosen for.
    pub fn update(&mut self, cfg: &FtrlConfig, features: &[u64], label: bool, importance: f64, cap: usize) {
        let p = sigmoid(self.logit(features));
        let g = (p - f64::from(u8::from(label))) * importance;
        for &f in features {
            let full = self.slots.len() >= cap;
            let slot = match self.slots.get_mut(&f) {
                Some(slot) => slot,
                None if full => continue,
                None => self.slots.entry(f).or_default(),
            };
            let (z, n) = (f64::from(slot[0]), f64::from(slot[1]));
            let w = weight(cfg, z, n);
            let sigma = ((n + g * g).sqrt() - n.sqrt()) / cfg.alpha;
            let (z, n) = (z + g - sigma * w, n + g * g);
            *slot = [z as f32, n as f32, weight(cfg, z, n) as f32];
        }
        self.updates += 1;
    }

    /// Bytes of one bucket of the table: the (key, value) pair and its control byte.
    const BUCKET_BYTES: usize = size_of::<(u64, [f32; 3])>() + 1;

    /// The most slots a table of at most `bytes` holds: hashbrown's buckets are a power of two,
    /// filled to 7/8, so this is 7/8 of the largest power of two of buckets that fits.
    pub fn capacity_for(bytes: usize) -> usize {
        let buckets = (bytes / Self::BUCKET_BYTES).max(8);
        let buckets = 1usize << (usize::BITS - 1 - buckets.leading_zeros());
        buckets / 8 * 7
    }

    /// Bytes the table holds now (its allocation, not its slots in use).
    pub fn bytes(&self) -> usize {
        let cap = self.slots.capacity();
        if cap == 0 { 0 } else { (cap * 8 / 7).next_power_of_two() * Self::BUCKET_BYTES }
    }

    /// Slots whose weight is exactly zero: they add nothing to a score.
    pub fn zero_weights(&self) -> usize {
        self.slots.values().filter(|s| s[2] == 0.0).count()
    }

    /// Drops slots until at most `target` are left: zero weights first, then the smallest by
    /// magnitude (ties by feature, so equal models shrink equally). Returns how many went. The
    /// table is rebuilt for `cap` slots: removal leaves tombstones that count as used, and a
    /// table full of them would double on the next insert instead of reusing them; and a table
    /// loaded larger (a checkpoint taken under a bigger bound) comes down to the bound.
    pub fn shrink_to(&mut self, target: usize, cap: usize) -> usize {
        let before = self.slots.len();
        if before <= target {
            return 0;
        }
        self.slots.retain(|_, s| s[2] != 0.0);
        if self.slots.len() > target {
            let mut by_size: Vec<(f32, u64)> = self.slots.iter().map(|(f, s)| (s[2].abs(), *f)).collect();
            let cut = by_size.len() - target;
            by_size.select_nth_unstable_by(cut - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (_, f) in &by_size[..cut] {
                self.slots.remove(f);
            }
        }
        let kept = std::mem::take(&mut self.slots);
        self.slots = FxHashMap::with_capacity_and_hasher(cap.max(kept.len()), Default::default());
        self.slots.extend(kept);
        before - self.slots.len()
    }

    /// Features with a slot.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

fn weight(cfg: &FtrlConfig, z: f64, n: f64) -> f64 {
    if z.abs() <= cfg.l1 {
        return 0.0;
    }
    -(z - z.signum() * cfg.l1) / ((cfg.beta + n.sqrt()) / cfg.alpha + cfg.l2)
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x.clamp(-35.0, 35.0)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_which_feature_predicts_clicks() {
        let cfg = FtrlConfig::default();
        let mut m = Ftrl::default();
        for i in 0..2000 {
            // Feature 1 is clicked 80% of the time, feature 2 20%; 0 is a shared bias.
            m.update(&cfg, &[0, 1], i % 5 != 0, 1.0, usize::MAX);
            m.update(&cfg, &[0, 2], i % 5 == 0, 1.0, usize::MAX);
        }
        let (p1, p2) = (sigmoid(m.logit(&[0, 1])), sigmoid(m.logit(&[0, 2])));
        assert!((p1 - 0.8).abs() < 0.05 && (p2 - 0.2).abs() < 0.05, "p1={p1} p2={p2}");
        assert_eq!(m.weight(3), 0.0, "an unseen feature weighs nothing");
    }

    #[test]
    fn the_table_stays_within_its_byte_bound() {
        let cfg = FtrlConfig::default();
        for budget in [1 << 10, 100_000, 1 << 20, 5 << 20] {
            let cap = Ftrl::capacity_for(budget);
            let mut m = Ftrl::default();
            for i in 0..(cap as u64 + 500) {
                m.update(&cfg, &[i, i + 1_000_000_000], i % 3 == 0, 1.0, cap);
                assert!(m.len() <= cap, "budget {budget}: {} slots over the cap {cap}", m.len());
            }
            assert_eq!(m.len(), cap, "budget {budget}: full");
            assert!(m.bytes() <= budget, "budget {budget}: the table takes {} bytes", m.bytes());
            // Full: a known feature still learns, a new one waits for room.
            let before = m.weight(0);
            m.update(&cfg, &[0, u64::MAX], true, 5.0, cap);
            assert_ne!(m.weight(0), before);
            assert_eq!(m.weight(u64::MAX), 0.0);
            assert_eq!(m.len(), cap);
            let bytes = m.bytes();
            assert!(m.shrink_to(cap / 10 * 9, cap) > 0);
            assert_eq!(m.bytes(), bytes, "shrinking keeps the allocation for the refill");
            for i in 0..(cap as u64) {
                m.update(&cfg, &[2_000_000_000 + i], true, 1.0, cap);
            }
            assert_eq!(m.len(), cap, "budget {budget}: refilled");
            assert_eq!(m.bytes(), bytes, "budget {budget}: the refill reuses the freed slots");
        }
        assert_eq!(Ftrl::capacity_for(64 << 20), 1_835_008);
        // A table grown under a bigger bound comes down to the smaller one on its first shrink.
        let (big, small) = (Ftrl::capacity_for(4 << 20), Ftrl::capacity_for(1 << 20));
        let mut m = Ftrl::default();
        for i in 0..big as u64 {
            m.update(&cfg, &[i], true, 1.0, big);
        }
        m.shrink_to(small / 10 * 9, small);
        assert!(m.bytes() <= 1 << 20, "the table takes {} bytes after the shrink", m.bytes());
    }

    #[test]
    fn l1_keeps_a_once_seen_feature_at_zero() {
        let cfg = FtrlConfig { l1: 1.0, ..FtrlConfig::default() };
        let mut m = Ftrl::default();
        m.update(&cfg, &[9], true, 1.0, usize::MAX);
        assert_eq!(m.weight(9), 0.0);
        for _ in 0..10 {
            m.update(&cfg, &[9], true, 1.0, usize::MAX);
        }
        assert!(m.weight(9) > 0.0, "repeated evidence overcomes l1");
    }

    #[test]
    fn importance_weight_scales_the_step() {
        let cfg = FtrlConfig { l1: 0.0, ..FtrlConfig::default() };
        let (mut a, mut b) = (Ftrl::default(), Ftrl::default());
        a.update(&cfg, &[1], true, 1.0, usize::MAX);
        b.update(&cfg, &[1], true, 3.0, usize::MAX);
        assert!(b.weight(1) > a.weight(1));
    }
}
