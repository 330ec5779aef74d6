//! Candidate sources: each proposes up to `limit` ids the user may see, tagged with its bit.

use rustc_hash::FxHashMap;

use super::stretches::{walk_newest, walk_newest_before};
use super::{Candidate, Exclusion, RankInput};
use crate::learn::Profile;
use crate::model::{ALL_CHANNELS, Article, ArticleId};
use crate::store::Sources;
use crate::text::Token;

/// Newest articles of the channel the user has not seen, however far back that is: the one
/// source not bounded by `scan_limit`, so that a user who has seen all of a channel's newest
/// articles gets older ones rather than a short batch. It walks past what the user was
/// served, jumping the stretches of it that earlier walks remembered (see `stretches`), so a
/// long tenure costs it about what a short one does (BENCHMARKS.md, issue 14).
pub fn fresh_source<'a>(input: &RankInput<'a>, exclusion: &Exclusion<'_>, limit: usize) -> Vec<Candidate<'a>> {
    walk_newest(input.catalog, input.channel, exclusion, limit)
}

/// Most popular articles of the channel right now, among the `scan_limit` most popular.
pub fn hot_source<'a>(input: &RankInput<'a>, exclusion: &Exclusion<'_>, limit: usize) -> Vec<Candidate<'a>> {
    input
        .hot
        .most_popular(input.channel)
        .take(input.config.scan_limit)
        .filter(|id| !exclusion.excludes(*id))
        .filter_map(|id| input.catalog.live(id))
        .take(limit)
        .map(|a| Candidate::new(a, Sources::HOT))
        .collect()
}

/// Tokens looked up per personal source, and postings walked per token.
const QUERY_TOKENS: usize = 8;
const POSTINGS_WALK: usize = 120;

/// Articles sharing tokens (keywords, title bigrams) with the user's last five liked ones,
/// weighted by rarity.
pub fn similar_source<'a>(
    input: &RankInput<'a>,
    ex: &Exclusion<'_>,
    profile: &Profile,
    limit: usize,
) -> Vec<Candidate<'a>> {
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
pub fn coengaged_source<'a>(
    input: &RankInput<'a>,
    ex: &Exclusion<'_>,
    profile: &Profile,
    limit: usize,
) -> Vec<Candidate<'a>> {
    let mut acc: FxHashMap<ArticleId, (f32, &'a Article)> = FxHashMap::default();
    for &liked in profile.recent.iter().rev().take(10) {
        for &(other, w) in input.learner.coengaged(liked) {
            if ex.excludes(other) {
                continue;
            }
            if let Some(a) = input.catalog.live(other).filter(|a| input.in_channel(a)) {
                acc.entry(other).or_insert((0.0, a)).0 += w;
            }
        }
    }
    top(acc.into_values().map(|(w, a)| (a, w)).collect(), limit, Sources::COENGAGED)
}

/// Newest articles of the user's favourite channels (in 推荐) and keywords.
pub fn affinity_source<'a>(
    input: &RankInput<'a>,
    ex: &Exclusion<'_>,
    profile: &Profile,
    limit: usize,
) -> Vec<Candidate<'a>> {
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
                    .map(|a| Candidate::new(a, Sources::AFFINITY)),
            );
        }
    }
    let keywords: Vec<(Token, f32)> = profile.top_tokens(4);
    let never = |_: ArticleId| false;
    out.extend(by_postings(input, ex, &keywords, limit - out.len().min(limit), Sources::AFFINITY, &never));
    out
}

/// Articles with few exposures so far among the channel's `scan_limit` newest, newest first:
/// new articles get a chance. The walk jumps what the user's fresh walks found they had seen,
/// so a user who has seen most of the window does not pay for looking at it again.
pub fn explore_source<'a>(input: &RankInput<'a>, exclusion: &Exclusion<'_>, limit: usize) -> Vec<Candidate<'a>> {
    let max = input.config.explore_max_exposures;
    let mut out = Vec::new();
    if limit == 0 {
        return out;
    }
    let end = input.catalog.window_end(input.channel, input.config.scan_limit);
    walk_newest_before(input.catalog, input.channel, exclusion, end, |a| {
        if input.learner.exposures(a.id) < max {
            out.push(Candidate::new(a, Sources::EXPLORE));
        }
        out.len() < limit
    });
    out
}

fn by_postings<'a>(
    input: &RankInput<'a>,
    ex: &Exclusion<'_>,
    query: &[(Token, f32)],
    limit: usize,
    source: Sources,
    skip: &dyn Fn(ArticleId) -> bool,
) -> Vec<Candidate<'a>> {
    let mut acc: FxHashMap<ArticleId, f32> = FxHashMap::default();
    for &(t, w) in query {
        for (id, channel) in input.text.postings(t).take(POSTINGS_WALK) {
            if (input.channel != ALL_CHANNELS && channel != input.channel) || ex.excludes(id) || skip(id) {
                continue;
            }
            *acc.entry(id).or_default() += w;
        }
    }
    // Postings hold only live articles.
    top(acc.into_iter().filter_map(|(id, w)| Some((input.catalog.get(id)?, w))).collect(), limit, source)
}

/// The `limit` best by weight, then by the larger id.
fn top<'a>(mut v: Vec<(&'a Article, f32)>, limit: usize, sources: Sources) -> Vec<Candidate<'a>> {
    let order = |a: &(&Article, f32), b: &(&Article, f32)| b.1.total_cmp(&a.1).then(b.0.id.cmp(&a.0.id));
    if v.len() > limit && limit > 0 {
        v.select_nth_unstable_by(limit - 1, order);
        v.truncate(limit);
    }
    v.sort_unstable_by(order);
    v.truncate(limit);
    v.into_iter().map(|(a, _)| Candidate::new(a, sources)).collect()
}
