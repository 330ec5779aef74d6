//! Labels from events: exposure windows that close as negatives, positives and dislikes that
//! consume them, and the model updates they train.

use serde::{Deserialize, Serialize};

use crate::mem;
use crate::model::{Action, Article, ArticleId};

use super::behaviour::{Impression, Inputs, MAX_OPEN_IMPRESSIONS};
use super::{Context, LearnConfig, Learner, World, user_key};

/// Articles one impression learns from at most (feeds ask 1..=100; a longer logged impression
/// learns from its first 128): with [`MAX_OPEN_IMPRESSIONS`], at most 32 MiB per learner copy.
const MAX_IMPRESSION_ITEMS: usize = 128;

/// An open exposure window: the features as they were at exposure, trained when it closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Pending {
    expires: i64,
    features: Box<[u64]>,
}

impl Pending {
    /// Estimated heap bytes beside the map and queue entries (`Learner::pending_total` counts
    /// their buckets): the features, at the allocator's size class.
    pub(super) fn cost(&self) -> usize {
        mem::vec_bytes::<u64>(self.features.len())
    }
}

impl Learner {
    /// One action of `user` on `article` at `ctx.now_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn learn(
        &mut self,
        cfg: &LearnConfig,
        world: &World<'_>,
        user: &str,
        article: &Article,
        ctx: &Context,
        action: Action,
        read_ms: u64,
    ) {
        let key = (user_key(user), article.id);
        match action {
            Action::Exposure => {
                // Copied into an allocation of its length: shrinking the vector in place would
                // keep its capacity's block (mimalloc reallocs in place down to half).
                let features: Box<[u64]> = self.hashed(world, user, article, ctx).as_slice().into();
                // The impression learns from the inputs as they were when it was ranked.
                let ranker = features.iter().map(|f| self.model.weight(*f)).sum();
                let inputs = self.behaviour_inputs(cfg, article.id, ctx.now_ms, ranker);
                self.shown(cfg, key.0, article.id, inputs, ctx.now_ms);
                self.exposures.entry(article.id).or_default().exposed(ctx.now_ms, cfg);
                let expires = ctx.now_ms.saturating_add(cfg.negative_window_ms);
                let pending = Pending { expires, features };
                self.pending_bytes += pending.cost();
                if let Some(replaced) = self.pending.insert(key, pending) {
                    self.pending_bytes -= replaced.cost();
                }
                self.queue.push_back((expires, key.0, key.1));
                while self.pending_total() > cfg.max_pending_bytes {
                    let Some((t, u, a)) = self.queue.pop_front() else { break };
                    self.close(cfg, t, u, a);
                }
                // Queue entries of replaced windows are dropped as they reach the front; bound
                // them too, so that re-exposing one pair over and over cannot grow the queue.
                if self.queue.len() > 2 * self.pending.len() + 1024 {
                    let pending = &self.pending;
                    self.queue.retain(|&(t, u, a)| pending.get(&(u, a)).is_some_and(|p| p.expires == t));
                }
            }
            Action::Dislike => {
                let features = self.take_pending(key).unwrap_or_else(|| self.hashed(world, user, article, ctx).into());
                self.model.update(&cfg.ftrl, &features, false, cfg.dislike_weight, cfg.model_capacity());
                self.dislike(cfg, user, article, ctx.now_ms);
            }
            Action::Click | Action::Collect | Action::Share | Action::Read => {
                let weight = match action {
                    Action::Click => cfg.click_weight,
                    Action::Collect => cfg.collect_weight,
                    Action::Share => cfg.share_weight,
                    _ => (cfg.read_base + cfg.read_per_minute * read_ms as f64 / 60_000.0).min(cfg.read_max),
                };
                let features = self.take_pending(key).unwrap_or_else(|| self.hashed(world, user, article, ctx).into());
                self.model.update(&cfg.ftrl, &features, true, weight, cfg.model_capacity());
                if let Some(e) = self.exposures.get_mut(&article.id) {
                    e.engaged(ctx.now_ms, cfg);
                }
                if let Some(item) = self
                    .impressions
                    .get_mut(&key.0)
                    .and_then(|i| i.items.iter_mut().find(|(id, _, _)| *id == article.id))
                {
                    item.2 = true;
                }
                if action != Action::Read || read_ms >= cfg.long_read_ms {
                    self.like(cfg, world, user, article, ctx.now_ms);
                }
            }
        }
    }

    /// Adds an article to `user`'s impression at `now_ms`, closing their earlier one.
    fn shown(&mut self, cfg: &LearnConfig, user: u64, article: ArticleId, inputs: Inputs, now_ms: i64) {
        if self.impressions.get(&user).is_some_and(|i| i.at != now_ms) {
            self.close_impression(cfg, user);
        }
        let expires = now_ms.saturating_add(cfg.negative_window_ms);
        let impression = self.impressions.entry(user).or_insert_with(|| {
            self.impression_queue.push_back((expires, user, now_ms));
            Impression { at: now_ms, expires, items: Vec::new() }
        });
        if impression.items.len() < MAX_IMPRESSION_ITEMS {
            impression.items.push((article, inputs, false));
        }
        while self.impressions.len() > MAX_OPEN_IMPRESSIONS {
            let Some((_, user, at)) = self.impression_queue.pop_front() else { break };
            if self.impressions.get(&user).is_some_and(|i| i.at == at) {
                self.close_impression(cfg, user);
            }
        }
        if self.impression_queue.len() > 2 * self.impressions.len() + 1024 {
            let open = &self.impressions;
            self.impression_queue.retain(|&(_, u, at)| open.get(&u).is_some_and(|i| i.at == at));
        }
    }

    /// Learns from `user`'s open impression and forgets it.
    fn close_impression(&mut self, cfg: &LearnConfig, user: u64) {
        if let Some(impression) = self.impressions.remove(&user) {
            self.behaviour.learn(cfg.behaviour_rate, &impression.items);
        }
    }

    fn take_pending(&mut self, key: (u64, ArticleId)) -> Option<Box<[u64]>> {
        let p = self.pending.remove(&key)?;
        self.pending_bytes -= p.cost();
        Some(p.features)
    }

    /// Moves the clock to `now_ms` and closes the exposure windows that ended: negatives.
    pub fn advance(&mut self, cfg: &LearnConfig, now_ms: i64) {
        if now_ms <= self.clock {
            return;
        }
        self.clock = now_ms;
        while let Some(&(t, user, at)) = self.impression_queue.front() {
            if t > now_ms {
                break;
            }
            self.impression_queue.pop_front();
            if self.impressions.get(&user).is_some_and(|i| i.at == at) {
                self.close_impression(cfg, user);
            }
        }
        while let Some(&(t, u, a)) = self.queue.front() {
            if t > now_ms {
                break;
            }
            self.queue.pop_front();
            self.close(cfg, t, u, a);
        }
        if self.events.is_multiple_of(4096) {
            self.stats.prune(now_ms);
        }
    }

    fn close(&mut self, cfg: &LearnConfig, expires: i64, user: u64, article: ArticleId) {
        // A later exposure of the same pair replaced the entry: its own queue item closes it.
        if self.pending.get(&(user, article)).is_some_and(|p| p.expires == expires) {
            let features = self.take_pending((user, article)).expect("checked above");
            self.model.update(&cfg.ftrl, &features, false, 1.0, cfg.model_capacity());
            self.negatives += 1;
        }
    }
}
