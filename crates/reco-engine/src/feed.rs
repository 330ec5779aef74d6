//! Ranking v1 as named stages: candidates -> filter -> score -> pick.
//!
//! Sources propose candidates from the catalog (fresh: newest first; hot: most popular now);
//! the filter drops what the user must not see again and merges duplicates across sources;
//! the scorer mixes freshness with time-decayed popularity; the picker keeps the best. Each
//! stage is a plain function over plain data, so later rankers can be added as stages.

use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::hot::HotIndex;
use crate::model::{ALL_CHANNELS, ArticleId, ChannelId};
use crate::popularity::PopularityConfig;
use crate::store::{ChannelHistory, Sources, UserRecord};

/// Ranking knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct RankConfig {
    /// Freshness halves every this many ms of article age.
    pub freshness_half_life_ms: f64,
    /// Weight of `ln(1 + popularity)` against freshness (which is at most 1).
    pub popularity_weight: f64,
    /// Each source proposes `max(article_num * candidate_factor, min_candidates)` articles.
    pub candidate_factor: usize,
    pub min_candidates: usize,
    pub popularity: PopularityConfig,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            freshness_half_life_ms: 3.0 * 24.0 * 3_600_000.0,
            popularity_weight: 0.5,
            candidate_factor: 3,
            min_candidates: 30,
            popularity: PopularityConfig::default(),
        }
    }
}

/// What the user must not be shown again on a refresh in `channel`: what was served to them
/// in that channel or in 推荐, and what they read.
pub struct Exclusion<'a> {
    user: &'a UserRecord,
    channel: &'a ChannelHistory,
    /// 推荐's history, when the refresh is in another channel.
    all: Option<&'a ChannelHistory>,
}

impl<'a> Exclusion<'a> {
    pub fn new(user: &'a UserRecord, channel: ChannelId) -> Self {
        let all = (channel != ALL_CHANNELS).then(|| user.channel(ALL_CHANNELS));
        Self { user, channel: user.channel(channel), all }
    }

    pub fn excludes(&self, id: ArticleId) -> bool {
        self.channel.was_served(id) || self.all.is_some_and(|h| h.was_served(id)) || self.user.has_read(id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: ArticleId,
    pub sources: Sources,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub id: ArticleId,
    pub sources: Sources,
    pub score: f64,
}

/// Everything a ranking pass reads.
pub struct RankInput<'a> {
    pub catalog: &'a Catalog,
    pub hot: &'a HotIndex,
    pub channel: ChannelId,
    pub article_num: usize,
    pub now_ms: i64,
    pub config: &'a RankConfig,
}

/// Runs every stage for one refresh.
pub fn rank(input: &RankInput<'_>, exclusion: &Exclusion<'_>) -> Vec<Scored> {
    let limit = (input.article_num * input.config.candidate_factor).max(input.config.min_candidates);
    let fresh = fresh_source(input, exclusion, limit);
    let hot = hot_source(input, exclusion, limit);
    let candidates = filter(exclusion, [fresh, hot]);
    let scored = score(input, candidates);
    pick(scored, input.article_num)
}

/// Newest articles of the channel. Sources skip excluded ids themselves so that they return
/// `limit` usable candidates however much the user has seen.
pub fn fresh_source(input: &RankInput<'_>, exclusion: &Exclusion<'_>, limit: usize) -> Vec<Candidate> {
    input
        .catalog
        .newest_first(input.channel)
        .filter(|a| !exclusion.excludes(a.id))
        .take(limit)
        .map(|a| Candidate { id: a.id, sources: Sources::FRESH })
        .collect()
}

/// Most popular articles of the channel right now.
pub fn hot_source(input: &RankInput<'_>, exclusion: &Exclusion<'_>, limit: usize) -> Vec<Candidate> {
    input
        .hot
        .most_popular(input.channel)
        .filter(|id| !exclusion.excludes(*id))
        .take(limit)
        .map(|id| Candidate { id, sources: Sources::HOT })
        .collect()
}

/// Drops excluded ids and merges an id proposed by several sources into one candidate.
pub fn filter<const N: usize>(exclusion: &Exclusion<'_>, sources: [Vec<Candidate>; N]) -> Vec<Candidate> {
    let mut merged: Vec<Candidate> = Vec::with_capacity(sources.iter().map(Vec::len).sum());
    let mut slot: FxHashMap<ArticleId, usize> =
        FxHashMap::with_capacity_and_hasher(merged.capacity(), Default::default());
    for c in sources.into_iter().flatten() {
        if exclusion.excludes(c.id) {
            continue;
        }
        match slot.get(&c.id) {
            Some(&i) => merged[i].sources = merged[i].sources.union(c.sources),
            None => {
                slot.insert(c.id, merged.len());
                merged.push(c);
            }
        }
    }
    merged
}

/// `2^(-age / freshness_half_life) + popularity_weight * ln(1 + popularity now)`.
pub fn score(input: &RankInput<'_>, candidates: Vec<Candidate>) -> Vec<Scored> {
    let cfg = input.config;
    candidates
        .into_iter()
        .filter_map(|c| {
            let article = input.catalog.get(c.id)?;
            let age = (input.now_ms - article.publish_time).max(0) as f64;
            let freshness = (-age / cfg.freshness_half_life_ms).exp2();
            let popularity = cfg.popularity.value(input.hot.popularity_log2(c.id), input.now_ms);
            Some(Scored { id: c.id, sources: c.sources, score: freshness + cfg.popularity_weight * popularity.ln_1p() })
        })
        .collect()
}

/// The `n` best by score; ties go to the higher (newer) id.
pub fn pick(mut scored: Vec<Scored>, n: usize) -> Vec<Scored> {
    scored.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
    scored.truncate(n);
    scored
}
