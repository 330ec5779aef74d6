//! An acknowledged event survives `kill -9`: this test re-runs its own binary as a child that
//! records events from several threads and prints an `ack` line for each acknowledged call,
//! with the log sequence number of each event; the parent checks that the live child's data
//! dir is locked, kills the child with SIGKILL mid-stream, reopens the store and checks every
//! ack: the event is stored, and logged once under the number the child was given.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reco_engine::model::Action;
use reco_engine::store::{ArticleCounters, Batch, BatchItem, EventKey, EventRecord, Sources, Store, StoreError};
use reco_store::RedbStore;

const CHILD_ENV: &str = "RECO_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_events_survive_kill_9";
const CHILD_THREADS: u64 = 4;
/// Acks the parent waits for before it kills the child.
const KILL_AFTER_ACKS: usize = 300;

fn key(thread: u64, call: u64, n: u64) -> EventKey {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&(thread << 48 | call << 8 | n).to_le_bytes());
    EventKey(k)
}

fn event(thread: u64, call: u64, n: u64) -> EventRecord {
    let action =
        [Action::Exposure, Action::Click, Action::Read, Action::Share, Action::Dislike][((call + n) % 5) as usize];
    EventRecord {
        key: key(thread, call, n),
        user: format!("user-{}", call % 7),
        channel: 1,
        action,
        article_ids: if action == Action::Exposure { vec![1, 2, 3] } else { vec![((call + n) % 6) as i64 + 1] },
        time: 1_700_000_000_000 + call as i64,
        read_ms: if action == Action::Read { 1_000 * n } else { 0 },
        popularity_log2: if action == Action::Exposure { f64::NEG_INFINITY } else { (call % 3) as f64 },
        sources: if action == Action::Exposure {
            vec![Sources::FRESH, Sources::HOT, Sources::SIMILAR.union(Sources::EXPLORE)]
        } else {
            vec![Sources::AFFINITY]
        },
        position: (action != Action::Exposure).then_some((n % 3) as u32),
        bucket: (thread % 2) as u8,
    }
}

/// The child: records until killed (or, should the parent be gone, for a bounded time).
fn child(dir: &Path) {
    let store = RedbStore::open(dir).expect("child opens the store");
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        for thread in 0..CHILD_THREADS {
            let store = &store;
            s.spawn(move || {
                for call in 0..100_000 {
                    if Instant::now() > deadline {
                        return;
                    }
                    let events: Vec<_> = (0..=call % 3).map(|n| event(thread, call, n)).collect();
                    let seqs = store.record_events(&events).expect("record events");
                    store
                        .append_batch(
                            &format!("user-{thread}"),
                            1,
                            Batch {
                                time: call as i64 + 1,
                                request_id: call,
                                bucket: 0,
                                items: vec![BatchItem { article_id: 1, sources: Sources::FRESH }],
                            },
                        )
                        .expect("append batch");
                    // Every key is new: each event gets a number.
                    let keys: Vec<String> = events
                        .iter()
                        .zip(seqs)
                        .map(|(e, seq)| format!("{}:{}", hex(&e.key), seq.expect("a new key gets a number")))
                        .collect();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {}", keys.join(",")).expect("print ack");
                    out.flush().expect("flush ack");
                }
            });
        }
    });
}

fn hex(key: &EventKey) -> String {
    key.0.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn acknowledged_events_survive_kill_9() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // (key, sequence number) of each acknowledged event.
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut killed = false;
    let mut locked_checked = false;
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill was never a full ack.
        if let Some(keys) = line.strip_prefix("ack ").and_then(|l| l.strip_suffix('\n')) {
            acked.extend(keys.split(',').map(|ack| {
                let (key, seq) = ack.split_once(':').expect("key:seq");
                (key.to_owned(), seq.parse().expect("a sequence number"))
            }));
        }
        if !locked_checked && !acked.is_empty() {
            // The live child holds the data dir: another process cannot open it.
            match RedbStore::open(dir.path()) {
                Err(StoreError::Locked(msg)) => assert!(msg.contains("reco serve"), "{msg}"),
                Err(e) => panic!("expected Locked while the child runs, got {e}"),
                Ok(_) => panic!("opened a data dir that a live process holds"),
            }
            locked_checked = true;
        }
        if !killed && acked.len() >= KILL_AFTER_ACKS {
            // std's Child::kill is SIGKILL: no destructor, no flush.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped before {KILL_AFTER_ACKS} acks ({status})");

    let store = RedbStore::open(dir.path()).expect("reopen after kill -9");
    let mut stored = HashMap::new();
    store
        .for_each_event(|e| {
            stored.insert(hex(&e.key), e);
        })
        .unwrap();
    let missing: Vec<_> = acked.iter().filter(|(k, _)| !stored.contains_key(k)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged events are lost: {missing:?}", missing.len(), acked.len());

    // The log holds every stored event once, numbered 1, 2, 3, ... and each acknowledged event
    // under the number its caller was given.
    let mut logged: Vec<(u64, EventRecord)> = Vec::new();
    store.scan_events(0, &mut |seq, e| logged.push((seq, e))).unwrap();
    assert!(
        logged.iter().map(|(seq, _)| *seq).eq(1..=logged.len() as u64),
        "the log is numbered from 1 without gap or repeat"
    );
    assert_eq!(logged.len(), stored.len(), "every stored event is logged");
    let mut log_seq: HashMap<String, u64> = HashMap::new();
    for (seq, e) in &logged {
        let key = hex(&e.key);
        assert_eq!(&stored[&key], e, "the log gives the stored event");
        assert!(log_seq.insert(key, *seq).is_none(), "event {} is logged twice", hex(&e.key));
    }
    for (key, seq) in &acked {
        assert_eq!(log_seq[key], *seq, "event {key} is logged under its acknowledged number");
    }
    let last = logged.last().map_or(0, |(seq, _)| *seq);
    assert!(last >= acked.len() as u64);
    let mut beyond = 0;
    store.scan_events(last, &mut |_, _| beyond += 1).unwrap();
    assert_eq!(beyond, 0, "nothing is logged after the last number");

    // Counters and read sets were committed with their events: they match the log exactly.
    let mut expected: HashMap<i64, ArticleCounters> = HashMap::new();
    for e in stored.values() {
        for &id in &e.article_ids {
            expected.entry(id).or_default().apply(e);
        }
    }
    let mut actual: HashMap<i64, ArticleCounters> = store.all_counters().unwrap().into_iter().collect();
    assert_eq!(actual.len(), expected.len());
    for (id, want) in &expected {
        let got = actual.remove(id).unwrap();
        // popularity is a float sum whose order differs: compare it with a tolerance.
        assert!((got.popularity_log2 - want.popularity_log2).abs() < 1e-9, "article {id}: {got:?} vs {want:?}");
        assert_eq!(
            ArticleCounters { popularity_log2: 0.0, ..got },
            ArticleCounters { popularity_log2: 0.0, ..*want },
            "article {id}"
        );
    }
    for e in stored.values().filter(|e| e.hides()) {
        assert!(
            store.with_user(&e.user, |u| e.article_ids.iter().all(|&id| u.has_read(id))).unwrap(),
            "read set of {}",
            e.user
        );
    }
    // Batches written behind may be lost, but what was committed loads cleanly.
    for thread in 0..CHILD_THREADS {
        store.with_user(&format!("user-{thread}"), |u| u.channel(1).batches().count()).unwrap();
    }
    // Replaying every acknowledged event changes nothing.
    let replay: Vec<EventRecord> = acked.iter().map(|(k, _)| stored[k].clone()).collect();
    assert!(
        store.record_events(&replay).unwrap().iter().all(Option::is_none),
        "acknowledged events are duplicates after restart"
    );
    // The numbering goes on after the last number the killed process committed.
    assert_eq!(store.record_events(&[event(CHILD_THREADS, 0, 0)]).unwrap(), vec![Some(last + 1)]);
    store.close().unwrap();
}
