//! Unit tests that reach into the store: held loads, corrupt rows, old files, failing disks;
//! the record cache (`eviction`) and a model check of eviction and trimming (`model`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use reco_engine::model::Action;
use reco_engine::store::{BatchItem, EventKey, Sources};
use redb::StorageBackend;
use redb::backends::InMemoryBackend;

use super::*;
use crate::log::SCAN_CHUNK;
use crate::schema::{BATCHES, COUNTERS, EVENT_LOG, EVENTS, META, READS, SCHEMA_KEY, SCHEMA_VERSION, TRIMMED};
use redb::TableDefinition;

mod eviction;
mod model;

/// Where a test can hold a user's callers: `"load"` between a load's snapshot and its reads,
/// `"lookup"` between finding a cached slot and locking it.
static GATES: Mutex<Vec<(&'static str, String, Arc<Barrier>)>> = Mutex::new(Vec::new());

pub(crate) fn pause(point: &'static str, user: &str) {
    let gate = lock(&GATES).iter().find(|(p, u, _)| *p == point && u == user).map(|(_, _, b)| Arc::clone(b));
    if let Some(barrier) = gate {
        barrier.wait(); // the caller is at the point
        barrier.wait(); // the test lets it go on
    }
}

/// Holds `user`'s callers at `point` until [`ungate`].
fn gate(point: &'static str, user: &str) -> Arc<Barrier> {
    let barrier = Arc::new(Barrier::new(2));
    lock(&GATES).push((point, user.to_owned(), Arc::clone(&barrier)));
    barrier
}

fn ungate(point: &'static str, user: &str) {
    lock(&GATES).retain(|(p, u, _)| !(*p == point && u == user));
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
    let barrier = gate("load", user);
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
    ungate("load", user);
    assert!(store.with_user(user, |u| u.has_read(7)).unwrap(), "the committed read reached the cached record");
}

#[test]
fn a_held_load_holds_up_only_its_own_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    store.append_batch("cached", 1, batch(1)).unwrap();
    let barrier = gate("load", "slow");
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
    ungate("load", "slow");
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
    assert!(txn.delete_table(TRIMMED).unwrap());
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

/// A data dir written by the build before trimming: schema version 2, no trimmed table, and
/// more batches in a channel than the default bound keeps.
fn write_version_2_store(dir: &Path, batches: i64) {
    RedbStore::open(dir).unwrap().close().unwrap();
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.delete_table(TRIMMED).unwrap());
    txn.open_table(META).unwrap().insert(SCHEMA_KEY, 2u32.to_le_bytes().as_slice()).unwrap();
    let mut table = txn.open_table(BATCHES).unwrap();
    for t in 1..=batches {
        let b = Batch { items: vec![BatchItem { article_id: t, sources: Sources::HOT }], ..batch(t) };
        table.insert(("old", 1, t), codec::encode_batch(&b).as_slice()).unwrap();
    }
    drop(table);
    txn.commit().unwrap();
}

#[test]
fn a_version_2_store_opens_and_trims_its_long_histories() {
    let dir = tempfile::tempdir().unwrap();
    let max = reco_engine::store::DEFAULT_MAX_BATCHES as i64;
    write_version_2_store(dir.path(), max + 10);
    let kept = |store: &RedbStore| {
        store
            .with_user("old", |u| {
                let h = u.channel(1);
                let served = (1..=h.latest_time()).all(|id| h.was_served(id));
                (h.batches().next().unwrap().time, h.batches().count() as i64, served)
            })
            .unwrap()
    };
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(kept(&store), (11, max, true), "trimmed at load; the dropped ids stay served");
    store.close().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(store.get_meta(SCHEMA_KEY).unwrap(), Some(SCHEMA_VERSION.to_le_bytes().to_vec()), "upgraded");
    assert_eq!(kept(&store), (11, max, true), "the same after reopen");
    let next = Batch { items: vec![BatchItem { article_id: max + 11, sources: Sources::HOT }], ..batch(max + 11) };
    store.append_batch("old", 1, next).unwrap();
    assert_eq!(kept(&store), (12, max, true));
    store.close().unwrap();
    // The next trim deleted every old row at or before it: a larger bound finds none of them.
    let store = RedbStore::open_with(dir.path(), StoreConfig { max_batches: 1_000, ..StoreConfig::default() }).unwrap();
    assert_eq!(kept(&store), (12, max, true));
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
    let store = RedbStore::with_database(db, PathBuf::from("flaky"), StoreConfig::default()).unwrap();
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
