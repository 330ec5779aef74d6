//! Logistic regression trained online with FTRL-Proximal (McMahan et al., "Ad Click
//! Prediction: a View from the Trenches", 2013) over hashed binary features.
//!
//! Every feature is a `u64` hash with value 1, so a prediction is a sum of weights and an
//! update touches only the features present. Weights live in a sparse map: memory grows with
//! the features seen, never with the hash space, and nothing collides short of a 64-bit
//! collision. L1 keeps rare features at exactly zero until they have earned a weight.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::mem;

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
///
/// The table grows by doubling to an eighth of the size its bound allows
/// ([`Ftrl::capacity_for`]), then once to that size, and is never resized after: a new feature
/// takes a slot only while the table has room without growing, and a shrink frees slots in
/// place. So the table's bytes, a growth's two tables included, stay within the bound.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ftrl {
    slots: FxHashMap<u64, [f32; 3]>,
    pub updates: u64,
    /// The capacity the table was allocated with (0 until then): removals leave tombstones,
    /// which `capacity()` does not count, until a shrink rehashes them away.
    #[serde(skip)]
    sized: usize,
}

impl PartialEq for Ftrl {
    fn eq(&self, other: &Self) -> bool {
        self.slots == other.slots && self.updates == other.updates
    }
}

type Slot = (u64, [f32; 3]);

impl Ftrl {
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
    /// gets one only while fewer than `cap` are held (see [`Ftrl::capacity_for`]) and the
    /// table has room without growing: past it the step skips new features until a shrink.
    pub fn update(&mut self, cfg: &FtrlConfig, features: &[u64], label: bool, importance: f64, cap: usize) {
        let p = sigmoid(self.logit(features));
        let g = (p - f64::from(u8::from(label))) * importance;
        for &f in features {
            if !self.slots.contains_key(&f) && !self.room(cap) {
                continue;
            }
            let slot = self.slots.entry(f).or_default();
            let (z, n) = (f64::from(slot[0]), f64::from(slot[1]));
            let w = weight(cfg, z, n);
            let sigma = ((n + g * g).sqrt() - n.sqrt()) / cfg.alpha;
            let (z, n) = (z + g - sigma * w, n + g * g);
            *slot = [z as f32, n as f32, weight(cfg, z, n) as f32];
        }
        self.updates += 1;
    }

    /// Whether a new feature may take a slot. A small table grows as it needs (hashbrown
    /// doubles it, the old and the new alive together): a table of few weights stays small
    /// and its lookups stay in the caches. From an eighth of the size `cap` allows it goes to
    /// that size at once, and never grows again: the old eighth and the whole table fit the
    /// bound together (see [`Ftrl::BOUND_BYTES_PER_BUCKET`]), every earlier doubling too.
    fn room(&mut self, cap: usize) -> bool {
        if self.slots.len() >= cap {
            return false;
        }
        if cap == usize::MAX {
            return true; // unbounded: the table grows as it needs
        }
        if self.sized == 0 {
            if self.slots.len() < self.slots.capacity() || self.slots.capacity() < cap / 8 {
                return true;
            }
            // Once: the table for `cap` (a table read from a checkpoint may be smaller).
            self.slots.reserve(cap - self.slots.len());
            self.sized = self.slots.capacity();
        }
        // Inserting past the room left would resize (tombstones take room until a shrink).
        self.slots.len() < self.slots.capacity()
    }

    /// Whether the table is full for `cap`: the bound's count is reached, or tombstones took
    /// the rest of the room.
    pub fn is_full(&self, cap: usize) -> bool {
        self.slots.len() >= cap || (self.sized > 0 && self.slots.len() >= self.slots.capacity())
    }

    /// Bytes per bucket a bound of [`Ftrl::capacity_for`] sets aside: the slot and its control
    /// byte, and the 4 bytes per slot a shrink's scratch takes beside the table.
    const BOUND_BYTES_PER_BUCKET: usize = size_of::<Slot>() + 1 + 4;

    /// The most slots a table within `bytes` holds, with a shrink's scratch: hashbrown's
    /// buckets are a power of two, filled to 7/8, so this is 7/8 of the largest power of two
    /// of buckets that fits.
    pub fn capacity_for(bytes: usize) -> usize {
        let buckets = (bytes / Self::BOUND_BYTES_PER_BUCKET).max(8);
        let buckets = 1usize << (usize::BITS - 1 - buckets.leading_zeros());
        buckets / 8 * 7
    }

    /// Bytes the table holds now (its allocation, not its slots in use).
    pub fn bytes(&self) -> usize {
        mem::table_bytes::<Slot>(self.sized.max(self.slots.capacity()))
    }

    /// Slots whose weight is exactly zero: they add nothing to a score.
    pub fn zero_weights(&self) -> usize {
        self.slots.values().filter(|s| s[2] == 0.0).count()
    }

    /// Frees slots, in place: zero weights first, then, if more than half the table's slots
    /// are left, the smallest by magnitude (ties by feature, so equal models shrink equally)
    /// down to half; then the table rehashes its tombstones away without a second allocation
    /// (hashbrown rehashes in place while at most half its capacity is used). Returns how many
    /// went. A table larger than `cap`'s (read from a checkpoint taken under a bigger bound)
    /// is rebuilt at `cap`'s size instead, once.
    pub fn shrink(&mut self, cap: usize) -> usize {
        let before = self.slots.len();
        let full = if self.sized > 0 { self.sized } else { self.slots.capacity() };
        self.slots.retain(|_, s| s[2] != 0.0);
        let half = full.min(cap) / 2;
        if self.slots.len() > half {
            self.drop_smallest(self.slots.len() - half);
        }
        if full > cap {
            let kept = std::mem::take(&mut self.slots);
            self.slots = FxHashMap::with_capacity_and_hasher(cap, Default::default());
            self.slots.extend(kept);
            self.sized = self.slots.capacity();
        } else {
            let len = self.slots.len();
            if self.slots.capacity() - len < full / 2 - len {
                self.slots.reserve(full / 2 - len);
            }
            self.sized = full;
        }
        before - self.slots.len()
    }

    /// Drops the `cut` smallest weights by magnitude, ties by feature, with 4 bytes of scratch
    /// per slot.
    fn drop_smallest(&mut self, cut: usize) {
        let threshold = {
            let mut magnitudes: Vec<f32> = self.slots.values().map(|s| s[2].abs()).collect();
            *magnitudes.select_nth_unstable_by(cut - 1, f32::total_cmp).1
        };
        let below = self.slots.values().filter(|s| s[2].abs() < threshold).count();
        let ties = cut - below;
        let at = |s: &[f32; 3]| s[2].abs() == threshold;
        // The feature through which the tied slots go: the smallest with `ties` at or below it.
        let (mut lo, mut hi) = (0u64, u64::MAX);
        while ties > 0 && lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.slots.iter().filter(|(f, s)| at(s) && **f <= mid).count() >= ties {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.slots.retain(|f, s| s[2].abs() > threshold || (at(s) && (ties == 0 || *f > lo)));
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
            // Everything the table ever holds at once, measured: growing, two tables are alive.
            let ((), _, peak) = crate::mem::counting::measure(|| {
                for i in 0..(cap as u64 + 500) {
                    m.update(&cfg, &[i, i + 1_000_000_000], i % 3 == 0, 1.0, cap);
                    assert!(m.len() <= cap, "budget {budget}: {} slots over the cap {cap}", m.len());
                }
            });
            assert!(peak <= budget && m.bytes() <= budget, "budget {budget}: peak {peak}, table {}", m.bytes());
            assert_eq!(m.len(), cap, "budget {budget}: full");
            assert!(m.is_full(cap));
            // Full: a known feature still learns, a new one waits for room.
            let before = m.weight(0);
            m.update(&cfg, &[0, u64::MAX], true, 5.0, cap);
            assert_ne!(m.weight(0), before);
            assert_eq!(m.weight(u64::MAX), 0.0);
            assert_eq!(m.len(), cap);
            let bytes = m.bytes();
            // The shrink works in place: its scratch and the table stay within the bound.
            let (dropped, held, peak) = crate::mem::counting::measure(|| m.shrink(cap));
            assert!(dropped > 0 && m.len() <= cap / 2, "budget {budget}: {} left", m.len());
            assert!(held <= 0, "budget {budget}: the shrink kept {held} bytes more");
            assert!(bytes + peak <= budget, "budget {budget}: the shrink peaked at {peak} beside {bytes}");
            assert_eq!(m.bytes(), bytes, "shrinking keeps the allocation for the refill");
            let ((), held, _) = crate::mem::counting::measure(|| {
                for i in 0..(cap as u64) {
                    m.update(&cfg, &[2_000_000_000 + i], true, 1.0, cap);
                }
            });
            // Tombstones the rehash could not clear take room until the next shrink.
            assert!(m.is_full(cap) && m.len() > cap / 2, "budget {budget}: refilled to {}", m.len());
            assert_eq!(held, 0, "budget {budget}: the refill reuses the freed slots");
            assert_eq!(m.bytes(), bytes);
        }
        assert_eq!(Ftrl::capacity_for(64 << 20), 1_835_008);
        // A table grown under a bigger bound comes down to the smaller one on its first shrink.
        let (big, small) = (Ftrl::capacity_for(4 << 20), Ftrl::capacity_for(1 << 20));
        let mut m = Ftrl::default();
        for i in 0..big as u64 {
            m.update(&cfg, &[i], true, 1.0, big);
        }
        m.shrink(small);
        assert!(m.bytes() <= 1 << 20, "the table takes {} bytes after the shrink", m.bytes());
        assert!(m.len() <= small / 2);
    }

    #[test]
    fn a_shrink_keeps_the_largest_weights_and_breaks_ties_by_feature() {
        let cfg = FtrlConfig { l1: 0.0, ..FtrlConfig::default() };
        let cap = Ftrl::capacity_for(1 << 12);
        let mut m = Ftrl::default();
        // Features 0..cap: one update each, so their weights tie; a few get more.
        for i in 0..cap as u64 {
            m.update(&cfg, &[i], true, 1.0, cap);
        }
        for i in [5u64, 9] {
            m.update(&cfg, &[i], true, 4.0, cap);
        }
        let mut twin = m.clone();
        m.shrink(cap);
        twin.shrink(cap);
        assert_eq!(m, twin, "equal models shrink equally");
        assert_eq!(m.len(), cap / 2);
        assert!(m.weight(5) > 0.0 && m.weight(9) > 0.0, "the largest stay");
        // Among the ties the largest features stay.
        let kept: Vec<u64> = (0..cap as u64).filter(|&f| m.weight(f) != 0.0 && f != 5 && f != 9).collect();
        assert_eq!(kept, ((cap - cap / 2 + 2) as u64..cap as u64).collect::<Vec<_>>());
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
