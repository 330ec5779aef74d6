use std::sync::Arc;
use std::time::Instant;

use reco_engine::model::Action;
use reco_engine::store::{Batch, BatchItem, EventKey, EventRecord, Sources, Store};
use reco_store::RedbStore;

fn batch(time: i64, n: i64) -> Batch {
    Batch { time, request_id: time as u64, items: (0..n).map(|i| BatchItem { article_id: time * 100 + i, sources: Sources::FRESH }).collect() }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    for u in &users {
        store.with_user(u, |_| ()).unwrap();
    }
    for n in [10, 100] {
        let rounds = if n == 10 { 200 } else { 50 };
        let t = Instant::now();
        let mut ops = 0u64;
        for r in 0..rounds {
            for u in &users {
                store.append_batch(u, n as i32, batch(r + 1, n)).unwrap();
                ops += 1;
            }
        }
        let el = t.elapsed();
        println!("append_batch ({n} items, cached user): {:.0} ns/op over {ops} ops", el.as_nanos() as f64 / ops as f64);
        let t = Instant::now();
        store.flush().unwrap();
        println!("  flush after that: {:?}", t.elapsed());
    }
    let t = Instant::now();
    let mut ops = 0u64;
    let mut sum = 0i64;
    for _ in 0..500 {
        for u in &users {
            sum += store.with_user(u, |r| r.channel(10).latest_time() + r.channel(10).was_served(5) as i64).unwrap();
            ops += 1;
        }
    }
    println!("with_user (cached user): {:.0} ns/op over {ops} ops ({sum})", t.elapsed().as_nanos() as f64 / ops as f64);

    for per_call in [1usize, 10] {
        let callers = 16;
        let calls = if per_call == 1 { 400 } else { 100 };
        let t = Instant::now();
        std::thread::scope(|s| {
            for c in 0..callers {
                let store = &store;
                s.spawn(move || {
                    for i in 0..calls {
                        let events: Vec<EventRecord> = (0..per_call)
                            .map(|j| {
                                let mut k = [0u8; 16];
                                k[..8].copy_from_slice(&((per_call as u64) << 56 | (c as u64) << 40 | (i as u64) << 8 | j as u64).to_le_bytes());
                                EventRecord {
                                    key: EventKey(k),
                                    user: format!("user-{}", (c * 7 + i) % 1000),
                                    channel: 1,
                                    action: if j % 2 == 0 { Action::Click } else { Action::Read },
                                    article_ids: vec![(i * 13 + j) as i64 % 5000],
                                    time: 1_700_000_000_000,
                                    read_ms: 1000,
                                    popularity_log2: 1.0,
                                }
                            })
                            .collect();
                        store.record_events(&events).unwrap();
                    }
                });
            }
        });
        let el = t.elapsed();
        let events = callers * calls * per_call;
        println!(
            "record_events, 16 callers x {calls} calls x {per_call} events: {:.0} events/s, {:.0} calls/s",
            events as f64 / el.as_secs_f64(),
            (callers * calls) as f64 / el.as_secs_f64()
        );
    }
}
