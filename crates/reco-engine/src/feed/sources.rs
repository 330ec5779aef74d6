//! Candidate sources: each proposes up to `limit` ids the user may see, tagged with its bit.

use rustc_hash::FxHashMap;

use super::{Candidate, Exclusion, RankInput};
use crate::learn::Profile;
use crate::model::{ALL_CHANNELS, ArticleId};
use crate::store::Sources;
use crate::text::Token;

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
        .filter(|id| !exclusion.excludes(*id) && input.catalog.live(*id).is_some())
        .take(limit)
        .map(|id| Candidate { id, sources: Sources::HOT })
        .collect()
}

/// Tokens looked up per personal source, and postings walked per token.
const QUERY_TOKENS: usize = 8;
const POSTINGS_WALK: usize = 120;

/// Articles sharing tokens (keywords, title bigrams) with the user's last five liked ones,
/// weighted by rarity.
pub fn similar_source(input: &RankInput<'_>, ex: &Exclusion<'_>, profile: &Profile, limit: usize) -> Vec<Candidate> {
    let mut query: FxHashMap<Token, f32> = FxHashMap::default();
    for &liked in profile.recent.iter().rev().take(5) {
        for &t in input.text.tokens(liked) {
            *query.entry(t).or_default() += input.text.idf(t);
        }
    }
    let mut query: Vec<(Token, f32)> = query.into_iter().collect();
    query.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    query.truncate(QUERY_TOKENS);
    let recent = |id: ArticleId| profile.recent.contains(&id);
    by_postings(input, ex, &query, limit, Sources::SIMILAR, &recent)
}

/// Articles that people who liked the user's recent articles liked too.
pub fn coengaged_source(input: &RankInput<'_>, ex: &Exclusion<'_>, profile: &Profile, limit: usize) -> Vec<Candidate> {
    let mut acc: FxHashMap<ArticleId, f32> = FxHashMap::default();
    for &liked in profile.recent.iter().rev().take(10) {
        for &(other, w) in input.learner.coengaged(liked) {
            if !ex.excludes(other) && input.catalog.live(other).is_some_and(|a| input.in_channel(a)) {
                *acc.entry(other).or_default() += w;
            }
        }
    }
    top(acc, limit, Sources::COENGAGED)
}

/// Newest articles of the user's favourite channels (in 推荐) and keywords.
pub fn affinity_source(input: &RankInput<'_>, ex: &Exclusion<'_>, profile: &Profile, limit: usize) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(limit);
    if input.channel == ALL_CHANNELS {
        let channels = profile.top_channels(3);
        let per = limit.div_ceil(2 * channels.len().max(1));
        for (c, _) in channels {
            out.extend(
                input
                    .catalog
                    .newest_first(c)
                    .take(input.config.scan_limit)
                    .filter(|a| !ex.excludes(a.id))
                    .take(per)
                    .map(|a| Candidate { id: a.id, sources: Sources::AFFINITY }),
            );
        }
    }
    let keywords: Vec<(Token, f32)> = profile.top_tokens(4);
    let never = |_: ArticleId| false;
    out.extend(by_postings(input, ex, &keywords, limit - out.len().min(limit), Sources::AFFINITY, &never));
    out
}

/// Articles with few exposures so far, newest first: new articles get a chance.
pub fn explore_source(input: &RankInput<'_>, exclusion: &Exclusion<'_>, limit: usize) -> Vec<Candidate> {
    let max = input.config.explore_max_exposures;
    input
        .catalog
        .newest_first(input.channel)
        .take(input.config.scan_limit)
        .filter(|a| !exclusion.excludes(a.id) && input.learner.exposures(a.id) < max)
        .take(limit)
        .map(|a| Candidate { id: a.id, sources: Sources::EXPLORE })
        .collect()
}

fn by_postings(
    input: &RankInput<'_>,
    ex: &Exclusion<'_>,
    query: &[(Token, f32)],
    limit: usize,
    source: Sources,
    skip: &dyn Fn(ArticleId) -> bool,
) -> Vec<Candidate> {
    let mut acc: FxHashMap<ArticleId, f32> = FxHashMap::default();
    for &(t, w) in query {
        for (id, channel) in input.text.postings(t).take(POSTINGS_WALK) {
            if (input.channel != ALL_CHANNELS && channel != input.channel) || ex.excludes(id) || skip(id) {
                continue;
            }
            *acc.entry(id).or_default() += w;
        }
    }
    top(acc, limit, source)
}

fn top(acc: FxHashMap<ArticleId, f32>, limit: usize, sources: Sources) -> Vec<Candidate> {
    let mut v: Vec<(ArticleId, f32)> = acc.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    v.truncate(limit);
    v.into_iter().map(|(id, _)| Candidate { id, sources }).collect()
}
