//! The record cache: on its own (no writer thread, so the tests decide what is committed) and
//! inside a store.

use reco_engine::store::MemoryUse;

use super::*;
use crate::users::{Users, slot_bytes};

fn database(dir: &Path) -> Database {
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    schema::prepare(&db, dir).unwrap();
    db
}

fn items(ids: std::ops::Range<ArticleId>) -> Batch {
    Batch {
        time: 0,
        request_id: 3,
        bucket: 1,
        items: ids.map(|article_id| BatchItem { article_id, sources: Sources::HOT }).collect(),
    }
}

#[test]
fn a_record_is_evicted_only_once_its_appends_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let users = Users::new(0, 3);
    users
        .write(&db, "u", |r| {
            r.record.append(1, Arc::new(batch(10)), 3);
            r.queued = 5;
        })
        .unwrap();
    users.read(&db, "idle", |_| ()).unwrap();
    assert_eq!(users.memory().resident_users, 2);
    assert_eq!(users.sweep(4), 1, "the idle user goes; u's append 5 is not committed");
    assert!(users.is_resident("u") && !users.is_resident("idle"));
    assert_eq!(users.read(&db, "u", |u| u.channel(1).latest_time()).unwrap(), 10);
    assert_eq!(users.sweep(5), 1, "once committed, u goes too");
    assert_eq!(users.memory(), MemoryUse { resident_users: 0, resident_bytes: 0, evicted_users: 2 });
    // No writer stored the batch here: a reload misses it, which is what the rule prevents.
    assert_eq!(users.read(&db, "u", |u| u.channel(1).latest_time()).unwrap(), 0);
}

#[test]
fn a_record_in_use_is_not_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let users = Users::new(0, 3);
    let swept = users.read(&db, "busy", |_| users.sweep(u64::MAX)).unwrap();
    assert_eq!(swept, 0, "the sweep skips a locked slot instead of waiting for it");
    assert_eq!(users.sweep(u64::MAX), 1);
}

#[test]
fn a_caller_that_finds_its_slot_evicted_loads_the_user_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let users = Users::new(0, 3);
    let user = "evicted-under-a-caller";
    users.read(&db, user, |_| ()).unwrap();
    let barrier = gate("lookup", user);
    let saw_commit = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            users
                .write(&db, user, |r| {
                    r.record.mark_read(7);
                    r.record.has_read(1)
                })
                .unwrap()
        });
        barrier.wait(); // the caller holds the slot's Arc, not its lock
        assert_eq!(users.sweep(u64::MAX), 1);
        // A commit after the eviction: only a reload sees it.
        let txn = db.begin_write().unwrap();
        txn.open_table(READS).unwrap().insert((user, 1), ()).unwrap();
        txn.commit().unwrap();
        barrier.wait();
        caller.join().unwrap()
    });
    ungate("lookup", user);
    assert!(saw_commit, "the caller's write ran on the reloaded record, not the evicted one");
    assert!(users.read(&db, user, |u| u.has_read(7) && u.has_read(1)).unwrap(), "and it is the cached one");
    assert_eq!(users.memory().resident_users, 1);
}

#[test]
fn resident_bytes_are_the_sum_of_the_records_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let users = Users::new(0, 2);
    let names: Vec<String> = (0..5).map(|i| format!("user-{i}")).collect();
    for i in 0..40 {
        users
            .write(&db, &names[i % 5], |r| {
                let batch = Batch { time: i as i64 + 1, ..items(i as i64..i as i64 * 2 + 3) };
                r.record.append((i % 3) as ChannelId, Arc::new(batch), 2);
                r.record.mark_read(i as ArticleId);
            })
            .unwrap();
    }
    let read = EventRecord { article_ids: (100..400).collect(), ..read_event(1, &names[1], 0) };
    users.publish([&read].into_iter());
    let expected: usize =
        names.iter().map(|name| users.read(&db, name, |u| slot_bytes(name) + u.heap_bytes()).unwrap()).sum();
    assert!(users.table_bytes() > 0, "the map's buckets");
    assert_eq!(users.memory().resident_bytes, expected + users.table_bytes());
    assert!(users.read(&db, &names[1], |u| u.read_count()).unwrap() > 300, "the published read landed");
    assert_eq!(users.sweep(u64::MAX), 5);
    assert_eq!(users.memory(), MemoryUse { resident_users: 0, resident_bytes: 0, evicted_users: 5 });
}

#[test]
fn the_sweep_keeps_the_recently_used_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let one = {
        let probe = Users::new(0, 50);
        probe.write(&db, "user-00", |r| r.record.append(1, Arc::new(Batch { time: 1, ..items(0..10) }), 50)).unwrap();
        probe.memory().resident_bytes
    };
    let users = Users::new(20 * one, 50);
    for round in 0..4 {
        for i in 0..10 {
            let name = format!("user-{round}{i}");
            users.write(&db, &name, |r| r.record.append(1, Arc::new(Batch { time: 1, ..items(0..10) }), 50)).unwrap();
        }
        users.tick();
    }
    assert_eq!(users.memory().resident_users, 40);
    assert!(users.sweep(u64::MAX) >= 20);
    let MemoryUse { resident_users, resident_bytes, evicted_users } = users.memory();
    assert!(resident_bytes <= 18 * one, "down to 90 % of the budget: {resident_bytes} > 18 × {one}");
    assert_eq!(resident_users as u64 + evicted_users, 40);
    for i in 0..10 {
        assert!(!users.is_resident(&format!("user-0{i}")), "the least recently used went first");
        assert!(users.is_resident(&format!("user-3{i}")), "the most recently used stayed");
    }
    assert_eq!(users.sweep(u64::MAX), 0, "under the budget nothing goes");
}

#[test]
fn the_writer_evicts_idle_records_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        RedbStore::open_with(dir.path(), StoreConfig { cache_bytes: 0, max_batches: 3, ..StoreConfig::default() })
            .unwrap();
    for t in 1..=5 {
        store.append_batch("appender", 1, batch(t)).unwrap();
    }
    for i in 0..10 {
        store.with_user(&format!("reader-{i}"), |_| ()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.memory().resident_users > 0 {
        assert!(Instant::now() < deadline, "the writer never evicted: {:?}", store.memory());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(store.memory(), MemoryUse { resident_users: 0, resident_bytes: 0, evicted_users: 11 });
    let kept = store.with_user("appender", |u| u.channel(1).batches().map(|b| b.time).collect::<Vec<_>>()).unwrap();
    assert_eq!(kept, [3, 4, 5], "the evicted appender reloads its committed, trimmed history");
    store.close().unwrap();
}
