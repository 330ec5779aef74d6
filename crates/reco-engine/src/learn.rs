//! What the engine learns from tracking events: the ranker's model, per-user profiles,
//! item-to-item co-engagement, exposure counts and the `Stats` counters.
//!
//! All of it is a function of the event log: [`Learner::apply`] takes events in log order and
//! remembers which sequence numbers it has applied, so the engine can checkpoint it into the
//! store and, after a restart, replay only the events logged after the checkpoint.
//!
//! Labels: an exposure opens a window ([`LearnConfig::negative_window_ms`]); a click, collect,
//! share or read of the article within it trains a positive (weighted by action, reads by
//! duration) with the features as they were at exposure; a window that closes without one
//! trains a negative. A dislike trains a strong negative at once. Positives also move the
//! user's profile (recent articles, token, keyword and channel affinities) and co-engagement;
//! dislikes demote the article's keywords and channel for the user.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::ftrl::{Ftrl, FtrlConfig, sigmoid};
use crate::hot::HotIndex;
use crate::model::{Action, Article, ArticleId, ChannelId};
use crate::popularity::PopularityConfig;
use crate::stats::Stats;
use crate::store::{EventRecord, Sources};
use crate::text::{TextIndex, Token, hash_str, keyword_token, mix};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnConfig {
    pub ftrl: FtrlConfig,
    /// An exposure not followed by a positive action within this many ms is a negative.
    pub negative_window_ms: i64,
    /// Importance weights of positives; a read weighs `read_base + read_per_minute * minutes`,
    /// at most `read_max`.
    pub click_weight: f64,
    pub collect_weight: f64,
    pub share_weight: f64,
    pub read_base: f64,
    pub read_per_minute: f64,
    pub read_max: f64,
    /// Importance weight of the negative a dislike trains.
    pub dislike_weight: f64,
    /// A read at least this long moves the profile like a click.
    pub long_read_ms: u64,
    /// Profile sizes: recent positives, tokens, keywords, channels.
    pub recent: usize,
    pub profile_tokens: usize,
    /// Co-engaged articles kept per article.
    pub coengaged_per_article: usize,
    /// Profile weights are multiplied by this before each positive adds to them.
    pub profile_decay: f32,
    /// Pending exposures kept at most (the oldest close early, as negatives).
    pub max_pending: usize,
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            ftrl: FtrlConfig::default(),
            negative_window_ms: 10 * 60_000,
            click_weight: 1.0,
            collect_weight: 1.5,
            share_weight: 1.5,
            read_base: 0.5,
            read_per_minute: 0.5,
            read_max: 2.0,
            dislike_weight: 3.0,
            long_read_ms: 15_000,
            recent: 20,
            profile_tokens: 64,
            coengaged_per_article: 32,
            profile_decay: 0.95,
            max_pending: 1_000_000,
        }
    }
}

/// What a user's positives and dislikes taught so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Articles liked, oldest first.
    pub recent: VecDeque<ArticleId>,
    /// Token affinities (keywords and title tokens), decayed, largest kept; sorted by token.
    pub tokens: Vec<(Token, f32)>,
    /// The sum of the token weights.
    pub token_mass: f32,
    pub channels: Vec<(ChannelId, f32)>,
    /// Disliked topics: keyword tokens and channel tokens.
    pub dislikes: Vec<(Token, f32)>,
    pub positives: u32,
}

impl Profile {
    /// The share of the user's token mass that `tokens` (distinct) cover, in 0..=1.
    pub fn similarity(&self, tokens: &[Token]) -> f32 {
        if self.token_mass <= 0.0 {
            return 0.0;
        }
        let hit: f32 = tokens
            .iter()
            .filter_map(|t| self.tokens.binary_search_by_key(t, |(k, _)| *k).ok())
            .map(|i| self.tokens[i].1)
            .sum();
        (hit / self.token_mass).min(1.0)
    }

    /// The share of the user's channel mass in `channel`, in 0..=1.
    pub fn channel_share(&self, channel: ChannelId) -> f32 {
        let mass: f32 = self.channels.iter().map(|(_, w)| w).sum();
        if mass <= 0.0 {
            return 0.0;
        }
        self.channels.iter().find(|(c, _)| *c == channel).map_or(0.0, |(_, w)| w / mass)
    }

    /// Multiplier for an article from the user's disliked topics: halves per disliked keyword,
    /// 0.7 per dislike in its channel, at least 0.05.
    pub fn demotion(&self, article: &Article) -> f64 {
        if self.dislikes.is_empty() {
            return 1.0;
        }
        let channel = channel_token(article.channel_id);
        let mut factor = 1.0f64;
        for (t, w) in &self.dislikes {
            if *t == channel {
                factor *= 0.7f64.powf(f64::from(*w));
            } else if article.keywords.iter().any(|k| keyword_token(k) == *t) {
                factor *= 0.5f64.powf(f64::from(*w));
            }
        }
        factor.max(0.05)
    }

    /// Keyword tokens by affinity, largest first.
    pub fn top_tokens(&self, n: usize) -> Vec<(Token, f32)> {
        let mut t = self.tokens.clone();
        t.sort_by(|a, b| b.1.total_cmp(&a.1));
        t.truncate(n);
        t
    }

    /// Channels by affinity, largest first.
    pub fn top_channels(&self, n: usize) -> Vec<(ChannelId, f32)> {
        let mut c = self.channels.clone();
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        c.truncate(n);
        c
    }
}

/// The token a channel's dislikes are kept under.
pub fn channel_token(channel: ChannelId) -> Token {
    hash_str(b'c', &channel.to_string())
}

fn bump<K: PartialEq + Copy>(list: &mut Vec<(K, f32)>, key: K, by: f32, cap: usize) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, w)) => *w += by,
        None => {
            list.push((key, by));
            if list.len() > cap {
                let min = list.iter().enumerate().min_by(|a, b| a.1.1.total_cmp(&b.1.1)).map(|(i, _)| i);
                if let Some(i) = min {
                    list.swap_remove(i);
                }
            }
        }
    }
}

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pending {
    expires: i64,
    features: Box<[u64]>,
}

/// A score and what it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub logit: f64,
    pub probability: f64,
    pub demotion: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Learner {
    model: Ftrl,
    profiles: FxHashMap<String, Profile>,
    coengaged: FxHashMap<ArticleId, Vec<(ArticleId, f32)>>,
    exposures: FxHashMap<ArticleId, u32>,
    pending: FxHashMap<(u64, ArticleId), Pending>,
    /// (expiry, user hash, article) in arrival order.
    queue: VecDeque<(i64, u64, ArticleId)>,
    pub stats: Stats,
    /// The newest event time seen.
    clock: i64,
    /// Every log sequence number up to this one is applied, and those in `ahead`.
    applied: u64,
    ahead: BTreeSet<u64>,
    /// Events learned from, and pending windows closed as negatives.
    pub events: u64,
    pub negatives: u64,
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
    pub fn profile(&self, user: &str) -> Option<&Profile> {
        self.profiles.get(user)
    }

    pub fn who(&self, user: &str) -> Who<'_> {
        Who { key: user_key(user), profile: self.profiles.get(user) }
    }

    pub fn exposures(&self, id: ArticleId) -> u32 {
        self.exposures.get(&id).copied().unwrap_or(0)
    }

    /// Articles co-engaged with `id`, with their weights.
    pub fn coengaged(&self, id: ArticleId) -> &[(ArticleId, f32)] {
        self.coengaged.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn model_features(&self) -> usize {
        self.model.len()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn users(&self) -> usize {
        self.profiles.len()
    }

    /// The sequence number up to which every logged event is applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

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

    fn hashed(&self, world: &World<'_>, user: &str, article: &Article, ctx: &Context) -> Vec<u64> {
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

    /// Applies a logged event unless `seq` was applied already; `None` for events that are not
    /// in a log (offline evaluation).
    pub fn apply(&mut self, cfg: &LearnConfig, world: &World<'_>, seq: Option<u64>, event: &EventRecord) {
        if let Some(seq) = seq {
            if seq <= self.applied || !self.ahead.insert(seq) {
                return;
            }
            while self.ahead.first() == Some(&(self.applied + 1)) {
                self.ahead.pop_first();
                self.applied += 1;
            }
        }
        self.events += 1;
        self.advance(cfg, event.time);
        for (i, &id) in event.article_ids.iter().enumerate() {
            let Some(article) = world.catalog.get(id) else { continue };
            let sources = event.sources.get(i).copied();
            let position = event.position.or(if event.action == Action::Exposure { Some(i as u32) } else { None });
            let ctx = Context { now_ms: event.time, position, sources: sources.unwrap_or_default() };
            self.stats.record(event.time, event.bucket, sources, article.channel_id, event.action);
            self.learn(cfg, world, &event.user, article, &ctx, event.action, event.read_ms);
        }
    }

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
                *self.exposures.entry(article.id).or_default() += 1;
                let features = self.hashed(world, user, article, ctx).into_boxed_slice();
                let expires = ctx.now_ms + cfg.negative_window_ms;
                self.pending.insert(key, Pending { expires, features });
                self.queue.push_back((expires, key.0, key.1));
                while self.pending.len() > cfg.max_pending {
                    let Some((t, u, a)) = self.queue.pop_front() else { break };
                    self.close(cfg, t, u, a);
                }
            }
            Action::Dislike => {
                let features = self.take_pending(key).unwrap_or_else(|| self.hashed(world, user, article, ctx).into());
                self.model.update(&cfg.ftrl, &features, false, cfg.dislike_weight);
                let profile = self.profiles.entry(user.to_owned()).or_default();
                for k in &article.keywords {
                    bump(&mut profile.dislikes, keyword_token(k), 1.0, 64);
                }
                bump(&mut profile.dislikes, channel_token(article.channel_id), 0.5, 64);
                profile.recent.retain(|a| *a != article.id);
            }
            Action::Click | Action::Collect | Action::Share | Action::Read => {
                let weight = match action {
                    Action::Click => cfg.click_weight,
                    Action::Collect => cfg.collect_weight,
                    Action::Share => cfg.share_weight,
                    _ => (cfg.read_base + cfg.read_per_minute * read_ms as f64 / 60_000.0).min(cfg.read_max),
                };
                let features = self.take_pending(key).unwrap_or_else(|| self.hashed(world, user, article, ctx).into());
                self.model.update(&cfg.ftrl, &features, true, weight);
                if action != Action::Read || read_ms >= cfg.long_read_ms {
                    self.like(cfg, world, user, article);
                }
            }
        }
    }

    /// A positive from outside the tracking loop (an imported click history): moves the
    /// profile and co-engagement, trains nothing (there was no exposure to learn against).
    pub fn learn_history(&mut self, cfg: &LearnConfig, world: &World<'_>, user: &str, article: &Article) {
        self.like(cfg, world, user, article);
    }

    fn like(&mut self, cfg: &LearnConfig, world: &World<'_>, user: &str, article: &Article) {
        let profile = self.profiles.entry(user.to_owned()).or_default();
        if profile.recent.contains(&article.id) {
            return;
        }
        profile.positives += 1;
        for (_, w) in &mut profile.tokens {
            *w *= cfg.profile_decay;
        }
        for (_, w) in &mut profile.channels {
            *w *= cfg.profile_decay;
        }
        let tokens = world.text.tokens(article.id);
        for &t in tokens {
            bump(&mut profile.tokens, t, world.text.idf(t).max(0.1), cfg.profile_tokens);
        }
        profile.tokens.sort_unstable_by_key(|(t, _)| *t);
        profile.token_mass = profile.tokens.iter().map(|(_, w)| w).sum();
        bump(&mut profile.channels, article.channel_id, 1.0, 32);
        let recent: Vec<ArticleId> = profile.recent.iter().rev().take(10).copied().collect();
        profile.recent.push_back(article.id);
        if profile.recent.len() > cfg.recent {
            profile.recent.pop_front();
        }
        for other in recent {
            for (a, b) in [(other, article.id), (article.id, other)] {
                bump(self.coengaged.entry(a).or_default(), b, 1.0, cfg.coengaged_per_article);
            }
        }
    }

    fn take_pending(&mut self, key: (u64, ArticleId)) -> Option<Box<[u64]>> {
        self.pending.remove(&key).map(|p| p.features)
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
            let p = self.pending.remove(&(user, article)).expect("checked above");
            self.model.update(&cfg.ftrl, &p.features, false, 1.0);
            self.negatives += 1;
        }
    }

    /// The checkpoint's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(self).map_err(|e| e.to_string())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(id: ArticleId, keyword: &str) -> Article {
        Article {
            id,
            channel_id: 1,
            title: format!("{keyword}新闻"),
            author: String::new(),
            publish_time: 0,
            keywords: vec![keyword.to_owned()],
            summary: String::new(),
            cover: String::new(),
        }
    }

    struct Setup {
        catalog: Catalog,
        text: TextIndex,
        hot: HotIndex,
        pop: PopularityConfig,
        cfg: LearnConfig,
    }

    impl Setup {
        fn new() -> Self {
            let catalog = Catalog::new(vec![article(1, "足球"), article(2, "篮球"), article(3, "足球")]);
            let text = TextIndex::new(&catalog);
            Self {
                catalog,
                text,
                hot: HotIndex::default(),
                pop: PopularityConfig::default(),
                cfg: LearnConfig::default(),
            }
        }

        fn world(&self) -> World<'_> {
            World { catalog: &self.catalog, text: &self.text, hot: &self.hot, popularity: &self.pop }
        }

        fn event(&self, seq_key: u8, user: &str, action: Action, ids: &[ArticleId], time: i64) -> EventRecord {
            EventRecord {
                key: crate::store::EventKey([seq_key; 16]),
                user: user.to_owned(),
                channel: 0,
                action,
                article_ids: ids.to_vec(),
                time,
                read_ms: 0,
                popularity_log2: f64::NEG_INFINITY,
                sources: Vec::new(),
                position: (action != Action::Exposure).then_some(0),
                bucket: 0,
            }
        }
    }

    #[test]
    fn an_exposure_without_a_click_becomes_a_negative_when_its_window_closes() {
        let s = Setup::new();
        let mut l = Learner::default();
        l.apply(&s.cfg, &s.world(), Some(1), &s.event(1, "u", Action::Exposure, &[1, 2], 0));
        l.apply(&s.cfg, &s.world(), Some(2), &s.event(2, "u", Action::Click, &[1], 1_000));
        assert_eq!((l.pending(), l.negatives), (1, 0), "the click consumed article 1's window");
        l.advance(&s.cfg, s.cfg.negative_window_ms - 1);
        assert_eq!(l.negatives, 0);
        l.advance(&s.cfg, s.cfg.negative_window_ms);
        assert_eq!((l.pending(), l.negatives), (0, 1));
        let p = |id| l.predict(&s.world(), l.who("u"), s.catalog.get(id).unwrap(), &Context::default()).logit;
        assert!(p(1) > 0.0 && p(2) < 0.0 && p(3) > 0.0, "clicked up, skipped down, same topic up");
    }

    #[test]
    fn applied_sequence_numbers_are_not_applied_twice() {
        let s = Setup::new();
        let mut l = Learner::default();
        let click = s.event(1, "u", Action::Click, &[1], 0);
        l.apply(&s.cfg, &s.world(), Some(2), &click);
        l.apply(&s.cfg, &s.world(), Some(2), &click);
        assert_eq!((l.events, l.applied()), (1, 0), "2 is ahead of a gap at 1");
        l.apply(&s.cfg, &s.world(), Some(1), &click);
        assert_eq!((l.events, l.applied()), (2, 2));
        l.apply(&s.cfg, &s.world(), Some(1), &click);
        assert_eq!(l.events, 2);
    }

    #[test]
    fn a_dislike_demotes_the_topic_and_forgets_the_article() {
        let s = Setup::new();
        let mut l = Learner::default();
        l.apply(&s.cfg, &s.world(), Some(1), &s.event(1, "u", Action::Click, &[1], 0));
        l.apply(&s.cfg, &s.world(), Some(2), &s.event(2, "u", Action::Dislike, &[1], 0));
        let profile = l.profile("u").unwrap();
        assert!(profile.recent.is_empty());
        assert_eq!(profile.demotion(s.catalog.get(3).unwrap()), 0.5 * 0.7f64.powf(0.5));
        assert_eq!(profile.demotion(&Article { channel_id: 9, ..article(4, "篮球") }), 1.0);
    }

    #[test]
    fn the_checkpoint_round_trips() {
        let s = Setup::new();
        let mut l = Learner::default();
        l.apply(&s.cfg, &s.world(), Some(1), &s.event(1, "u", Action::Exposure, &[1, 2, 3], 0));
        l.apply(&s.cfg, &s.world(), Some(2), &s.event(2, "v", Action::Click, &[2], 5));
        l.apply(&s.cfg, &s.world(), Some(3), &s.event(3, "v", Action::Click, &[3], 6));
        let back = Learner::decode(&l.encode().unwrap()).unwrap();
        assert_eq!(back, l);
        assert!(Learner::decode(b"\xff\xff").is_err());
    }
}
