//! Ranking as named stages: candidate sources -> filter -> score -> pick.
//!
//! Sources propose candidates, each tagged with its [`Sources`] bit so events can be
//! attributed: `fresh` (newest in the channel), `hot` (most popular now, time-decayed),
//! `similar` (sharing tokens with what the user recently liked), `coengaged` (liked by people
//! who liked what the user liked), `affinity` (newest in the user's favourite channels and
//! topics) and `explore` (articles with few exposures). The filter drops what the user must not
//! see again and merges an id proposed by several sources. The scorer is the learned model's
//! click probability times the user's topic demotion (or, in a variant without the ranker,
//! freshness plus popularity). The picker fills the batch best-first under the diversity rule
//! and gives a share of the slots to exploration.
//!
//! Diversity rule: in 推荐 no two adjacent cards share a channel or a first keyword, and no
//! channel takes more than a third of the batch (rounded up); in a single channel no two
//! adjacent cards share a first keyword. When no candidate fits, the channel cap is kept and
//! neighbours may repeat; when nothing keeps the cap either, the best remaining one is taken,
//! so a batch is never short because of the rule.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::hot::HotIndex;
use crate::learn::{Context, LearnConfig, Learner, Profile, Who, World};
use crate::model::{ALL_CHANNELS, Article, ArticleId, ChannelId};
use crate::popularity::PopularityConfig;
use crate::store::{ChannelHistory, Sources, UserRecord};
use crate::text::{TextIndex, Token};

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
    /// An article with fewer exposures than this is an exploration candidate.
    pub explore_max_exposures: u32,
    /// How many articles the exploration and affinity sources look at, at most.
    pub scan_limit: usize,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            freshness_half_life_ms: 3.0 * 24.0 * 3_600_000.0,
            popularity_weight: 0.5,
            candidate_factor: 2,
            min_candidates: 20,
            popularity: PopularityConfig::default(),
            explore_max_exposures: 20,
            scan_limit: 2_000,
        }
    }
}

/// An A/B variant: what the users of one bucket get.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub name: String,
    /// Rank with the learned model; else with freshness and popularity (engine v1).
    pub ranker: bool,
    /// Expected share of each batch given to exploration, in `0..=1`.
    pub explore_rate: f64,
}

impl Default for Variant {
    fn default() -> Self {
        Self { name: "main".to_owned(), ranker: true, explore_rate: 0.1 }
    }
}

impl Variant {
    /// Parses `name:ranker=on,explore=0.1;other:ranker=off` (keys optional, defaults as
    /// [`Variant::default`]).
    pub fn parse_list(text: &str) -> Result<Vec<Variant>, String> {
        let mut out = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, opts) = part.split_once(':').unwrap_or((part, ""));
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("variant name {name:?} must be non-empty ASCII letters, digits, - or _"));
            }
            let mut v = Variant { name: name.to_owned(), ..Variant::default() };
            for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                match opt.split_once('=') {
                    Some(("ranker", "on")) => v.ranker = true,
                    Some(("ranker", "off")) => v.ranker = false,
                    Some(("explore", x)) => {
                        v.explore_rate =
                            x.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or_else(|| {
                                format!("variant {name}: explore must be a number in 0..=1, got {x:?}")
                            })?;
                    }
                    _ => {
                        return Err(format!(
                            "variant {name}: unknown option {opt:?} (use ranker=on|off, explore=0..1)"
                        ));
                    }
                }
            }
            if out.iter().any(|o: &Variant| o.name == v.name) {
                return Err(format!("variant {name} is listed twice"));
            }
            out.push(v);
        }
        if out.is_empty() {
            return Err("no variant given".to_owned());
        }
        if out.len() > 255 {
            return Err("at most 255 variants".to_owned());
        }
        Ok(out)
    }
}

/// What the user must not be shown again on a refresh in `channel`: what was served to them
/// in that channel or in 推荐, and what they read or disliked.
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
    pub text: &'a TextIndex,
    pub learner: &'a Learner,
    pub learn: &'a LearnConfig,
    pub user: &'a str,
    pub channel: ChannelId,
    pub article_num: usize,
    pub now_ms: i64,
    pub config: &'a RankConfig,
    pub variant: &'a Variant,
    /// Seeds the exploration draw (the request id: reproducible per batch).
    pub seed: u64,
}

impl RankInput<'_> {
    fn world(&self) -> World<'_> {
        World { catalog: self.catalog, text: self.text, hot: self.hot, popularity: &self.config.popularity }
    }

    fn in_channel(&self, a: &Article) -> bool {
        self.channel == ALL_CHANNELS || a.channel_id == self.channel
    }

    fn limit(&self) -> usize {
        (self.article_num * self.config.candidate_factor).max(self.config.min_candidates)
    }
}

/// Runs every stage for one refresh.
pub fn rank(input: &RankInput<'_>, exclusion: &Exclusion<'_>) -> Vec<Scored> {
    let candidates = candidates(input, exclusion);
    let scored = score(input, candidates);
    pick(input, scored)
}

/// Every source's proposals, filtered and merged.
pub fn candidates(input: &RankInput<'_>, exclusion: &Exclusion<'_>) -> Vec<Candidate> {
    let limit = input.limit();
    let profile = input.learner.profile(input.user);
    let personal = |f: fn(&RankInput<'_>, &Exclusion<'_>, &Profile, usize) -> Vec<Candidate>| {
        profile.map(|p| f(input, exclusion, p, limit)).unwrap_or_default()
    };
    filter(
        exclusion,
        [
            fresh_source(input, exclusion, limit),
            hot_source(input, exclusion, limit),
            personal(similar_source),
            personal(coengaged_source),
            personal(affinity_source),
            if input.variant.explore_rate > 0.0 { explore_source(input, exclusion, limit) } else { Vec::new() },
        ],
    )
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
            if !ex.excludes(other) && input.catalog.get(other).is_some_and(|a| input.in_channel(a)) {
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
        for &(id, channel) in input.text.postings(t).iter().take(POSTINGS_WALK) {
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

pub fn score(input: &RankInput<'_>, candidates: Vec<Candidate>) -> Vec<Scored> {
    let who = input.learner.who(input.user);
    candidates
        .into_iter()
        .filter_map(|c| {
            let article = input.catalog.get(c.id)?;
            Some(Scored { id: c.id, sources: c.sources, score: score_one(input, who, article, c.sources) })
        })
        .collect()
}

/// Fills `article_num` slots: exploration slots (on average `explore_rate` of them, at random
/// positions after the first) take random exploration candidates; the others take the best-scored candidate
/// that keeps the diversity rule.
pub fn pick(input: &RankInput<'_>, mut scored: Vec<Scored>) -> Vec<Scored> {
    let n = input.article_num.min(scored.len());
    scored.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let rate = input.variant.explore_rate;
    let mut explore_slots = (rate * n as f64 + rng.random::<f64>()).floor() as usize;
    let pool: Vec<usize> = (0..scored.len()).filter(|&i| scored[i].sources.contains(Sources::EXPLORE)).collect();
    // The top card is always the best-scored one: exploration takes slots 1.. only.
    explore_slots = explore_slots.min(pool.len()).min(n.saturating_sub(1));
    let chosen: Vec<usize> =
        rand::seq::index::sample(&mut rng, pool.len(), explore_slots).into_iter().map(|i| pool[i]).collect();
    let slots: Vec<usize> =
        rand::seq::index::sample(&mut rng, n.saturating_sub(1), explore_slots).into_iter().map(|i| i + 1).collect();

    let mut explore: Vec<Scored> = Vec::with_capacity(explore_slots);
    let mut rest: Vec<Scored> = Vec::with_capacity(scored.len());
    for (i, s) in scored.into_iter().enumerate() {
        if chosen.contains(&i) { explore.push(s) } else { rest.push(s) }
    }
    let cap = n.div_ceil(3);
    let mut per_channel: FxHashMap<ChannelId, usize> = FxHashMap::default();
    let mut out: Vec<Scored> = Vec::with_capacity(n);
    // Exploration slots reached but not filled yet (their candidates did not fit there).
    let mut owed = 0;
    for slot in 0..n {
        owed += usize::from(slots.contains(&slot));
        let prev = out.last().and_then(|s| input.catalog.get(s.id));
        let room =
            |a: &Article| input.channel != ALL_CHANNELS || per_channel.get(&a.channel_id).copied().unwrap_or(0) < cap;
        let apart = |a: &Article| {
            prev.is_none_or(|p| {
                let same_topic = a.keywords.first().is_some_and(|k| p.keywords.first() == Some(k));
                !same_topic && (input.channel != ALL_CHANNELS || a.channel_id != p.channel_id)
            })
        };
        let article = |s: &Scored| input.catalog.get(s.id);
        let fits = |s: &Scored| article(s).is_none_or(|a| room(a) && apart(a));
        let explored = if owed > 0 { explore.iter().position(fits) } else { None };
        let s = if let Some(i) = explored {
            owed -= 1;
            explore.remove(i)
        } else {
            // The whole rule; else keep the channel cap and let neighbours repeat; else the best.
            let i = rest
                .iter()
                .position(fits)
                .or_else(|| rest.iter().position(|s| article(s).is_none_or(room)))
                .or(if rest.is_empty() { None } else { Some(0) });
            match i {
                Some(i) => rest.remove(i),
                None if !explore.is_empty() => explore.remove(0),
                None => break,
            }
        };
        if let Some(a) = input.catalog.get(s.id) {
            *per_channel.entry(a.channel_id).or_default() += 1;
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::Context;
    use crate::model::Action;

    const NOW: i64 = 1_000 * 3_600_000;

    fn article(id: i64, channel: ChannelId, keywords: &[&str], age_hours: i64) -> Article {
        Article {
            id,
            channel_id: channel,
            title: format!("{}的故事", keywords.join("")),
            author: String::new(),
            publish_time: NOW - age_hours * 3_600_000,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            summary: String::new(),
            cover: String::new(),
        }
    }

    /// Channels 1..=4 have 足球, 篮球, 股票, 基金 articles; ids are channel * 100 + i, newer
    /// with higher i.
    fn world() -> (Catalog, TextIndex, HotIndex) {
        let mut articles = Vec::new();
        for (channel, kw) in [(1, "足球"), (2, "篮球"), (3, "股票"), (4, "基金")] {
            for i in 0..20 {
                let id = i64::from(channel) * 100 + i;
                articles.push(article(id, channel, &[kw, if i % 2 == 0 { "赛事" } else { "分析" }], 40 - i));
            }
        }
        let catalog = Catalog::new(articles);
        let text = TextIndex::new(&catalog);
        (catalog, text, HotIndex::default())
    }

    struct Fixture {
        catalog: Catalog,
        text: TextIndex,
        hot: HotIndex,
        learner: Learner,
        learn: LearnConfig,
        rank: RankConfig,
        variant: Variant,
    }

    impl Fixture {
        fn new() -> Self {
            let (catalog, text, hot) = world();
            let learn = LearnConfig::default();
            Self {
                catalog,
                text,
                hot,
                learner: Learner::default(),
                learn,
                rank: RankConfig::default(),
                variant: Variant::default(),
            }
        }

        fn act(&mut self, user: &str, id: ArticleId, action: Action) {
            let world =
                World { catalog: &self.catalog, text: &self.text, hot: &self.hot, popularity: &self.rank.popularity };
            let a = self.catalog.get(id).unwrap();
            let ctx = Context { now_ms: NOW, position: Some(0), sources: Sources::FRESH };
            self.learner.learn(&self.learn, &world, user, a, &ctx, action, 60_000);
        }

        fn input<'a>(&'a self, user: &'a str, channel: ChannelId, n: usize) -> RankInput<'a> {
            RankInput {
                catalog: &self.catalog,
                hot: &self.hot,
                text: &self.text,
                learner: &self.learner,
                learn: &self.learn,
                user,
                channel,
                article_num: n,
                now_ms: NOW,
                config: &self.rank,
                variant: &self.variant,
                seed: 7,
            }
        }
    }

    fn ids(c: &[Candidate]) -> Vec<ArticleId> {
        c.iter().map(|c| c.id).collect()
    }

    #[test]
    fn fresh_is_newest_first_within_the_channel_and_skips_the_excluded() {
        let f = Fixture::new();
        let user = UserRecord::default();
        let ex = Exclusion::new(&user, 2);
        assert_eq!(ids(&fresh_source(&f.input("u", 2, 3), &ex, 3)), [219, 218, 217]);
    }

    #[test]
    fn similar_follows_the_liked_topic_and_skips_the_liked_article() {
        let mut f = Fixture::new();
        f.act("u", 105, Action::Click);
        let user = UserRecord::default();
        let profile = f.learner.profile("u").unwrap().clone();
        let got = similar_source(&f.input("u", ALL_CHANNELS, 5), &Exclusion::new(&user, 0), &profile, 5);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|c| c.sources == Sources::SIMILAR && c.id / 100 == 1 && c.id != 105), "{got:?}");
        // 105 is an odd one ("分析"): the articles sharing both keywords rank first.
        assert!(got.iter().take(3).all(|c| c.id % 2 == 1), "{got:?}");
    }

    #[test]
    fn coengaged_proposes_what_others_liked_with_the_same_article() {
        let mut f = Fixture::new();
        for other in ["a", "b"] {
            f.act(other, 101, Action::Click);
            f.act(other, 305, Action::Click);
        }
        f.act("u", 101, Action::Click);
        let user = UserRecord::default();
        let profile = f.learner.profile("u").unwrap().clone();
        let got = coengaged_source(&f.input("u", ALL_CHANNELS, 5), &Exclusion::new(&user, 0), &profile, 5);
        assert_eq!(ids(&got), [305]);
        let in_channel_2 = coengaged_source(&f.input("u", 2, 5), &Exclusion::new(&user, 2), &profile, 5);
        assert!(in_channel_2.is_empty(), "a channel feed keeps to its channel");
    }

    #[test]
    fn affinity_proposes_the_favourite_channel_newest_first() {
        let mut f = Fixture::new();
        f.act("u", 201, Action::Click);
        f.act("u", 203, Action::Read);
        let user = UserRecord::default();
        let profile = f.learner.profile("u").unwrap().clone();
        let got = affinity_source(&f.input("u", ALL_CHANNELS, 4), &Exclusion::new(&user, 0), &profile, 4);
        assert_eq!(got[0].id, 219);
        assert!(got.iter().all(|c| c.id / 100 == 2 && c.sources == Sources::AFFINITY), "{got:?}");
    }

    #[test]
    fn explore_skips_articles_with_many_exposures() {
        let mut f = Fixture::new();
        f.rank.explore_max_exposures = 2;
        for _ in 0..2 {
            f.act("x", 319, Action::Exposure);
        }
        f.act("x", 318, Action::Exposure);
        let user = UserRecord::default();
        let got = explore_source(&f.input("u", 3, 2), &Exclusion::new(&user, 3), 2);
        assert_eq!(ids(&got), [318, 317]);
    }

    #[test]
    fn filter_merges_sources_and_drops_the_excluded() {
        let f = Fixture::new();
        let mut user = UserRecord::default();
        user.mark_read(102);
        let c = |id, sources| Candidate { id, sources };
        let got = filter(
            &Exclusion::new(&user, 0),
            [vec![c(101, Sources::FRESH), c(102, Sources::FRESH)], vec![c(101, Sources::HOT), c(103, Sources::HOT)]],
        );
        assert_eq!(got, [c(101, Sources::FRESH.union(Sources::HOT)), c(103, Sources::HOT)]);
        drop(f);
    }

    #[test]
    fn pick_keeps_the_diversity_rule_in_the_mixed_feed() {
        let mut f = Fixture::new();
        f.variant.explore_rate = 0.0;
        // Channel 1 scores best by far: without the rule the batch would be all 足球.
        let scored: Vec<Scored> = f
            .catalog
            .newest_first(ALL_CHANNELS)
            .map(|a| Scored { id: a.id, sources: Sources::FRESH, score: if a.channel_id == 1 { 10.0 } else { 1.0 } })
            .collect();
        let got = pick(&f.input("u", ALL_CHANNELS, 9), scored.clone());
        let channels: Vec<ChannelId> = got.iter().map(|s| f.catalog.get(s.id).unwrap().channel_id).collect();
        assert_eq!(channels.len(), 9);
        assert!(channels.windows(2).all(|w| w[0] != w[1]), "{channels:?}");
        assert_eq!(channels.iter().filter(|c| **c == 1).count(), 3, "a third at most: {channels:?}");
        // In one channel, only the adjacent-topic rule applies.
        let ch1: Vec<Scored> = scored.into_iter().filter(|s| s.id / 100 == 1).collect();
        let got = pick(&f.input("u", 1, 6), ch1);
        let topics: Vec<&str> = got.iter().map(|s| f.catalog.get(s.id).unwrap().keywords[0].as_str()).collect();
        assert_eq!(topics.len(), 6, "the rule never shortens a batch");
    }

    #[test]
    fn pick_gives_exploration_its_share() {
        let mut f = Fixture::new();
        f.variant.explore_rate = 0.3;
        let scored: Vec<Scored> = f
            .catalog
            .newest_first(ALL_CHANNELS)
            .enumerate()
            .map(|(i, a)| {
                let sources = if i % 2 == 0 { Sources::EXPLORE } else { Sources::FRESH };
                Scored { id: a.id, sources, score: if sources == Sources::EXPLORE { 0.0 } else { 1.0 } }
            })
            .collect();
        let mut explored = 0;
        for seed in 0..200 {
            let mut input = f.input("u", ALL_CHANNELS, 10);
            input.seed = seed;
            explored += pick(&input, scored.clone()).iter().filter(|s| s.sources == Sources::EXPLORE).count();
        }
        let share = explored as f64 / 2000.0;
        assert!((0.25..0.35).contains(&share), "exploration share {share}");
    }

    #[test]
    fn variants_parse_and_refuse_bad_input() {
        let v = Variant::parse_list("a:ranker=on,explore=0.2; b:ranker=off").unwrap();
        assert_eq!(v[1], Variant { name: "b".into(), ranker: false, explore_rate: 0.1 });
        assert_eq!(v[0].explore_rate, 0.2);
        for bad in ["", "a:explore=2", "a:speed=1", "a;a", "a b"] {
            assert!(Variant::parse_list(bad).is_err(), "{bad:?}");
        }
    }
}
