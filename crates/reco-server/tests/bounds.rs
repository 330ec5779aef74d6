//! Hostile and out-of-range inputs over real gRPC: each is refused with the field it got
//! wrong, changes nothing, and the service keeps working after it (a normal refresh and a
//! normal report still succeed).
//!
//! Refusals: `time_stamp` far in the future (past the allowed clock skew of 5 minutes),
//! `read_duration_ms` over 6 hours, an `action_time` before the batch that minted the param;
//! and the older bounds that `grpc.rs` does not cover yet.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Client, TestServer, event, ids, now_ms, read_event};
use reco_proto::seed::{ArticleResponse, Track, UserRequest};
use reco_proto::v1::{self, EventResult, TrackEvent, Verdict};
use tonic::Code;

/// The largest read accepted: 6 hours.
const MAX_READ_MS: i64 = 6 * 3_600_000;

fn request(user: &str, channel: i32, num: i32, time_stamp: i64) -> UserRequest {
    UserRequest { user_id: user.into(), channel_id: channel, article_num: num, time_stamp }
}

fn track(feed: &ArticleResponse, i: usize) -> Track {
    feed.recommends[i].track.clone().expect("every card has its params")
}

/// A refresh: a batch with cards and its exposure (a history read has no exposure).
fn assert_refresh(feed: &ArticleResponse, what: &str) {
    assert!(!feed.exposure.is_empty() && !feed.recommends.is_empty(), "{what} is not a refresh: {feed:?}");
}

fn assert_rejected(r: &EventResult, field: &str, what: &str) {
    assert_eq!(r.verdict(), Verdict::Rejected, "{what}: {r:?}");
    assert!(r.reason.contains(field), "{what}: the reason names {field}: {:?}", r.reason);
}

fn assert_accepted(results: &[EventResult], what: &str) {
    assert!(results.iter().all(|r| r.verdict() == Verdict::Accepted), "{what}: {results:?}");
}

fn assert_invalid(status: &tonic::Status, field: &str, what: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(status.message().contains(field), "{what}: the message names {field}: {:?}", status.message());
}

/// The channel of [`assert_serves`]'s probes; the tests that check counters serve other
/// channels, so that the probes' events do not count on their articles.
const PROBE_CHANNEL: i32 = 1;

/// The service still works: a new user's refresh, and a report of its exposure and a click.
async fn assert_serves(client: &mut Client, after: &str) {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let user = format!("probe-{}", PROBES.fetch_add(1, Ordering::Relaxed));
    let feed = client.feed(&user, PROBE_CHANNEL, 5, now_ms()).await;
    assert_refresh(&feed, &format!("a refresh after {after}"));
    let results = client.report(vec![event(&feed.exposure), event(&track(&feed, 0).click)]).await;
    assert_accepted(&results, &format!("a report after {after}"));
}

async fn refused(client: &mut Client, req: UserRequest) -> tonic::Status {
    let what = format!("{req:?}");
    match client.feed.user_recommend(req).await {
        Ok(r) => {
            let r = r.into_inner();
            panic!("{what} was served: {} cards, exposure {:?}", r.recommends.len(), r.exposure.get(..60))
        }
        Err(status) => status,
    }
}

/// A far-future `time_stamp` is refused and leaves the feed as it was: the next refresh at
/// now is a refresh, and points at the batch before the refused one.
async fn far_future_is_refused_and_the_feed_does_not_freeze(bad: i64, what: &str) {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (user, channel) = ("time-traveller", 7);
    let first_t = now_ms() - 1_000;
    let first = client.feed(user, channel, 10, first_t).await;
    assert_refresh(&first, "the first refresh");

    let status = refused(&mut client, request(user, channel, 10, bad)).await;
    assert_invalid(&status, "time_stamp", what);

    let after = client.feed(user, channel, 10, now_ms()).await;
    assert_refresh(&after, &format!("a refresh at now after {what}"));
    assert_eq!(after.time_stamp, first_t, "the refresh after {what} points at the batch before it");
    assert!(ids(&after).iter().all(|id| !ids(&first).contains(id)), "no repeat after {what}");
    let results = client.report(vec![event(&after.exposure), event(&track(&after, 0).click)]).await;
    assert_accepted(&results, &format!("a report after {what}"));
    assert_serves(&mut client, what).await;
    server.stop().await;
}

#[tokio::test]
async fn a_time_stamp_of_1_shl_62_is_refused_and_the_feed_does_not_freeze() {
    far_future_is_refused_and_the_feed_does_not_freeze(1 << 62, "time_stamp = 1 << 62").await;
}

#[tokio::test]
async fn a_time_stamp_in_microseconds_is_refused_and_the_feed_does_not_freeze() {
    far_future_is_refused_and_the_feed_does_not_freeze(now_ms() * 1000, "a time_stamp in microseconds").await;
}

#[tokio::test]
async fn time_stamps_past_the_clock_skew_are_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (t, what) in [(now_ms() + 600_000, "time_stamp = now + 10 minutes"), (i64::MAX, "time_stamp = i64::MAX")] {
        let status = refused(&mut client, request("ahead", 0, 10, t)).await;
        assert_invalid(&status, "time_stamp", what);
        assert_serves(&mut client, what).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_time_stamp_a_minute_ahead_is_within_the_clock_skew() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let skewed = client.feed.user_recommend(request("skewed-clock", 0, 10, now_ms() + 60_000)).await;
    let skewed = skewed.expect("a client clock a minute ahead is served").into_inner();
    assert_refresh(&skewed, "time_stamp = now + 1 minute");
    assert_serves(&mut client, "time_stamp = now + 1 minute").await;
    server.stop().await;
}

#[tokio::test]
async fn a_huge_read_duration_is_rejected_and_counts_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Three new users' batches of one channel share articles: three read params of one article.
    let t = now_ms();
    let users = ["reader-1", "reader-2", "reader-3"];
    let mut feeds = Vec::new();
    for user in users {
        feeds.push(client.feed(user, 7, 20, t).await);
    }
    let article = ids(&feeds[0])
        .into_iter()
        .find(|id| feeds.iter().all(|f| ids(f).contains(id)))
        .expect("the three batches share an article");
    let read_param = |f: &ArticleResponse| {
        let card = f.recommends.iter().find(|a| a.article_id == article).expect("the shared article");
        card.track.clone().expect("its params").read
    };
    let huge: Vec<TrackEvent> = feeds.iter().map(|f| read_event(&read_param(f), 1 << 62)).collect();
    let results = client.report(huge).await;
    for (r, user) in results.iter().zip(users) {
        assert_rejected(r, "read_duration_ms", &format!("{user}'s read of 1 << 62 ms"));
    }
    let stats = client.article_stats(vec![article]).await.remove(0);
    assert_eq!((stats.reads, stats.read_ms), (0, 0), "rejected reads count nothing: {stats:?}");
    assert!(stats.popularity.is_finite(), "{stats:?}");
    assert_serves(&mut client, "reads of 1 << 62 ms").await;

    // A sane read of the same param is accepted and counted.
    let results = client.report(vec![read_event(&read_param(&feeds[0]), 30_000)]).await;
    assert_accepted(&results, "a read of 30 s");
    let stats = client.article_stats(vec![article]).await.remove(0);
    assert_eq!((stats.reads, stats.read_ms), (1, 30_000), "{stats:?}");
    assert!(stats.popularity.is_finite() && stats.popularity > 0.0, "{stats:?}");
    for user in users {
        let next = client.feed(user, 7, 20, now_ms()).await;
        assert_refresh(&next, &format!("{user}'s next refresh"));
        if user == users[0] {
            assert!(!ids(&next).contains(&article), "the read article stays hidden");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn reads_of_up_to_six_hours_are_accepted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let feed = client.feed("long-reader", 18, 5, now_ms()).await;
    assert_refresh(&feed, "the refresh");
    let (over, max) = (feed.recommends[0].article_id, feed.recommends[1].article_id);

    let results = client.report(vec![read_event(&track(&feed, 0).read, MAX_READ_MS + 1)]).await;
    assert_rejected(&results[0], "read_duration_ms", "a read of 6 h + 1 ms");
    let results = client.report(vec![read_event(&track(&feed, 1).read, MAX_READ_MS)]).await;
    assert_accepted(&results, "a read of exactly 6 h");

    let stats = client.article_stats(vec![over, max]).await;
    assert_eq!((stats[0].reads, stats[0].read_ms), (0, 0), "{:?}", stats[0]);
    assert_eq!((stats[1].reads, stats[1].read_ms), (1, MAX_READ_MS as u64), "{:?}", stats[1]);
    assert_serves(&mut client, "reads of 6 h and 6 h + 1 ms").await;
    server.stop().await;
}

#[tokio::test]
async fn an_action_time_before_its_batch_is_rejected() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // A batch ten seconds old, so that times between it and now exist.
    let batch_t = now_ms() - 10_000;
    let feed = client.feed("early-bird", 18, 5, batch_t).await;
    assert_refresh(&feed, "the refresh");
    let at = |e: TrackEvent, t: i64| TrackEvent { action_time: t, ..e };

    for (t, what) in [(batch_t - 1, "1 ms before its batch"), (batch_t - 3_600_000, "an hour before its batch")] {
        let results = client.report(vec![at(event(&track(&feed, 0).click), t)]).await;
        assert_rejected(&results[0], "action_time", &format!("a click {what}"));
        assert_serves(&mut client, &format!("a click {what}")).await;
    }
    let stats = client.article_stats(vec![feed.recommends[0].article_id]).await.remove(0);
    assert_eq!(stats.clicks, 0, "rejected clicks count nothing: {stats:?}");

    // 0 means now; the batch's own time and any time after it are fine.
    let results = client
        .report(vec![
            event(&track(&feed, 0).click),
            at(event(&track(&feed, 1).collect), batch_t),
            at(read_event(&track(&feed, 2).read, 20_000), batch_t + 5_000),
        ])
        .await;
    assert_accepted(&results, "events at now, at the batch's time and after it");
    let stats = client.article_stats(ids(&feed)[..3].to_vec()).await;
    assert_eq!((stats[0].clicks, stats[1].collects, stats[2].reads), (1, 1, 1), "{stats:?}");
    assert_serves(&mut client, "events before their batch").await;
    server.stop().await;
}

/// Feed requests out of range that `grpc.rs` does not cover: each names its field.
#[tokio::test]
async fn more_bad_feed_requests_name_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms();
    let long = "x".repeat(257);
    let cases = [
        (request("   ", 0, 10, t), "user_id"),
        (request(&long, 0, 10, t), "user_id"),
        (request("u", 0, i32::MAX, t), "article_num"),
        (request("u", 0, i32::MIN, t), "article_num"),
        (request("u", -1, 10, t), "channel_id"),
        (request("u", i32::MAX, 10, t), "channel_id"),
        (request("u", 0, 10, i64::MIN), "time_stamp"),
    ];
    for (req, field) in cases {
        let what = format!("{:?}", UserRequest { user_id: req.user_id.chars().take(8).collect(), ..req.clone() });
        let status = refused(&mut client, req).await;
        assert_invalid(&status, field, &what);
        assert_serves(&mut client, &what).await;
    }
    server.stop().await;
}

/// Report events out of range that only the engine's tests cover: over gRPC each gets its
/// own REJECTED verdict naming the field, next to an accepted one, and counts nothing.
#[tokio::test]
async fn bad_events_are_rejected_one_by_one_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let feed = client.feed("bad-events", 19, 5, now_ms()).await;
    assert_refresh(&feed, "the refresh");
    let read = track(&feed, 0).read;
    let click = track(&feed, 1).click;
    let at = |t: i64| TrackEvent { action_time: t, ..event(&click) };
    let cases = [
        (read_event(&read, 0), "read_duration_ms"),
        (read_event(&read, -1), "read_duration_ms"),
        (read_event(&read, i64::MIN), "read_duration_ms"),
        (at(-1), "action_time"),
        (at(i64::MIN), "action_time"),
        (at(now_ms() + 3_600_000), "action_time"),
        (at(i64::MAX), "action_time"),
    ];
    for (ev, field) in cases {
        let what = format!("{ev:?}");
        let results = client.report(vec![ev, event(&feed.exposure)]).await;
        assert_rejected(&results[0], field, &what);
        assert_ne!(results[1].verdict(), Verdict::Rejected, "{what}: the good event next to it: {:?}", results[1]);
        assert_serves(&mut client, &what).await;
    }
    let stats = client.article_stats(ids(&feed)[..2].to_vec()).await;
    assert_eq!((stats[0].reads, stats[0].read_ms, stats[1].clicks), (0, 0, 0), "{stats:?}");
    assert_eq!(stats[0].exposures, 1, "the exposure counted once: {stats:?}");
    server.stop().await;
}

/// The other services' bounds that no test covers yet.
#[tokio::test]
async fn tracking_lists_and_ids_are_bounded() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let status = client.tracking.article_stats(v1::ArticleStatsRequest { article_ids: vec![] }).await.unwrap_err();
    assert_invalid(&status, "article_ids", "ArticleStats of no ids");
    let many = v1::ArticleStatsRequest { article_ids: (1..=1001).collect() };
    let status = client.tracking.article_stats(many).await.unwrap_err();
    assert_invalid(&status, "article_ids", "ArticleStats of 1001 ids");
    let status = client.tracking.verify(v1::VerifyRequest { params: vec![] }).await.unwrap_err();
    assert_invalid(&status, "params", "Verify of no params");
    let status = client.explain(&"x".repeat(257), 1).await.unwrap_err();
    assert_invalid(&status, "user_id", "Explain of a 257-byte user_id");
    let status = client.explain("u", i64::MIN).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "Explain of article i64::MIN: {status:?}");
    assert_serves(&mut client, "bad Tracking calls").await;
    server.stop().await;
}
