//! `Tracking.Stats` and `Tracking.Explain` over real gRPC.

mod common;

use std::collections::BTreeMap;

use common::{TWO_VARIANTS, TestServer, card_combines, dislike, engine_config, event, ids, now_ms, read_event};
use reco_proto::v1::{self, StatsRequest, StatsRow, TrackEvent, Verdict};
use reco_server::ServerConfig;
use tonic::Code;

/// exposures, clicks, collects, shares, reads, dislikes.
type Counts = [u64; 6];
const EXPOSURE: usize = 0;
const CLICK: usize = 1;
const READ: usize = 4;
const DISLIKE: usize = 5;

fn rows(rows: &[StatsRow]) -> BTreeMap<String, Counts> {
    for r in rows {
        let ctr = if r.exposures == 0 { 0.0 } else { r.clicks as f64 / r.exposures as f64 };
        assert_eq!(r.ctr, ctr, "{r:?}");
    }
    rows.iter().map(|r| (r.key.clone(), [r.exposures, r.clicks, r.collects, r.shares, r.reads, r.dislikes])).collect()
}

/// Rows by bucket, by source and by channel, as the events sent should give them.
#[derive(Default)]
struct Expected([BTreeMap<String, Counts>; 3]);

/// Counts one event on one article of the given bucket, sources and channel.
fn count(expected: &mut Expected, bucket: u32, sources: &[String], channel: i32, action: usize) {
    let [by_bucket, by_source, by_channel] = &mut expected.0;
    by_bucket.entry(["main", "base"][bucket as usize].to_owned()).or_default()[action] += 1;
    for s in sources {
        by_source.entry(s.clone()).or_default()[action] += 1;
    }
    by_channel.entry(channel.to_string()).or_default()[action] += 1;
}

fn total(rows: &BTreeMap<String, Counts>) -> Counts {
    rows.values().fold([0; 6], |mut t, c| {
        t.iter_mut().zip(c).for_each(|(t, c)| *t += c);
        t
    })
}

#[tokio::test]
async fn stats_count_exactly_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), ServerConfig::default(), engine_config(TWO_VARIANTS)).await;
    let mut client = server.client().await;
    let t = now_ms();
    // Events told three minutes late: Stats counts by event time in whole minutes, and the
    // engine leaves out the minute that `to_ms` falls in, so events of this very minute would
    // not be in the default window (to_ms = now) yet.
    let t_event = t - 180_000;
    let at = |e: TrackEvent| TrackEvent { action_time: t_event, ..e };

    let mut expected = Expected::default();
    for u in 0..6 {
        let user = format!("counted-{u}");
        // The batch is stamped before its events: an event may not be older than its batch.
        let batch = client.feed(&user, 0, 5, t_event - 1_000).await;
        let channels: Vec<i32> = client.articles(ids(&batch)).await.iter().map(|a| a.channel_id).collect();
        let cards = card_combines(&batch);
        let track = |i: usize| batch.recommends[i].track.clone().unwrap();
        let mut events = vec![at(event(&batch.exposure)), at(event(&track(0).click)), at(event(&track(1).click))];
        for (i, (bucket, sources)) in cards.iter().enumerate() {
            count(&mut expected, *bucket, sources, channels[i], EXPOSURE);
        }
        for i in [0, 1] {
            count(&mut expected, cards[i].0, &cards[i].1, channels[i], CLICK);
        }
        if u % 2 == 0 {
            events.push(at(dislike(&track(4).share)));
            count(&mut expected, cards[4].0, &cards[4].1, channels[4], DISLIKE);
        }
        if u == 1 {
            events.push(at(read_event(&track(0).read, 30_000)));
            count(&mut expected, cards[0].0, &cards[0].1, channels[0], READ);
        }
        // Repeats and rejections count nothing.
        events.push(at(event(&track(0).click)));
        events.push(at(dislike(&batch.exposure)));
        let verdicts: Vec<Verdict> = client.report(events).await.iter().map(|r| r.verdict()).collect();
        let n = verdicts.len();
        assert!(verdicts[..n - 2].iter().all(|v| *v == Verdict::Accepted), "{verdicts:?}");
        assert_eq!(verdicts[n - 2..], [Verdict::Duplicate, Verdict::Rejected]);
    }
    let [bucket_rows, source_rows, channel_rows] = &expected.0;
    assert_eq!(total(bucket_rows), [30, 12, 0, 0, 1, 3]);

    let stats = |from_ms, to_ms| {
        let mut tracking = client.tracking.clone();
        async move { tracking.stats(StatsRequest { from_ms, to_ms }).await }
    };
    let before = now_ms();
    let default_window = stats(0, 0).await.unwrap().into_inner();
    assert!((before..=now_ms()).contains(&default_window.to_ms), "to_ms = 0 is now: {}", default_window.to_ms);
    assert_eq!(default_window.from_ms, default_window.to_ms - 24 * 3_600_000, "from_ms = 0 is a day before");
    let around = stats(t_event - 60_000, t_event + 60_000).await.unwrap().into_inner();
    assert_eq!((around.from_ms, around.to_ms), (t_event - 60_000, t_event + 60_000));
    for got in [&default_window, &around] {
        assert_eq!(&rows(&got.by_bucket), bucket_rows, "by bucket");
        assert_eq!(&rows(&got.by_source), source_rows, "by source");
        assert_eq!(&rows(&got.by_channel), channel_rows, "by channel");
    }
    for (from, to) in [(t - 24 * 3_600_000, t_event - 120_000), (t + 60_000, t + 3_600_000)] {
        let outside = stats(from, to).await.unwrap().into_inner();
        assert_eq!((outside.from_ms, outside.to_ms), (from, to));
        assert!(
            outside.by_bucket.is_empty() && outside.by_source.is_empty() && outside.by_channel.is_empty(),
            "{outside:?}"
        );
    }

    for (from, to, needle) in [
        (-1, 0, "from_ms must be"),
        (0, -5, "to_ms must be"),
        (100, 100, "from_ms must be before to_ms"),
        (200, 100, "from_ms must be before to_ms"),
        (t + 3_600_000, 0, "from_ms must be before to_ms"),
    ] {
        let status = stats(from, to).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "[{from}, {to})");
        assert!(status.message().contains(needle), "[{from}, {to}): {}", status.message());
    }
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn explain_tells_why_an_article_is_picked() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), ServerConfig::default(), engine_config(TWO_VARIANTS)).await;
    let mut client = server.client().await;
    let user = "curious";
    let batch = client.feed(user, 0, 10, now_ms()).await;
    let (bucket, sources) = card_combines(&batch).remove(0);
    let card = batch.recommends[0].clone();
    let results = client.report(vec![event(&batch.exposure), event(&card.track.unwrap().click)]).await;
    assert!(results.iter().all(|r| r.verdict() == Verdict::Accepted), "{results:?}");

    let e = client.explain(user, card.article_id).await.unwrap();
    assert_eq!((e.user_id.as_str(), e.article_id), (user, card.article_id));
    assert_eq!(e.bucket, bucket);
    assert_eq!(e.variant, ["main", "base"][bucket as usize]);
    assert_eq!(e.served_sources, sources.join("+"), "served as its param says");
    assert!(!e.contributions.is_empty(), "{e:?}");
    assert!(e.contributions.iter().all(|c| c.weight != 0.0 && !c.feature.is_empty()), "{e:?}");
    assert!(!e.hidden && e.demotion == 1.0 && (0.0..=1.0).contains(&e.probability), "{e:?}");

    // Never served to this user: no served sources.
    let unseen = (1..).find(|id| !ids(&batch).contains(id)).unwrap();
    let e = client.explain(user, unseen).await.unwrap();
    assert_eq!(e.served_sources, "");

    let missing = client.explain(user, 99_999_999).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(missing.message().contains("99999999"), "{}", missing.message());
    let nobody = client.explain("", card.article_id).await.unwrap_err();
    assert_eq!(nobody.code(), Code::InvalidArgument);
    assert!(nobody.message().contains("user_id"), "{}", nobody.message());
    // The other services go on.
    let v = client.tracking.verify(v1::VerifyRequest { params: vec![batch.exposure.clone()] }).await.unwrap();
    assert!(v.into_inner().checks[0].valid);
    drop(client);
    server.stop().await;
}
