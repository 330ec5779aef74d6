//! Memory benchmark: RSS and resident users against distinct users served, under the default
//! bounds (or `RECO_CACHE_MIB`), over a real redb store in a temp dir.
//!
//! `cargo run --release -p reco-store --example memory -- 100000` serves that many distinct
//! users five refreshes each in channel 0 and prints a line every tenth of the way.

use std::time::Instant;

use reco_engine::catalog::demo_articles;
use reco_engine::store::Store;
use reco_engine::{Engine, EngineConfig};
use reco_store::{RedbStore, StoreConfig};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let users: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let cache_mib: usize = std::env::var("RECO_CACHE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig { cache_bytes: cache_mib << 20, ..StoreConfig::default() };
    let store = RedbStore::open_with(dir.path(), config).expect("store");
    let now = 1_764_000_000_000;
    store.upsert_articles(&demo_articles(1, now, 6_000)).expect("catalog");
    let engine = Engine::new(store, b"memory-benchmark-secret-0123", EngineConfig::default()).expect("engine");
    println!("cache budget {cache_mib} MiB; start RSS {:.0} MiB", rss_mib());
    println!("{:>10} {:>9} {:>10} {:>14} {:>10} {:>8}", "users", "RSS MiB", "resident", "resident MiB", "evicted", "s");
    let start = Instant::now();
    let step = (users / 10).max(1);
    for u in 0..users {
        let user = format!("user-{u}");
        for r in 0..5 {
            let req = engine.validate(&user, 0, 10, now + r * 1_000).expect("valid");
            engine.recommend(&req, now + 5_000).expect("refresh");
        }
        if (u + 1) % step == 0 {
            let m = engine.memory();
            println!(
                "{:>10} {:>9.0} {:>10} {:>14.1} {:>10} {:>8.1}",
                u + 1,
                rss_mib(),
                m.store.resident_users,
                m.store.resident_bytes as f64 / f64::from(1 << 20),
                m.store.evicted_users,
                start.elapsed().as_secs_f64()
            );
        }
    }
}
