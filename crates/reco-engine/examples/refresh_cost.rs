//! Prints the engine's in-process cost of one refresh (sources, filter, score, pick, params,
//! the append to the in-memory store) against the number of live articles and the user's
//! tenure (batches served before in the channel), as `scripts/bench.sh` sends them: every
//! request a refresh in 推荐, no reports (the model stays empty).
//!
//! `cargo run --release -p reco-engine --example refresh_cost -- [catalogs] [tenures] [article_num]`
//! (defaults `10000,100000,1000000` `1,1000` 10). Per catalog and tenure: `users` users (2,000
//! for tenure 1, 4 for longer ones) are first served `tenure` batches each, then refreshed
//! again, round-robin, for about 2,000 measured refreshes in all (so a long-tenure user goes
//! from `tenure` to `tenure + 500` batches while measured). A tenure whose batches would serve
//! more than half the catalog by the end is skipped (the user would run out of articles).

use std::time::Instant;

use reco_engine::catalog::demo_articles;
use reco_engine::store::{MemStore, Store};
use reco_engine::{Engine, EngineConfig, FeedRequest};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn list(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map_or_else(|| default.to_vec(), |a| a.split(',').map(|x| x.parse().expect("numbers")).collect())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let catalogs = list(args.next(), &[10_000, 100_000, 1_000_000]);
    let tenures = list(args.next(), &[1, 1000]);
    let article_num: u32 = args.next().map_or(10, |a| a.parse().expect("a number"));
    let now: i64 = 1_763_900_000_000;
    println!("article_num={article_num}; every request a refresh in channel 0 (推荐), no reports");
    for &articles in &catalogs {
        let started = Instant::now();
        let store = MemStore::new();
        store.upsert_articles(&demo_articles(1, now, articles)).expect("memory store");
        let engine = Engine::new(store, b"refresh-cost-secret-0123", EngineConfig::default()).expect("engine");
        let build_ms = started.elapsed().as_millis();
        for &tenure in &tenures {
            let users = if tenure <= 1 { 2_000 } else { 4 };
            let rounds = 2_000usize.div_ceil(users);
            // The measured refreshes add to the tenure too: a user ends with `tenure + rounds`
            // batches, which must leave the catalog far from exhausted.
            if (tenure + rounds) * article_num as usize > articles / 2 {
                println!("live_articles={articles} tenure={tenure}: skipped (would serve more than half the catalog)");
                continue;
            }
            let user = |u: usize| format!("t{tenure}-u{u}");
            let mut t = now;
            let mut refresh = |engine: &Engine<MemStore>, u: usize| {
                t += 1;
                let req = FeedRequest { user_id: user(u), channel_id: 0, article_num, time_stamp: t };
                let started = Instant::now();
                let r = engine.recommend(&req, t).expect("refresh");
                assert!(r.refreshed);
                (started.elapsed().as_secs_f64() * 1e6, r.items.len())
            };
            for _ in 0..tenure {
                for u in 0..users {
                    refresh(&engine, u);
                }
            }
            let mut us = Vec::with_capacity(rounds * users);
            let mut short = 0;
            for _ in 0..rounds {
                for u in 0..users {
                    let (took, n) = refresh(&engine, u);
                    us.push(took);
                    short += usize::from(n < article_num as usize);
                }
            }
            us.sort_by(f64::total_cmp);
            let q = |p: f64| us[((us.len() as f64 * p) as usize).min(us.len() - 1)];
            let mean = us.iter().sum::<f64>() / us.len() as f64;
            println!(
                "live_articles={articles} tenure={tenure} n={} mean_us={mean:.1} p50_us={:.1} p90_us={:.1} p99_us={:.1} \
                 short={short} build_ms={build_ms}",
                us.len(),
                q(0.5),
                q(0.9),
                q(0.99),
            );
        }
    }
}
