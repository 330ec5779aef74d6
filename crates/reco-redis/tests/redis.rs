//! `RedisStore` against real Redis: the store conformance suite on one `redis-server` and on a
//! 3-master Redis Cluster (both started here, see `harness`), the key layout's slots, and
//! opening failures. Every test is bounded by a timeout.

mod harness;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use harness::{Cluster, bounded};
use reco_engine::conformance;
use reco_engine::model::{Action, Article};
use reco_engine::store::{
    AppendOutcome, Batch, BatchItem, DEFAULT_MAX_BATCHES, EventKey, EventRecord, Sources, Store, StoreError,
};
use reco_redis::{RedisOptions, RedisStore};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn conformance_on_one_server() {
    bounded(LIMIT, || {
        let server = harness::server();
        conformance::run_all(&harness::open(&server.url(), "all", DEFAULT_MAX_BATCHES));
        conformance::catalog_log(&harness::open(&server.url(), "catalog-log", DEFAULT_MAX_BATCHES));
        conformance::event_log_trimming(&harness::open(&server.url(), "log-trim", DEFAULT_MAX_BATCHES));
    });
}

#[test]
fn conformance_on_a_cluster() {
    bounded(LIMIT, || {
        let cluster = Cluster::start();
        conformance::run_all(&harness::open(&cluster.url(), "all", DEFAULT_MAX_BATCHES));
        conformance::catalog_log(&harness::open(&cluster.url(), "catalog-log", DEFAULT_MAX_BATCHES));
        conformance::event_log_trimming(&harness::open(&cluster.url(), "log-trim", DEFAULT_MAX_BATCHES));
    });
}

#[test]
fn trimming_with_a_small_bound_on_one_server() {
    bounded(LIMIT, || {
        let server = harness::server();
        for max_batches in [1, 3] {
            conformance::trimming(&harness::open(&server.url(), "trim", max_batches), max_batches);
        }
    });
}

#[test]
fn trimming_with_a_small_bound_on_a_cluster() {
    bounded(LIMIT, || {
        let cluster = Cluster::start();
        for max_batches in [1, 3] {
            conformance::trimming(&harness::open(&cluster.url(), "trim", max_batches), max_batches);
        }
    });
}

fn batch(time: i64, ids: &[i64]) -> Batch {
    Batch {
        time,
        request_id: 1,
        bucket: 0,
        items: ids.iter().map(|&article_id| BatchItem { article_id, sources: Sources::HOT }).collect(),
    }
}

fn article(id: i64) -> Article {
    Article {
        id,
        channel_id: 1,
        title: format!("t{id}"),
        author: "a".to_owned(),
        publish_time: id,
        keywords: vec![],
        summary: String::new(),
        cover: String::new(),
    }
}

fn read_event(key: u8, user: &str, id: i64) -> EventRecord {
    EventRecord {
        key: EventKey([key; 16]),
        user: user.to_owned(),
        channel: 1,
        action: Action::Read,
        article_ids: vec![id],
        time: 1_700_000_000_000,
        read_ms: 1_000,
        popularity_log2: 0.5,
        sources: vec![Sources::HOT],
        position: Some(0),
        bucket: 0,
    }
}

/// Users whose ids would break a raw hash tag, or need encoding.
const AWKWARD_USERS: [&str; 5] = ["plain", "a}b", "{x}", "}{", "用户-é"];

#[test]
fn a_users_keys_share_a_slot_and_the_event_keys_share_one() {
    bounded(LIMIT, || {
        let cluster = Cluster::start();
        // One batch kept: the second append trims the first, so every user key exists.
        let store = harness::open(&cluster.url(), "slots", 1);
        for (i, user) in AWKWARD_USERS.iter().enumerate() {
            for time in [1, 2] {
                assert!(matches!(
                    store.append_batch(user, 3, batch(time, &[time])).unwrap(),
                    AppendOutcome::Appended { .. }
                ));
            }
            assert_eq!(store.record_events(&[read_event(i as u8, user, 7)]).unwrap(), vec![Some(i as u64 + 1)]);
            let record =
                store.with_user(user, |u| (u.channel(3).latest_time(), u.channel(3).was_served(1), u.has_read(7)));
            assert_eq!(record.unwrap(), (2, true, true), "user {user:?} reads back");

            let keys = store.keys().user(user);
            let slots: HashSet<u16> = [&keys.batches, &keys.trimmed, &keys.read].map(|k| cluster.keyslot(k)).into();
            assert_eq!(slots.len(), 1, "the keys of {user:?} share a slot: {keys:?}");
            for key in [&keys.batches, &keys.trimmed, &keys.read] {
                assert!(cluster.exists(key), "{key} holds {user:?}'s data");
            }
        }
        let events = store.keys().events();
        let today = format!("{}{}", events.keys_of_day, harness::today());
        let yesterday = format!("{}{}", events.keys_of_day, harness::today() - 1);
        let slots: HashSet<u16> = [&today, &yesterday, &events.seq, &events.log, &events.counters, &events.trimmed]
            .map(|k| cluster.keyslot(k))
            .into();
        assert_eq!(slots.len(), 1, "the event keys share a slot: {events:?}");
        assert!([&today, &events.seq, &events.log, &events.counters].iter().all(|k| cluster.exists(k)));
        let catalog = store.keys().catalog();
        store.upsert_articles(&[article(1)]).unwrap();
        let slots: HashSet<u16> =
            [&catalog.articles, &catalog.retracted, &catalog.seq, &catalog.changes].map(|k| cluster.keyslot(k)).into();
        assert_eq!(slots.len(), 1, "the catalog keys share a slot: {catalog:?}");
        assert!([&catalog.articles, &catalog.seq, &catalog.changes].iter().all(|k| cluster.exists(k)));

        // A raw id in the tag would put every user starting with `x}` in the slot of `{u:x}`.
        let spread: HashSet<u16> =
            (0..8).map(|i| cluster.keyslot(&store.keys().user(&format!("x}}{i}")).batches)).collect();
        assert!(spread.len() > 1, "users sharing a prefix before a brace spread over slots");
    });
}

#[test]
fn event_keys_are_remembered_for_the_dedup_window_and_then_expire() {
    bounded(LIMIT, || {
        let server = harness::server();
        let store = harness::open(&server.url(), "dedup", DEFAULT_MAX_BATCHES);
        let keys = store.keys().events();
        assert_eq!(store.record_events(&[read_event(1, "u", 7)]).unwrap(), vec![Some(1)]);
        let today = format!("{}{}", keys.keys_of_day, harness::today());
        let ttl: u64 = server.command(&["TTL", &today]).unwrap().trim_start_matches(':').parse().unwrap();
        assert!(
            (32 * 86_400..=33 * 86_400).contains(&ttl),
            "today's keys live the 32-day window and a day more after the last addition: {ttl} s"
        );
        // A key stored on a day inside the window is a duplicate; one from before it is not
        // (its param has expired by then, so the engine refuses it before the store sees it).
        for (days_ago, key, expect) in [(31, 2u8, None), (40, 3u8, Some(2))] {
            let set = format!("{}{}", keys.keys_of_day, harness::today() - days_ago);
            let raw: String = std::iter::repeat_n(char::from(key), 16).collect();
            server.command(&["SADD", &set, &raw]).unwrap();
            assert_eq!(store.record_events(&[read_event(key, "u", 7)]).unwrap(), vec![expect], "{days_ago} days ago");
        }
    });
}

/// What a refresh asks of the store (read the user, append the batch) is two round trips on
/// one server and on a cluster, once the append script is loaded on its node.
#[test]
fn a_refresh_is_two_round_trips() {
    bounded(LIMIT, || {
        let server = harness::server();
        let cluster = Cluster::start();
        for url in [server.url(), cluster.url()] {
            let store = harness::open(&url, "round-trips", DEFAULT_MAX_BATCHES);
            let refresh = |user: &str, time: i64| {
                let before = store.round_trips();
                store.with_user(user, |u| u.channel(1).served_count()).unwrap();
                store.append_batch(user, 1, batch(time, &[time])).unwrap();
                store.round_trips() - before
            };
            // A user's first append on a node may load the script there (NOSCRIPT, then
            // SCRIPT LOAD and the call again): each user's first refresh is not counted.
            refresh("a", 1);
            refresh("b", 2);
            for (user, time) in [("a", 3), ("a", 4), ("b", 5)] {
                assert_eq!(refresh(user, time), 2, "{url}: {user} at {time}");
            }
        }
    });
}

#[test]
fn two_stores_on_one_prefix_share_the_state_and_never_both_win_a_time() {
    bounded(LIMIT, || {
        let cluster = Cluster::start();
        let options = RedisOptions { prefix: harness::prefix("replicas"), ..RedisOptions::default() };
        let replicas = [
            RedisStore::open(&cluster.url(), options.clone()).unwrap(),
            RedisStore::open(&cluster.url(), options).unwrap(),
        ];
        let wins = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for (r, store) in replicas.iter().enumerate() {
                let wins = &wins;
                s.spawn(move || {
                    for time in 1..=30 {
                        if let AppendOutcome::Appended { .. } =
                            store.append_batch("shared", 1, batch(time, &[time * 10 + r as i64])).unwrap()
                        {
                            wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // A replica that runs ahead makes the other's older times stale: not every time is
        // stored, but every win is, once (a second batch at a won time would not rebuild:
        // `with_user` appends in time order, which refuses it, so `kept` would fall short).
        let kept = replicas[1].with_user("shared", |u| u.channel(1).batches().count()).unwrap();
        assert_eq!(wins.into_inner(), kept, "every win is stored and no batch won twice");
        assert!(kept >= 1);
        replicas[0].put_meta("secret", b"s").unwrap();
        assert_eq!(replicas[1].get_meta("secret").unwrap().as_deref(), Some(&b"s"[..]), "meta is shared");
    });
}

#[test]
fn a_retried_report_repairs_a_read_set_a_crash_left_behind() {
    bounded(LIMIT, || {
        let server = harness::server();
        let store = harness::open(&server.url(), "repair", DEFAULT_MAX_BATCHES);
        let event = read_event(1, "reader", 42);
        assert_eq!(store.record_events(std::slice::from_ref(&event)).unwrap(), vec![Some(1)]);
        // What a crash between the script and the read-set update leaves: the event logged,
        // the read set without it.
        let read_key = store.keys().user("reader").read;
        assert_eq!(server.command(&["DEL", &read_key]).unwrap(), ":1");
        assert!(!store.with_user("reader", |u| u.has_read(42)).unwrap());
        assert_eq!(store.record_events(&[event]).unwrap(), vec![None], "the retry is a duplicate");
        assert!(store.with_user("reader", |u| u.has_read(42)).unwrap(), "and fills the read set again");
        assert_eq!(store.counters(&[42]).unwrap()[0].reads, 1, "counted once");
    });
}

#[test]
fn counters_saturate_in_the_script() {
    bounded(LIMIT, || {
        let server = harness::server();
        let store = harness::open(&server.url(), "saturate", DEFAULT_MAX_BATCHES);
        let huge = |key: u8| EventRecord { read_ms: u64::MAX - 1, ..read_event(key, "u", 5) };
        assert_eq!(store.record_events(&[huge(1), huge(2)]).unwrap(), vec![Some(1), Some(2)]);
        let c = store.counters(&[5]).unwrap()[0];
        assert_eq!((c.reads, c.read_ms), (2, u64::MAX), "read_ms stops at u64::MAX");
        let carry = |key: u8, read_ms: u64| EventRecord { read_ms, ..read_event(key, "u", 6) };
        store.record_events(&[carry(3, u64::from(u32::MAX)), carry(4, 1), carry(5, 1 << 40)]).unwrap();
        assert_eq!(store.counters(&[6]).unwrap()[0].read_ms, u64::from(u32::MAX) + 1 + (1 << 40), "exact past 2^32");
    });
}

#[test]
fn long_logs_and_big_hashes_are_read_page_by_page() {
    bounded(LIMIT, || {
        let server = harness::server();
        let store = harness::open(&server.url(), "pages", DEFAULT_MAX_BATCHES);
        // 2.5 pages of the log and of each hash scan.
        let n = 2_500i64;
        let click = |i: i64| {
            let mut key = [0; 16];
            key[..8].copy_from_slice(&i.to_le_bytes());
            EventRecord { key: EventKey(key), action: Action::Click, ..read_event(0, "pager", i) }
        };
        let events: Vec<EventRecord> = (1..=n).map(click).collect();
        for (report, chunk) in events.chunks(500).enumerate() {
            let first = report as u64 * 500 + 1;
            let expected: Vec<Option<u64>> = (first..first + chunk.len() as u64).map(Some).collect();
            assert_eq!(store.record_events(chunk).unwrap(), expected);
        }
        let mut logged = Vec::new();
        store.scan_events(0, &mut |seq, e| logged.push((seq, e))).unwrap();
        assert_eq!(logged.len(), events.len(), "every page is read");
        assert!(
            logged.iter().zip(&events).enumerate().all(|(i, ((seq, got), want))| *seq == i as u64 + 1 && got == want)
        );
        let mut tail = Vec::new();
        store.scan_events(1_234, &mut |seq, _| tail.push(seq)).unwrap();
        assert_eq!(tail, (1_235..=n as u64).collect::<Vec<_>>());
        let mut none = 0;
        store.scan_events(u64::MAX, &mut |_, _| none += 1).unwrap();
        assert_eq!(none, 0);

        let mut counted: Vec<i64> = store
            .all_counters()
            .unwrap()
            .into_iter()
            .map(|(id, c)| (id, c.clicks))
            .filter(|&(_, clicks)| clicks == 1)
            .map(|(id, _)| id)
            .collect();
        counted.sort_unstable();
        assert_eq!(counted, (1..=n).collect::<Vec<_>>(), "one click counted per article");

        let articles: Vec<Article> = (1..=n).map(article).collect();
        store.upsert_articles(&articles).unwrap();
        let mut loaded = store.load_articles().unwrap();
        loaded.sort_by_key(|a| a.id);
        assert_eq!(loaded, articles);
        assert_eq!(store.get_articles(&[n, n + 1]).unwrap(), vec![Some((article(n), None)), None]);
    });
}

#[test]
fn an_unreachable_or_silent_redis_fails_quickly_naming_the_url() {
    bounded(LIMIT, || {
        // Nothing listening, and a listener that accepts connections but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        for url in [
            format!("redis://127.0.0.1:{}/0", harness::free_port(false)),
            format!("redis+cluster://127.0.0.1:{}", harness::free_port(false)),
            format!("redis://127.0.0.1:{silent_port}/0"),
            format!("redis+cluster://127.0.0.1:{silent_port}"),
        ] {
            let started = Instant::now();
            let options = RedisOptions { connect_timeout: Duration::from_millis(500), ..RedisOptions::default() };
            let Err(err) = RedisStore::open(&url, options) else { panic!("{url} opened with nothing listening") };
            assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
            assert!(err.to_string().contains(&url), "the error names {url}: {err}");
            assert!(started.elapsed() < Duration::from_secs(5), "{url} failed after {:?}", started.elapsed());
        }
        let Err(err) = RedisStore::open("http://127.0.0.1:1", RedisOptions::default()) else { panic!("http opened") };
        assert!(err.to_string().contains("redis+cluster://host1:port1"), "the error names the accepted forms: {err}");
        let braces = RedisOptions { prefix: "a{b}".to_owned(), ..RedisOptions::default() };
        assert!(RedisStore::open("redis://127.0.0.1:1/0", braces).is_err(), "a prefix with braces is refused");
    });
}

#[test]
fn a_call_to_a_redis_that_stopped_answering_fails_within_the_call_timeout() {
    bounded(LIMIT, || {
        let server = harness::server();
        let options = RedisOptions {
            prefix: harness::prefix("stalled"),
            call_timeout: Duration::from_millis(500),
            ..RedisOptions::default()
        };
        let store = RedisStore::open(&server.url(), options).unwrap();
        store.put_meta("k", b"v").unwrap();
        server.signal("STOP");
        let started = Instant::now();
        let err = store.get_meta("k").unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "failed after {:?}", started.elapsed());
        server.signal("CONT");
        assert_eq!(store.get_meta("k").unwrap().as_deref(), Some(&b"v"[..]), "the store recovers");
    });
}

#[test]
fn what_was_acknowledged_survives_a_redis_crash_on_each_node_of_a_cluster() {
    bounded(LIMIT, || {
        let mut cluster = Cluster::start();
        let store = harness::open(&cluster.url(), "crash", DEFAULT_MAX_BATCHES);
        let users: Vec<String> = (0..8).map(|i| format!("crash-user-{i}")).collect();
        for (i, user) in users.iter().enumerate() {
            let time = 100 + i as i64;
            assert_eq!(
                store.append_batch(user, 3, batch(time, &[time])).unwrap(),
                AppendOutcome::Appended { previous: 0 }
            );
            assert_eq!(store.record_events(&[read_event(i as u8, user, time)]).unwrap(), vec![Some(i as u64 + 1)]);
        }
        // SIGKILL every node in turn and start it again on its files: the users' slots are
        // spread over the nodes, the event slot lives on one of them.
        for node in &mut cluster.nodes {
            node.restart();
        }
        cluster.wait_ok();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, user) in users.iter().enumerate() {
            let time = 100 + i as i64;
            let kept = loop {
                match store.with_user(user, |u| (u.channel(3).latest_time(), u.has_read(time))) {
                    Ok(kept) => break kept,
                    Err(e) => assert!(Instant::now() < deadline, "no recovery after 30 s: {e}"),
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert_eq!(kept, (time, true), "{user}'s batch and read survived");
        }
        let replayed: Vec<EventRecord> =
            users.iter().enumerate().map(|(i, u)| read_event(i as u8, u, 100 + i as i64)).collect();
        assert_eq!(store.record_events(&replayed).unwrap(), vec![None; users.len()], "every event is still known");
        let mut logged = 0;
        store.scan_events(0, &mut |_, _| logged += 1).unwrap();
        assert_eq!(logged, users.len(), "and logged once");
    });
}
