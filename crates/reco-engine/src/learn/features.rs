//! The ranker's features: what the model sees of an article for a user in a context.

use std::fmt;

use crate::catalog::Catalog;
use crate::ftrl::sigmoid;
use crate::hot::HotIndex;
use crate::model::{Article, ArticleId, ChannelId};
use crate::popularity::PopularityConfig;
use crate::store::Sources;
use crate::text::{TextIndex, Token, hash_str, mix};

use super::{Learner, Profile};

/// A feature of the ranker, for explanations. The hashed form is what the model sees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feature {
    Bias,
    Article(ArticleId),
    Channel(ChannelId),
    /// log2 bucket of the article's age in hours.
    Age(u8),
    /// log2 bucket of its popularity.
    Popularity(u8),
    /// Card position (0 when ranking: the model is asked about the top slot).
    Position(u8),
    /// A source that proposed the article, by its index in [`Sources::NAMED`].
    Source(u8),
    UserChannel(ChannelId),
    UserToken(Token),
    /// Bucket of the profile's token similarity with the article.
    Similarity(u8),
    /// Bucket of the profile's share of the article's channel.
    ChannelAffinity(u8),
    /// log2 bucket of the article's exposures.
    Exposures(u8),
    /// Bucket of the log-odds of the article's smoothed, decayed click-through rate (half a
    /// unit of log-odds wide; see [`ctr_bucket`]).
    Ctr(u8),
}

impl Feature {
    /// The hashed form the model sees: `mix(mix(a ^ ns << 56) ^ b * φ)` of the feature's
    /// namespace and parts. Stable across builds (checkpoints are keyed by it); the constant
    /// parts come from tables built at compile time and the user's from `who`.
    #[inline]
    fn hash(self, who: &Who<'_>) -> u64 {
        // A small value's hash from the table (computed as the table would be past its end).
        let small = |ns: usize, v: u8| {
            SMALL_HASHES[ns].get(usize::from(v)).copied().unwrap_or_else(|| hash_parts(ns as u64, u64::from(v), 0))
        };
        match self {
            Feature::Bias => SMALL_HASHES[NS_BIAS][0],
            Feature::Article(id) => hash_parts(NS_ARTICLE as u64, id as u64, 0),
            Feature::Channel(c) => hash_parts(NS_CHANNEL as u64, c as u64, 0),
            Feature::Age(b) => small(NS_AGE, b),
            Feature::Popularity(b) => small(NS_POPULARITY, b),
            Feature::Position(p) => small(NS_POSITION, p),
            Feature::Source(i) => match SOURCE_HASHES.get(usize::from(i)) {
                Some(h) => *h,
                None => hash_parts(NS_SOURCE as u64, u64::from(i), 0),
            },
            Feature::UserChannel(c) => mix(who.channel_seed ^ (c as u64).wrapping_mul(PHI)),
            Feature::UserToken(t) => mix(who.token_seed ^ t.wrapping_mul(PHI)),
            Feature::Similarity(b) => small(NS_SIMILARITY, b),
            Feature::ChannelAffinity(b) => small(NS_CHANNEL_AFFINITY, b),
            Feature::Exposures(b) => small(NS_EXPOSURES, b),
            Feature::Ctr(b) => small(NS_CTR, b),
        }
    }

    /// A readable name; `token_text` names the hashed tokens it can.
    pub fn describe(self, token_text: &dyn Fn(Token) -> Option<String>) -> String {
        match self {
            Feature::Bias => "bias".into(),
            Feature::Article(id) => format!("article={id}"),
            Feature::Channel(c) => format!("channel={c}"),
            Feature::Age(b) => format!("age_hours={}", Bucket(b)),
            Feature::Popularity(b) => format!("popularity={}", Bucket(b)),
            Feature::Position(p) => format!("position={p}"),
            Feature::Source(i) => match Sources::NAMED.get(usize::from(i)) {
                Some((_, name)) => format!("source={name}"),
                None => format!("source=#{i}"),
            },
            Feature::UserChannel(c) => format!("user×channel={c}"),
            Feature::UserToken(t) => match token_text(t) {
                Some(text) => format!("user×token={text}"),
                None => format!("user×token=#{t:016x}"),
            },
            Feature::Similarity(b) => format!("similar_to_liked={}", SIM_LABELS[usize::from(b)]),
            Feature::ChannelAffinity(b) => format!("channel_affinity={}", SIM_LABELS[usize::from(b)]),
            Feature::Exposures(b) => format!("exposures={}", Bucket(b)),
            Feature::Ctr(b) => format!("ctr≈{:.2}%", 100.0 * ctr_of_bucket(b)),
        }
    }
}

const PHI: u64 = 0x9E37_79B9_7F4A_7C15;

// The features' namespaces: the top byte of their first part.
const NS_BIAS: usize = 1;
const NS_ARTICLE: usize = 2;
const NS_CHANNEL: usize = 3;
const NS_AGE: usize = 4;
const NS_POPULARITY: usize = 5;
const NS_POSITION: usize = 6;
const NS_SOURCE: usize = 7;
const NS_USER_CHANNEL: u64 = 8;
const NS_USER_TOKEN: u64 = 9;
const NS_SIMILARITY: usize = 10;
const NS_CHANNEL_AFFINITY: usize = 11;
const NS_EXPOSURES: usize = 12;
const NS_CTR: usize = 13;

/// The first half of a feature's hash: namespace `ns`, first part `a`.
const fn hash_seed(ns: u64, a: u64) -> u64 {
    mix(a ^ (ns << 56))
}

const fn hash_parts(ns: u64, a: u64, b: u64) -> u64 {
    mix(hash_seed(ns, a) ^ b.wrapping_mul(PHI))
}

/// Values of the small features (buckets, positions) with a precomputed hash.
const SMALL: usize = 32;

/// Per namespace, the hash of each small value `v` (as `Feature::Age(v)` etc.).
const SMALL_HASHES: [[u64; SMALL]; 14] = {
    let mut table = [[0; SMALL]; 14];
    let mut ns = 0;
    while ns < 14 {
        let mut v = 0;
        while v < SMALL {
            table[ns][v] = hash_parts(ns as u64, v as u64, 0);
            v += 1;
        }
        ns += 1;
    }
    table
};

/// The hash of each named source, in [`Sources::NAMED`] order.
const SOURCE_HASHES: [u64; Sources::NAMED.len()] = {
    let mut table = [0; Sources::NAMED.len()];
    let mut i = 0;
    while i < table.len() {
        table[i] = hash_parts(NS_SOURCE as u64, hash_str(b's', Sources::NAMED[i].1), 0);
        i += 1;
    }
    table
};

/// A log2 bucket `b`: values in `[2^(b-1), 2^b)`, 0 for `< 1`.
struct Bucket(u8);

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("<1"),
            b => write!(f, "{}..{}", 1u64 << (b - 1), 1u64 << b),
        }
    }
}

fn log2_bucket(x: f64) -> u8 {
    // floor(log2 x) is the integer log of floor(x) (powers of two are integers); `as`
    // saturates, and NaN and values below 1 give 0.
    match x as u64 {
        0 => 0,
        v => (v.ilog2() as u8 + 1).min(24),
    }
}

/// Log-odds of the lowest bucket of [`Feature::Ctr`].
const CTR_LOG_ODDS_FLOOR: f64 = -8.0;

/// The bucket of a click-through rate: `2 * (log-odds - floor)`, rounded, in `0..SMALL`.
fn ctr_bucket(ctr: f64) -> u8 {
    let ctr = ctr.clamp(1e-6, 1.0 - 1e-6);
    let log_odds = (ctr / (1.0 - ctr)).ln();
    ((log_odds - CTR_LOG_ODDS_FLOOR) * 2.0).round().clamp(0.0, (SMALL - 1) as f64) as u8
}

/// The middle of a [`Feature::Ctr`] bucket, as a rate.
fn ctr_of_bucket(b: u8) -> f64 {
    crate::ftrl::sigmoid(f64::from(b) / 2.0 + CTR_LOG_ODDS_FLOOR)
}

const SIM_EDGES: [f32; 6] = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4];
const SIM_LABELS: [&str; 7] = ["0", "0..2%", "2..5%", "5..10%", "10..20%", "20..40%", ">=40%"];

fn share_bucket(x: f32) -> u8 {
    if x <= 0.0 {
        return 0;
    }
    SIM_EDGES.iter().filter(|e| x > **e).count() as u8
}

/// What the ranker reads besides the learner: the catalog, its text index and popularity.
pub struct World<'a> {
    pub learn: &'a super::LearnConfig,
    pub catalog: &'a Catalog,
    pub text: &'a TextIndex,
    pub hot: &'a HotIndex,
    pub popularity: &'a PopularityConfig,
}

/// Where an article is being scored or was shown.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Context {
    pub now_ms: i64,
    pub position: Option<u32>,
    pub sources: Sources,
}

/// A score and what it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The behaviour ranker's logit: its weights over the article's audience statistics and
    /// the personal ranker's logit (see [`super::behaviour`]).
    pub logit: f64,
    /// The personal ranker's logit alone (the FTRL model's features).
    pub ranker: f64,
    pub probability: f64,
    pub demotion: f64,
}
/// The hash that keys a user in features.
pub fn user_key(user: &str) -> u64 {
    hash_str(b'u', user)
}

/// A user as the model sees them, looked up once per request rather than per candidate.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    pub key: u64,
    pub profile: Option<&'a Profile>,
    /// The first halves of the user's feature hashes (see `Feature::hash`).
    channel_seed: u64,
    token_seed: u64,
}

impl<'a> Who<'a> {
    pub fn new(user: &str, profile: Option<&'a Profile>) -> Self {
        let key = user_key(user);
        Self { key, profile, channel_seed: hash_seed(NS_USER_CHANNEL, key), token_seed: hash_seed(NS_USER_TOKEN, key) }
    }
}

impl Learner {
    /// Calls `emit` with every feature of `article` for `who` in `ctx`.
    pub fn features(
        &self,
        world: &World<'_>,
        who: Who<'_>,
        article: &Article,
        ctx: &Context,
        mut emit: impl FnMut(Feature),
    ) {
        let age_hours = (ctx.now_ms - article.publish_time).max(0) as f64 / 3_600_000.0;
        let popularity = world.popularity.value(world.hot.popularity_log2(article.id), ctx.now_ms);
        let off = world.learn.off;
        let on = |family: &str| off == Default::default() || !off.has(family);
        emit(Feature::Bias);
        if on("article") {
            emit(Feature::Article(article.id));
        }
        if on("context") {
            emit(Feature::Channel(article.channel_id));
        }
        if on("age") {
            emit(Feature::Age(log2_bucket(age_hours)));
        }
        if on("popularity") {
            emit(Feature::Popularity(log2_bucket(popularity)));
            emit(Feature::Exposures(log2_bucket(f64::from(self.exposures(article.id)))));
        }
        if on("ctr") {
            emit(Feature::Ctr(ctr_bucket(self.ctr(world.learn, article.id, ctx.now_ms))));
        }
        if on("context") {
            emit(Feature::Position(ctx.position.unwrap_or(0).min(20) as u8));
            for (i, (source, _)) in Sources::NAMED.iter().enumerate() {
                if ctx.sources.contains(*source) {
                    emit(Feature::Source(i as u8));
                }
            }
        }
        if !on("personal") {
            return;
        }
        emit(Feature::UserChannel(article.channel_id));
        let tokens = world.text.tokens(article.id);
        for &t in tokens {
            emit(Feature::UserToken(t));
        }
        let (sim, chan) =
            who.profile.map_or((0.0, 0.0), |p| (p.similarity(tokens), p.channel_share(article.channel_id)));
        emit(Feature::Similarity(share_bucket(sim)));
        emit(Feature::ChannelAffinity(share_bucket(chan)));
    }

    pub(super) fn hashed(&self, world: &World<'_>, user: &str, article: &Article, ctx: &Context) -> Vec<u64> {
        let who = self.who(user);
        let mut out = Vec::with_capacity(24);
        self.features(world, who, article, ctx, |f| out.push(f.hash(&who)));
        out
    }

    /// The model's view of `article` for `who` now.
    pub fn predict(&self, world: &World<'_>, who: Who<'_>, article: &Article, ctx: &Context) -> Prediction {
        let mut ranker = 0.0;
        self.features(world, who, article, ctx, |f| ranker += self.model.weight(f.hash(&who)));
        let logit = if world.learn.off.has("behaviour") {
            ranker
        } else {
            self.behaviour.score(&self.behaviour_inputs(world.learn, article.id, ctx.now_ms, ranker))
        };
        let demotion = who.profile.map_or(1.0, |p| p.demotion(article));
        Prediction { logit, ranker, probability: sigmoid(logit), demotion }
    }

    /// Each feature with its weight now.
    pub fn contributions(
        &self,
        world: &World<'_>,
        who: Who<'_>,
        article: &Article,
        ctx: &Context,
    ) -> Vec<(Feature, f64)> {
        let mut out = Vec::new();
        self.features(world, who, article, ctx, |f| out.push((f, self.model.weight(f.hash(&who)))));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hashes as first defined, which the model's checkpoints are keyed by.
    fn reference_hash(f: Feature, user: u64) -> u64 {
        let (ns, a, b): (u64, u64, u64) = match f {
            Feature::Bias => (1, 0, 0),
            Feature::Article(id) => (2, id as u64, 0),
            Feature::Channel(c) => (3, c as u64, 0),
            Feature::Age(b) => (4, u64::from(b), 0),
            Feature::Popularity(b) => (5, u64::from(b), 0),
            Feature::Position(p) => (6, u64::from(p), 0),
            Feature::Source(i) => (7, hash_str(b's', Sources::NAMED[usize::from(i)].1), 0),
            Feature::UserChannel(c) => (8, user, c as u64),
            Feature::UserToken(t) => (9, user, t),
            Feature::Similarity(b) => (10, u64::from(b), 0),
            Feature::ChannelAffinity(b) => (11, u64::from(b), 0),
            Feature::Exposures(b) => (12, u64::from(b), 0),
            Feature::Ctr(b) => (13, u64::from(b), 0),
        };
        mix(mix(a ^ (ns << 56)) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    #[test]
    fn hashes_are_the_ones_checkpoints_were_keyed_by() {
        for user in ["u", "user-17", "张三"] {
            let who = Who::new(user, None);
            let mut features = vec![Feature::Bias];
            features.extend((0..Sources::NAMED.len() as u8).map(Feature::Source));
            for v in [0u8, 1, 5, 24, 31, 32, 200, 255] {
                features.extend([
                    Feature::Age(v),
                    Feature::Popularity(v),
                    Feature::Position(v),
                    Feature::Similarity(v),
                    Feature::ChannelAffinity(v),
                    Feature::Exposures(v),
                    Feature::Ctr(v),
                ]);
            }
            for x in [0i64, 1, -1, 42, i64::MAX, i64::MIN] {
                features.extend([Feature::Article(x), Feature::UserToken(x as u64)]);
            }
            for c in [0, 13, -7, i32::MAX] {
                features.extend([Feature::Channel(c), Feature::UserChannel(c)]);
            }
            for f in features {
                assert_eq!(f.hash(&who), reference_hash(f, user_key(user)), "{f:?} for {user}");
            }
        }
    }

    #[test]
    fn log2_buckets_are_the_float_ones() {
        let reference = |x: f64| if x < 1.0 { 0 } else { (x.log2().floor() as u8).saturating_add(1).min(24) };
        for x in (0..70_000u32).map(f64::from).chain([0.5, 1.5, 2.999, 1e9, 1e30, f64::INFINITY, -3.0]) {
            assert_eq!(log2_bucket(x), reference(x), "{x}");
        }
        assert_eq!(log2_bucket(f64::NAN), 0);
    }
}
