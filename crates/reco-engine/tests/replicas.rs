//! Several engines on one shared store, as replicas on a shared backend run: each learns from
//! the events the others logged once it follows the log, a param is one event whichever
//! replica receives it, and no replica serves a user what another served them.

use std::collections::HashSet;
use std::sync::Arc;

use reco_engine::catalog::demo_articles;
use reco_engine::model::ArticleId;
use reco_engine::store::{MemStore, Store};
use reco_engine::{Engine, EngineConfig, FeedRequest, ReportedEvent, Verdict};

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
