//! Catalog aging benchmark: a catalog fed new articles every simulated day, over a real redb
//! store, printing per day the live articles, RSS and the in-process refresh latency. With the
//! maximum article age (default 30 days) the catalog, the learner's per-article state,
//! popularity and the store's in-memory counters stop growing once the first articles age out.
//!
//! `cargo run --release -p reco-store --example aging -- [days] [articles_per_day] [max_age_days]`
//! (defaults 90, 10000, 30). Each day: the day's articles published through `Engine::publish`
//! in batches of 1,000 (publish times spread over the day), then 2,000 users (a rolling
//! population of 20,000) refresh 10 cards in 推荐 or a channel, report the exposure and click
//! the first card; then a checkpoint (which lets the model and the store forget aged articles).

use std::time::Instant;

mod common;

use common::rss_mib;

#[global_allocator]
static ALLOC: common::Alloc = mimalloc::MiMalloc;

use reco_engine::catalog::demo_articles;
use reco_engine::store::Store;
use reco_engine::{DAY_MS, Engine, EngineConfig, FeedRequest, ReportedEvent};
use reco_store::RedbStore;

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<i64>().expect("numbers"));
    let days = args.next().unwrap_or(90);
    let per_day = args.next().unwrap_or(10_000);
    let max_age_days = args.next().unwrap_or(30);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("store");
    let config = EngineConfig { max_article_age_ms: max_age_days * DAY_MS, ..EngineConfig::default() };
    let engine = Engine::new(store, b"aging-benchmark-secret-0123", config).expect("engine");
    let start: i64 = 1_764_000_000_000;
    let users_per_day = 2_000;
    let population = 20_000;
    let event =
        |param: &str| ReportedEvent { param: param.to_owned(), action_time: 0, read_duration_ms: 0, dislike: false };
    println!(
        "day live_articles stored_articles rss_mib counters_in_memory learner_features publish_ms_per_1000 refresh_p50_us refresh_p99_us"
    );
    for day in 0..days {
        let day_start = start + day * DAY_MS;
        // The day's articles: demo content, fresh ids, published through the day.
        let mut articles = demo_articles(day as u64, day_start, per_day as usize);
        for (i, a) in articles.iter_mut().enumerate() {
            a.id += day * per_day;
            a.publish_time = day_start + i as i64 * (DAY_MS / per_day);
        }
        let mut publish_ms = Vec::new();
        for batch in articles.chunks(1_000) {
            let now = batch.last().map_or(day_start, |a| a.publish_time);
            let started = Instant::now();
            let verdicts = engine.publish(batch.to_vec(), now).expect("publish");
            publish_ms.push(started.elapsed().as_secs_f64() * 1e3);
            assert!(verdicts.iter().all(|v| *v == reco_engine::PublishVerdict::Created), "{verdicts:?}");
        }
        let now = day_start + DAY_MS - 1;
        let mut refresh_us = Vec::with_capacity(users_per_day);
        for u in 0..users_per_day {
            let user = format!("user-{}", (day * users_per_day as i64 + u as i64) % population);
            let t = now - (users_per_day - u) as i64;
            let req = FeedRequest { user_id: user, channel_id: [0, 0, 13, 18][u % 4], article_num: 10, time_stamp: t };
            let started = Instant::now();
            let r = engine.recommend(&req, now).expect("refresh");
            refresh_us.push(started.elapsed().as_secs_f64() * 1e6);
            if let Some(first) = r.items.first() {
                engine.report(&[event(&r.exposure), event(&first.track[0])], now).expect("report");
            }
        }
        engine.checkpoint(now).expect("checkpoint");
        let memory = engine.memory();
        println!(
            "{} {} {} {:.0} {} {} {:.1} {:.0} {:.0}",
            day + 1,
            engine.catalog().len(),
            (day + 1) * per_day,
            rss_mib(),
            engine.store().counters_in_memory(),
            memory.learner.model_features,
            publish_ms.iter().sum::<f64>() / publish_ms.len() as f64,
            quantile(&mut refresh_us, 0.5),
            quantile(&mut refresh_us, 0.99),
        );
    }
}
