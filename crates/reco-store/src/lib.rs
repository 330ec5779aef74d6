//! The default reco store: the engine's [`Store`] trait on one embedded [redb] file in the data
//! dir.
//!
//! Why redb: it is pure Rust (no C toolchain to build, nothing to install or run beside the
//! binary), keeps ACID copy-on-write B-trees in a single file, lets readers work on MVCC
//! snapshots while one writer commits, and makes a commit crash-safe with an fsync, so what
//! it acknowledged survives `kill -9` and power loss. It also locks the file to one process,
//! which lets this process treat its in-memory copies as the truth.
//!
//! Layout of the hot path: user records are loaded lazily into memory on first touch and then
//! served from there; `append_batch` applies the refresh rule in memory under a per-user lock
//! and hands the write to the writer thread without waiting (durable at the next commit or
//! [`Store::flush`]). Counters are all loaded at open and read from memory. One writer thread
//! owns every write transaction and commits in groups (see `writer`); `record_events`,
//! `upsert_articles`, `put_meta` and `flush` wait for their group's fsync.
//!
//! The event log: every new event gets a sequence number (1, 2, 3, ... in commit order, no
//! gaps), written to the `event_log` table in the transaction that stores the event, so a
//! number that `record_events` answered is as durable as its event. The log keeps only the
//! event's key; the event itself stays in `events`, the dedup table, so it is stored once.
//! [`Store::scan_events`] walks the log in chunks, each from its own read transaction.

mod codec;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use reco_engine::model::{Article, ArticleId, ChannelId};
use reco_engine::store::{AppendOutcome, ArticleCounters, Batch, EventKey, EventRecord, Store, StoreError, UserRecord};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::writer::{Command, Reply};

/// The file inside the data dir.
pub const FILE_NAME: &str = "reco.redb";

/// Bumped when a stored layout changes; a file with a newer version is refused, an older one is
/// upgraded in place at open (the decoders read every older layout).
///
/// 2: the event log, and events and counters with the fields of learning (sources, position,
/// bucket; dislikes). A build that reads only version 1 would take the new values for corrupt.
const SCHEMA_VERSION: u32 = 2;
const SCHEMA_KEY: &str = "reco_store.schema_version";

const ARTICLES: TableDefinition<ArticleId, &[u8]> = TableDefinition::new("articles");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `(user, channel, batch time)` -> `codec::encode_batch`.
const BATCHES: TableDefinition<(&str, ChannelId, i64), &[u8]> = TableDefinition::new("batches");
/// The read sets: `(user, article)`.
const READS: TableDefinition<(&str, ArticleId), ()> = TableDefinition::new("reads");
/// Every stored event, keyed by [`EventKey`] for dedup: `codec::encode_event`.
const EVENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("events");
/// The event log: sequence number -> key of the event in [`EVENTS`].
///
/// Files from before schema version 2 had no log: the events they hold are in [`EVENTS`] but
/// not in the log (a scan never returns them), and the log of such a file starts at 1 with the
/// first event recorded after the upgrade.
const EVENT_LOG: TableDefinition<u64, &[u8; 16]> = TableDefinition::new("event_log");
const COUNTERS: TableDefinition<ArticleId, &[u8]> = TableDefinition::new("counters");

/// A [`Store`] on a redb file. Dropping it (or [`RedbStore::close`]) commits what is pending
/// and stops the writer thread.
pub struct RedbStore {
    state: Arc<State>,
    commands: Sender<Command>,
    writer: Option<JoinHandle<()>>,
}

/// One user's record: `None` while its load runs (the loader holds the lock) or after the
/// load failed (the slot is then gone from the map).
type Slot = Arc<Mutex<Option<UserRecord>>>;

/// What the store and its writer thread share.
struct State {
    db: Database,
    path: PathBuf,
    /// The authoritative user records of this process, loaded on first touch.
    users: RwLock<HashMap<String, Slot>>,
    /// Every article's counters as of the last commit.
    counters: RwLock<HashMap<ArticleId, ArticleCounters>>,
    /// Set once a commit failed: every later write is refused with this message.
    failure: OnceLock<String>,
    /// Written-behind batches, taken by the writer on its own schedule: queuing one wakes no
    /// thread (a wake-up per refresh cost more than the write itself).
    behind: Mutex<Vec<Command>>,
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`, creating the dir if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create data dir {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Locked(format!("{} (a running `reco serve` probably uses it)", path.display()))
            }
            e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
        })?;
        Self::with_database(db, path)
    }

    fn with_database(db: Database, path: PathBuf) -> Result<Self, StoreError> {
        prepare(&db, &path)?;
        let counters = load_counters(&db)?;
        let last_seq = last_logged(&db)?;
        tracing::info!(path = %path.display(), counters = counters.len(), last_seq, "store opened");
        let state = Arc::new(State {
            db,
            path,
            users: RwLock::default(),
            counters: RwLock::new(counters),
            failure: OnceLock::new(),
            behind: Mutex::default(),
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
    pub fn for_each_event(&self, mut f: impl FnMut(EventRecord)) -> Result<(), StoreError> {
        let txn = self.state.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(EVENTS).map_err(db_error)?;
        for row in table.iter().map_err(db_error)? {
            let (key, value) = row.map_err(db_error)?;
            f(codec::decode_event(EventKey(*key.value()), value.value())?);
        }
        Ok(())
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

    /// The user's slot, loaded. Only that user's callers wait for a load: the slot is put in
    /// the map already locked, and the load runs outside the map lock. The writer looks slots
    /// up after its commit, so it either finds this one (and waits for the load to finish
    /// before it applies its events) or comes before the insert, and the load reads the commit.
    fn user(&self, user: &str) -> Result<Slot, StoreError> {
        if let Some(slot) = read_lock(&self.users).get(user) {
            return Ok(Arc::clone(slot));
        }
        let slot = Slot::default();
        let mut record = {
            let mut users = write_lock(&self.users);
            if let Some(slot) = users.get(user) {
                return Ok(Arc::clone(slot));
            }
            users.insert(user.to_owned(), Arc::clone(&slot));
            lock(&slot)
        };
        match self.load_user(user) {
            Ok(loaded) => *record = Some(loaded),
            Err(e) => {
                write_lock(&self.users).remove(user);
                return Err(e);
            }
        }
        drop(record);
        Ok(slot)
    }

    /// Runs `f` on the user's record.
    fn with_record<R>(&self, user: &str, f: impl FnOnce(&mut UserRecord) -> R) -> Result<R, StoreError> {
        let slot = self.user(user)?;
        let mut record = lock(&slot);
        let record = record.as_mut().ok_or_else(|| {
            StoreError::Backend(format!("the record of user {user:?} failed to load in another call"))
        })?;
        Ok(f(record))
    }

    /// The logged events numbered `after + 1 ..= end`, at most [`SCAN_CHUNK`] of them, in order.
    fn log_chunk(&self, after: u64, end: u64) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let log = txn.open_table(EVENT_LOG).map_err(db_error)?;
        let events = txn.open_table(EVENTS).map_err(db_error)?;
        let mut chunk = Vec::with_capacity(SCAN_CHUNK.min(usize::try_from(end - after).unwrap_or(SCAN_CHUNK)));
        for row in log.range(after + 1..=end).map_err(db_error)?.take(SCAN_CHUNK) {
            let (seq, key) = row.map_err(db_error)?;
            let (seq, key) = (seq.value(), *key.value());
            let value = events
                .get(&key)
                .map_err(db_error)?
                .ok_or_else(|| StoreError::Corrupt(format!("event log entry {seq} names a missing event")))?;
            let event = codec::decode_event(EventKey(key), value.value())
                .map_err(|e| at_row(e, || format!("event log entry {seq}")))?;
            chunk.push((seq, event));
        }
        Ok(chunk)
    }

    fn load_user(&self, user: &str) -> Result<UserRecord, StoreError> {
        let mut record = UserRecord::default();
        let txn = self.db.begin_read().map_err(db_error)?;
        #[cfg(test)]
        tests::pause_load(user);
        let batches = txn.open_table(BATCHES).map_err(db_error)?;
        for row in
            batches.range((user, ChannelId::MIN, i64::MIN)..=(user, ChannelId::MAX, i64::MAX)).map_err(db_error)?
        {
            let (key, value) = row.map_err(db_error)?;
            let (_, channel, time) = key.value();
            let batch = codec::decode_batch(time, value.value())
                .map_err(|e| at_row(e, || format!("user {user:?}, channel {channel}, time {time}")))?;
            // Rows come in time order per channel, so each one appends.
            record.append(channel, Arc::new(batch));
        }
        let reads = txn.open_table(READS).map_err(db_error)?;
        for row in reads.range((user, ArticleId::MIN)..=(user, ArticleId::MAX)).map_err(db_error)? {
            let (key, _) = row.map_err(db_error)?;
            record.mark_read(key.value().1);
        }
        Ok(record)
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
        self.request(|reply| Command::Articles { rows, reply })
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.state.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(META).map_err(db_error)?;
        Ok(table.get(key).map_err(db_error)?.map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.request(|reply| Command::Meta { key: key.to_owned(), value: value.to_vec(), reply })
    }

    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        self.state.with_record(user, |record| f(record))
    }

    fn append_batch(&self, user: &str, channel: ChannelId, batch: Batch) -> Result<AppendOutcome, StoreError> {
        self.state.check()?;
        let batch = Arc::new(batch);
        let outcome = self.state.with_record(user, |record| record.append(channel, Arc::clone(&batch)))?;
        if let AppendOutcome::Appended { .. } = outcome {
            let command =
                Command::Batch { user: user.to_owned(), channel, time: batch.time, value: codec::encode_batch(&batch) };
            self.state.check()?;
            if self.writer.as_ref().is_none_or(JoinHandle::is_finished) {
                return Err(self.state.stopped());
            }
            self.state.behind.lock().unwrap_or_else(PoisonError::into_inner).push(command);
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
        // The scan ends at the log's end as of its start, as a snapshot would: a reader that
        // keeps up with a busy writer still returns.
        let end = last_logged(&self.state.db)?;
        let mut after = after;
        while after < end {
            let chunk = self.state.log_chunk(after, end)?;
            let Some(&(last, _)) = chunk.last() else { break };
            // `f` runs outside any read transaction: a slow consumer pins no pages.
            for (seq, event) in chunk {
                f(seq, event);
            }
            after = last;
        }
        Ok(())
    }

    fn counters(&self, ids: &[ArticleId]) -> Result<Vec<ArticleCounters>, StoreError> {
        let counters = read_lock(&self.state.counters);
        Ok(ids.iter().map(|id| counters.get(id).copied().unwrap_or_default()).collect())
    }

    fn all_counters(&self) -> Result<Vec<(ArticleId, ArticleCounters)>, StoreError> {
        Ok(read_lock(&self.state.counters).iter().map(|(id, c)| (*id, *c)).collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Flush { reply })
    }
}

/// Events a scan decodes per read transaction. It bounds the scan's memory (a few hundred KiB)
/// and keeps each read transaction short: redb cannot reuse the pages that later commits free
/// while a read transaction that may still see them is open, so one transaction over a log of
/// millions would grow the file under a busy writer.
const SCAN_CHUNK: usize = 4096;

/// Creates the tables, and checks the schema version: writes it into a new file, upgrades an
/// older one.
fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(db_error)?;
    {
        txn.open_table(ARTICLES).map_err(db_error)?;
        txn.open_table(BATCHES).map_err(db_error)?;
        txn.open_table(READS).map_err(db_error)?;
        txn.open_table(EVENTS).map_err(db_error)?;
        txn.open_table(EVENT_LOG).map_err(db_error)?;
        txn.open_table(COUNTERS).map_err(db_error)?;
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let stored = meta.get(SCHEMA_KEY).map_err(db_error)?.map(|v| v.value().to_vec());
        match stored {
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(db_error)?;
            }
            Some(bytes) => {
                let version = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Corrupt(format!("{}: unreadable schema version", path.display())))?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::Backend(format!(
                        "{} has schema version {version}, newer than the {SCHEMA_VERSION} this build reads: \
                         use a newer reco or another data dir",
                        path.display()
                    )));
                }
                if version < SCHEMA_VERSION {
                    // Old values stay as they are (the decoders read them); recording the new
                    // version keeps older builds from opening a file they would misread.
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(db_error)?;
                    tracing::info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "store schema upgraded");
                }
            }
        }
    }
    txn.commit().map_err(db_error)
}

fn load_counters(db: &Database) -> Result<HashMap<ArticleId, ArticleCounters>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(COUNTERS).map_err(db_error)?;
    let mut counters = HashMap::new();
    for row in table.iter().map_err(db_error)? {
        let (id, value) = row.map_err(db_error)?;
        let id = id.value();
        let c = codec::decode_counters(value.value()).map_err(|e| at_row(e, || format!("article {id}")))?;
        counters.insert(id, c);
    }
    Ok(counters)
}

/// The newest sequence number in the event log, 0 when it is empty.
fn last_logged(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let log = txn.open_table(EVENT_LOG).map_err(db_error)?;
    Ok(log.last().map_err(db_error)?.map_or(0, |(seq, _)| seq.value()))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Barrier, Mutex};
    use std::time::{Duration, Instant};

    use reco_engine::model::Action;
    use reco_engine::store::{BatchItem, Sources};
    use redb::StorageBackend;
    use redb::backends::InMemoryBackend;

    use super::*;

    /// Users whose loads a test holds between their snapshot and their insert.
    static LOAD_GATES: Mutex<Vec<(String, Arc<Barrier>)>> = Mutex::new(Vec::new());

    pub(super) fn pause_load(user: &str) {
        let gate = lock(&LOAD_GATES).iter().find(|(u, _)| u == user).map(|(_, b)| Arc::clone(b));
        if let Some(barrier) = gate {
            barrier.wait(); // the snapshot is taken
            barrier.wait(); // the test lets the load finish
        }
    }

    /// Holds the loads of `user` until the gate is dropped.
    fn gate(user: &str) -> Arc<Barrier> {
        let barrier = Arc::new(Barrier::new(2));
        lock(&LOAD_GATES).push((user.to_owned(), Arc::clone(&barrier)));
        barrier
    }

    fn ungate(user: &str) {
        lock(&LOAD_GATES).retain(|(u, _)| u != user);
    }

    fn read_event(key: u8, user: &str, id: ArticleId) -> EventRecord {
        EventRecord {
            key: EventKey([key; 16]),
            user: user.to_owned(),
            channel: 1,
            action: Action::Read,
            article_ids: vec![id],
            time: 1_700_000_000_000,
            read_ms: 1_000,
            popularity_log2: 1.0,
            sources: vec![Sources::HOT],
            position: Some(0),
            bucket: 3,
        }
    }

    fn batch(time: i64) -> Batch {
        Batch { time, request_id: 1, bucket: 0, items: vec![BatchItem { article_id: 1, sources: Sources::FRESH }] }
    }

    #[test]
    fn an_event_committed_during_a_load_reaches_the_loaded_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let user = "racing-load";
        let barrier = gate(user);
        std::thread::scope(|s| {
            let loader = s.spawn(|| store.with_user(user, |_| ()).unwrap());
            barrier.wait();
            // The loader's snapshot predates this event; commit it while the load is held.
            let recorder = s.spawn(|| store.record_events(&[read_event(1, user, 7)]).unwrap());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !committed(&store, EventKey([1; 16])) {
                assert!(Instant::now() < deadline, "the event was never committed");
                std::thread::sleep(Duration::from_millis(1));
            }
            barrier.wait();
            loader.join().unwrap();
            assert_eq!(recorder.join().unwrap(), vec![Some(1)]);
        });
        ungate(user);
        assert!(store.with_user(user, |u| u.has_read(7)).unwrap(), "the committed read reached the cached record");
    }

    #[test]
    fn a_held_load_holds_up_only_its_own_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store.append_batch("cached", 1, batch(1)).unwrap();
        let barrier = gate("slow");
        let others_done = std::thread::scope(|s| {
            let slow = s.spawn(|| store.with_user("slow", |u| u.read_count()).unwrap());
            barrier.wait();
            let (done, finished) = std::sync::mpsc::channel();
            let store = &store;
            s.spawn(move || {
                let cached = store.with_user("cached", |u| u.channel(1).latest_time()).unwrap();
                let fresh = store.append_batch("new", 1, batch(2)).unwrap();
                let _ = done.send((cached, fresh));
            });
            // Generous: only a hang (other users waiting for this load) should miss it.
            let others = finished.recv_timeout(Duration::from_secs(60));
            barrier.wait();
            assert_eq!(slow.join().unwrap(), 0);
            others
        });
        ungate("slow");
        assert_eq!(others_done.unwrap(), (1, AppendOutcome::Appended { previous: 0 }), "other users were served");
    }

    fn committed(store: &RedbStore, key: EventKey) -> bool {
        let txn = store.state.db.begin_read().unwrap();
        txn.open_table(EVENTS).unwrap().get(&key.0).unwrap().is_some()
    }

    /// Writes `value` under `key` in `table` of the closed store in `dir`.
    fn overwrite<K: redb::Key + 'static, V: redb::Value + 'static>(
        dir: &Path,
        table: TableDefinition<K, V>,
        key: K::SelfType<'_>,
        value: V::SelfType<'_>,
    ) {
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(table).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    fn assert_corrupt<T>(result: Result<T, StoreError>, needle: &str) {
        match result {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains(needle), "{msg:?} should name {needle:?}"),
            Err(e) => panic!("expected Corrupt naming {needle:?}, got {e}"),
            Ok(_) => panic!("expected Corrupt naming {needle:?}, got Ok"),
        }
    }

    #[test]
    fn corrupt_values_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        RedbStore::open(dir.path()).unwrap().close().unwrap();

        overwrite(dir.path(), BATCHES, ("u", 1, 10), &[1u8, 2, 3][..]);
        overwrite(dir.path(), ARTICLES, 5, &b"{not json"[..]);
        overwrite(dir.path(), EVENTS, &[9; 16], &[200u8][..]);
        let store = RedbStore::open(dir.path()).unwrap();
        assert_corrupt(store.with_user("u", |_| ()), "user \"u\", channel 1, time 10");
        assert_corrupt(store.load_articles(), "article 5");
        assert_corrupt(store.for_each_event(|_| ()), "event");
        assert!(store.with_user("other", |u| u.read_count()).is_ok(), "other users still load");
        store.close().unwrap();

        overwrite(dir.path(), COUNTERS, 7, &[0u8; 55][..]);
        assert_corrupt(RedbStore::open(dir.path()), "article 7");
    }

    #[test]
    fn a_corrupt_log_is_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.record_events(&[read_event(1, "u", 1)]).unwrap(), vec![Some(1)]);
        store.close().unwrap();

        overwrite(dir.path(), EVENT_LOG, 2, &[8; 16]);
        let store = RedbStore::open(dir.path()).unwrap();
        assert_corrupt(store.scan_events(0, &mut |_, _| ()), "event log entry 2 names a missing event");
        store.close().unwrap();

        overwrite(dir.path(), EVENTS, &[8; 16], &[4u8, 1][..]);
        let store = RedbStore::open(dir.path()).unwrap();
        assert_corrupt(store.scan_events(1, &mut |_, _| ()), "event log entry 2: event value is truncated");
        store.close().unwrap();
    }

    #[test]
    fn a_scan_spans_chunks_and_ends_where_the_log_ended_at_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let n = 2 * SCAN_CHUNK as u64 + 5;
        let event = |i: u64| EventRecord {
            key: EventKey(u128::from(i).to_le_bytes()),
            action: if i.is_multiple_of(2) { Action::Click } else { Action::Dislike },
            position: Some(i as u32),
            ..read_event(0, "scanner", i as ArticleId)
        };
        let seqs = store.record_events(&(1..=n).map(event).collect::<Vec<_>>()).unwrap();
        assert_eq!(seqs, (1..=n).map(Some).collect::<Vec<_>>());
        for after in [0, 1, SCAN_CHUNK as u64 - 1, SCAN_CHUNK as u64, n - 1, n, n + 10] {
            let mut next = after + 1;
            store
                .scan_events(after, &mut |seq, e| {
                    assert_eq!((seq, &e), (next, &event(next)), "scan from {after}");
                    next += 1;
                })
                .unwrap();
            assert_eq!(next, n.max(after) + 1, "scan from {after} ends at the log's end");
        }

        // An event committed while a scan runs is left to the next scan.
        let mut scanned = 0;
        store
            .scan_events(0, &mut |seq, _| {
                if seq == 1 {
                    assert_eq!(store.record_events(&[event(n + 1)]).unwrap(), vec![Some(n + 1)]);
                }
                scanned += 1;
            })
            .unwrap();
        assert_eq!(scanned, n);
        let mut tail = Vec::new();
        store.scan_events(n, &mut |seq, e| tail.push((seq, e))).unwrap();
        assert_eq!(tail, vec![(n + 1, event(n + 1))]);
        store.close().unwrap();
    }

    /// A data dir written by the build before the event log: schema version 1, no log table,
    /// events and counters in their first layouts.
    fn write_version_1_store(dir: &Path, old_event: &EventRecord, old_counters: &ArticleCounters) {
        RedbStore::open(dir).unwrap().close().unwrap();
        let db = Database::create(dir.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(EVENT_LOG).unwrap());
        txn.open_table(META).unwrap().insert(SCHEMA_KEY, 1u32.to_le_bytes().as_slice()).unwrap();
        txn.open_table(EVENTS)
            .unwrap()
            .insert(&old_event.key.0, codec::tests::encode_event_v0(old_event).as_slice())
            .unwrap();
        for &id in &old_event.article_ids {
            txn.open_table(COUNTERS)
                .unwrap()
                .insert(id, codec::tests::encode_counters_v0(old_counters).as_slice())
                .unwrap();
            txn.open_table(READS).unwrap().insert((old_event.user.as_str(), id), ()).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_version_1_store_opens_and_starts_its_log_at_1() {
        let dir = tempfile::tempdir().unwrap();
        let old = EventRecord { sources: vec![], position: None, bucket: 0, ..read_event(1, "u", 7) };
        let mut old_counters = ArticleCounters::default();
        old_counters.apply(&old);
        write_version_1_store(dir.path(), &old, &old_counters);

        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.counters(&[7]).unwrap(), vec![old_counters], "old counters decode, with no dislikes");
        assert!(store.with_user("u", |u| u.has_read(7)).unwrap());
        let mut all = Vec::new();
        store.for_each_event(|e| all.push(e)).unwrap();
        assert_eq!(all, vec![old.clone()], "old events decode with the new fields at their defaults");
        let mut logged = Vec::new();
        store.scan_events(0, &mut |seq, e| logged.push((seq, e))).unwrap();
        assert!(logged.is_empty(), "events from before the log are not in it");

        let dislike = EventRecord { action: Action::Dislike, ..read_event(2, "u", 7) };
        assert_eq!(
            store.record_events(&[old.clone(), dislike.clone()]).unwrap(),
            vec![None, Some(1)],
            "an old event is still a duplicate; the log starts at 1"
        );
        let c = store.counters(&[7]).unwrap()[0];
        assert_eq!((c.reads, c.dislikes), (1, 1), "old counters go on counting");
        store.close().unwrap();

        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.get_meta(SCHEMA_KEY).unwrap(), Some(SCHEMA_VERSION.to_le_bytes().to_vec()), "upgraded");
        assert_eq!(store.counters(&[7]).unwrap()[0].dislikes, 1);
        store.scan_events(0, &mut |seq, e| logged.push((seq, e))).unwrap();
        assert_eq!(logged, vec![(1, dislike)]);
        store.close().unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        RedbStore::open(dir.path()).unwrap().close().unwrap();
        overwrite(dir.path(), META, SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_le_bytes());
        match RedbStore::open(dir.path()) {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
            Err(e) => panic!("expected Backend, got {e}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
        overwrite(dir.path(), META, SCHEMA_KEY, b"x");
        assert_corrupt(RedbStore::open(dir.path()), "schema version");
    }

    /// An in-memory file whose writes and syncs fail on demand.
    #[derive(Debug)]
    struct FlakyBackend {
        inner: InMemoryBackend,
        broken: Arc<AtomicBool>,
    }

    impl FlakyBackend {
        fn check(&self) -> std::io::Result<()> {
            if self.broken.load(Ordering::SeqCst) { Err(std::io::Error::other("disk on fire")) } else { Ok(()) }
        }
    }

    impl StorageBackend for FlakyBackend {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.inner.read(offset, out)
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.inner.set_len(len)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.inner.sync_data()
        }

        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    fn backend_error<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Backend(msg)) if msg.contains("disk on fire"))
    }

    #[test]
    fn a_failed_commit_fails_its_waiters_and_every_later_write() {
        let broken = Arc::new(AtomicBool::new(false));
        let backend = FlakyBackend { inner: InMemoryBackend::new(), broken: Arc::clone(&broken) };
        let db = Database::builder().create_with_backend(backend).unwrap();
        let store = RedbStore::with_database(db, PathBuf::from("flaky")).unwrap();
        assert_eq!(store.record_events(&[read_event(1, "u", 1)]).unwrap(), vec![Some(1)]);

        broken.store(true, Ordering::SeqCst);
        assert!(
            backend_error(store.record_events(&[read_event(2, "u", 2)])),
            "the waiter of the failed commit learns of it"
        );
        assert!(backend_error(store.put_meta("k", b"v")));
        assert!(backend_error(store.append_batch("u", 1, batch(5))));
        assert!(backend_error(store.flush()));
        // What was committed before stays readable.
        assert_eq!(store.counters(&[1, 2]).unwrap().iter().map(|c| c.reads).collect::<Vec<_>>(), vec![1, 0]);
        assert!(store.with_user("u", |u| u.has_read(1) && !u.has_read(2)).unwrap());
        assert!(backend_error(store.close()), "close reports the failure instead of hanging");
    }
}
