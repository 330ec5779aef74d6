//! Prints the engine's in-process latency of a refresh (candidates, ranking, params) and of a
//! report, on a large catalog with users who have clicked before: the engine's share of a feed
//! request, without gRPC.
//!
//! `cargo run --release -p reco-engine --example feed_latency -- [articles] [users] [requests]
//! [article_num] [reports]` (defaults 100000 2000 20000 10 1; `reports` 0: refreshes only, as
//! `scripts/bench.sh` sends them, so the model stays empty).

use std::time::Instant;

use reco_engine::catalog::demo_articles;
use reco_engine::store::{MemStore, Store};
use reco_engine::{Engine, EngineConfig, FeedRequest, ReportedEvent};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("numbers"));
    let articles = args.next().unwrap_or(100_000);
    let users = args.next().unwrap_or(2_000);
    let requests = args.next().unwrap_or(20_000);
    let article_num = args.next().unwrap_or(10) as u32;
    let reports = args.next().unwrap_or(1) != 0;
    let now: i64 = 1_763_900_000_000;

    let started = Instant::now();
    let store = MemStore::new();
    store.upsert_articles(&demo_articles(1, now, articles)).expect("memory store");
    let engine = Engine::new(store, b"feed-latency-secret-0123", EngineConfig::default()).expect("engine");
    println!("catalog={articles} build_ms={}", started.elapsed().as_millis());

    let event = |param: &str, read: i64| ReportedEvent {
        param: param.to_owned(),
        action_time: 0,
        read_duration_ms: read,
        dislike: false,
    };
    let mut refresh_us = Vec::with_capacity(requests);
    let mut report_us = Vec::with_capacity(requests);
    for i in 0..requests {
        let user = format!("user-{}", i % users);
        let t = now + i as i64;
        let req = FeedRequest { user_id: user, channel_id: [0, 0, 13, 18][i % 4], article_num, time_stamp: t };
        let started = Instant::now();
        let r = engine.recommend(&req, t).expect("refresh");
        refresh_us.push(started.elapsed().as_secs_f64() * 1e6);
        // Everyone sees the batch and clicks and reads one card: profiles, co-engagement and
        // the model grow as the run goes on.
        let Some(item) = r.items.get(i % r.items.len().max(1)).filter(|_| reports) else { continue };
        let events = [event(&r.exposure, 0), event(&item.track[0], 0), event(&item.track[3], 45_000)];
        let started = Instant::now();
        engine.report(&events, t).expect("report");
        report_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    for (name, mut v) in [("refresh", refresh_us), ("report", report_us)] {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "{name}: n={} mean_us={mean:.0} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0}",
            v.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            v[v.len() - 1]
        );
    }
    println!("learner: {}", engine.learner_summary());
}
