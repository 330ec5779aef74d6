//! The seed contract's paging rules and the tracking loop, on the in-memory store.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use reco_engine::catalog::demo_articles;
use reco_engine::model::{Action, Article};
use reco_engine::params::TrackParam;
use reco_engine::store::{MemStore, Sources};
use reco_engine::{Engine, EngineConfig, EngineError, FeedRequest, FeedResponse, ReportedEvent, Verdict};

const NOW: i64 = 1_763_900_000_000;
const SECRET: &[u8] = b"0123456789abcdef-test-secret";

fn engine(articles: Vec<Article>) -> Engine<MemStore> {
    let store = MemStore::new();
    reco_engine::store::Store::upsert_articles(&store, &articles).unwrap();
    Engine::new(store, SECRET, EngineConfig::default()).unwrap()
}

fn req(user: &str, channel: i32, n: u32, t: i64) -> FeedRequest {
    FeedRequest { user_id: user.into(), channel_id: channel, article_num: n, time_stamp: t }
}

fn ids(r: &FeedResponse) -> Vec<i64> {
    r.items.iter().map(|i| i.article_id).collect()
}

fn event(param: &str) -> ReportedEvent {
    ReportedEvent { param: param.into(), action_time: 0, read_duration_ms: 0, dislike: false }
}

#[derive(Clone, Debug)]
enum Op {
    Refresh { channel: i32, dt: i64, n: u32 },
    History { back: usize, offset: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::sample::select(vec![0, 18, 19, 20]), 1i64..5_000, 1u32..25).prop_map(|(channel, dt, n)| Op::Refresh { channel, dt, n }),
        2 => (0usize..6, 0i64..3).prop_map(|(back, offset)| Op::History { back, offset }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of refreshes and history reads: a refresh never repeats an id served in
    /// its channel or in 推荐, and a history read returns exactly the batch that was served.
    #[test]
    fn paging_never_repeats_and_history_is_exact(ops in prop::collection::vec(op(), 1..40)) {
        // A small catalog so that candidates run out and short batches happen.
        let e = engine(demo_articles(3, NOW, 400));
        let mut t = NOW;
        let mut served: HashMap<i32, HashSet<i64>> = HashMap::new();
        // Per channel: time -> (response of the refresh)
        let mut batches: HashMap<i32, BTreeMap<i64, FeedResponse>> = HashMap::new();
        let mut last_channel = 18;
        for op in ops {
            match op {
                Op::Refresh { channel, dt, n } => {
                    t += dt;
                    last_channel = channel;
                    let resp = e.recommend(&req("u", channel, n, t), NOW).unwrap();
                    prop_assert!(resp.refreshed);
                    let prev = batches.get(&channel).and_then(|b| b.keys().next_back().copied()).unwrap_or(0);
                    prop_assert_eq!(resp.time_stamp, prev, "a refresh points at the previous batch");
                    prop_assert!(resp.items.len() <= n as usize);
                    let mut seen_here = HashSet::new();
                    for id in ids(&resp) {
                        prop_assert!(seen_here.insert(id), "id {} twice in one batch", id);
                        let in_channel = served.get(&channel).is_some_and(|s| s.contains(&id));
                        let in_all = served.get(&0).is_some_and(|s| s.contains(&id));
                        prop_assert!(!in_channel && !in_all, "id {} repeated in channel {}", id, channel);
                        if channel != 0 {
                            prop_assert_eq!(e.catalog().get(id).unwrap().channel_id, channel);
                        }
                    }
                    if !resp.items.is_empty() {
                        prop_assert!(!resp.exposure.is_empty());
                    }
                    served.entry(channel).or_default().extend(ids(&resp));
                    batches.entry(channel).or_default().insert(t, resp);
                }
                Op::History { back, offset } => {
                    let Some(b) = batches.get(&last_channel) else { continue };
                    let times: Vec<i64> = b.keys().copied().collect();
                    let at = (times[times.len() - 1 - back.min(times.len() - 1)] + offset).min(times[times.len() - 1]);
                    let resp = e.recommend(&req("u", last_channel, 10, at), NOW).unwrap();
                    prop_assert!(!resp.refreshed);
                    let (bt, original) = b.range(..=at).next_back().unwrap();
                    prop_assert_eq!(&resp.items, &original.items, "history returns the served batch, params included");
                    prop_assert_eq!(resp.exposure.as_str(), "");
                    let older = b.range(..*bt).next_back().map_or(0, |(t, _)| *t);
                    prop_assert_eq!(resp.time_stamp, older);
                }
            }
        }
    }
}

#[test]
fn refresh_then_follow_the_pointer_to_the_end() {
    let e = engine(demo_articles(1, NOW, 2000));
    let a = e.recommend(&req("u", 18, 10, 1000), NOW).unwrap();
    let b = e.recommend(&req("u", 18, 10, 2000), NOW).unwrap();
    assert_eq!((a.time_stamp, b.time_stamp), (0, 1000));
    let h = e.recommend(&req("u", 18, 10, b.time_stamp), NOW).unwrap();
    assert_eq!(ids(&h), ids(&a));
    assert_eq!(h.time_stamp, 0, "no batch before the first");
    let before_any = e.recommend(&req("u", 18, 10, 999), NOW).unwrap();
    assert!(before_any.items.is_empty() && before_any.time_stamp == 0 && !before_any.refreshed);
    // Users and channels are separate feeds.
    let other = e.recommend(&req("v", 18, 10, 1000), NOW).unwrap();
    assert!(other.refreshed && other.time_stamp == 0);
}

#[test]
fn candidates_run_out_without_error() {
    let e = engine(demo_articles(1, NOW, 60));
    let mut total = 0;
    for i in 1..=20 {
        let r = e.recommend(&req("u", 0, 10, i), NOW).unwrap();
        total += r.items.len();
    }
    assert_eq!(total, 60, "every article once, then empty batches");
    let empty = e.recommend(&req("u", 0, 10, 100), NOW).unwrap();
    assert!(empty.refreshed && empty.items.is_empty());
}

#[test]
fn bad_requests_name_the_field_and_range() {
    let e = engine(demo_articles(1, NOW, 50));
    let err = |u: &str, c, n, t| match e.validate(u, c, n, t) {
        Err(EngineError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    assert!(err("", 1, 10, 1).contains("user_id is empty"));
    assert!(err("  ", 1, 10, 1).contains("anonymous id"));
    assert!(err("u", 1, 0, 1).contains("article_num must be in 1..=100, got 0"));
    assert!(err("u", 1, -3, 1).contains("article_num"));
    assert!(err("u", 1, 101, 1).contains("got 101"));
    assert!(err("u", 99, 10, 1).contains("channel_id 99 is unknown"));
    assert!(err("u", -1, 10, 1).contains("channel_id -1"));
    assert!(err("u", 1, 10, 0).contains("time_stamp must be"));
    assert!(err("u", 1, 10, -5).contains("got -5"));
    assert!(err(&"x".repeat(300), 1, 10, 1).contains("user_id is 300 bytes"));
    assert_eq!(e.validate("u", 0, 100, 1).unwrap(), req("u", 0, 100, 1));
}

#[test]
fn params_carry_the_toutiao_keys_and_verify() {
    let e = engine(demo_articles(1, NOW, 500));
    let r = e.recommend(&req("user-9", 18, 5, 1234), NOW).unwrap();
    for (pos, item) in r.items.iter().enumerate() {
        for (param, action) in item.track.iter().zip(Action::TRACKED) {
            let json: serde_json::Value = serde_json::from_str(param).unwrap();
            assert_eq!(json["action"], action.as_str());
            assert_eq!(json["userId"], "user-9");
            assert_eq!(json["articleId"], item.article_id);
            assert_eq!(json["channelId"], 18);
            assert_eq!(json["position"], pos);
            assert_eq!(json["ts"], 1234);
            let combine = json["algorithmCombine"].as_str().unwrap();
            let sources = combine.strip_prefix("v2.b0:").unwrap_or_else(|| panic!("{json}"));
            assert!(
                !sources.is_empty() && sources.split('+').all(|s| Sources::parse(s) != Sources::default()),
                "{json}"
            );
            assert!(json["requestId"].is_string() && json["sig"].is_string());
        }
    }
    let exposure: serde_json::Value = serde_json::from_str(&r.exposure).unwrap();
    assert_eq!(exposure["action"], "exposure");
    assert_eq!(exposure["algorithmCombine"], "v2.b0");
    assert_eq!(exposure["articleId"], serde_json::json!(ids(&r)));
    let mut all: Vec<String> = r.items.iter().flat_map(|i| i.track.clone()).collect();
    all.push(r.exposure.clone());
    assert!(e.verify(&all).iter().all(Result::is_ok));
}

#[test]
fn events_are_verified_deduplicated_and_counted() {
    let e = engine(demo_articles(1, NOW, 500));
    let r = e.recommend(&req("u", 18, 5, NOW), NOW).unwrap();
    let click = &r.items[0].track[0];
    let read = &r.items[1].track[3];
    let forged = click.replace(&format!("\"articleId\":{}", r.items[0].article_id), "\"articleId\":3");
    let read_event = ReportedEvent { read_duration_ms: 90_000, ..event(read) };
    let verdicts = e
        .report(
            &[
                event(&r.exposure),
                event(click),
                event(click),
                event(&forged),
                event("not a param"),
                event(read),
                read_event,
            ],
            NOW,
        )
        .unwrap();
    assert!(matches!(&verdicts[0], Verdict::Accepted(p) if p.action == Action::Exposure && p.article_ids == ids(&r)));
    assert!(matches!(&verdicts[1], Verdict::Accepted(p) if p.action == Action::Click));
    assert!(matches!(&verdicts[2], Verdict::Duplicate(_)), "{:?}", verdicts[2]);
    assert!(matches!(&verdicts[3], Verdict::Rejected { reason, param: Some(_) } if reason.contains("bad signature")));
    assert!(
        matches!(&verdicts[4], Verdict::Rejected { reason, param: None } if reason.contains("not valid tracking JSON"))
    );
    assert!(
        matches!(&verdicts[5], Verdict::Rejected { reason, .. } if reason.contains("read_duration_ms must be in 1..="))
    );
    assert!(matches!(&verdicts[6], Verdict::Accepted(_)));
    // Replaying later is still a duplicate.
    assert!(matches!(&e.report(&[event(click)], NOW).unwrap()[0], Verdict::Duplicate(_)));

    let (stats, missing) = e.article_stats(&[r.items[0].article_id, r.items[1].article_id, 999_999], NOW).unwrap();
    assert_eq!(missing, vec![999_999]);
    assert_eq!((stats[0].1.counters.exposures, stats[0].1.counters.clicks), (1, 1));
    assert_eq!((stats[1].1.counters.reads, stats[1].1.counters.read_ms), (1, 90_000));
    assert!(stats[0].1.popularity > 0.0);
}

#[test]
fn bad_events_are_rejected_with_reasons() {
    let e = engine(demo_articles(1, NOW, 500));
    let r = e.recommend(&req("u", 18, 2, NOW), NOW).unwrap();
    let click = r.items[0].track[0].clone();
    let future = ReportedEvent { action_time: NOW + 3_600_000, ..event(&click) };
    let negative = ReportedEvent { action_time: -1, ..event(&click) };
    let v = e.report(&[future, negative], NOW).unwrap();
    assert!(matches!(&v[0], Verdict::Rejected { reason, .. } if reason.contains("ahead of the server's clock")));
    assert!(
        matches!(&v[1], Verdict::Rejected { reason, .. } if reason.contains("action_time must not be before the batch"))
    );
    let expired = e.report(&[event(&click)], NOW + 31 * 24 * 3_600_000).unwrap();
    assert!(matches!(&expired[0], Verdict::Rejected { reason, .. } if reason.contains("expired")));
    // A well-signed param for an article the catalog does not have.
    let ghost = e.signer().mint(&TrackParam {
        action: Action::Click,
        user_id: "u".into(),
        article_ids: vec![777_777],
        algorithm_combine: "v1:fresh".into(),
        channel_id: 18,
        position: Some(0),
        request_id: 1,
        ts: NOW,
    });
    assert!(
        matches!(&e.report(&[event(&ghost)], NOW).unwrap()[0], Verdict::Rejected { reason, .. } if reason.contains("unknown article 777777"))
    );
    assert!(matches!(e.report(&[], NOW), Err(EngineError::InvalidArgument(_))));
    assert!(matches!(e.report(&vec![event(&click); 1001], NOW), Err(EngineError::TooMany(_))));
}

#[test]
fn read_articles_never_come_back_and_engagement_makes_articles_hot() {
    let e = engine(demo_articles(1, NOW, 3000));
    // u reads the first article of 推荐 in channel 18; it must not come back in 推荐 for u.
    let r = e.recommend(&req("u", 18, 10, NOW), NOW).unwrap();
    let read = r.items[0].article_id;
    e.report(&[ReportedEvent { read_duration_ms: 60_000, ..event(&r.items[0].track[3]) }], NOW).unwrap();
    for t in 2..40 {
        let next = e.recommend(&req("u", 0, 20, NOW + t), NOW + t).unwrap();
        assert!(!ids(&next).contains(&read));
    }
    // Many users clicking an old article lifts it into other users' first batch.
    let oldest = e.catalog().newest_first(20).last().unwrap().id;
    let fresh_only = e.recommend(&req("before", 20, 10, NOW), NOW).unwrap();
    assert!(!ids(&fresh_only).contains(&oldest));
    let mut events = Vec::new();
    for u in 0..30 {
        let user = format!("fan{u}");
        // Page through channel 20 until the old article shows up, then share it.
        for t in 1..200 {
            let resp = e.recommend(&req(&user, 20, 50, NOW + t), NOW).unwrap();
            if let Some(item) = resp.items.iter().find(|i| i.article_id == oldest) {
                events.push(event(&item.track[2]));
                break;
            }
        }
    }
    assert_eq!(events.len(), 30);
    e.report(&events, NOW).unwrap();
    let after = e.recommend(&req("after", 20, 10, NOW), NOW).unwrap();
    assert_eq!(after.items[0].article_id, oldest, "the most shared article leads the batch");
    let json: serde_json::Value = serde_json::from_str(&after.items[0].track[0]).unwrap();
    assert!(json["algorithmCombine"].as_str().unwrap().contains("hot"), "{json}");
}

/// Issue 14: the fresh source jumps what a long-tenure user was served, and must still find
/// every unseen article: 1,000 refreshes of 10 in 推荐 (history trimmed to 50 batches), each
/// full, nothing twice.
#[test]
fn a_user_served_a_thousand_batches_still_gets_full_batches_of_unseen_articles() {
    let e = engine(demo_articles(4, NOW, 20_000));
    let mut served = HashSet::new();
    for t in 1..=1_010 {
        let r = e.recommend(&req("tenured", 0, 10, NOW + t), NOW + t).unwrap();
        assert_eq!(r.items.len(), 10, "refresh {t} is short");
        for id in ids(&r) {
            assert!(served.insert(id), "refresh {t} served {id} again");
        }
    }
}

/// A channel read to its end while articles are published on top, backdated (below what the
/// user was served) and retracted: every batch is as full as the unseen live articles allow,
/// nothing comes twice, and the last unseen article is found wherever it landed. Without
/// exploration, whose window of the newest articles would find it too: the fresh source alone
/// must.
#[test]
fn a_channel_read_to_its_end_through_publishes_and_retractions_serves_each_article_once() {
    use rand::{Rng, SeedableRng};
    let store = MemStore::new();
    reco_engine::store::Store::upsert_articles(&store, &demo_articles(2, NOW, 3_000)).unwrap();
    let variants = vec![reco_engine::Variant { explore_rate: 0.0, ..Default::default() }];
    let e = Engine::new(store, SECRET, EngineConfig { variants, ..EngineConfig::default() }).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let mut served: HashSet<i64> = HashSet::new();
    let mut next_id = 1_000_000;
    let mut published = |e: &Engine<MemStore>, publish_time: i64, now: i64| {
        next_id += 1;
        let a = Article { id: next_id, channel_id: 18, publish_time, ..demo_articles(2, NOW, 1)[0].clone() };
        e.publish(vec![a], now).unwrap();
        next_id
    };
    let unseen = |e: &Engine<MemStore>, served: &HashSet<i64>| {
        e.catalog().newest_first(18).filter(|a| !served.contains(&a.id)).count()
    };
    let mut empty = 0;
    for t in 1..400 {
        let now = NOW + t;
        match rng.random_range(0..10) {
            0 => {
                published(&e, now, now);
            }
            1 | 2 => {
                published(&e, NOW - rng.random_range(0..20 * 24 * 3_600_000), now);
            }
            3 => {
                let live: Vec<i64> = e.catalog().newest_first(18).map(|a| a.id).collect();
                if !live.is_empty() {
                    e.retract(&[live[rng.random_range(0..live.len())]], "gone", now).unwrap();
                }
            }
            _ => {}
        }
        let before = unseen(&e, &served);
        let r = e.recommend(&req("reader", 18, 7, now), now).unwrap();
        assert_eq!(r.items.len(), before.min(7), "refresh {t}: {before} unseen live articles");
        for id in ids(&r) {
            assert!(served.insert(id), "refresh {t} served {id} again");
        }
        empty += usize::from(r.items.is_empty());
    }
    assert!(empty > 100, "the channel was read to its end ({empty} empty refreshes)");
    // Everything seen, then an import older than all of it: the next refresh finds it.
    let oldest = e.catalog().newest_first(18).last().map_or(NOW, |a| a.publish_time);
    let late = published(&e, oldest - 1, NOW + 500);
    let r = e.recommend(&req("reader", 18, 7, NOW + 501), NOW + 501).unwrap();
    assert_eq!(ids(&r), [late]);
}
