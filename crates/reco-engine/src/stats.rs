//! Exposures and actions per A/B bucket, per candidate source and per article channel, by the
//! minute of the event, for the `Stats` RPC.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::model::{Action, ChannelId};
use crate::store::Sources;

const MINUTE_MS: i64 = 60_000;
/// Minutes older than this (behind the newest event) are dropped.
pub const KEEP_MS: i64 = 30 * 24 * 3_600_000;

/// What a row counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StatKey {
    Bucket(u8),
    /// Index into [`Sources::NAMED`]; `None` for events whose sources are unknown.
    Source(Option<u8>),
    Channel(ChannelId),
}

/// Counts per action, indexed by `Action as usize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts(pub [u64; 6]);

impl Counts {
    pub fn get(&self, action: Action) -> u64 {
        self.0[action as usize]
    }

    /// clicks / exposures, 0 without exposures.
    pub fn ctr(&self) -> f64 {
        match self.get(Action::Exposure) {
            0 => 0.0,
            e => self.get(Action::Click) as f64 / e as f64,
        }
    }

    fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    minutes: BTreeMap<i64, FxHashMap<StatKey, Counts>>,
}

impl Stats {
    /// Counts one action on one article.
    pub fn record(&mut self, time_ms: i64, bucket: u8, sources: Option<Sources>, channel: ChannelId, action: Action) {
        let minute = self.minutes.entry(time_ms.div_euclid(MINUTE_MS)).or_default();
        let mut bump = |key| minute.entry(key).or_default().0[action as usize] += 1;
        bump(StatKey::Bucket(bucket));
        bump(StatKey::Channel(channel));
        match sources.filter(|s| !s.is_empty()) {
            None => bump(StatKey::Source(None)),
            Some(s) => {
                for (i, (named, _)) in Sources::NAMED.iter().enumerate() {
                    if s.contains(*named) {
                        bump(StatKey::Source(Some(i as u8)));
                    }
                }
            }
        }
    }

    /// Drops minutes older than [`KEEP_MS`] before `now_ms`.
    pub fn prune(&mut self, now_ms: i64) {
        let first = (now_ms - KEEP_MS).div_euclid(MINUTE_MS);
        self.minutes = self.minutes.split_off(&first);
    }

    /// Sums over events with times in `[from_ms, to_ms)`, by whole minutes: every minute that
    /// overlaps the window counts (so a window ending now includes the current minute).
    pub fn window(&self, from_ms: i64, to_ms: i64) -> BTreeMap<StatKey, Counts> {
        let mut out = BTreeMap::new();
        let (from, to) = (from_ms.div_euclid(MINUTE_MS), to_ms.saturating_add(MINUTE_MS - 1).div_euclid(MINUTE_MS));
        if from >= to {
            return out;
        }
        for counts in self.minutes.range(from..to).map(|(_, m)| m) {
            for (key, c) in counts {
                out.entry(*key).or_insert_with(Counts::default).add(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_dimension_and_window() {
        let mut s = Stats::default();
        let fresh_similar = Sources::FRESH.union(Sources::SIMILAR);
        s.record(60_000, 1, Some(fresh_similar), 7, Action::Exposure);
        s.record(61_000, 1, Some(fresh_similar), 7, Action::Click);
        s.record(180_000, 0, None, 8, Action::Exposure);
        let w = s.window(0, 120_000);
        assert_eq!(s.window(61_000, 61_001)[&StatKey::Bucket(1)].get(Action::Click), 1, "a window inside a minute");
        assert_eq!(w[&StatKey::Bucket(1)].ctr(), 1.0);
        assert_eq!(w[&StatKey::Source(Some(0))].get(Action::Click), 1, "counted for fresh");
        assert_eq!(w[&StatKey::Source(Some(2))].get(Action::Exposure), 1, "and for similar");
        assert!(!w.contains_key(&StatKey::Bucket(0)), "the minute at 180 s is outside");
        let all = s.window(0, 240_000);
        assert_eq!(all[&StatKey::Source(None)].get(Action::Exposure), 1);
        assert_eq!(all[&StatKey::Channel(8)].ctr(), 0.0);
        s.prune(180_000 + KEEP_MS);
        assert!(s.window(0, i64::MAX).contains_key(&StatKey::Channel(8)));
        assert!(!s.window(0, i64::MAX).contains_key(&StatKey::Channel(7)), "old minutes are pruned");
    }
}
