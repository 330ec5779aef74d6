//! Articles ordered by popularity, per channel and overall.
//!
//! Keys are the log-domain popularity sums of `popularity`, whose order does not change with
//! time, so the index only changes when an event arrives.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::model::{ALL_CHANNELS, ArticleId, ChannelId};

#[derive(Clone, Copy, Debug, PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HotIndex {
    log2: FxHashMap<ArticleId, (ChannelId, f64)>,
    order: FxHashMap<ChannelId, BTreeSet<(Key, ArticleId)>>,
}

impl HotIndex {
    /// Sets an article's popularity log-sum (`-inf` removes it from the index).
    pub fn set(&mut self, id: ArticleId, channel: ChannelId, log2: f64) {
        if let Some((old_channel, old)) = self.log2.remove(&id) {
            for c in [old_channel, ALL_CHANNELS] {
                if let Some(set) = self.order.get_mut(&c) {
                    set.remove(&(Key(old), id));
                }
            }
        }
        if log2 == f64::NEG_INFINITY || log2.is_nan() {
            return;
        }
        self.log2.insert(id, (channel, log2));
        for c in [channel, ALL_CHANNELS] {
            self.order.entry(c).or_default().insert((Key(log2), id));
        }
    }

    /// Keeps only the articles `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(ArticleId) -> bool) {
        self.log2.retain(|id, _| keep(*id));
        for set in self.order.values_mut() {
            set.retain(|(_, id)| keep(*id));
        }
    }

    /// Every article with engagement: id, channel, log-sum.
    pub fn entries(&self) -> impl Iterator<Item = (ArticleId, ChannelId, f64)> + '_ {
        self.log2.iter().map(|(id, (c, p))| (*id, *c, *p))
    }

    pub fn popularity_log2(&self, id: ArticleId) -> f64 {
        self.log2.get(&id).map_or(f64::NEG_INFINITY, |(_, p)| *p)
    }

    /// Ids with any engagement in `channel` (every channel for `ALL_CHANNELS`), most popular first.
    pub fn most_popular(&self, channel: ChannelId) -> impl Iterator<Item = ArticleId> + '_ {
        self.order.get(&channel).into_iter().flat_map(|s| s.iter().rev().map(|(_, id)| *id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_per_channel_and_overall_and_updates() {
        let mut h = HotIndex::default();
        h.set(1, 5, 1.0);
        h.set(2, 5, 3.0);
        h.set(3, 6, 2.0);
        assert_eq!(h.most_popular(5).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(h.most_popular(ALL_CHANNELS).collect::<Vec<_>>(), vec![2, 3, 1]);
        h.set(1, 5, 4.0);
        assert_eq!(h.most_popular(ALL_CHANNELS).collect::<Vec<_>>(), vec![1, 2, 3]);
        h.set(2, 5, f64::NEG_INFINITY);
        assert_eq!(h.most_popular(5).collect::<Vec<_>>(), vec![1]);
        assert_eq!(h.most_popular(9).count(), 0);
    }
}
