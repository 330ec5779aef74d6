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

use crate::catalog::Catalog;
use crate::hot::HotIndex;
use crate::learn::{LearnConfig, Learner, Profile, World};
use crate::model::{ALL_CHANNELS, Article, ArticleId, ChannelId};
use crate::popularity::PopularityConfig;
use crate::store::{ChannelHistory, Sources, UserRecord};
use crate::text::TextIndex;

mod filter;
mod pick;
mod score;
mod sources;
mod stretches;
#[cfg(test)]
mod tests;

pub use filter::filter;
pub use pick::pick;
pub use score::{baseline_score, score, score_one};
pub use sources::{affinity_source, coengaged_source, explore_source, fresh_source, hot_source, similar_source};
pub use stretches::Stretches;

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
    /// How many articles the hot, exploration and affinity sources look at, at most (per
    /// channel for affinity), whatever the user has seen. The fresh source is not bounded:
    /// it walks back until it has enough unseen articles (jumping what the user's earlier
    /// walks found they had seen, see `stretches`).
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
    channel_id: ChannelId,
    channel: &'a ChannelHistory,
    /// 推荐's history, when the refresh is in another channel.
    all: Option<&'a ChannelHistory>,
}

impl<'a> Exclusion<'a> {
    pub fn new(user: &'a UserRecord, channel: ChannelId) -> Self {
        let all = (channel != ALL_CHANNELS).then(|| user.channel(ALL_CHANNELS));
        Self { user, channel_id: channel, channel: user.channel(channel), all }
    }

    /// The channel of the refresh this exclusion is for.
    pub fn channel_id(&self) -> ChannelId {
        self.channel_id
    }

    /// The user's record: the fresh source keeps what its walks found in it.
    pub fn user(&self) -> &'a UserRecord {
        self.user
    }

    pub fn excludes(&self, id: ArticleId) -> bool {
        self.channel.was_served(id) || self.all.is_some_and(|h| h.was_served(id)) || self.user.has_read(id)
    }
}

/// A proposed article, with the catalog's copy found by the source that proposed it (later
/// stages look nothing up again).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub id: ArticleId,
    pub sources: Sources,
    pub article: &'a Article,
}

impl<'a> Candidate<'a> {
    pub fn new(article: &'a Article, sources: Sources) -> Self {
        Self { id: article.id, sources, article }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored<'a> {
    pub id: ArticleId,
    pub sources: Sources,
    pub score: f64,
    pub article: &'a Article,
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
        World {
            learn: self.learn,
            catalog: self.catalog,
            text: self.text,
            hot: self.hot,
            popularity: &self.config.popularity,
        }
    }

    fn in_channel(&self, a: &Article) -> bool {
        self.channel == ALL_CHANNELS || a.channel_id == self.channel
    }

    fn limit(&self) -> usize {
        (self.article_num * self.config.candidate_factor).max(self.config.min_candidates)
    }
}

/// Runs every stage for one refresh.
pub fn rank<'a>(input: &RankInput<'a>, exclusion: &Exclusion<'_>) -> Vec<Scored<'a>> {
    let candidates = candidates(input, exclusion);
    let scored = score(input, candidates);
    pick(input, scored)
}

/// Every source's proposals, filtered and merged.
pub fn candidates<'a>(input: &RankInput<'a>, exclusion: &Exclusion<'_>) -> Vec<Candidate<'a>> {
    let limit = input.limit();
    let profile = input.learner.profile(input.user);
    let personal = |f: fn(&RankInput<'a>, &Exclusion<'_>, &Profile, usize) -> Vec<Candidate<'a>>| {
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
