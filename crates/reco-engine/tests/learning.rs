//! The learning loop end to end on the in-memory store: events change the next feed, dislikes
//! and reads stay gone, new users get mixed feeds, buckets are stable, `Stats` matches the
//! events, and what was learned survives a restart.

use std::collections::HashSet;
use std::sync::Arc;

use reco_engine::catalog::demo_articles;
use reco_engine::model::{Action, Article};
use reco_engine::stats::Counts;
use reco_engine::store::{MemStore, Sources, Store};
use reco_engine::{Engine, EngineConfig, FeedRequest, FeedResponse, ReportedEvent, Variant, Verdict};

const NOW: i64 = 1_763_900_000_000;
const SECRET: &[u8] = b"0123456789abcdef-test-secret";

fn engine_on<S: Store>(store: S, config: EngineConfig) -> Engine<S> {
    Engine::new(store, SECRET, config).unwrap()
}

fn engine(articles: &[Article]) -> Engine<MemStore> {
    let store = MemStore::new();
    store.upsert_articles(articles).unwrap();
    engine_on(store, EngineConfig::default())
}

fn refresh<S: Store>(e: &Engine<S>, user: &str, channel: i32, t: i64) -> FeedResponse {
    let req = FeedRequest { user_id: user.into(), channel_id: channel, article_num: 10, time_stamp: t };
    let r = e.recommend(&req, t).unwrap();
    assert!(r.refreshed);
    r
}

fn ev(param: &str) -> ReportedEvent {
    ReportedEvent { param: param.into(), action_time: 0, read_duration_ms: 0, dislike: false }
}

fn accepted(v: &[Verdict]) -> bool {
    v.iter().all(|v| matches!(v, Verdict::Accepted(_)))
}

/// The sources of each card, from its click param's `algorithmCombine`.
fn sources(r: &FeedResponse) -> Vec<Sources> {
    r.items
        .iter()
        .map(|i| {
            let json: serde_json::Value = serde_json::from_str(&i.track[0]).unwrap();
            let combine = json["algorithmCombine"].as_str().unwrap().to_owned();
            Sources::parse(combine.split_once(':').unwrap().1)
        })
        .collect()
}

/// Shows the batch, then clicks and reads its card `i` for a minute.
fn like<S: Store>(e: &Engine<S>, r: &FeedResponse, i: usize, t: i64) {
    let read = ReportedEvent { read_duration_ms: 60_000, ..ev(&r.items[i].track[3]) };
    let verdicts = e.report(&[ev(&r.exposure), ev(&r.items[i].track[0]), read], t).unwrap();
    assert!(accepted(&verdicts), "{verdicts:?}");
}

#[test]
fn a_click_changes_the_very_next_feed() {
    let articles = demo_articles(5, NOW, 3_000);
    let e = engine(&articles);
    let first = refresh(&e, "u1", 0, NOW);
    assert!(sources(&first).iter().all(|s| !s.contains(Sources::SIMILAR)), "nothing to be similar to yet");
    let liked = e.catalog().get(first.items[0].article_id).unwrap().clone();
    like(&e, &first, 0, NOW + 1_000);

    let next = refresh(&e, "u1", 0, NOW + 2_000);
    let shares_keyword = |id: i64| {
        let catalog = e.catalog();
        let a = catalog.get(id).unwrap();
        a.keywords.iter().take(2).any(|k| liked.keywords[..2].contains(k))
    };
    let personal: Vec<i64> = next
        .items
        .iter()
        .zip(sources(&next))
        .filter(|(_, s)| s.contains(Sources::SIMILAR) || s.contains(Sources::AFFINITY))
        .map(|(i, _)| i.article_id)
        .collect();
    assert!(!personal.is_empty(), "the next feed has personal candidates: {:?}", sources(&next));
    assert!(personal.iter().any(|id| shares_keyword(*id)), "a personal card shares a topic with the liked one");

    // The model moved too: the user's weight on the liked topic is positive.
    let related = articles.iter().find(|a| a.id != liked.id && a.keywords[0] == liked.keywords[0]).unwrap();
    let why = e.explain("u1", related.id, NOW + 3_000).unwrap();
    assert!(
        why.contributions.iter().any(|(f, w)| f.starts_with("user×") && *w > 0.0),
        "explain shows a learned personal weight: {:?}",
        why.contributions
    );
    // And the audience's terms of the behaviour ranker, which make the rest of the logit.
    assert!(
        why.contributions.iter().any(|(f, w)| f == "audience:ctr_log_odds" && *w < 0.0),
        "explain shows the article's click-through rate (a prior of 1 in 20: negative log-odds): {:?}",
        why.contributions
    );
    let stranger = e.explain("u2", related.id, NOW + 3_000).unwrap();
    assert!(why.score > stranger.score, "the liking user scores the related article higher");
}

#[test]
fn disliked_and_read_articles_never_come_back_and_the_topic_is_demoted() {
    let articles = demo_articles(6, NOW, 600);
    let e = engine(&articles);
    let first = refresh(&e, "u", 0, NOW);
    let (disliked, read) = (first.items[0].article_id, first.items[1].article_id);
    let dislike = ReportedEvent { dislike: true, ..ev(&first.items[0].track[1]) };
    let v = e.report(std::slice::from_ref(&dislike), NOW + 1).unwrap();
    assert!(matches!(&v[0], Verdict::Accepted(p) if p.action == Action::Dislike), "{v:?}");
    assert!(matches!(&e.report(&[dislike], NOW + 2).unwrap()[0], Verdict::Duplicate(_)), "a replayed dislike");
    let on_exposure = ReportedEvent { dislike: true, ..ev(&first.exposure) };
    assert!(matches!(&e.report(&[on_exposure], NOW + 3).unwrap()[0], Verdict::Rejected { .. }));
    let read_ev = ReportedEvent { read_duration_ms: 30_000, ..ev(&first.items[1].track[3]) };
    assert!(accepted(&e.report(&[read_ev], NOW + 4).unwrap()));

    // The channels of both, where they would be proposed again first.
    let channels: Vec<i32> = [disliked, read].iter().map(|id| e.catalog().get(*id).unwrap().channel_id).collect();
    let mut t = NOW + 10;
    for round in 0..30 {
        let channel = if round % 2 == 0 { 0 } else { channels[round / 2 % 2] };
        let r = refresh(&e, "u", channel, t);
        t += 10;
        assert!(r.items.iter().all(|i| i.article_id != disliked && i.article_id != read), "round {round}");
    }
    let topic = e.catalog().get(disliked).unwrap().keywords[0].clone();
    let same_topic = articles.iter().find(|a| a.id != disliked && a.keywords[0] == topic).unwrap();
    let why = e.explain("u", same_topic.id, t).unwrap();
    assert!(why.demotion < 1.0, "the disliked topic is demoted: {}", why.demotion);
    assert!(e.explain("u", disliked, t).unwrap().hidden);
}

#[test]
fn a_new_user_gets_a_mixed_feed() {
    let e = engine(&demo_articles(7, NOW, 3_000));
    for u in 0..20 {
        let r = refresh(&e, &format!("new-{u}"), 0, NOW + u);
        let channels: Vec<i32> = r.items.iter().map(|i| e.catalog().get(i.article_id).unwrap().channel_id).collect();
        let distinct: HashSet<i32> = channels.iter().copied().collect();
        assert!(distinct.len() >= 4, "user {u}: {channels:?}");
        assert!(channels.windows(2).all(|w| w[0] != w[1]), "no two adjacent cards share a channel: {channels:?}");
        assert!(distinct.iter().all(|c| channels.iter().filter(|x| *x == c).count() <= 4), "{channels:?}");
    }
}

#[test]
fn buckets_are_stable_per_user_and_split_users() {
    let variants = Variant::parse_list("a:ranker=on,explore=0.1;b:ranker=off,explore=0").unwrap();
    let config = EngineConfig { variants, ..EngineConfig::default() };
    let articles = demo_articles(8, NOW, 500);
    let store = Arc::new(MemStore::new());
    store.upsert_articles(&articles).unwrap();
    let e = engine_on(Arc::clone(&store), config.clone());
    let buckets: Vec<u8> = (0..60).map(|u| e.bucket_of(&format!("user-{u}"))).collect();
    assert!(buckets.contains(&0) && buckets.contains(&1), "both buckets are used: {buckets:?}");
    let r = refresh(&e, "user-1", 0, NOW);
    let combine = serde_json::from_str::<serde_json::Value>(&r.exposure).unwrap()["algorithmCombine"].clone();
    assert_eq!(combine, format!("v2.b{}", buckets[1]));
    drop(e);
    let again = engine_on(Arc::clone(&store), config);
    assert_eq!((0..60).map(|u| again.bucket_of(&format!("user-{u}"))).collect::<Vec<_>>(), buckets, "after restart");
    drop(again);
    // With other variants the buckets move, but history still hands out the params first served.
    let variants = Variant::parse_list("solo").unwrap();
    let changed = engine_on(store, EngineConfig { variants, ..EngineConfig::default() });
    let req = FeedRequest { user_id: "user-1".into(), channel_id: 0, article_num: 10, time_stamp: NOW };
    assert_ne!(changed.bucket_of("user-1"), buckets[1], "the test needs a moved bucket");
    let history = changed.recommend(&req, NOW + 5).unwrap();
    assert!(!history.refreshed);
    assert_eq!(history.items, r.items);
}

#[test]
fn stats_count_the_events_sent() {
    let e = engine(&demo_articles(9, NOW, 800));
    let mut expected = Counts::default();
    let mut per_source = std::collections::BTreeMap::<String, u64>::new();
    for (u, t) in [("s1", NOW), ("s2", NOW + 60_000), ("s3", NOW + 120_000)] {
        let r = refresh(&e, u, 0, t);
        assert!(accepted(&e.report(&[ev(&r.exposure), ev(&r.items[2].track[0])], t).unwrap()));
        expected.0[Action::Exposure as usize] += r.items.len() as u64;
        expected.0[Action::Click as usize] += 1;
        for s in sources(&r)[2].names() {
            *per_source.entry(s.to_owned()).or_default() += 1;
        }
    }
    let report = e.stats(NOW - 60_000, NOW + 180_000);
    let sum = |rows: &[(String, Counts)], a: Action| rows.iter().map(|(_, c)| c.get(a)).sum::<u64>();
    for a in [Action::Exposure, Action::Click, Action::Dislike] {
        assert_eq!(sum(&report.by_bucket, a), expected.get(a), "{a} by bucket");
        assert_eq!(sum(&report.by_channel, a), expected.get(a), "{a} by channel");
    }
    for (name, clicks) in per_source {
        let row = report.by_source.iter().find(|(n, _)| *n == name).unwrap();
        assert_eq!(row.1.get(Action::Click), clicks, "clicks of source {name}");
    }
    assert_eq!(report.by_bucket[0].0, "main");
    assert!(e.stats(NOW + 180_000, NOW + 240_000).by_bucket.is_empty(), "a later window is empty");
}

#[test]
fn what_was_learned_survives_a_restart() {
    let articles = demo_articles(10, NOW, 1_000);
    let store = Arc::new(MemStore::new());
    store.upsert_articles(&articles).unwrap();
    let e = engine_on(Arc::clone(&store), EngineConfig::default());
    let mut t = NOW;
    for round in 0..6 {
        let r = refresh(&e, "keeper", 0, t);
        like(&e, &r, round % 3, t + 1);
        if round == 2 {
            e.checkpoint(t + 2).unwrap();
        }
        t += 1_000;
    }
    let probe = articles[42].id;
    let before = e.explain("keeper", probe, t).unwrap();
    let summary = e.learner_summary();
    drop(e);
    // Half the events come from the checkpoint, the rest are replayed from the log.
    let again = engine_on(store, EngineConfig::default());
    assert_eq!(again.learner_summary(), summary);
    assert_eq!(again.explain("keeper", probe, t).unwrap(), before);
}
