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
    Source(&'static str),
    UserChannel(ChannelId),
    UserToken(Token),
    /// Bucket of the profile's token similarity with the article.
    Similarity(u8),
    /// Bucket of the profile's share of the article's channel.
    ChannelAffinity(u8),
    /// log2 bucket of the article's exposures.
    Exposures(u8),
}

impl Feature {
    fn hash(self, user: u64) -> u64 {
        let (ns, a, b): (u64, u64, u64) = match self {
            Feature::Bias => (1, 0, 0),
            Feature::Article(id) => (2, id as u64, 0),
            Feature::Channel(c) => (3, c as u64, 0),
            Feature::Age(b) => (4, u64::from(b), 0),
            Feature::Popularity(b) => (5, u64::from(b), 0),
            Feature::Position(p) => (6, u64::from(p), 0),
            Feature::Source(name) => (7, hash_str(b's', name), 0),
            Feature::UserChannel(c) => (8, user, c as u64),
            Feature::UserToken(t) => (9, user, t),
            Feature::Similarity(b) => (10, u64::from(b), 0),
            Feature::ChannelAffinity(b) => (11, u64::from(b), 0),
            Feature::Exposures(b) => (12, u64::from(b), 0),
        };
        mix(mix(a ^ (ns << 56)) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15))
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
            Feature::Source(s) => format!("source={s}"),
            Feature::UserChannel(c) => format!("user×channel={c}"),
            Feature::UserToken(t) => match token_text(t) {
                Some(text) => format!("user×token={text}"),
                None => format!("user×token=#{t:016x}"),
            },
            Feature::Similarity(b) => format!("similar_to_liked={}", SIM_LABELS[usize::from(b)]),
            Feature::ChannelAffinity(b) => format!("channel_affinity={}", SIM_LABELS[usize::from(b)]),
            Feature::Exposures(b) => format!("exposures={}", Bucket(b)),
        }
    }
}

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
    if x < 1.0 { 0 } else { (x.log2().floor() as u8).saturating_add(1).min(24) }
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
    pub logit: f64,
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
}

impl Learner {
    /// Calls `emit` with every feature of `article` for `who` in `ctx`.
    pub fn features(
        &self,
        world: &World<'_>,
        who: Who<'_>,
        article: &Article,
        ctx: &Context,
        emit: &mut dyn FnMut(Feature),
    ) {
        let age_hours = (ctx.now_ms - article.publish_time).max(0) as f64 / 3_600_000.0;
        let popularity = world.popularity.value(world.hot.popularity_log2(article.id), ctx.now_ms);
        emit(Feature::Bias);
        emit(Feature::Article(article.id));
        emit(Feature::Channel(article.channel_id));
        emit(Feature::Age(log2_bucket(age_hours)));
        emit(Feature::Popularity(log2_bucket(popularity)));
        emit(Feature::Exposures(log2_bucket(f64::from(self.exposures(article.id)))));
        emit(Feature::Position(ctx.position.unwrap_or(0).min(20) as u8));
        for name in ctx.sources.names() {
            emit(Feature::Source(name));
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
        self.features(world, who, article, ctx, &mut |f| out.push(f.hash(who.key)));
        out
    }

    /// The model's view of `article` for `who` now.
    pub fn predict(&self, world: &World<'_>, who: Who<'_>, article: &Article, ctx: &Context) -> Prediction {
        let mut logit = 0.0;
        self.features(world, who, article, ctx, &mut |f| logit += self.model.weight(f.hash(who.key)));
        let demotion = who.profile.map_or(1.0, |p| p.demotion(article));
        Prediction { logit, probability: sigmoid(logit), demotion }
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
        self.features(world, who, article, ctx, &mut |f| out.push((f, self.model.weight(f.hash(who.key)))));
        out
    }
}
