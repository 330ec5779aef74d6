//! The default reco store: the engine's [`Store`] trait on one embedded [redb] file in the data
//! dir.
//!
//! Why redb: it is pure Rust (no C toolchain to build, nothing to install or run beside the
//! binary), keeps ACID copy-on-write B-trees in a single file, lets readers work on MVCC
//! snapshots while one writer commits, and makes a commit crash-safe with an fsync, so what
//! it acknowledged survives `kill -9` and power loss. It also locks the file to one process,
//! which lets this process treat its in-memory copies as the truth.
//!
//! The hot path: user records are cached in memory (`users`: loaded on first touch, evicted
//! least recently used first past [`StoreConfig::cache_bytes`]); `append_batch` applies the
//! refresh rule and the history bound ([`StoreConfig::max_batches`]) in memory under a
//! per-user lock and hands the writes to the writer thread without waiting (durable at the
//! next commit or [`Store::flush`]). Counters are all loaded at open and read from memory.
//! One writer thread owns every write transaction and commits in groups (`writer`);
//! `record_events`, `upsert_articles`, `put_meta` and `flush` wait for their group's fsync.
//!
//! The event log (`log`): every new event gets a sequence number (1, 2, 3, ... in commit
//! order, no gaps), written to the `event_log` table in the transaction that stores the event,
//! so a number that `record_events` answered is as durable as its event. The log keeps only
//! the event's key; the event itself stays in `events`, the dedup table, so it is stored once.
//!
//! Also here: `schema` (the tables, the version check and upgrades), `codec` (value layouts).

mod codec;
mod log;
mod schema;
#[cfg(test)]
mod tests;
mod users;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use reco_engine::catalog::Retraction;
use reco_engine::model::{Article, ArticleId, ChannelId};
use reco_engine::store::{
    AppendOutcome, ArticleCounters, Batch, CommitObserver, DEFAULT_MAX_BATCHES, EventRecord, MemoryUse, Seen, Store,
    StoreError, StoredArticle, UserRecord,
};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::schema::{ARTICLES, COUNTERS, META, RETRACTIONS};
use crate::users::Users;
use crate::writer::{Command, Reply};

/// The file inside the data dir.
pub const FILE_NAME: &str = "reco.redb";

/// How much the store keeps in memory and on disk per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The budget for cached user records, in estimated bytes (see
    /// [`UserRecord::heap_bytes`]; [`Store::memory`] reports the running total). Past it the
    /// least recently used records are dropped, down to 90 % of it, and reload from the file
    /// on their next use. The budget is soft: eviction runs on the writer thread between
    /// rounds, so it can be passed by what one round (~10 ms) loads. 0 keeps no idle record.
    ///
    /// Default 256 MiB: a small share of a modest server's memory. A user who refreshed a
    /// channel to the history bound costs about 25 KiB (50 batches of 10 cards, with the
    /// served ids), a typical one a few KiB, so it holds the working set of tens of thousands
    /// of active users; the rest are a redb read away.
    pub cache_bytes: usize,
    /// Batches kept per (user, channel), at least 1 (0 is taken as 1: the newest batch is what
    /// the refresh rule compares with). An append beyond it drops the oldest from history, in
    /// memory and in the file; its ids stay in the served set. Default
    /// [`DEFAULT_MAX_BATCHES`] (50, see there).
    pub max_batches: usize,
    /// redb's own page cache (read pages and dirty pages of a commit), in bytes: memory beside
    /// `cache_bytes`, which fills up to this as the file grows. Default 64 MiB (redb's own
    /// default is 1 GiB).
    pub db_cache_bytes: usize,
}

/// The default of [`StoreConfig::db_cache_bytes`].
pub const DEFAULT_DB_CACHE_BYTES: usize = 64 << 20;

impl Default for StoreConfig {
    fn default() -> Self {
        Self { cache_bytes: 256 << 20, max_batches: DEFAULT_MAX_BATCHES, db_cache_bytes: DEFAULT_DB_CACHE_BYTES }
    }
}

/// A [`Store`] on a redb file. Dropping it (or [`RedbStore::close`]) commits what is pending
/// and stops the writer thread.
pub struct RedbStore {
    state: Arc<State>,
    commands: Sender<Command>,
    writer: Option<JoinHandle<()>>,
}

/// What the store and its writer thread share.
struct State {
    db: Database,
    path: PathBuf,
    /// The authoritative user records of this process, cached (see `users`).
    users: Users,
    /// Every article's counters as of the last commit.
    counters: RwLock<HashMap<ArticleId, ArticleCounters>>,
    /// Set once a commit failed: every later write is refused with this message.
    failure: OnceLock<String>,
    /// Written-behind appends, taken by the writer on its own schedule: queuing one wakes no
    /// thread (a wake-up per refresh cost more than the write itself).
    behind: Mutex<Behind>,
    /// Held by `init_meta` from its read to its write.
    init_meta: Mutex<()>,
    /// The number (see [`Behind::queued`]) of the newest append the writer committed.
    committed: AtomicU64,
    /// The number of the newest event the writer committed.
    last_seq: AtomicU64,
    /// Told the duration of each group commit (metrics), once set.
    commit_observer: OnceLock<CommitObserver>,
}

/// The write-behind queue.
#[derive(Default)]
struct Behind {
    commands: Vec<Command>,
    /// Appends queued since open, the one whose commands were pushed last included. An append
    /// pushes its commands under its user's lock, so each user's commands are in the order of
    /// its in-memory changes.
    queued: u64,
}

impl RedbStore {
    /// Opens (or creates) the store in `dir` with the default [`StoreConfig`], creating the
    /// dir if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreConfig::default())
    }

    /// Opens (or creates) the store in `dir` with `config`, creating the dir if needed.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create data dir {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder().set_cache_size(config.db_cache_bytes).create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Locked(format!("{} (a running `reco serve` probably uses it)", path.display()))
            }
            e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;
        Self::with_database(db, path, config)
    }

    fn with_database(db: Database, path: PathBuf, config: StoreConfig) -> Result<Self, StoreError> {
        schema::prepare(&db, &path)?;
        let counters = schema::load_counters(&db)?;
        let last_seq = log::last_logged(&db)?;
        tracing::info!(
            path = %path.display(),
            counters = counters.len(),
            last_seq,
            cache_bytes = config.cache_bytes,
            max_batches = config.max_batches,
            "store opened"
        );
        let state = Arc::new(State {
            db,
            path,
            users: Users::new(config.cache_bytes, config.max_batches.max(1)),
            counters: RwLock::new(counters),
            failure: OnceLock::new(),
            behind: Mutex::default(),
            init_meta: Mutex::default(),
            committed: AtomicU64::new(0),
            last_seq: AtomicU64::new(last_seq),
            commit_observer: OnceLock::new(),
        });
        let (commands, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn({
                let state = Arc::clone(&state);
                move || writer::run(&state, queue, last_seq)
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer thread: {e}")))?;
        Ok(Self { state, commands, writer: Some(writer) })
    }

    /// Commits what is pending and stops the writer thread, reporting a failure that `Drop`
    /// could only log.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    /// Calls `f` with every stored tracking event, in key order. Unlike [`Store::scan_events`]
    /// it also returns the events stored before the event log existed (schema version 1), and
    /// it reads them all in one read transaction.
    pub fn for_each_event(&self, f: impl FnMut(EventRecord)) -> Result<(), StoreError> {
        log::for_each_event(&self.state.db, f)
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        let Some(writer) = self.writer.take() else { return Ok(()) };
        let result = self.request(|reply| Command::Close { reply });
        if writer.join().is_err() {
            return Err(StoreError::Backend("the store writer thread panicked".to_owned()));
        }
        tracing::info!(path = %self.state.path.display(), ok = result.is_ok(), "store closed");
        result
    }

    /// Queues a command for the writer and waits for its answer.
    fn request<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        self.state.check()?;
        let (reply, answer) = mpsc::sync_channel(1);
        self.commands.send(command(reply)).map_err(|_| self.state.stopped())?;
        answer.recv().map_err(|_| self.state.stopped())?
    }

    /// Refuses a write-behind when the writer is gone: nothing would ever commit it.
    fn check_writer(&self) -> Result<(), StoreError> {
        self.state.check()?;
        if self.writer.as_ref().is_none_or(JoinHandle::is_finished) {
            return Err(self.state.stopped());
        }
        Ok(())
    }

    /// Runs an eviction sweep now, on the caller's thread, as the writer does after a round.
    #[cfg(test)]
    fn sweep_now(&self) -> usize {
        self.state.users.sweep(self.state.committed.load(std::sync::atomic::Ordering::Acquire))
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(path = %self.state.path.display(), error = %e, "closing the store failed; recent writes may be lost");
        }
    }
}

impl State {
    fn check(&self) -> Result<(), StoreError> {
        match self.failure.get() {
            Some(msg) => Err(StoreError::Backend(format!("store refuses writes after a failed commit: {msg}"))),
            None => Ok(()),
        }
    }

    fn fail(&self, msg: String) {
        // Only the first failure matters; the writer stops at it.
        let _ = self.failure.set(msg);
    }

    /// The error for a writer that is gone.
    fn stopped(&self) -> StoreError {
        self.check().err().unwrap_or_else(|| StoreError::Backend("the store writer thread stopped".to_owned()))
    }
}

impl Store for RedbStore {
    fn load_articles(&self) -> Result<Vec<Article>, StoreError> {
        let txn = self.state.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(ARTICLES).map_err(db_error)?;
        let mut articles = Vec::with_capacity(usize::try_from(table.len().map_err(db_error)?).unwrap_or(0));
        for row in table.iter().map_err(db_error)? {
            let (id, value) = row.map_err(db_error)?;
            articles.push(codec::decode_article(id.value(), value.value())?);
        }
        Ok(articles)
    }

    fn upsert_articles(&self, articles: &[Article]) -> Result<(), StoreError> {
        let rows = articles.iter().map(|a| Ok((a.id, codec::encode_article(a)?))).collect::<Result<_, StoreError>>()?;
        self.request(|reply| Command::Articles { rows, retract: Vec::new(), reply })
    }

    fn retract_articles(&self, retractions: &[(ArticleId, Retraction)]) -> Result<(), StoreError> {
        let retract = retractions
            .iter()
            .map(|(id, r)| Ok((*id, codec::encode_retraction(r)?)))
            .collect::<Result<_, StoreError>>()?;
        self.request(|reply| Command::Articles { rows: Vec::new(), retract, reply })
    }

    fn load_retractions(&self) -> Result<Vec<(ArticleId, Retraction)>, StoreError> {
        let txn = self.state.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(RETRACTIONS).map_err(db_error)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_error)? {
            let (id, value) = row.map_err(db_error)?;
            out.push((id.value(), codec::decode_retraction(id.value(), value.value())?));
        }
        Ok(out)
    }

    fn get_articles(&self, ids: &[ArticleId]) -> Result<Vec<Option<StoredArticle>>, StoreError> {
        let txn = self.state.db.begin_read().map_err(db_error)?;
        let articles = txn.open_table(ARTICLES).map_err(db_error)?;
        let retractions = txn.open_table(RETRACTIONS).map_err(db_error)?;
        ids.iter()
            .map(|&id| {
                let Some(value) = articles.get(id).map_err(db_error)? else { return Ok(None) };
                let article = codec::decode_article(id, value.value())?;
                let retraction = match retractions.get(id).map_err(db_error)? {
                    Some(r) => Some(codec::decode_retraction(id, r.value())?),
                    None => None,
                };
                Ok(Some((article, retraction)))
            })
            .collect()
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.state.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(META).map_err(db_error)?;
        Ok(table.get(key).map_err(db_error)?.map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.request(|reply| Command::Meta { key: key.to_owned(), value: value.to_vec(), reply })
    }

    /// The data file is locked to this process, so one lock here makes the read and the write
    /// one step.
    fn init_meta(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let _once = lock(&self.state.init_meta);
        if let Some(stored) = self.get_meta(key)? {
            return Ok(stored);
        }
        self.put_meta(key, value)?;
        Ok(value.to_vec())
    }

    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        self.state.users.read(&self.state.db, user, f)
    }

    fn append_batch_seen(
        &self,
        user: &str,
        channel: ChannelId,
        batch: Batch,
        seen: Option<Seen>,
    ) -> Result<AppendOutcome, StoreError> {
        self.check_writer()?;
        let (time, value) = (batch.time, codec::encode_batch(&batch));
        let batch = Arc::new(batch);
        let max_batches = self.state.users.max_batches();
        let outcome = self.state.users.write(&self.state.db, user, |resident| {
            // The cached record is this process's, the only one writing the file.
            if seen.is_some_and(|s| !s.holds(&resident.record, channel)) {
                return AppendOutcome::Stale { latest: resident.record.channel(channel).latest_time() };
            }
            let (outcome, trimmed) = resident.record.append_trimming(channel, batch, max_batches);
            if let AppendOutcome::Appended { .. } = outcome {
                // Queued under the user's lock: the writer applies each user's trims in order.
                let mut behind = lock(&self.state.behind);
                behind.commands.push(Command::Batch { user: user.to_owned(), channel, time, value });
                if let Some(through) = trimmed {
                    let ids = resident.record.channel(channel).trimmed().to_vec();
                    behind.commands.push(Command::Trim { user: user.to_owned(), channel, through, ids });
                }
                behind.queued += 1;
                resident.queued = behind.queued;
            }
            outcome
        })?;
        if let AppendOutcome::Appended { .. } = outcome {
            // A commit that failed meanwhile will never take these commands.
            self.check_writer()?;
        }
        Ok(outcome)
    }

    fn record_events(&self, events: &[EventRecord]) -> Result<Vec<Option<u64>>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.request(|reply| Command::Events { events: events.to_vec(), reply })
    }

    fn scan_events(&self, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError> {
        log::scan(&self.state.db, after, f)
    }

    fn counters(&self, ids: &[ArticleId]) -> Result<Vec<ArticleCounters>, StoreError> {
        let mut out: Vec<Option<ArticleCounters>> = {
            let counters = read_lock(&self.state.counters);
            ids.iter().map(|id| counters.get(id).copied()).collect()
        };
        if out.iter().any(Option::is_none) {
            // Let go from memory (aged out) or never counted: the table has the committed truth.
            let txn = self.state.db.begin_read().map_err(db_error)?;
            let table = txn.open_table(COUNTERS).map_err(db_error)?;
            for (slot, id) in out.iter_mut().zip(ids) {
                if slot.is_none() {
                    *slot = match table.get(*id).map_err(db_error)? {
                        Some(v) => Some(codec::decode_counters(v.value())?),
                        None => Some(ArticleCounters::default()),
                    };
                }
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The counters held in memory: every article's after opening, then those not let go.
    fn all_counters(&self) -> Result<Vec<(ArticleId, ArticleCounters)>, StoreError> {
        Ok(read_lock(&self.state.counters).iter().map(|(id, c)| (*id, *c)).collect())
    }

    fn forget_counters(&self, keep: &dyn Fn(ArticleId) -> bool) {
        let mut counters = write_lock(&self.state.counters);
        counters.retain(|id, _| keep(*id));
        counters.shrink_to_fit();
    }

    fn counters_in_memory(&self) -> usize {
        read_lock(&self.state.counters).len()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Flush { reply })
    }

    fn memory(&self) -> MemoryUse {
        self.state.users.memory()
    }

    fn observe_commits(&self, observe: CommitObserver) {
        // One observer per store: the server's metrics.
        let _ = self.state.commit_observer.set(observe);
    }

    /// Appends queued for the writer and not committed yet.
    fn write_queue(&self) -> u64 {
        let queued = lock(&self.state.behind).queued;
        queued.saturating_sub(self.state.committed.load(std::sync::atomic::Ordering::Acquire))
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        Ok(self.state.last_seq.load(std::sync::atomic::Ordering::Acquire))
    }
}

/// Names the row whose value is corrupt.
fn at_row(e: StoreError, row: impl FnOnce() -> String) -> StoreError {
    match e {
        StoreError::Corrupt(msg) => StoreError::Corrupt(format!("{}: {msg}", row())),
        e => e,
    }
}

fn db_error(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        e => StoreError::Backend(e.to_string()),
    }
}

// Poisoning is ignored: the guarded maps and records are only changed by single calls
// (`insert`, `extend`, `UserRecord::append`, ...) that leave them whole when a caller's
// closure panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
