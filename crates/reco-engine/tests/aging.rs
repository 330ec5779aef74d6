//! Articles age out: past the maximum age no source proposes them, while history, article info,
//! counters and events on them keep working. On the real store, whose counters of aged articles
//! leave memory.

use reco_engine::model::{ALL_CHANNELS, Article, ArticleId};
use reco_engine::store::Store;
use reco_engine::{Engine, EngineConfig, FeedRequest, ReportedEvent, Verdict};
use reco_store::RedbStore;

const NOW: i64 = 1_763_900_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY_MS: i64 = 24 * HOUR;
const SECRET: &[u8] = b"0123456789abcdef-aging-secret";

/// Article `k` of a channel is `10 * k` minutes old at `NOW`.
fn article(id: ArticleId, channel: i32, k: i64) -> Article {
    Article {
        id,
        channel_id: channel,
        title: format!("第{id}篇 Rust 与数据库"),
        author: "王伟".into(),
        publish_time: NOW - 10 * MINUTE * k,
        keywords: vec![format!("话题{}", id % 3), "数据库".into()],
        summary: String::new(),
        cover: String::new(),
    }
}

fn req(user: &str, channel: i32, n: u32, t: i64) -> FeedRequest {
    FeedRequest { user_id: user.into(), channel_id: channel, article_num: n, time_stamp: t }
}

fn event(param: &str, read: i64) -> ReportedEvent {
    ReportedEvent { param: param.into(), action_time: 0, read_duration_ms: read, dislike: false }
}

#[test]
fn aged_articles_leave_every_source_and_stay_findable() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    // Channels 7 and 18, one article every 10 minutes over 5 hours each.
    let articles: Vec<Article> = (0..30).flat_map(|k| [article(1000 + k, 7, k), article(2000 + k, 18, k)]).collect();
    store.upsert_articles(&articles).unwrap();
    let config = EngineConfig { max_article_age_ms: 2 * HOUR, ..EngineConfig::default() };
    let e = Engine::new(store, SECRET, config.clone()).unwrap();
    // At start the catalog holds what is at most 2 h older than the newest article.
    assert_eq!(e.catalog().len(), 2 * 13);

    // Users engage with the oldest live article of channel 18 (110 minutes old): it gets
    // exposures, clicks, reads, co-engagement and popularity.
    let target = 2011;
    let mut kept_param = None;
    for u in 0..12 {
        let user = format!("fan{u}");
        let r = e.recommend(&req(&user, 18, 13, NOW), NOW).unwrap();
        let item = r.items.iter().find(|i| i.article_id == target).expect("a live article is served");
        let other = r.items.iter().find(|i| i.article_id != target).unwrap();
        let events = [event(&r.exposure, 0), event(&item.track[0], 0), event(&other.track[0], 0)];
        assert!(e.report(&events, NOW).unwrap().iter().all(|v| matches!(v, Verdict::Accepted(_))));
        let read = item.track[3].clone();
        kept_param = Some((user, r, read));
    }
    let clicks_before = e.article_stats(&[target], NOW).unwrap().0[0].1.counters.clicks;
    assert_eq!(clicks_before, 12);

    // 15 minutes later it is 125 minutes old: no refresh of anyone in any channel shows it,
    // nor anything else over 2 h old, however deep they page.
    let later = NOW + 15 * MINUTE;
    for (i, user) in ["fan0", "fan1", "new"].iter().enumerate() {
        for channel in [ALL_CHANNELS, 18] {
            for page in 0..3 {
                let t = later + (i * 10 + page) as i64;
                let r = e.recommend(&req(user, channel, 20, t), t).unwrap();
                for item in &r.items {
                    let a = e.catalog().get(item.article_id).cloned().expect("served articles are in the catalog");
                    assert!(
                        a.publish_time >= later - 2 * HOUR,
                        "{user} got article {} aged {} min",
                        a.id,
                        (later - a.publish_time) / MINUTE
                    );
                }
            }
        }
    }
    assert!(e.catalog().get(target).is_none(), "the aged article left the catalog");

    // History still returns the batch as served, article info still finds it, and an event
    // on it (a param served before it aged) is accepted and counted exactly.
    let (user, first, read_param) = kept_param.unwrap();
    let again = e.recommend(&req(&user, 18, 13, NOW), later).unwrap();
    assert_eq!(again.items, first.items, "history is byte-identical after aging");
    let (found, missing) = e.articles(&[target, 999_999]).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.id, target);
    assert_eq!(missing, vec![999_999]);
    let v = e.report(&[event(&read_param, 30_000)], later).unwrap();
    assert!(matches!(&v[0], Verdict::Accepted(_)), "{v:?}");

    // The model and the store forget it at the next checkpoint; its counters stay exact.
    let held = e.store().counters_in_memory();
    e.checkpoint(later).unwrap();
    assert!(e.store().counters_in_memory() < held, "the aged articles' counters left memory");
    let before_click = e.article_stats(&[target], later).unwrap();
    assert_eq!(before_click.0[0].1.counters.clicks, 12);
    assert_eq!(before_click.0[0].1.counters.reads, 1);
    let r = e.recommend(&req("fan3", 18, 13, NOW), later).unwrap();
    let click = r.items.iter().find(|i| i.article_id == target).unwrap().track[0].clone();
    // fan3's click is a replay of an accepted one: a duplicate. A new user's never existed.
    assert!(matches!(&e.report(&[event(&click, 0)], later).unwrap()[0], Verdict::Duplicate(_)));
    let share = r.items.iter().find(|i| i.article_id == target).unwrap().track[2].clone();
    assert!(matches!(&e.report(&[event(&share, 0)], later).unwrap()[0], Verdict::Accepted(_)));
    let after = e.article_stats(&[target], later).unwrap().0[0].1.counters;
    assert_eq!((after.clicks, after.shares, after.reads), (12, 1, 1), "counted on top of the stored counters");

    // After a restart (the aged article is not even loaded) its params still count.
    let collect = r.items.iter().find(|i| i.article_id == target).unwrap().track[1].clone();
    e.store().flush().unwrap();
    drop(e);
    // Also with a shorter maximum age, so that the article is not even loaded.
    let shorter = EngineConfig { max_article_age_ms: HOUR, ..config };
    let e = Engine::new(RedbStore::open(dir.path()).unwrap(), SECRET, shorter).unwrap();
    assert!(e.catalog().get(target).is_none());
    let v = e.report(&[event(&collect, 0)], later).unwrap();
    assert!(matches!(&v[0], Verdict::Accepted(_)), "{v:?}");
    assert_eq!(e.article_stats(&[target], later).unwrap().0[0].1.counters.collects, 1);
}

#[test]
fn publishing_an_article_past_the_maximum_age_is_refused_with_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let config = EngineConfig { max_article_age_ms: 2 * DAY_MS, ..EngineConfig::default() };
    let e = Engine::new(store, SECRET, config).unwrap();
    let old = Article { publish_time: NOW - 3 * DAY_MS, ..article(1, 7, 0) };
    let fresh = article(2, 7, 0);
    let v = e.publish(vec![old, fresh], NOW).unwrap();
    assert!(
        matches!(&v[0], reco_engine::PublishVerdict::Rejected(r) if r.contains("older than the maximum article age (2 days")),
        "{v:?}"
    );
    assert_eq!(v[1], reco_engine::PublishVerdict::Created);
    let r = e.recommend(&req("u", 7, 5, NOW), NOW).unwrap();
    assert_eq!(r.items.iter().map(|i| i.article_id).collect::<Vec<_>>(), vec![2]);
    // Two days on, it ages out by the clock alone.
    let t = NOW + 2 * DAY_MS + 2_000;
    assert!(e.recommend(&req("u", 7, 5, t), t).unwrap().items.is_empty());
    assert_eq!(e.catalog().len(), 0);
}
