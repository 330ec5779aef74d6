//! The engine: the feed paging rules and the tracking loop over a [`Store`].
//!
//! One concurrency model (see ARCHITECTURE.md): the event log is the source of truth for what
//! was learned. `ingest` alone changes the learner and popularity (a [`Model`]), applying
//! accepted events in log order, and publishes the result as an immutable snapshot; ranking
//! (`paging`), `inspect` and `offline` scoring read the snapshot without taking any lock the
//! ingest side holds. The only locks a refresh takes are its user's stripe and then the
//! store's record of that user, in that order.

mod ingest;
mod inspect;
mod offline;
mod paging;
mod publish;
mod watch;

pub use publish::{CatalogChange, ChangeKind, ChangeNotifier, MAX_CHANGES, PublishVerdict, RetractVerdict, Since};
pub use watch::{EventNotifier, Wanted, WatchVerdict, WatchedEvent};

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::catalog::{self, Catalog};
use crate::feed::{RankConfig, RankInput, Variant};
use crate::hot::HotIndex;
use crate::learn::{LearnConfig, Learner, LearnerMemory, World};
use crate::model::{Action, ArticleId, ChannelId};
use crate::params::{Signer, TrackParam};
use crate::stats::Counts;
use crate::store::{ArticleCounters, MemoryUse, Sources, Store, StoreError};
use crate::text;

use ingest::{EventFeed, Ingest, Model};

/// Engine settings; validated by [`Engine::new`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Largest `article_num` a request may ask for.
    pub max_article_num: u32,
    /// Params older than this (by their batch time) are refused as expired.
    pub param_max_age_ms: i64,
    /// Largest number of events in one report.
    pub max_report_events: usize,
    /// How far ahead of the server's clock a request's `time_stamp` may be, ms.
    pub max_clock_skew_ms: i64,
    /// Longest `read_duration_ms` a read event may carry.
    pub max_read_ms: i64,
    /// Estimated bytes of accepted events kept in memory for the log's consumers (older ones
    /// are read from the store); the newest event is always kept.
    pub event_tail_bytes: usize,
    pub rank: RankConfig,
    pub learn: LearnConfig,
    /// The A/B variants; a user's bucket is a hash of their id modulo their number.
    pub variants: Vec<Variant>,
    /// Version tag at the front of `algorithmCombine` (`<algorithm>.b<bucket>:<sources>`).
    pub algorithm: String,
    /// An article published longer ago than this leaves the catalog: no source proposes it,
    /// and the learner and popularity forget it (the store keeps it, and history reads and
    /// `Catalog.Articles` still find it). `i64::MAX`: never (offline replays of old logs).
    pub max_article_age_ms: i64,
    /// Logged events a checkpoint leaves in the log before the point it covers, for replicas
    /// a little behind it (a store whose log costs disk only keeps the whole log whatever
    /// this says: [`crate::store::Store::trim_event_log`]).
    pub event_log_keep: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_article_num: 100,
            param_max_age_ms: 30 * 24 * 3_600_000,
            max_report_events: 1000,
            max_clock_skew_ms: 5 * 60_000,
            max_read_ms: 6 * 3_600_000,
            event_tail_bytes: 16 << 20,
            rank: RankConfig::default(),
            learn: LearnConfig::default(),
            variants: vec![Variant::default()],
            algorithm: "v2".to_owned(),
            max_article_age_ms: 30 * DAY_MS,
            event_log_keep: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A `user_recommend` request, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedRequest {
    pub user_id: String,
    pub channel_id: ChannelId,
    pub article_num: u32,
    pub time_stamp: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FeedItem {
    pub article_id: ArticleId,
    /// click, collect, share, read params, in `Action::TRACKED` order.
    pub track: [String; 4],
}

#[derive(Clone, Debug, PartialEq)]
pub struct FeedResponse {
    /// The batch's exposure param; empty for a history read.
    pub exposure: String,
    /// Refresh: time of the previous batch. History: time of the next older batch. 0: none.
    pub time_stamp: i64,
    pub items: Vec<FeedItem>,
    /// Whether this was a refresh (a new batch) or a history read.
    pub refreshed: bool,
}

/// A reported event before verification.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedEvent {
    pub param: String,
    /// ms; 0 means now.
    pub action_time: i64,
    pub read_duration_ms: i64,
    /// "Not interested", reported with one of a card's params instead of its action.
    pub dislike: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Accepted(TrackParam),
    Duplicate(TrackParam),
    Rejected { reason: String, param: Option<TrackParam> },
}

/// Counters of one article now.
#[derive(Clone, Debug, PartialEq)]
pub struct ArticleStats {
    pub counters: ArticleCounters,
    pub popularity: f64,
}

/// An action given to [`Engine::observe`].
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub user: &'a str,
    pub article: ArticleId,
    pub action: Action,
    pub time_ms: i64,
    pub read_ms: u64,
    pub position: Option<u32>,
    pub sources: Sources,
    /// A click from an imported history: profile only, no model update.
    pub prior: bool,
}

/// The answer of [`Engine::explain`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub bucket: u8,
    pub variant: String,
    pub ranker: bool,
    /// The sources that would propose the article in 推荐 now.
    pub sources: Sources,
    /// The sources it was served by, when it is in the user's history.
    pub served_sources: Option<Sources>,
    pub score: f64,
    pub probability: f64,
    pub demotion: f64,
    pub hidden: bool,
    /// What the logit is made of, largest magnitude first, at most 10, zeros left out: the
    /// behaviour ranker's terms on the article's audience (`audience:<input>`, weight times
    /// input) and the personal ranker's features (their weights times the behaviour ranker's
    /// weight on the personal logit). All of them sum to the logit.
    pub contributions: Vec<(String, f64)>,
}

/// The answer of [`Engine::stats`]: rows of (key, counts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub by_bucket: Vec<(String, Counts)>,
    pub by_source: Vec<(String, Counts)>,
    pub by_channel: Vec<(String, Counts)>,
}

/// What was found for a list of ids, and the ids that were not.
pub type Found<T> = (Vec<T>, Vec<ArticleId>);

pub const DAY_MS: i64 = 24 * 3_600_000;

/// A refresh ages the catalog out when its clock is this far past the last time it was.
const AGE_STEP_MS: i64 = 1_000;

/// Stripes of the per-user lock that makes read-rank-append atomic within this process.
const USER_LOCKS: usize = 64;

/// Meta key of the learner's checkpoint. v2: profiles carry their last activity and the
/// learner its memory counts; a v1 checkpoint is ignored (the log is replayed from the start).
const LEARNER_KEY: &str = "learner.v3";

/// What the engine holds in memory, for logs and the memory benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineMemory {
    /// One copy of the learner; the engine keeps two (the published one and the ingest side's).
    pub learner: LearnerMemory,
    pub store: MemoryUse,
    /// Accepted events kept in memory for the log's consumers, and their estimated bytes.
    pub event_tail: usize,
    pub event_tail_bytes: usize,
}

pub struct Engine<S> {
    store: S,
    /// The catalog with its text index, replaced whole by `publish` and `retract`; a refresh
    /// loads it once and ranks against that one.
    catalog: ArcSwap<Catalog>,
    /// Taken by `publish`, `retract` and `follow_catalog` (one catalog change at a time),
    /// never waited for by a refresh. It holds the number of the store's catalog change log
    /// that the catalog is up to date with (see [`Engine::follow_catalog`]).
    publishing: Mutex<u64>,
    changes: publish::ChangeFeed,
    watchers: watch::Watchers,
    served_watchers: watch::ServedWatchers,
    /// What ranking reads, published whole by the ingest side; readers never wait for it.
    model: ArcSwap<Model>,
    /// The ingest side: the private copy of the model and the ops it has not applied yet.
    /// Taken by `report`, `checkpoint` and `observe`, never by a refresh.
    ingest: Mutex<Ingest>,
    feed: EventFeed,
    signer: Signer,
    config: EngineConfig,
    user_locks: Vec<Mutex<()>>,
    next_request: AtomicU64,
    /// The learner's `events` and `negatives` mixed, at the last checkpoint written.
    checkpointed: AtomicU64,
    /// The catalog's `aged_out` count when the model last forgot aged articles (`u64::MAX`: never).
    pruned: AtomicU64,
}

impl<S: Store> Engine<S> {
    /// Loads the catalog and counters from `store`, and the learner from its checkpoint plus
    /// the events logged after it.
    pub fn new(store: S, secret: &[u8], config: EngineConfig) -> Result<Self, EngineError> {
        if config.max_article_num == 0 {
            return Err(EngineError::InvalidArgument("max_article_num must be at least 1".into()));
        }
        if secret.len() < 16 {
            return Err(EngineError::InvalidArgument("the tracking secret must be at least 16 bytes".into()));
        }
        if config.variants.is_empty() || config.variants.len() > 255 {
            return Err(EngineError::InvalidArgument("there must be 1..=255 variants".into()));
        }
        if config.max_clock_skew_ms < 0 || config.max_read_ms < 1 {
            return Err(EngineError::InvalidArgument("max_clock_skew_ms must be >= 0 and max_read_ms >= 1".into()));
        }
        if config.max_article_age_ms < 3_600_000 {
            return Err(EngineError::InvalidArgument("max_article_age_ms must be at least one hour".into()));
        }
        // Articles past the maximum age counted from the newest one stay in the store only (the
        // first refresh ages the rest by the clock).
        // The change log's position first: a change logged while the articles load is applied
        // again by the first `follow_catalog`, which is harmless; one missed would not be.
        let catalog_position = store.catalog_changes(u64::MAX)?.head;
        let mut articles = store.load_articles()?;
        let oldest = articles.iter().map(|a| a.publish_time).max().map(|n| n.saturating_sub(config.max_article_age_ms));
        if let Some(oldest) = oldest {
            articles.retain(|a| a.publish_time >= oldest);
        }
        let mut catalog = Catalog::with_retractions(articles, store.load_retractions()?);
        if let Some(oldest) = oldest {
            // Nothing older is left; this records that articles before it are gone (so events
            // on params served before they aged are not taken for unknown articles).
            catalog.age_out(oldest);
        }
        let mut hot = HotIndex::default();
        for (id, c) in store.all_counters()? {
            if let Some(a) = catalog.get(id) {
                hot.set(id, a.channel_id, c.popularity_log2);
            }
        }
        // With a checkpoint, popularity is the checkpoint's plus the events replayed; without
        // one, it is the store's counters, which hold every event already.
        let checkpoint = store.get_meta(LEARNER_KEY)?.and_then(|bytes| {
            Model::decode(&bytes)
                .inspect_err(|e| {
                    tracing::warn!("the learner checkpoint does not decode ({e}): relearning from the whole event log")
                })
                .ok()
        });
        let counted = checkpoint.is_none();
        let mut model = checkpoint.unwrap_or(Model { learner: Learner::default(), hot });
        let trimmed = store.event_log_trimmed()?;
        if trimmed > model.learner.applied() {
            tracing::warn!(
                from = model.learner.applied() + 1,
                through = trimmed,
                "events were trimmed from the shared log after the newest checkpoint: the learner does not learn from \
                 them (their counters, dedup and read sets are kept)"
            );
            model.learner.skip_through(trimmed);
        }
        let from = model.learner.applied();
        let mut replayed = 0u64;
        store.scan_events(from, &mut |seq, event| {
            model.replay(&config, &catalog, seq, std::sync::Arc::new(event), counted);
            replayed += 1;
        })?;
        tracing::info!(checkpoint = from, replayed, users = model.learner.users(), "learner ready");
        let seed = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        let feed = EventFeed::new(config.event_tail_bytes);
        Ok(Self {
            store,
            catalog: ArcSwap::from_pointee(catalog),
            publishing: Mutex::new(catalog_position),
            changes: publish::ChangeFeed::new(now_nanos() / 1_000),
            watchers: watch::Watchers::default(),
            served_watchers: watch::ServedWatchers::default(),
            model: ArcSwap::from_pointee(model.clone()),
            ingest: Mutex::new(Ingest::new(model)),
            feed,
            signer: Signer::new(secret),
            config,
            user_locks: (0..USER_LOCKS).map(|_| Mutex::new(())).collect(),
            next_request: AtomicU64::new(seed ^ now_nanos()),
            checkpointed: AtomicU64::new(u64::MAX),
            pruned: AtomicU64::new(u64::MAX),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The catalog now (a snapshot: later changes do not show in it).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Checks a raw request against the contract's ranges (the clock bound of `time_stamp` is
    /// checked by [`Engine::recommend`], which knows the time).
    pub fn validate(
        &self,
        user_id: &str,
        channel_id: i32,
        article_num: i32,
        time_stamp: i64,
    ) -> Result<FeedRequest, EngineError> {
        let max = self.config.max_article_num;
        check_user_id(user_id)?;
        if article_num <= 0 || article_num as u32 > max {
            return Err(invalid(format!("article_num must be in 1..={max}, got {article_num}")));
        }
        if !catalog::is_channel(channel_id) {
            let last = catalog::CHANNELS.last().map_or(0, |c| c.0);
            return Err(invalid(format!(
                "channel_id {channel_id} is unknown: use 0 (推荐, all channels) or 1..={last} (see Catalog.Channels)"
            )));
        }
        if time_stamp <= 0 {
            return Err(invalid(format!("time_stamp must be Unix milliseconds > 0, got {time_stamp}")));
        }
        Ok(FeedRequest { user_id: user_id.to_owned(), channel_id, article_num: article_num as u32, time_stamp })
    }

    /// The user's A/B bucket: a stable hash of the id modulo the number of variants.
    pub fn bucket_of(&self, user: &str) -> u8 {
        (text::hash_str(b'b', user) % self.config.variants.len() as u64) as u8
    }

    pub fn variant(&self, bucket: u8) -> Option<&Variant> {
        self.config.variants.get(usize::from(bucket))
    }

    /// The log sequence number through which the learner checkpoint in `store` covers the
    /// event log, if there is a readable one.
    pub fn checkpointed_through(store: &S) -> Result<Option<u64>, EngineError> {
        Ok(store.get_meta(LEARNER_KEY)?.and_then(|b| Model::decode(&b).ok()).map(|m| m.learner.applied()))
    }

    /// What the engine holds in memory now.
    pub fn memory(&self) -> EngineMemory {
        EngineMemory {
            learner: self.model.load().learner.memory(),
            store: self.store.memory(),
            event_tail: self.feed.len(),
            event_tail_bytes: self.feed.bytes(),
        }
    }

    fn world<'a>(&'a self, catalog: &'a Catalog, hot: &'a HotIndex) -> World<'a> {
        World {
            learn: &self.config.learn,
            catalog,
            text: catalog.text(),
            hot,
            popularity: &self.config.rank.popularity,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rank_input<'a>(
        &'a self,
        catalog: &'a Catalog,
        model: &'a Model,
        user: &'a str,
        channel: ChannelId,
        article_num: usize,
        now_ms: i64,
        bucket: u8,
    ) -> RankInput<'a> {
        RankInput {
            catalog,
            hot: &model.hot,
            text: catalog.text(),
            learner: &model.learner,
            learn: &self.config.learn,
            user,
            channel,
            article_num,
            now_ms,
            config: &self.config.rank,
            variant: &self.config.variants[usize::from(bucket)],
            seed: 0,
        }
    }

    fn user_lock(&self, user: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(user) as usize;
        self.user_locks[h % USER_LOCKS].lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check_user_id(user_id: &str) -> Result<(), EngineError> {
    if user_id.trim().is_empty() {
        return Err(invalid("user_id is empty: send the user's id, or a stable anonymous id for guests"));
    }
    if user_id.len() > 256 {
        return Err(invalid(format!("user_id is {} bytes, at most 256 are allowed", user_id.len())));
    }
    Ok(())
}

/// `<algorithm>.b<bucket>[:<sources>]` -> bucket (0 when absent, as in v1 params) and sources.
fn parse_combine(text: &str) -> (u8, Option<Sources>) {
    let (head, sources) = match text.split_once(':') {
        Some((head, sources)) => (head, Some(Sources::parse(sources))),
        None => (text, None),
    };
    let bucket = head.rsplit_once(".b").and_then(|(_, b)| b.parse().ok()).unwrap_or(0);
    (bucket, sources)
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
