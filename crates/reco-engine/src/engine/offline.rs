//! Offline scoring and learning for `reco eval`: the same ranker and learner as online, with the
//! candidates given and the actions observed directly instead of through signed params.

use crate::feed;
use crate::model::{ALL_CHANNELS, ArticleId};
use crate::store::{Sources, Store};

use super::ingest::{Observed, Op};
use super::{Engine, Observation};

impl<S: Store> Engine<S> {
    /// Scores `ids` for `user` as the ranker would now (`-inf` for unknown ids), without the
    /// candidate sources: for offline evaluation, where the candidates are given.
    pub fn score_for(&self, user: &str, ids: &[ArticleId], now_ms: i64) -> Vec<f64> {
        let catalog = self.catalog.load();
        let model = self.model.load();
        let input = self.rank_input(&catalog, &model, user, ALL_CHANNELS, ids.len(), now_ms, self.bucket_of(user));
        let who = model.learner.who(user);
        ids.iter()
            .map(|id| {
                catalog.get(*id).map_or(f64::NEG_INFINITY, |a| feed::score_one(&input, who, a, Sources::default()))
            })
            .collect()
    }

    /// Learns from one action given directly, outside the signed tracking loop and the store:
    /// for offline evaluation. `prior` marks a positive from an imported history, which moves
    /// the user's profile but trains no model weight. It goes through the ingest side like a
    /// logged event.
    pub fn observe(&self, obs: &Observation<'_>) {
        if !self.catalog.load().contains(obs.article) {
            return;
        }
        self.apply_ops(vec![Op::Observe(std::sync::Arc::new(Observed::from(obs)))]);
    }
}
