//! `Tracking.Watch` through the real server: every event as judged, with its verdict, reason
//! and served context, filtered per subscriber; a subscriber that does not read is told how
//! many events it missed instead of slowing reports; bad filters are refused by name.

mod common;

use std::time::Duration;

use common::{TestServer, event, now_ms};
use reco_proto::v1::{EventWatchRequest, Verdict, WatchedEvent};
use tonic::Streaming;

async fn watch(client: &mut common::Client, filter: EventWatchRequest) -> Streaming<WatchedEvent> {
    client.tracking.watch(filter).await.expect("watch").into_inner()
}

async fn next(stream: &mut Streaming<WatchedEvent>) -> WatchedEvent {
    let got = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    got.expect("an event within 5 s").expect("the stream is healthy").expect("the stream goes on")
}

#[tokio::test]
async fn every_report_is_watched_with_its_verdict_and_served_context() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut all = watch(&mut client, EventWatchRequest::default()).await;
    let rejected = EventWatchRequest { verdicts: vec![Verdict::Rejected as i32], ..Default::default() };
    let mut only_rejected = watch(&mut client, rejected).await;
    let other_user = EventWatchRequest { user_id: "somebody else".into(), ..Default::default() };
    let mut nobody = watch(&mut client, other_user).await;
    // A subscription is live once the call returns; give the spawned feeders a moment anyway.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let t = now_ms();
    let batch = client.feed("watched", 5, 10, t).await;
    let card = &batch.recommends[2];
    let click = card.track.as_ref().unwrap().click.clone();
    // Another user's id under this user's signature.
    let forged = click.replacen("\"watched\"", "\"mallory\"", 1);
    assert_ne!(forged, click, "the param names its user");
    let results = client.report(vec![event(&batch.exposure), event(&click), event(&click), event(&forged)]).await;
    let verdicts: Vec<Verdict> = results.iter().map(|r| r.verdict()).collect();
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Accepted, Verdict::Duplicate, Verdict::Rejected]);

    let exposure = next(&mut all).await;
    assert_eq!((exposure.verdict(), exposure.action.as_str(), exposure.position), (Verdict::Accepted, "exposure", -1));
    assert_eq!(exposure.article_ids.len(), 10);
    assert_eq!((exposure.user_id.as_str(), exposure.channel_id, exposure.batch_time), ("watched", 5, t));
    assert_eq!(exposure.param, batch.exposure, "the param as sent");
    assert!(exposure.seq > 0 && !exposure.remote);

    let accepted = next(&mut all).await;
    assert_eq!((accepted.verdict(), accepted.action.as_str()), (Verdict::Accepted, "click"));
    assert_eq!((accepted.article_ids.clone(), accepted.position), (vec![card.article_id], 2));
    assert!(!accepted.sources.is_empty(), "the sources that proposed the card: {accepted:?}");
    assert!(accepted.algorithm_combine.ends_with(&accepted.sources));
    assert_eq!(accepted.seq, exposure.seq + 1);

    let duplicate = next(&mut all).await;
    assert_eq!((duplicate.verdict(), duplicate.seq, duplicate.position), (Verdict::Duplicate, 0, 2));

    let forgery = next(&mut all).await;
    assert_eq!(forgery.verdict(), Verdict::Rejected);
    assert!(forgery.reason.contains("signature"), "the reason: {}", forgery.reason);
    assert_eq!((forgery.user_id.as_str(), forgery.param.as_str()), ("mallory", forged.as_str()), "what it claims");

    let only = next(&mut only_rejected).await;
    assert_eq!(
        (only.verdict(), only.param.as_str()),
        (Verdict::Rejected, forged.as_str()),
        "the filter passes it alone"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), nobody.message()).await;
    assert!(quiet.is_err(), "another user's filter sees nothing: {quiet:?}");
    server.stop().await;
}

#[tokio::test]
async fn served_batches_are_watched_only_by_who_asks_for_them() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let served = EventWatchRequest { served: true, user_id: "served".into(), ..Default::default() };
    let mut with_batches = watch(&mut client, served).await;
    let events_only = EventWatchRequest { user_id: "served".into(), ..Default::default() };
    let mut without = watch(&mut client, events_only).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let t = now_ms();
    let batch = client.feed("served", 3, 6, t).await;
    let seen = next(&mut with_batches).await;
    assert_eq!((seen.verdict(), seen.action.as_str(), seen.position), (Verdict::Served, "exposure", -1));
    assert_eq!((seen.user_id.as_str(), seen.channel_id, seen.batch_time), ("served", 3, t));
    let ids: Vec<i64> = batch.recommends.iter().map(|a| a.article_id).collect();
    assert_eq!(seen.article_ids, ids, "the batch's articles in order");
    assert_eq!(seen.param, batch.exposure, "its exposure param as minted");
    assert!(seen.request_id != 0 && seen.seq == 0 && !seen.remote, "{seen:?}");

    // A history read serves nothing new; the report that follows reaches both subscribers,
    // and the one that did not ask for batches sees it first.
    let history = client.feed("served", 3, 6, t - 1).await;
    assert!(history.recommends.is_empty(), "nothing older than the first batch");
    client.report(vec![event(&batch.exposure)]).await;
    let reported = next(&mut with_batches).await;
    assert_eq!((reported.verdict(), reported.action.as_str()), (Verdict::Accepted, "exposure"));
    let first = next(&mut without).await;
    assert_eq!(first.verdict(), Verdict::Accepted, "no served batch for a subscriber that did not ask: {first:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_told_what_it_missed_and_reports_go_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut stalled = watch(&mut client, EventWatchRequest::default()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Rejected events are cheap to send in bulk: 40 reports of 1,000 long non-params, all
    // judged and watched, far more than the buffer and what HTTP/2's windows (2 MiB a stream
    // for tonic's client) hold on the way.
    let sent = 40_000u64;
    let filler = "x".repeat(400);
    for _ in 0..sent / 1000 {
        let results = client.report((0..1000).map(|i| event(&format!("{filler} {i}"))).collect()).await;
        assert!(results.iter().all(|r| r.verdict() == Verdict::Rejected));
    }
    let (mut received, mut dropped) = (0u64, 0u64);
    while received + dropped < sent {
        let e = next(&mut stalled).await;
        if e.dropped > 0 {
            assert_eq!(e.verdict(), Verdict::Unspecified, "a marker carries nothing else");
            dropped += e.dropped;
        } else {
            received += 1;
        }
    }
    assert!(dropped > 0, "more than the buffer was sent, so some were dropped");
    assert_eq!(received + dropped, sent, "every event is either delivered or counted as dropped");
    server.stop().await;
}

#[tokio::test]
async fn bad_filters_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (filter, field) in [
        (EventWatchRequest { actions: vec!["clicked".into()], ..Default::default() }, "actions"),
        (EventWatchRequest { verdicts: vec![9], ..Default::default() }, "verdicts"),
        (EventWatchRequest { channel_ids: vec![99], ..Default::default() }, "channel_ids"),
        (EventWatchRequest { user_id: "u".repeat(300), ..Default::default() }, "user_id"),
    ] {
        let status = client.tracking.watch(filter).await.expect_err("a bad filter");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{field}: {}", status.message());
    }
    server.stop().await;
}
