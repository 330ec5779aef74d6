//! Memory benchmark: RSS and resident users against distinct users served, under the default
//! bounds (or `RECO_CACHE_MIB`, `RECO_DB_CACHE_MIB`, `RECO_PROFILE_MIB`, `RECO_PENDING_MIB`,
//! `RECO_MODEL_MIB`), over a real redb
//! store in a temp dir.
//!
//! `cargo run --release -p reco-store --example memory -- 100000 [report]` serves that many
//! distinct users five refreshes each in channel 0 and prints a line every tenth of the way.
//! With `report`, every refresh is reported as exposed and its first card as clicked, so the
//! learner grows profiles, pending exposures and features as a real service's would.

use std::time::Instant;

mod common;

use common::rss_mib;

#[global_allocator]
static ALLOC: common::Alloc = mimalloc::MiMalloc;

use reco_engine::catalog::demo_articles;
use reco_engine::store::Store;
use reco_engine::{Engine, EngineConfig, ReportedEvent};
use reco_store::{RedbStore, StoreConfig};

fn env_mib(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() {
    let users: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let report = std::env::args().nth(2).is_some_and(|a| a == "report");
    let cache_mib = env_mib("RECO_CACHE_MIB", 256);
    let db_cache_mib = env_mib("RECO_DB_CACHE_MIB", 64);
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        StoreConfig { cache_bytes: cache_mib << 20, db_cache_bytes: db_cache_mib << 20, ..StoreConfig::default() };
    let store = RedbStore::open_with(dir.path(), config).expect("store");
    let now = 1_764_000_000_000;
    store.upsert_articles(&demo_articles(1, now, 6_000)).expect("catalog");
    let mut engine_config = EngineConfig::default();
    let learn = &mut engine_config.learn;
    learn.max_profile_bytes = env_mib("RECO_PROFILE_MIB", learn.max_profile_bytes >> 20) << 20;
    learn.max_pending_bytes = env_mib("RECO_PENDING_MIB", learn.max_pending_bytes >> 20) << 20;
    learn.max_model_bytes = env_mib("RECO_MODEL_MIB", learn.max_model_bytes >> 20) << 20;
    let learn = engine_config.learn.clone();
    let engine = Engine::new(store, b"memory-benchmark-secret-0123", engine_config).expect("engine");
    println!(
        "record budget {cache_mib} MiB, redb cache {db_cache_mib} MiB, profiles {} MiB and pending {} MiB per learner copy; reports {}; start RSS {:.0} MiB",
        learn.max_profile_bytes >> 20,
        learn.max_pending_bytes >> 20,
        if report { "on" } else { "off" },
        rss_mib()
    );
    println!(
        "{:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "users",
        "RSS MiB",
        "resident",
        "recs MiB",
        "evicted",
        "profiles",
        "prof MiB",
        "pend MiB",
        "features",
        "mdl MiB",
        "tail MiB",
        "applied",
        "ahead",
        "s"
    );
    let start = Instant::now();
    let step = (users / 10).max(1);
    let mut events: Vec<ReportedEvent> = Vec::new();
    for u in 0..users {
        let user = format!("user-{u}");
        for r in 0..5 {
            let at = now + r * 1_000;
            let req = engine.validate(&user, 0, 10, at).expect("valid");
            let feed = engine.recommend(&req, at + 5).expect("refresh");
            if report && let Some(first) = feed.items.first() {
                events.extend([&feed.exposure, &first.track[0]].into_iter().map(|param| ReportedEvent {
                    param: param.clone(),
                    action_time: at + 10,
                    read_duration_ms: 0,
                    dislike: false,
                }));
            }
        }
        if (u + 1) % 10 == 0 && !events.is_empty() {
            engine.report(&events, now + 5_000).expect("report");
            events.clear();
        }
        if (u + 1) % step == 0 {
            let m = engine.memory();
            println!(
                "{:>9} {:>7.0} {:>8} {:>8.1} {:>8} {:>8} {:>8.1} {:>8.1} {:>9} {:>8.1} {:>8.1} {:>9} {:>9} {:>7.1}",
                u + 1,
                rss_mib(),
                m.store.resident_users,
                mib(m.store.resident_bytes),
                m.store.evicted_users,
                m.learner.profiles,
                mib(m.learner.profile_bytes),
                mib(m.learner.pending_bytes),
                m.learner.model_features,
                mib(m.learner.model_bytes),
                mib(m.event_tail_bytes),
                m.learner.applied,
                m.learner.ahead,
                start.elapsed().as_secs_f64()
            );
        }
    }
}
