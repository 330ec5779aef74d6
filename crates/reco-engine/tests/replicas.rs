//! Several engines on one shared store, as replicas on a shared backend run: each learns from
//! the events the others logged once it follows the log, a param is one event whichever
//! replica receives it, no replica serves a user what another served them, and a catalog
//! change made through one reaches the others when they follow the store's change log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use reco_engine::catalog::demo_articles;
use reco_engine::model::{Article, ArticleId};
use reco_engine::store::{CATALOG_LOG_CALLS, MemStore, Store};
use reco_engine::{ChangeKind, Engine, EngineConfig, FeedRequest, ReportedEvent, Verdict};

const NOW: i64 = 1_763_900_000_000;
const SECRET: &[u8] = b"0123456789abcdef-replica-secret";

fn replicas(n: usize) -> Vec<Engine<Arc<MemStore>>> {
    let store = Arc::new(MemStore::new());
    store.upsert_articles(&demo_articles(7, NOW, 400)).unwrap();
    (0..n).map(|_| Engine::new(Arc::clone(&store), SECRET, EngineConfig::default()).unwrap()).collect()
}

fn req(user: &str, t: i64) -> FeedRequest {
    FeedRequest { user_id: user.into(), channel_id: 0, article_num: 10, time_stamp: t }
}

fn event(param: &str) -> ReportedEvent {
    ReportedEvent { param: param.into(), action_time: 0, read_duration_ms: 0, dislike: false }
}

#[test]
fn replicas_learn_from_each_others_events_by_following_the_log() {
    let [a, b] = <[_; 2]>::try_from(replicas(2)).ok().unwrap();
    let r = a.recommend(&req("u1", NOW), NOW).unwrap();
    let clicked = &r.items[3];
    let verdicts = a.report(&[event(&r.exposure), event(&clicked.track[0])], NOW + 1).unwrap();
    assert!(verdicts.iter().all(|v| matches!(v, Verdict::Accepted(_))), "{verdicts:?}");

    let day = (NOW - 86_400_000, NOW + 86_400_000);
    assert_ne!(a.stats(day.0, day.1), b.stats(day.0, day.1), "b has not looked at the log yet");
    assert_eq!(b.follow_log().unwrap(), 2, "b applies the exposure and the click a logged");
    assert_eq!(b.stats(day.0, day.1), a.stats(day.0, day.1), "both replicas count the same events");
    assert_eq!(b.follow_log().unwrap(), 0, "nothing new");
    assert_eq!(a.follow_log().unwrap(), 0, "a applied its own events when it logged them");

    // b learned what a learned: the user's profile and the article's counters agree.
    let explain = |e: &Engine<Arc<MemStore>>| e.explain("u1", clicked.article_id, NOW + 2).unwrap();
    assert_eq!(explain(&b), explain(&a));
}

#[test]
fn a_param_is_one_event_whichever_replica_receives_it() {
    let [a, b] = <[_; 2]>::try_from(replicas(2)).ok().unwrap();
    let r = a.recommend(&req("u2", NOW), NOW).unwrap();
    let click = event(&r.items[0].track[0]);
    assert!(matches!(b.report(std::slice::from_ref(&click), NOW + 1).unwrap()[0], Verdict::Accepted(_)));
    assert!(matches!(a.report(&[click], NOW + 2).unwrap()[0], Verdict::Duplicate(_)));
}

#[test]
fn no_replica_serves_a_user_what_another_served_them() {
    let engines = replicas(3);
    let mut seen: HashSet<ArticleId> = HashSet::new();
    for t in 0..12 {
        let e = &engines[t % engines.len()];
        let r = e.recommend(&req("u3", NOW + t as i64), NOW + t as i64).unwrap();
        assert_eq!(r.items.len(), 10);
        for item in &r.items {
            assert!(seen.insert(item.article_id), "article {} served twice (refresh {t})", item.article_id);
        }
    }
    // A history read on any replica answers the batch another served.
    let first = engines[0].recommend(&req("u3", NOW), NOW + 100).unwrap();
    let again = engines[2].recommend(&req("u3", NOW), NOW + 100).unwrap();
    assert!(!first.refreshed && !again.refreshed);
    assert_eq!(first.items, again.items);
}

fn article(id: ArticleId, title: &str, publish_time: i64) -> Article {
    Article {
        id,
        channel_id: 3,
        title: title.to_owned(),
        author: "desk".to_owned(),
        publish_time,
        keywords: vec!["replicas".to_owned()],
        summary: String::new(),
        cover: String::new(),
    }
}

/// Every change the engine's feed announces, as (seq, kind, id).
fn watched(engine: &Engine<Arc<MemStore>>) -> Arc<Mutex<Vec<(ChangeKind, ArticleId, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    engine.on_catalog_change(Box::new(move |changes| {
        let mut sink = sink.lock().unwrap();
        sink.extend(changes.iter().map(|c| (c.kind, c.article.id, c.article.title.clone())));
    }));
    seen
}

#[test]
fn catalog_changes_made_through_one_replica_reach_the_others_when_they_follow() {
    let [a, b] = <[_; 2]>::try_from(replicas(2)).ok().unwrap();
    let (seen_a, seen_b) = (watched(&a), watched(&b));
    let id = 900_001;
    a.publish(vec![article(id, "breaking", NOW)], NOW).unwrap();
    assert!(b.catalog().get(id).is_none(), "b has not followed yet");
    assert_eq!(b.follow_catalog(NOW).unwrap(), 1);
    assert_eq!(b.catalog().live(id).map(|x| x.title.as_str()), Some("breaking"));
    assert_eq!(*seen_b.lock().unwrap(), vec![(ChangeKind::Published, id, "breaking".to_owned())]);
    assert_eq!(a.follow_catalog(NOW).unwrap(), 0, "a made the change itself: nothing new, nothing announced twice");
    assert_eq!(seen_a.lock().unwrap().len(), 1);

    // b's next refresh of that channel proposes it (it is the newest article there).
    let r = b
        .recommend(&FeedRequest { user_id: "u9".into(), channel_id: 3, article_num: 10, time_stamp: NOW + 1 }, NOW + 1);
    assert!(r.unwrap().items.iter().any(|i| i.article_id == id), "b serves what a published");

    b.retract(&[id], "wrong facts", NOW + 2).unwrap();
    assert_eq!(a.follow_catalog(NOW + 2).unwrap(), 1);
    assert!(a.catalog().retraction(id).is_some() && a.catalog().live(id).is_none(), "retracted on a too");
    a.publish(vec![article(id, "breaking, corrected", NOW)], NOW + 3).unwrap();
    b.follow_catalog(NOW + 3).unwrap();
    assert_eq!(b.catalog().live(id).map(|x| x.title.as_str()), Some("breaking, corrected"), "live again on b");
    let kinds: Vec<ChangeKind> = seen_b.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(kinds, [ChangeKind::Published, ChangeKind::Retracted, ChangeKind::Updated]);

    // Two replicas edit one article without following in between: both end with the store's.
    a.publish(vec![article(id, "edit by a", NOW)], NOW + 4).unwrap();
    b.publish(vec![article(id, "edit by b", NOW)], NOW + 4).unwrap();
    a.follow_catalog(NOW + 4).unwrap();
    b.follow_catalog(NOW + 4).unwrap();
    for e in [&a, &b] {
        assert_eq!(e.catalog().get(id).map(|x| x.title.as_str()), Some("edit by b"), "the last write wins everywhere");
    }
}

#[test]
fn a_replica_behind_the_stores_change_log_reloads_the_catalog() {
    let [a, b] = <[_; 2]>::try_from(replicas(2)).ok().unwrap();
    // More calls than the store's log keeps, each one article.
    let calls = CATALOG_LOG_CALLS as i64 + 20;
    for i in 0..calls {
        a.publish(vec![article(800_000 + i, &format!("story {i}"), NOW - i)], NOW).unwrap();
    }
    assert_eq!(b.follow_catalog(NOW).unwrap(), calls as usize, "every article b lacked is announced");
    assert_eq!(b.catalog().len(), a.catalog().len());
    assert!((0..calls).all(|i| b.catalog().live(800_000 + i).is_some()));
    assert_eq!(b.follow_catalog(NOW).unwrap(), 0);
}

#[test]
fn a_replica_skips_events_trimmed_from_the_log_before_it_read_them_and_learns_from_the_rest() {
    let store = Arc::new(MemStore::new());
    store.upsert_articles(&demo_articles(7, NOW, 400)).unwrap();
    // A checkpoint trims every event it covers.
    let config = EngineConfig { event_log_keep: 0, ..EngineConfig::default() };
    let open = || Engine::new(Arc::clone(&store), SECRET, config.clone()).unwrap();
    let (a, b) = (open(), open());
    let r = a.recommend(&req("u5", NOW), NOW).unwrap();
    a.report(&[event(&r.exposure), event(&r.items[0].track[0])], NOW + 1).unwrap();
    assert!(a.checkpoint(NOW + 2).unwrap() > 0);
    assert_eq!(store.event_log_trimmed().unwrap(), 2, "the checkpoint covers both events");

    assert_eq!(b.follow_log().unwrap(), 0, "b never saw the two trimmed events and skips them");
    a.report(&[event(&r.items[1].track[0])], NOW + 3).unwrap();
    assert_eq!(b.follow_log().unwrap(), 1, "b learns from what comes after");
    assert_eq!(b.follow_log().unwrap(), 0);

    // A restart starts from the checkpoint and replays the rest: it knows what a knows.
    let c = open();
    let day = (NOW - 86_400_000, NOW + 86_400_000);
    assert_eq!(c.stats(day.0, day.1), a.stats(day.0, day.1));
    let explain = |e: &Engine<Arc<MemStore>>| e.explain("u5", r.items[1].article_id, NOW + 4).unwrap();
    assert_eq!(explain(&c), explain(&a));
}
