//! The conformance suite and the persistence guarantees of `RedbStore`, through its public API.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use reco_engine::model::{ALL_CHANNELS, Action, Article};
use reco_engine::store::{
    AppendOutcome, ArticleCounters, Batch, BatchItem, EventKey, EventRecord, Sources, Store, StoreError,
};
use reco_store::RedbStore;

fn open(dir: &Path) -> RedbStore {
    RedbStore::open(dir).expect("open the store")
}

fn article(id: i64) -> Article {
    Article {
        id,
        channel_id: 3,
        title: format!("标题 {id}"),
        author: "author".to_owned(),
        publish_time: 1_700_000_000_000 + id,
        keywords: vec!["rust".to_owned()],
        summary: if id % 2 == 0 { "summary".to_owned() } else { String::new() },
        cover: String::new(),
    }
}

fn batch(time: i64, ids: &[i64]) -> Batch {
    Batch {
        time,
        request_id: 1_000 + time as u64,
        bucket: 1,
        items: ids
            .iter()
            .map(|&article_id| BatchItem { article_id, sources: Sources::FRESH.union(Sources::HOT) })
            .collect(),
    }
}

fn event(key: u16, user: &str, action: Action, ids: &[i64]) -> EventRecord {
    let mut k = [0; 16];
    k[..2].copy_from_slice(&key.to_le_bytes());
    EventRecord {
        key: EventKey(k),
        user: user.to_owned(),
        channel: 3,
        action,
        article_ids: ids.to_vec(),
        time: 1_700_000_000_000 + i64::from(key),
        read_ms: if action == Action::Read { 30_000 } else { 0 },
        popularity_log2: if action == Action::Exposure { f64::NEG_INFINITY } else { f64::from(key) / 7.0 },
        sources: ids.iter().map(|&id| Sources(1 << (id % 6))).collect(),
        position: (action != Action::Exposure).then_some(u32::from(key) % 10),
        bucket: (key % 4) as u8,
    }
}

fn sorted_counters(store: &RedbStore) -> Vec<(i64, ArticleCounters)> {
    let mut all = store.all_counters().unwrap();
    all.sort_by_key(|(id, _)| *id);
    all
}

#[test]
fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    reco_engine::conformance::run_all(&store);
    store.close().unwrap();
}

#[test]
fn conformance_holds_after_reopen_of_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    reco_engine::conformance::run_all(&open(dir.path()));
}

#[test]
fn everything_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let user = "user-1";
    let events = [
        event(1, user, Action::Exposure, &[10, 11, 12]),
        event(2, user, Action::Click, &[10]),
        event(3, user, Action::Read, &[10]),
        event(4, "user-2", Action::Read, &[11]),
        event(5, user, Action::Share, &[12]),
        event(6, "user-2", Action::Dislike, &[12]),
    ];
    let counters_before;
    {
        let store = open(dir.path());
        store.upsert_articles(&(1..=20).map(article).collect::<Vec<_>>()).unwrap();
        store.put_meta("engine.secret", b"s3cret").unwrap();
        assert_eq!(
            store.append_batch(user, 3, batch(100, &[10, 11])).unwrap(),
            AppendOutcome::Appended { previous: 0 }
        );
        assert_eq!(store.append_batch(user, 3, batch(200, &[12])).unwrap(), AppendOutcome::Appended { previous: 100 });
        assert_eq!(
            store.append_batch(user, ALL_CHANNELS, batch(150, &[13])).unwrap(),
            AppendOutcome::Appended { previous: 0 }
        );
        assert_eq!(store.record_events(&events).unwrap(), (1..=6).map(Some).collect::<Vec<_>>());
        counters_before = sorted_counters(&store);
        // Batches are written behind: close commits them.
        store.close().unwrap();
    }
    let store = open(dir.path());
    let mut articles = store.load_articles().unwrap();
    articles.sort_by_key(|a| a.id);
    assert_eq!(articles, (1..=20).map(article).collect::<Vec<_>>());
    assert_eq!(store.get_meta("engine.secret").unwrap().as_deref(), Some(&b"s3cret"[..]));
    store
        .with_user(user, |u| {
            let h = u.channel(3);
            assert_eq!(h.latest_time(), 200);
            let (b, older) = h.at_or_before(199).unwrap();
            assert_eq!((b.as_ref(), older), (&batch(100, &[10, 11]), 0));
            let (b, older) = h.at_or_before(200).unwrap();
            assert_eq!((b.as_ref(), older), (&batch(200, &[12]), 100));
            assert!(h.was_served(10) && h.was_served(12) && !h.was_served(13));
            assert_eq!(u.channel(ALL_CHANNELS).at_or_before(i64::MAX).unwrap().0.as_ref(), &batch(150, &[13]));
            assert!(u.has_read(10) && !u.has_read(11), "only user-1's read is in user-1's read set");
            assert_eq!(u.read_count(), 1);
        })
        .unwrap();
    assert!(
        store.with_user("user-2", |u| u.has_read(11) && u.has_read(12) && u.read_count() == 2).unwrap(),
        "a dislike joins the read set of a user loaded after the restart"
    );
    // The refresh rule keeps working on the reloaded record.
    assert_eq!(store.append_batch(user, 3, batch(200, &[1])).unwrap(), AppendOutcome::Stale { latest: 200 });
    assert_eq!(sorted_counters(&store), counters_before);
    assert_eq!(store.counters(&[10]).unwrap()[0].reads, 1);
    assert_eq!(store.counters(&[12]).unwrap()[0].dislikes, 1);
    let later = event(7, user, Action::Click, &[11]);
    assert_eq!(
        store.record_events(&[events[2].clone(), later.clone()]).unwrap(),
        vec![None, Some(7)],
        "an event recorded before the restart is still a duplicate; numbers go on after the restart"
    );
    assert_eq!(store.counters(&[10]).unwrap()[0], counters_before[0].1, "a duplicate changes no counter");

    let mut expected = events.to_vec();
    expected.push(later);
    let mut logged = Vec::new();
    store.scan_events(0, &mut |seq, e| logged.push((seq, e))).unwrap();
    assert_eq!(
        logged,
        expected.iter().cloned().enumerate().map(|(i, e)| (i as u64 + 1, e)).collect::<Vec<_>>(),
        "the event log keeps every new event as recorded, in order"
    );
    let mut tail = Vec::new();
    store.scan_events(5, &mut |seq, e| tail.push((seq, e.key))).unwrap();
    assert_eq!(tail, vec![(6, expected[5].key), (7, expected[6].key)]);

    let mut stored = Vec::new();
    store.for_each_event(|e| stored.push(e)).unwrap();
    stored.sort_by_key(|e| e.key);
    expected.sort_by_key(|e| e.key);
    assert_eq!(stored, expected, "the events table holds the same events");
}

#[test]
fn dropping_the_store_commits_written_behind_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for t in 1..=50 {
            store.append_batch("u", 1, batch(t, &[t])).unwrap();
        }
    }
    let store = open(dir.path());
    assert_eq!(store.with_user("u", |u| u.channel(1).batches().count()).unwrap(), 50);
}

#[test]
fn flush_makes_batches_durable_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append_batch("u", 1, batch(10, &[1, 2])).unwrap();
    store.flush().unwrap();
    // Leak the store so nothing commits at close, as if the process died here.
    std::mem::forget(store);
    // The leaked handle still holds the file lock in this process; a copy of the file shows
    // what a restart would find.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join(reco_store::FILE_NAME), copy.path().join(reco_store::FILE_NAME)).unwrap();
    let store = open(copy.path());
    assert_eq!(store.with_user("u", |u| u.channel(1).latest_time()).unwrap(), 10);
}

#[test]
fn a_second_open_of_a_live_dir_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    match RedbStore::open(dir.path()) {
        Err(StoreError::Locked(msg)) => {
            assert!(msg.contains(&dir.path().display().to_string()), "names the path: {msg}");
            assert!(msg.contains("reco serve"), "names the likely holder: {msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second open of a live dir succeeded"),
    }
    first.close().unwrap();
    RedbStore::open(dir.path()).expect("the dir is free after close").close().unwrap();
}

#[test]
fn open_creates_missing_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/data");
    open(&nested).close().unwrap();
    assert!(nested.join(reco_store::FILE_NAME).is_file());
}

#[test]
fn concurrent_callers_record_each_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    // 8 threads report overlapping keys: every key must be new for exactly one of them, and get
    // one number.
    let fresh = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u16)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut fresh = Vec::new();
                    for i in 0..40u16 {
                        let batch = [
                            event(i, "racer", Action::Click, &[1]),
                            event(1_000 + t * 100 + i, "racer", Action::Read, &[2]),
                        ];
                        let seqs = store.record_events(&batch).unwrap();
                        assert_eq!(seqs.len(), batch.len());
                        for (e, seq) in batch.iter().zip(seqs) {
                            if let Some(seq) = seq {
                                fresh.push((seq, e.key));
                            }
                        }
                    }
                    fresh
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    let unique: HashSet<_> = fresh.iter().map(|(_, key)| key).collect();
    assert_eq!(unique.len(), fresh.len(), "no key is new twice");
    assert_eq!(fresh.len(), 40 + 8 * 40);
    let mut by_seq = fresh.clone();
    by_seq.sort();
    assert!(by_seq.iter().map(|(seq, _)| *seq).eq(1..=fresh.len() as u64), "the numbers have no gap and no repeat");
    let mut logged = Vec::new();
    store.scan_events(0, &mut |seq, e| logged.push((seq, e.key))).unwrap();
    assert_eq!(logged, by_seq, "the log answers each event under the number its caller got");
    let c = store.counters(&[1, 2]).unwrap();
    assert_eq!((c[0].clicks, c[1].reads), (40, 320));
}

#[test]
fn mem_store_conformance() {
    reco_engine::conformance::run_all(&reco_engine::store::MemStore::new());
    reco_engine::conformance::catalog_log(&reco_engine::store::MemStore::new());
    reco_engine::conformance::event_log_trimming(&reco_engine::store::MemStore::new());
}
