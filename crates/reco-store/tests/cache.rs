//! The memory bounds of `RedbStore` through its public API: history trimmed to `max_batches`
//! with the served set intact, in memory and after reopen; many threads on a few users under
//! a cache that evicts all the time, losing nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use reco_engine::model::{Action, ArticleId, ChannelId};
use reco_engine::store::{AppendOutcome, Batch, BatchItem, EventKey, EventRecord, MemStore, Sources, Store};
use reco_store::{RedbStore, StoreConfig};

fn batch(time: i64, ids: &[ArticleId]) -> Batch {
    Batch {
        time,
        request_id: time as u64 ^ 0x5555,
        bucket: (time % 2) as u8,
        items: ids.iter().map(|&article_id| BatchItem { article_id, sources: Sources::AFFINITY }).collect(),
    }
}

fn open(dir: &Path, max_batches: usize) -> RedbStore {
    RedbStore::open_with(dir, StoreConfig { max_batches, ..StoreConfig::default() }).unwrap()
}

#[test]
fn defaults_are_documented_values() {
    assert_eq!(
        StoreConfig::default(),
        StoreConfig { cache_bytes: 256 << 20, max_batches: 50, db_cache_bytes: 64 << 20 }
    );
    assert_eq!(StoreConfig::default().max_batches, reco_engine::store::DEFAULT_MAX_BATCHES);
}

#[test]
fn the_oldest_batches_fall_off_history_but_stay_served_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (max, k) = (5usize, 7i64);
    let n = max as i64 + k;
    let ids = |t: i64| [t * 10, t * 10 + 1];
    let check = |store: &RedbStore, what: &str| {
        store
            .with_user("u", |u| {
                let h = u.channel(1);
                let kept: Vec<i64> = h.batches().map(|b| b.time).collect();
                assert_eq!(kept, (k + 1..=n).collect::<Vec<_>>(), "{what}: the newest {max} are kept");
                assert_eq!(
                    h.at_or_before(k + 1).map(|(b, older)| (b.as_ref().clone(), older)),
                    Some((batch(k + 1, &ids(k + 1)), 0))
                );
                assert!(h.at_or_before(k).is_none(), "{what}: a trimmed batch reads as history's end");
                assert!((1..=n).all(|t| ids(t).iter().all(|&id| h.was_served(id))), "{what}: every id stays served");
                assert_eq!(h.served_count(), 2 * n as usize);
                assert_eq!(h.trimmed(), (1..=k).flat_map(ids).collect::<Vec<_>>());
                assert_eq!(u.channel(2).batches().count(), 1, "{what}: other channels keep their own");
            })
            .unwrap();
    };
    {
        let store = open(dir.path(), max);
        for t in 1..=n {
            assert_eq!(
                store.append_batch("u", 1, batch(t, &ids(t))).unwrap(),
                AppendOutcome::Appended { previous: t - 1 }
            );
        }
        store.append_batch("u", 2, batch(1, &[99])).unwrap();
        assert_eq!(store.append_batch("u", 1, batch(1, &[5])).unwrap(), AppendOutcome::Stale { latest: n });
        check(&store, "in memory");
        store.close().unwrap();
    }
    check(&open(dir.path(), max), "after reopen");
    // A larger bound brings nothing back: the trimmed rows are gone from the file.
    check(&open(dir.path(), 100), "reopened with a larger bound");

    // MemStore trims the same way.
    let mem = MemStore::with_max_batches(max);
    for t in 1..=n {
        mem.append_batch("u", 1, batch(t, &ids(t))).unwrap();
    }
    let mem_kept = mem.with_user("u", |u| u.channel(1).batches().map(|b| b.time).collect::<Vec<_>>()).unwrap();
    assert_eq!(mem_kept, (k + 1..=n).collect::<Vec<_>>());
}

#[test]
fn many_threads_on_a_few_users_under_a_tiny_cache_lose_nothing() {
    const THREADS: usize = 4;
    const STEPS: usize = 400;
    const MAX: usize = 8;
    let users = ["a", "b", "c"];
    let dir = tempfile::tempdir().unwrap();
    let store =
        RedbStore::open_with(dir.path(), StoreConfig { cache_bytes: 0, max_batches: MAX, ..StoreConfig::default() })
            .unwrap();
    let clock = AtomicI64::new(0);
    let (done, finished) = mpsc::channel();
    let (appended, reads, evicted) = std::thread::scope(|s| {
        let store = &store;
        let clock = &clock;
        s.spawn(move || {
            let results: Vec<_> = (0..THREADS)
                .map(|t| {
                    s.spawn(move || {
                        let mut appended = Vec::new();
                        let mut reads = Vec::new();
                        for step in 0..STEPS {
                            let user = users[(t + step) % users.len()];
                            let channel = (step % 2) as ChannelId;
                            match step % 4 {
                                0 | 1 => {
                                    let time = clock.fetch_add(1, Ordering::Relaxed) + 1;
                                    let b = batch(time, &[time * 2, time * 2 + 1]);
                                    if let AppendOutcome::Appended { .. } =
                                        store.append_batch(user, channel, b.clone()).unwrap()
                                    {
                                        appended.push((user, channel, b));
                                    }
                                }
                                2 => {
                                    let id = 1_000_000 + (t * STEPS + step) as ArticleId;
                                    let mut key = [0; 16];
                                    key[..8].copy_from_slice(&id.to_le_bytes());
                                    let event = EventRecord {
                                        key: EventKey(key),
                                        user: user.to_owned(),
                                        channel,
                                        action: if step % 8 == 2 { Action::Read } else { Action::Dislike },
                                        article_ids: vec![id],
                                        time: 1,
                                        read_ms: 10,
                                        popularity_log2: 0.0,
                                        sources: vec![Sources::HOT],
                                        position: Some(0),
                                        bucket: 0,
                                    };
                                    assert!(store.record_events(&[event]).unwrap()[0].is_some());
                                    reads.push((user, id));
                                }
                                _ => {
                                    let ok = store
                                        .with_user(user, |u| {
                                            let h = u.channel(channel);
                                            h.batches().count() <= MAX
                                                && h.batches()
                                                    .all(|b| b.items.iter().all(|i| h.was_served(i.article_id)))
                                        })
                                        .unwrap();
                                    assert!(ok, "history stays within the bound and served");
                                    // Readers of other users keep the cache churning.
                                    store.with_user(&format!("reader-{t}-{step}"), |_| ()).unwrap();
                                }
                            }
                        }
                        (appended, reads)
                    })
                })
                .collect();
            let mut appended = Vec::new();
            let mut reads = Vec::new();
            for r in results {
                let (a, r) = r.join().unwrap();
                appended.extend(a);
                reads.extend(r);
            }
            store.flush().unwrap();
            let _ = done.send((appended, reads, store.memory().evicted_users));
        });
        finished.recv_timeout(Duration::from_secs(120)).expect("the threads finished in time (no deadlock)")
    });
    assert!(evicted > 0, "the tiny cache evicted");
    store.close().unwrap();

    let store =
        RedbStore::open_with(dir.path(), StoreConfig { cache_bytes: 0, max_batches: MAX, ..StoreConfig::default() })
            .unwrap();
    let mut per_channel: BTreeMap<(&str, ChannelId), Vec<Batch>> = BTreeMap::new();
    for (user, channel, b) in appended {
        per_channel.entry((user, channel)).or_default().push(b);
    }
    for ((user, channel), mut batches) in per_channel {
        batches.sort_by_key(|b| b.time);
        let kept = batches[batches.len().saturating_sub(MAX)..].to_vec();
        store
            .with_user(user, |u| {
                let h = u.channel(channel);
                assert_eq!(
                    h.batches().map(|b| b.as_ref().clone()).collect::<Vec<_>>(),
                    kept,
                    "{user}/{channel}: the newest kept"
                );
                for b in &batches {
                    assert!(b.items.iter().all(|i| h.was_served(i.article_id)), "{user}/{channel}: every id served");
                }
            })
            .unwrap();
    }
    let read: BTreeSet<(&str, ArticleId)> = reads.into_iter().collect();
    for (user, id) in read {
        assert!(store.with_user(user, |u| u.has_read(id)).unwrap(), "{user} read {id}");
    }
}
