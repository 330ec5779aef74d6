//! The storage interface the engine talks to, and an in-memory implementation.
//!
//! A backend keeps four things: the catalog, each user's served batches per channel (from
//! which the served sets derive), each user's read set, and the tracking events with the
//! per-article counters they update. `reco-store` implements it on an embedded database;
//! a networked backend implements the same trait, and [`conformance`] runs against each.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::catalog::Retraction;
use crate::feed::Stretches;
use crate::mem;
use crate::model::{Action, Article, ArticleId, ChannelId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("data dir is in use by another process: {0}")]
    Locked(String),
}

/// Which candidate sources proposed an article; carried into `algorithmCombine`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sources(pub u8);

impl Sources {
    pub const FRESH: Sources = Sources(1);
    pub const HOT: Sources = Sources(1 << 1);
    /// Content-similar to what the user recently liked.
    pub const SIMILAR: Sources = Sources(1 << 2);
    /// Co-engaged: people who liked what the user liked also liked it.
    pub const COENGAGED: Sources = Sources(1 << 3);
    /// From the user's channel and keyword affinities.
    pub const AFFINITY: Sources = Sources(1 << 4);
    /// Exploration: an article with few exposures so far.
    pub const EXPLORE: Sources = Sources(1 << 5);

    /// Every source with its name, in label order.
    pub const NAMED: [(Sources, &'static str); 6] = [
        (Self::FRESH, "fresh"),
        (Self::HOT, "hot"),
        (Self::SIMILAR, "similar"),
        (Self::COENGAGED, "coengaged"),
        (Self::AFFINITY, "affinity"),
        (Self::EXPLORE, "explore"),
    ];

    pub fn union(self, other: Sources) -> Sources {
        Sources(self.0 | other.0)
    }

    pub fn contains(self, other: Sources) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the set sources, in label order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED.into_iter().filter(move |(s, _)| self.contains(*s)).map(|(_, n)| n)
    }

    /// Appends `fresh+hot`-style names joined by `+`; nothing when no known source is set.
    pub fn write_label(self, out: &mut String) {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                out.push('+');
            }
            out.push_str(name);
        }
    }

    pub fn label(self) -> String {
        let mut out = String::new();
        self.write_label(&mut out);
        out
    }

    /// The inverse of [`Sources::label`]; unknown names are ignored.
    pub fn parse(label: &str) -> Sources {
        label
            .split('+')
            .filter_map(|n| Self::NAMED.iter().find(|(_, name)| *name == n).map(|(s, _)| *s))
            .fold(Sources::default(), Sources::union)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub article_id: ArticleId,
    pub sources: Sources,
}

/// One refresh's result, stored under the request's `time_stamp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The request `time_stamp` (ms) it answered.
    pub time: i64,
    pub request_id: u64,
    /// The user's A/B bucket when it was served (its params carry it).
    #[serde(default)]
    pub bucket: u8,
    pub items: Vec<BatchItem>,
}

/// How many batches a backend keeps per (user, channel) unless told otherwise: 50 refreshes
/// is far more history than a reader pages back through (a page is one batch), and it bounds
/// a heavy user's record to a few tens of KiB per channel. What falls off stays in the served
/// set (see [`ChannelHistory::trimmed`]).
pub const DEFAULT_MAX_BATCHES: usize = 50;

/// A user's batches in one channel, oldest first, and every id they ever served.
///
/// At most a backend's `max_batches` batches are kept; older ones fall off (see
/// [`UserRecord::append`]), and their ids move to a sorted list, so the never-repeat rule
/// still covers them. Invariant: an id is in `served` (ids of kept batches) or in `trimmed`,
/// never in both, so the record reloaded from storage equals the live one.
#[derive(Clone, Debug, Default)]
pub struct ChannelHistory {
    batches: BTreeMap<i64, Arc<Batch>>,
    /// Ids of kept batches that are not in `trimmed`.
    served: FxHashSet<ArticleId>,
    /// Ids of the batches that fell off, sorted, without duplicates.
    trimmed: Vec<ArticleId>,
    /// [`batch_bytes`] of every kept batch, so that [`UserRecord::heap_bytes`] needs no walk.
    batch_bytes: usize,
}

impl ChannelHistory {
    /// Time of the newest batch, 0 when there is none.
    pub fn latest_time(&self) -> i64 {
        self.batches.last_key_value().map_or(0, |(t, _)| *t)
    }

    /// The newest batch stored at or before `time`, with the time of the next older one (0 if
    /// none). A time older than every kept batch finds nothing, like one before the first.
    pub fn at_or_before(&self, time: i64) -> Option<(&Arc<Batch>, i64)> {
        let mut range = self.batches.range(..=time).rev();
        let (_, batch) = range.next()?;
        let older = range.next().map_or(0, |(t, _)| *t);
        Some((batch, older))
    }

    /// Whether any batch ever served `id` in this channel, kept or trimmed.
    pub fn was_served(&self, id: ArticleId) -> bool {
        self.served.contains(&id) || self.trimmed.binary_search(&id).is_ok()
    }

    /// How many distinct ids the channel ever served, kept or trimmed.
    pub fn served_count(&self) -> usize {
        self.served.len() + self.trimmed.len()
    }

    /// The kept batches, oldest first.
    pub fn batches(&self) -> impl Iterator<Item = &Arc<Batch>> {
        self.batches.values()
    }

    /// The ids of the batches that fell off history, sorted, without duplicates.
    pub fn trimmed(&self) -> &[ArticleId] {
        &self.trimmed
    }

    fn push(&mut self, batch: Arc<Batch>) {
        for item in &batch.items {
            if self.trimmed.binary_search(&item.article_id).is_err() {
                self.served.insert(item.article_id);
            }
        }
        self.batch_bytes += batch_bytes(&batch);
        self.batches.insert(batch.time, batch);
    }

    /// Drops the oldest batches until `max` are left; answers the newest dropped time.
    fn trim(&mut self, max: usize) -> Option<i64> {
        let mut through = None;
        // The dropped ids that move to `trimmed`: those still in `served` (by the invariant,
        // the others are in `trimmed` already), each once.
        let mut moved = Vec::new();
        while self.batches.len() > max {
            let (time, batch) = self.batches.pop_first()?;
            self.batch_bytes -= batch_bytes(&batch);
            moved.extend(batch.items.iter().map(|item| item.article_id).filter(|id| self.served.remove(id)));
            through = Some(time);
        }
        merge_sorted(&mut self.trimmed, moved);
        through
    }

    /// Adds ids to the trimmed list (a backend's stored copy of it); order and duplicates do
    /// not matter, and the call may come before or after the kept batches are pushed.
    fn restore_trimmed(&mut self, ids: impl IntoIterator<Item = ArticleId>) {
        self.trimmed.extend(ids);
        self.trimmed.sort_unstable();
        self.trimmed.dedup();
        if !self.served.is_empty() {
            let trimmed = &self.trimmed;
            self.served.retain(|id| trimmed.binary_search(id).is_err());
        }
    }

    fn heap_bytes(&self) -> usize {
        self.batch_bytes
            + mem::btree_bytes(self.batches.len())
            + mem::table_bytes::<ArticleId>(self.served.capacity())
            + mem::vec_bytes::<ArticleId>(self.trimmed.capacity())
    }
}

/// Merges `ids` (none of them in `sorted`, no duplicates) into the sorted `sorted`, moving each
/// of its items at most once: inserting them one by one moved the tail of a long-tenure
/// user's trimmed list (10,000 ids after 1,000 batches) once per id, on every refresh.
fn merge_sorted(sorted: &mut Vec<ArticleId>, mut ids: Vec<ArticleId>) {
    ids.sort_unstable();
    // Items of `sorted` before `end` are where they were; each id from the largest down
    // moves the ones after it (and before `end`) past the ids still to place.
    let mut end = sorted.len();
    sorted.resize(end + ids.len(), 0);
    for (i, &id) in ids.iter().enumerate().rev() {
        let at = sorted[..end].partition_point(|&x| x < id);
        sorted.copy_within(at..end, at + i + 1);
        sorted[at + i] = id;
        end = at;
    }
}

/// What one kept batch costs beside its B-tree entry: the `Arc` allocation and the items buffer.
fn batch_bytes(batch: &Batch) -> usize {
    mem::arc_bytes::<Batch>() + mem::vec_bytes::<BatchItem>(batch.items.capacity())
}

/// Everything the feed rules need to know about one user.
#[derive(Clone, Debug, Default)]
pub struct UserRecord {
    channels: FxHashMap<ChannelId, ChannelHistory>,
    read: FxHashSet<ArticleId>,
    /// What the fresh source's walks found the user had seen: derived from the rest, kept
    /// with it so that it is evicted with it (see [`Stretches`]).
    stretches: Stretches,
}

static EMPTY_HISTORY: std::sync::LazyLock<ChannelHistory> = std::sync::LazyLock::new(ChannelHistory::default);

impl UserRecord {
    pub fn channel(&self, channel: ChannelId) -> &ChannelHistory {
        self.channels.get(&channel).unwrap_or(&EMPTY_HISTORY)
    }

    /// What the fresh source remembers of its walks for this user.
    pub fn stretches(&self) -> &Stretches {
        &self.stretches
    }

    pub fn channels(&self) -> impl Iterator<Item = (ChannelId, &ChannelHistory)> {
        self.channels.iter().map(|(c, h)| (*c, h))
    }

    /// Whether the user read or disliked `id`: it is never shown to them again.
    pub fn has_read(&self, id: ArticleId) -> bool {
        self.read.contains(&id)
    }

    pub fn read_count(&self) -> usize {
        self.read.len()
    }

    /// Adds a batch if it is newer than the channel's newest one (the refresh rule), keeping
    /// at most `max_batches` (at least 1: the newest batch is what the rule compares with) in
    /// the channel. For backends that keep records in memory.
    pub fn append(&mut self, channel: ChannelId, batch: Arc<Batch>, max_batches: usize) -> AppendOutcome {
        self.append_trimming(channel, batch, max_batches).0
    }

    /// [`UserRecord::append`], also answering the time of the newest batch that fell off
    /// history, if any did: every batch of the channel at or before it is gone (a backend
    /// deletes its copies and stores the new [`ChannelHistory::trimmed`]).
    pub fn append_trimming(
        &mut self,
        channel: ChannelId,
        batch: Arc<Batch>,
        max_batches: usize,
    ) -> (AppendOutcome, Option<i64>) {
        let latest = self.channel(channel).latest_time();
        if batch.time <= latest {
            return (AppendOutcome::Stale { latest }, None);
        }
        let history = self.channels.entry(channel).or_default();
        history.push(batch);
        (AppendOutcome::Appended { previous: latest }, history.trim(max_batches.max(1)))
    }

    /// Adds ids to the channel's trimmed list, for backends that load records from storage.
    pub fn restore_trimmed(&mut self, channel: ChannelId, ids: impl IntoIterator<Item = ArticleId>) {
        self.channels.entry(channel).or_default().restore_trimmed(ids);
    }

    /// What a stored event changes in its user's record: a read or a dislike hides the article
    /// for good (both go to the read set).
    pub fn apply_event(&mut self, event: &EventRecord) {
        if event.hides() {
            self.read.extend(event.article_ids.iter().copied());
        }
    }

    /// Adds one article to the read set, for backends that load records from storage.
    pub fn mark_read(&mut self, id: ArticleId) {
        self.read.insert(id);
    }

    /// An estimate of the heap bytes the record holds (not counting `size_of::<UserRecord>()`),
    /// each allocation at the allocator's size class (see [`mem`]): per channel the batches'
    /// B-tree nodes, per kept batch its `Arc` and items buffer; the served and read hash sets
    /// and the channel map by their capacity, as hashbrown lays them out; the trimmed lists by
    /// capacity; the fresh source's stretches (at most ~1.3 KiB per channel; a refresh changes
    /// them through `&self`, so a backend counts them at its next change of the record). It is
    /// O(channels), cheap enough to redo after every change. It ignores what the allocator
    /// keeps from freed memory.
    pub fn heap_bytes(&self) -> usize {
        mem::table_bytes::<(ChannelId, ChannelHistory)>(self.channels.capacity())
            + self.channels.values().map(ChannelHistory::heap_bytes).sum::<usize>()
            + mem::table_bytes::<ArticleId>(self.read.capacity())
            + self.stretches.heap_bytes()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored; `previous` is the time of the batch before it (0 if none).
    Appended { previous: i64 },
    /// A batch at or after this time exists already (a concurrent refresh won).
    Stale { latest: i64 },
}

/// A 128-bit identity of a tracking event: the same param reported twice has the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventKey(pub [u8; 16]);

/// A verified tracking event, ready to store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub key: EventKey,
    pub user: String,
    pub channel: ChannelId,
    pub action: Action,
    pub article_ids: Vec<ArticleId>,
    /// When the user acted, ms.
    pub time: i64,
    pub read_ms: u64,
    /// log2 of this event's popularity weight at the decay reference; `-inf` adds nothing.
    pub popularity_log2: f64,
    /// Per id of `article_ids`, the sources that proposed it (empty when unknown).
    pub sources: Vec<Sources>,
    /// The card's 0-based position in its batch; `None` for an exposure.
    pub position: Option<u32>,
    /// The user's A/B bucket when the batch was served.
    pub bucket: u8,
}

impl EventRecord {
    /// Whether the event hides its articles from the user for good (read, dislike).
    pub fn hides(&self) -> bool {
        matches!(self.action, Action::Read | Action::Dislike)
    }
}

/// Per-article engagement counters, updated by every stored event.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArticleCounters {
    pub exposures: u64,
    pub clicks: u64,
    pub collects: u64,
    pub shares: u64,
    pub reads: u64,
    pub read_ms: u64,
    pub dislikes: u64,
    /// log2 of the decayed popularity sum at the decay reference (see `popularity`).
    pub popularity_log2: f64,
}

impl Default for ArticleCounters {
    fn default() -> Self {
        Self {
            exposures: 0,
            clicks: 0,
            collects: 0,
            shares: 0,
            reads: 0,
            read_ms: 0,
            dislikes: 0,
            popularity_log2: f64::NEG_INFINITY,
        }
    }
}

impl ArticleCounters {
    /// Counts `event`. Every count saturates: `read_ms` comes from clients, and an overflow
    /// must neither panic (the writer thread applies this) nor wrap around.
    pub fn apply(&mut self, event: &EventRecord) {
        let count = match event.action {
            Action::Exposure => &mut self.exposures,
            Action::Click => &mut self.clicks,
            Action::Collect => &mut self.collects,
            Action::Share => &mut self.shares,
            Action::Read => {
                self.read_ms = self.read_ms.saturating_add(event.read_ms);
                &mut self.reads
            }
            Action::Dislike => &mut self.dislikes,
        };
        *count = count.saturating_add(1);
        self.popularity_log2 = crate::popularity::log2_add(self.popularity_log2, event.popularity_log2);
    }
}

/// What a backend holds in memory for user records, for metrics and `/debug` views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Users whose records are in memory.
    pub resident_users: usize,
    /// The estimated bytes of those records (see [`UserRecord::heap_bytes`]) and of what the
    /// backend spends per user beside them.
    pub resident_bytes: usize,
    /// Records dropped from memory since the backend started, to be reloaded on next use.
    pub evicted_users: u64,
}

/// What a refresh saw of the user's history when it ranked (see [`Store::append_batch_seen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The newest batch time of the refreshed channel, 0 when it had none.
    pub channel: i64,
    /// For a channel other than 推荐: the newest batch time of 推荐 (whose articles the
    /// refresh excluded too), 0 when it had none.
    pub all: Option<i64>,
}

impl Seen {
    /// What `user` shows of `channel` (and of 推荐) now.
    pub fn of(user: &UserRecord, channel: ChannelId) -> Self {
        let all =
            (channel != crate::model::ALL_CHANNELS).then(|| user.channel(crate::model::ALL_CHANNELS).latest_time());
        Self { channel: user.channel(channel).latest_time(), all }
    }

    /// Whether `user`'s history is still as seen.
    pub fn holds(&self, user: &UserRecord, channel: ChannelId) -> bool {
        *self == Self::of(user, channel)
    }
}

/// An article as stored, with its retraction if it was retracted.
pub type StoredArticle = (Article, Option<Retraction>);

/// Catalog changes a shared backend keeps for its readers: the latest this many calls of
/// `upsert_articles` and `retract_articles` (each up to 1,000 ids). A reader further behind
/// reloads the whole catalog.
pub const CATALOG_LOG_CALLS: usize = 1_000;

/// What changed in the catalog after a point of its change log (see [`Store::catalog_changes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogChanges {
    /// The number of the newest logged change (numbers grow from 1 with each call of
    /// `upsert_articles` or `retract_articles`; 0: none yet). The reader's next call passes it.
    pub head: u64,
    /// The ids upserted or retracted after the number asked, up to `head`, each once, in
    /// the order of their first change; `None` when the log no longer holds every change
    /// since (it keeps the latest [`CATALOG_LOG_CALLS`]): the reader must reload the catalog.
    pub changed: Option<Vec<ArticleId>>,
}

/// The durable state behind the engine. Reads of user records go through a closure so that a
/// backend can hand out its cached copy without cloning it.
///
/// Durability contract: `record_events`, `upsert_articles`, `retract_articles` and `put_meta` are durable when they
/// return; `append_batch` may be written behind and is durable after `flush` (which graceful
/// shutdown calls).
pub trait Store: Send + Sync + 'static {
    fn load_articles(&self) -> Result<Vec<Article>, StoreError>;
    /// Upserts by id; an id that was retracted is live again.
    fn upsert_articles(&self, articles: &[Article]) -> Result<(), StoreError>;
    /// Marks articles retracted (a later retraction of an id replaces the earlier one); their
    /// rows stay.
    fn retract_articles(&self, retractions: &[(ArticleId, Retraction)]) -> Result<(), StoreError>;
    fn load_retractions(&self) -> Result<Vec<(ArticleId, Retraction)>, StoreError>;
    /// The catalog changes that every process sharing the backend made after change `after`
    /// (`upsert_articles` and `retract_articles` log them, atomically with the change): how
    /// replicas see each other's `Publish` and `Retract`. A backend that one process owns keeps
    /// no log, its engine having made every change itself: this default answers none.
    fn catalog_changes(&self, after: u64) -> Result<CatalogChanges, StoreError> {
        let _ = after;
        Ok(CatalogChanges { head: 0, changed: Some(Vec::new()) })
    }
    /// Stored articles by id, each with its retraction if it was retracted (for articles that
    /// aged out of the catalog). This default reads every article: backends should do better.
    fn get_articles(&self, ids: &[ArticleId]) -> Result<Vec<Option<StoredArticle>>, StoreError> {
        let mut articles: HashMap<ArticleId, Article> = self.load_articles()?.into_iter().map(|a| (a.id, a)).collect();
        let retractions: HashMap<ArticleId, Retraction> = self.load_retractions()?.into_iter().collect();
        Ok(ids.iter().map(|id| articles.remove(id).map(|a| (a, retractions.get(id).cloned()))).collect())
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Stores `value` under `key` unless the key has a value already, and answers the stored
    /// value: the first caller wins, across every process that shares the backend (the
    /// tracking secret, which every replica must share, is made this way). Durable when it
    /// returns.
    fn init_meta(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;

    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError>;
    /// Stores `batch` for `(user, channel)` unless a batch at or after its time exists.
    fn append_batch(&self, user: &str, channel: ChannelId, batch: Batch) -> Result<AppendOutcome, StoreError> {
        self.append_batch_seen(user, channel, batch, None)
    }
    /// [`Store::append_batch`], and with `seen` also stale unless the user's history is still
    /// as the refresh saw it when it ranked: a batch another process appended meanwhile (to
    /// the channel, or to 推荐) may hold the very articles this one picked. Atomic with the
    /// check, across every process that shares the backend.
    fn append_batch_seen(
        &self,
        user: &str,
        channel: ChannelId,
        batch: Batch,
        seen: Option<Seen>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Stores the events whose keys are new, atomically with their counter and read-set
    /// updates, and appends them to the event log. Answers per event its log sequence number
    /// when it was new (numbers grow from 1 in commit order), `None` for a duplicate (nothing
    /// changed).
    fn record_events(&self, events: &[EventRecord]) -> Result<Vec<Option<u64>>, StoreError>;
    /// Calls `f` with every logged event whose sequence number is above `after`, in order.
    fn scan_events(&self, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError>;
    /// Lets the backend drop the logged events up to `upto` from the log (those a learner
    /// checkpoint covers), keeping their effects (dedup, counters, read sets). A backend whose
    /// log costs disk only keeps it whole: this default does nothing.
    fn trim_event_log(&self, upto: u64) -> Result<(), StoreError> {
        let _ = upto;
        Ok(())
    }
    /// The number up to which events were trimmed from the log ([`Store::trim_event_log`]):
    /// a scan from before it misses them. 0 when the log is whole.
    fn event_log_trimmed(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn counters(&self, ids: &[ArticleId]) -> Result<Vec<ArticleCounters>, StoreError>;
    fn all_counters(&self) -> Result<Vec<(ArticleId, ArticleCounters)>, StoreError>;
    /// Lets the backend drop from memory the counters of articles `keep` says no to (articles
    /// that aged out of the catalog). Counters stay durable and exact: a later read or event
    /// on such an article finds them in the backend. Backends whose memory is their storage
    /// keep them.
    fn forget_counters(&self, _keep: &dyn Fn(ArticleId) -> bool) {}
    /// How many articles' counters the backend holds in memory (for the memory benchmark).
    fn counters_in_memory(&self) -> usize {
        0
    }

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// What the backend holds in memory for user records; zeros when it does not say.
    fn memory(&self) -> MemoryUse {
        MemoryUse::default()
    }

    /// Whether calls wait on another process (a networked backend): the server then makes
    /// them on its blocking threads, where waits overlap.
    fn is_remote(&self) -> bool {
        false
    }

    /// Calls `observe` with the duration of every durable write from now on (a group commit,
    /// or a networked backend's acknowledged write), for metrics. This default never calls it.
    fn observe_commits(&self, observe: CommitObserver) {
        let _ = observe;
    }

    /// Writes accepted but not durable yet (written-behind batches waiting for their commit).
    fn write_queue(&self) -> u64 {
        0
    }

    /// Requests sent to a networked backend so far, each one waited for (a round trip); 0 for
    /// a backend in this process. For metrics: per refresh, it is what a refresh waits on.
    fn round_trips(&self) -> u64 {
        0
    }

    /// The number of the newest logged event, by any process sharing the backend (0: none).
    fn last_event_seq(&self) -> Result<u64, StoreError> {
        let mut last = 0;
        self.scan_events(self.event_log_trimmed()?, &mut |seq, _| last = seq)?;
        Ok(last)
    }
}

/// Receives the duration of each durable write (see [`Store::observe_commits`]).
pub type CommitObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// Everything in memory, nothing durable: for tests and `reco eval`. It trims history like
/// the durable backends (at most [`DEFAULT_MAX_BATCHES`] per (user, channel) unless built
/// with [`MemStore::with_max_batches`]) but keeps every user.
pub struct MemStore {
    inner: Mutex<MemInner>,
    max_batches: usize,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::with_max_batches(DEFAULT_MAX_BATCHES)
    }
}

#[derive(Default)]
struct MemInner {
    articles: BTreeMap<ArticleId, Article>,
    retracted: BTreeMap<ArticleId, Retraction>,
    meta: HashMap<String, Vec<u8>>,
    users: HashMap<String, UserRecord>,
    events: HashSet<EventKey>,
    /// The logged events after the first `log_trimmed`.
    log: VecDeque<EventRecord>,
    log_trimmed: u64,
    counters: HashMap<ArticleId, ArticleCounters>,
    /// The ids of the latest [`CATALOG_LOG_CALLS`] catalog changes, oldest first, the last
    /// one numbered `catalog_seq`.
    catalog_log: VecDeque<Vec<ArticleId>>,
    catalog_seq: u64,
}

impl MemInner {
    fn log_catalog_change(&mut self, ids: Vec<ArticleId>) {
        self.catalog_seq += 1;
        self.catalog_log.push_back(ids);
        if self.catalog_log.len() > CATALOG_LOG_CALLS {
            self.catalog_log.pop_front();
        }
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps at most `max_batches` (at least 1) batches per (user, channel).
    pub fn with_max_batches(max_batches: usize) -> Self {
        Self { inner: Mutex::default(), max_batches: max_batches.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A panic while holding the lock cannot leave MemInner half-updated in a way that
        // matters for tests; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn load_articles(&self) -> Result<Vec<Article>, StoreError> {
        Ok(self.lock().articles.values().cloned().collect())
    }

    fn upsert_articles(&self, articles: &[Article]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for a in articles {
            inner.articles.insert(a.id, a.clone());
            inner.retracted.remove(&a.id);
        }
        inner.log_catalog_change(articles.iter().map(|a| a.id).collect());
        Ok(())
    }

    fn retract_articles(&self, retractions: &[(ArticleId, Retraction)]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.retracted.extend(retractions.iter().cloned());
        inner.log_catalog_change(retractions.iter().map(|(id, _)| *id).collect());
        Ok(())
    }

    fn catalog_changes(&self, after: u64) -> Result<CatalogChanges, StoreError> {
        let inner = self.lock();
        let head = inner.catalog_seq;
        let first = head + 1 - inner.catalog_log.len() as u64;
        if after >= head {
            return Ok(CatalogChanges { head, changed: Some(Vec::new()) });
        }
        if after + 1 < first {
            return Ok(CatalogChanges { head, changed: None });
        }
        let mut seen = HashSet::new();
        let changed = inner
            .catalog_log
            .iter()
            .skip((after + 1 - first) as usize)
            .flatten()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect();
        Ok(CatalogChanges { head, changed: Some(changed) })
    }

    fn load_retractions(&self) -> Result<Vec<(ArticleId, Retraction)>, StoreError> {
        Ok(self.lock().retracted.iter().map(|(id, r)| (*id, r.clone())).collect())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(key).cloned())
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock().meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn init_meta(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.lock().meta.entry(key.to_owned()).or_insert_with(|| value.to_vec()).clone())
    }

    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        let inner = self.lock();
        Ok(match inner.users.get(user) {
            Some(record) => f(record),
            None => f(&UserRecord::default()),
        })
    }

    fn append_batch_seen(
        &self,
        user: &str,
        channel: ChannelId,
        batch: Batch,
        seen: Option<Seen>,
    ) -> Result<AppendOutcome, StoreError> {
        let max_batches = self.max_batches;
        let mut inner = self.lock();
        let record = inner.users.entry(user.to_owned()).or_default();
        if seen.is_some_and(|s| !s.holds(record, channel)) {
            return Ok(AppendOutcome::Stale { latest: record.channel(channel).latest_time() });
        }
        Ok(record.append(channel, Arc::new(batch), max_batches))
    }

    fn record_events(&self, events: &[EventRecord]) -> Result<Vec<Option<u64>>, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        Ok(events
            .iter()
            .map(|event| {
                if !inner.events.insert(event.key) {
                    return None;
                }
                inner.users.entry(event.user.clone()).or_default().apply_event(event);
                for &id in &event.article_ids {
                    inner.counters.entry(id).or_default().apply(event);
                }
                inner.log.push_back(event.clone());
                Some(inner.log_trimmed + inner.log.len() as u64)
            })
            .collect())
    }

    fn scan_events(&self, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError> {
        let (first, events): (u64, Vec<EventRecord>) = {
            let inner = self.lock();
            let first = after.max(inner.log_trimmed);
            (first, inner.log.iter().skip((first - inner.log_trimmed) as usize).cloned().collect())
        };
        for (i, e) in events.into_iter().enumerate() {
            f(first + 1 + i as u64, e);
        }
        Ok(())
    }

    fn trim_event_log(&self, upto: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let drop = upto.saturating_sub(inner.log_trimmed).min(inner.log.len() as u64);
        inner.log.drain(..drop as usize);
        inner.log_trimmed += drop;
        Ok(())
    }

    fn event_log_trimmed(&self) -> Result<u64, StoreError> {
        Ok(self.lock().log_trimmed)
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner.log_trimmed + inner.log.len() as u64)
    }

    fn counters(&self, ids: &[ArticleId]) -> Result<Vec<ArticleCounters>, StoreError> {
        let inner = self.lock();
        Ok(ids.iter().map(|id| inner.counters.get(id).copied().unwrap_or_default()).collect())
    }

    fn all_counters(&self) -> Result<Vec<(ArticleId, ArticleCounters)>, StoreError> {
        Ok(self.lock().counters.iter().map(|(id, c)| (*id, *c)).collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn memory(&self) -> MemoryUse {
        let inner = self.lock();
        MemoryUse {
            resident_users: inner.users.len(),
            resident_bytes: inner
                .users
                .iter()
                .map(|(user, r)| user.len() + size_of::<UserRecord>() + r.heap_bytes())
                .sum(),
            evicted_users: 0,
        }
    }
}

/// A shared store is a store: an engine and its owner (a test, a restart) can hold the same one.
impl<S: Store> Store for Arc<S> {
    fn load_articles(&self) -> Result<Vec<Article>, StoreError> {
        (**self).load_articles()
    }

    fn upsert_articles(&self, articles: &[Article]) -> Result<(), StoreError> {
        (**self).upsert_articles(articles)
    }

    fn retract_articles(&self, retractions: &[(ArticleId, Retraction)]) -> Result<(), StoreError> {
        (**self).retract_articles(retractions)
    }

    fn load_retractions(&self) -> Result<Vec<(ArticleId, Retraction)>, StoreError> {
        (**self).load_retractions()
    }

    fn catalog_changes(&self, after: u64) -> Result<CatalogChanges, StoreError> {
        (**self).catalog_changes(after)
    }

    fn get_articles(&self, ids: &[ArticleId]) -> Result<Vec<Option<StoredArticle>>, StoreError> {
        (**self).get_articles(ids)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_meta(key)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).put_meta(key, value)
    }

    fn init_meta(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        (**self).init_meta(key, value)
    }

    fn is_remote(&self) -> bool {
        (**self).is_remote()
    }

    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        (**self).with_user(user, f)
    }

    fn append_batch_seen(
        &self,
        user: &str,
        channel: ChannelId,
        batch: Batch,
        seen: Option<Seen>,
    ) -> Result<AppendOutcome, StoreError> {
        (**self).append_batch_seen(user, channel, batch, seen)
    }

    fn record_events(&self, events: &[EventRecord]) -> Result<Vec<Option<u64>>, StoreError> {
        (**self).record_events(events)
    }

    fn scan_events(&self, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError> {
        (**self).scan_events(after, f)
    }

    fn trim_event_log(&self, upto: u64) -> Result<(), StoreError> {
        (**self).trim_event_log(upto)
    }

    fn observe_commits(&self, observe: CommitObserver) {
        (**self).observe_commits(observe)
    }

    fn write_queue(&self) -> u64 {
        (**self).write_queue()
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        (**self).last_event_seq()
    }

    fn event_log_trimmed(&self) -> Result<u64, StoreError> {
        (**self).event_log_trimmed()
    }

    fn counters(&self, ids: &[ArticleId]) -> Result<Vec<ArticleCounters>, StoreError> {
        (**self).counters(ids)
    }

    fn all_counters(&self) -> Result<Vec<(ArticleId, ArticleCounters)>, StoreError> {
        (**self).all_counters()
    }

    fn forget_counters(&self, keep: &dyn Fn(ArticleId) -> bool) {
        (**self).forget_counters(keep)
    }

    fn counters_in_memory(&self) -> usize {
        (**self).counters_in_memory()
    }

    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }

    fn memory(&self) -> MemoryUse {
        (**self).memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action, read_ms: u64) -> EventRecord {
        EventRecord {
            key: EventKey([0; 16]),
            user: "u".to_owned(),
            channel: 1,
            action,
            article_ids: vec![1],
            time: 0,
            read_ms,
            popularity_log2: 0.0,
            sources: vec![],
            position: None,
            bucket: 0,
        }
    }

    #[test]
    fn counters_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let mut c = ArticleCounters {
            exposures: max,
            clicks: max,
            collects: max,
            shares: max,
            reads: max,
            read_ms: max - 1,
            dislikes: max,
            popularity_log2: 0.0,
        };
        for action in [Action::Exposure, Action::Click, Action::Collect, Action::Share, Action::Read, Action::Dislike] {
            c.apply(&event(action, max));
        }
        assert_eq!(
            [c.exposures, c.clicks, c.collects, c.shares, c.reads, c.read_ms, c.dislikes],
            [max; 7],
            "every count stops at u64::MAX"
        );
        let mut fresh = ArticleCounters::default();
        fresh.apply(&event(Action::Read, max));
        fresh.apply(&event(Action::Read, max));
        assert_eq!((fresh.reads, fresh.read_ms), (2, max), "a client's huge read_ms saturates the sum");
    }

    fn batch(time: i64, ids: &[ArticleId]) -> Arc<Batch> {
        Arc::new(Batch {
            time,
            request_id: 0,
            bucket: 0,
            items: ids.iter().map(|&article_id| BatchItem { article_id, sources: Sources::HOT }).collect(),
        })
    }

    #[test]
    fn trimmed_batches_stay_served_and_a_rebuilt_record_answers_the_same() {
        let mut live = UserRecord::default();
        // Id 7 is served twice, once in a batch that falls off and once in a kept one.
        let batches = [batch(10, &[1, 7]), batch(20, &[2, 3]), batch(30, &[7, 4]), batch(40, &[5])];
        let mut trims = Vec::new();
        for b in &batches {
            let (outcome, trimmed) = live.append_trimming(1, Arc::clone(b), 2);
            assert!(matches!(outcome, AppendOutcome::Appended { .. }));
            trims.push(trimmed);
        }
        assert_eq!(trims, [None, None, Some(10), Some(20)]);
        let h = live.channel(1);
        assert_eq!(h.batches().map(|b| b.time).collect::<Vec<_>>(), [30, 40]);
        assert_eq!(h.trimmed(), [1, 2, 3, 7]);
        assert!(h.at_or_before(29).is_none(), "history older than what is kept is empty");
        assert_eq!(h.at_or_before(30).map(|(b, older)| (b.time, older)), Some((30, 0)));
        assert!((1..=7).filter(|&id| id != 6).all(|id| h.was_served(id)) && !h.was_served(6));
        assert_eq!(h.served_count(), 6);
        let mut stale = live.clone();
        assert_eq!(stale.append(1, batch(35, &[9]), 2), AppendOutcome::Stale { latest: 40 });
        assert_eq!(stale.append(2, batch(0, &[9]), 2), AppendOutcome::Stale { latest: 0 });
        assert_eq!(stale.channels().count(), 1, "a stale append adds no channel");
        assert!(!stale.channel(1).was_served(9));

        // A backend's reload: the trimmed list and the kept batches, in either order.
        for trimmed_first in [true, false] {
            let mut reloaded = UserRecord::default();
            if trimmed_first {
                reloaded.restore_trimmed(1, h.trimmed().to_vec());
            }
            for b in h.batches() {
                reloaded.append(1, Arc::clone(b), 2);
            }
            if !trimmed_first {
                reloaded.restore_trimmed(1, h.trimmed().iter().rev().copied());
            }
            let r = reloaded.channel(1);
            assert_eq!(r.served, h.served, "trimmed first: {trimmed_first}");
            assert_eq!((r.trimmed(), r.served_count()), (h.trimmed(), h.served_count()));
        }
        assert!(live.heap_bytes() > 0);
    }

    #[test]
    fn merging_into_the_trimmed_list_keeps_it_sorted() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let mut all: Vec<ArticleId> = (0..rng.random_range(0..60)).map(|_| rng.random_range(0..100)).collect();
            all.sort_unstable();
            all.dedup();
            let (mut sorted, mut ids): (Vec<ArticleId>, Vec<ArticleId>) =
                all.iter().partition(|_| rng.random_bool(0.7));
            ids.reverse();
            merge_sorted(&mut sorted, ids);
            assert_eq!(sorted, all);
        }
    }

    #[test]
    fn a_records_estimate_covers_what_it_allocates() {
        // Records of every size the store keeps: a few refreshes to far past `max_batches`,
        // one or three channels, reads; each estimate against mimalloc's own count.
        for (refreshes, channels, reads) in [(1, 1, 0), (5, 1, 3), (12, 3, 40), (60, 1, 0), (200, 3, 500)] {
            let (record, held, _) = crate::mem::counting::measure(|| {
                let mut record = UserRecord::default();
                for r in 0..refreshes {
                    for c in 0..channels {
                        let ids: Vec<ArticleId> = (0..10).map(|i| r * 10 + i + 1_000 * c).collect();
                        record.append(c as ChannelId, batch(r + 1, &ids), DEFAULT_MAX_BATCHES);
                    }
                }
                for id in 0..reads {
                    record.mark_read(id * 7);
                }
                record
            });
            let estimate = record.heap_bytes() as isize;
            assert!(
                estimate >= held,
                "{refreshes} refreshes, {channels} channels: estimated {estimate}, allocated {held}"
            );
            assert!(
                estimate <= held + held / 3 + 1_024,
                "{refreshes} refreshes: estimated {estimate}, allocated {held}"
            );
        }
    }
}
