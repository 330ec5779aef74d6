//! Labels from events: exposure windows that close as negatives, positives and dislikes that
//! consume them, and the model updates they train.

use serde::{Deserialize, Serialize};

use crate::mem;
use crate::model::{Action, Article, ArticleId};

use super::{Context, LearnConfig, Learner, World, user_key};

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
                self.exposures.entry(article.id).or_default().exposed(ctx.now_ms, cfg.ctr_half_life_ms);
                // Copied into an allocation of its length: shrinking the vector in place would
                // keep its capacity's block (mimalloc reallocs in place down to half).
                let features: Box<[u64]> = self.hashed(world, user, article, ctx).as_slice().into();
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
                    e.engaged(ctx.now_ms, cfg.ctr_half_life_ms);
                }
                if action != Action::Read || read_ms >= cfg.long_read_ms {
                    self.like(cfg, world, user, article, ctx.now_ms);
                }
            }
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
