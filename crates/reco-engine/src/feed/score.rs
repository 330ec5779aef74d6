//! The scorer: the learned click probability, or engine v1's freshness plus popularity.

use super::{Candidate, RankInput, Scored};
use crate::learn::{Context, Who};
use crate::model::Article;
use crate::store::Sources;

/// Engine v1's score: `2^(-age / freshness_half_life) + popularity_weight * ln(1 + popularity)`.
pub fn baseline_score(input: &RankInput<'_>, article: &Article) -> f64 {
    let cfg = input.config;
    let age = (input.now_ms - article.publish_time).max(0) as f64;
    let freshness = (-age / cfg.freshness_half_life_ms).exp2();
    let popularity = cfg.popularity.value(input.hot.popularity_log2(article.id), input.now_ms);
    freshness + cfg.popularity_weight * popularity.ln_1p()
}

/// The score of one candidate: with the ranker, the click probability times the demotion,
/// plus a thousandth of the v1 score (which orders a model that knows nothing yet).
/// `who` is `input.learner.who(input.user)`, looked up once for all candidates.
pub fn score_one(input: &RankInput<'_>, who: Who<'_>, article: &Article, sources: Sources) -> f64 {
    let base = baseline_score(input, article);
    if !input.variant.ranker {
        return base * who.profile.map_or(1.0, |p| p.demotion(article));
    }
    let ctx = Context { now_ms: input.now_ms, position: None, sources };
    let p = input.learner.predict(&input.world(), who, article, &ctx);
    p.probability * p.demotion + 1e-3 * base
}

pub fn score<'a>(input: &RankInput<'a>, candidates: Vec<Candidate<'a>>) -> Vec<Scored<'a>> {
    let who = input.learner.who(input.user);
    candidates
        .into_iter()
        .map(|c| Scored {
            id: c.id,
            sources: c.sources,
            score: score_one(input, who, c.article, c.sources),
            article: c.article,
        })
        .collect()
}
