//! The live catalog through the real server: Publish and Retract while serving, their
//! admin token over gRPC and gRPC-Web, verdicts per article, durability across a crash.

mod common;

use common::web::{frame, frames, post_with};
use common::{Client, TestServer, ids, now_ms};
use prost::Message;
use reco_engine::EngineConfig;
use reco_proto::v1::{self, PublishOutcome, RetractOutcome};
use reco_server::ServerConfig;
use tonic::Code;
use tonic_types::StatusExt;

const TOKEN: &str = "publisher-token-0123456789";

fn with_token() -> ServerConfig {
    ServerConfig { admin_token: Some(TOKEN.to_owned()), ..ServerConfig::default() }
}

fn article(id: i64, channel_id: i32, title: &str) -> v1::ArticleInfo {
    v1::ArticleInfo {
        article_id: id,
        channel_id,
        title: title.to_owned(),
        author: "编辑部".to_owned(),
        publish_time: now_ms(),
        keywords: vec!["突发".to_owned()],
        ..Default::default()
    }
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn publish(client: &mut Client, articles: Vec<v1::ArticleInfo>) -> v1::PublishResponse {
    client.catalog.publish(authorized(v1::PublishRequest { articles }, TOKEN)).await.unwrap().into_inner()
}

async fn retract(client: &mut Client, article_ids: Vec<i64>, reason: &str) -> v1::RetractResponse {
    let request = v1::RetractRequest { article_ids, reason: reason.to_owned() };
    client.catalog.retract(authorized(request, TOKEN)).await.unwrap().into_inner()
}

fn outcomes(r: &v1::PublishResponse) -> Vec<PublishOutcome> {
    r.results.iter().map(|r| r.outcome()).collect()
}

#[tokio::test]
async fn a_published_article_is_in_the_next_refresh_of_its_channel_and_of_recommended() {
    let server = TestServer::start_with(with_token()).await;
    let mut client = server.client().await;
    // A user who has been served before, and one who has not.
    client.feed("regular", 18, 10, now_ms() - 10).await;
    let got = publish(&mut client, vec![article(900_001, 18, "Python 3.15 发布")]).await;
    assert_eq!(outcomes(&got), [PublishOutcome::Created]);
    assert_eq!((got.created, got.updated, got.rejected), (1, 0, 0));
    for (user, channel) in [("regular", 18), ("newcomer", 18), ("newcomer", 0)] {
        let feed = client.feed(user, channel, 100, now_ms()).await;
        assert!(ids(&feed).contains(&900_001), "{user} in channel {channel}: {:?}", ids(&feed));
    }
    let info = client.articles(vec![900_001]).await;
    assert_eq!(info[0].title, "Python 3.15 发布");
    assert!(!info[0].retracted);
    let channels = client.catalog.channels(v1::ChannelsRequest {}).await.unwrap().into_inner().channels;
    let before = channels.iter().find(|c| c.id == 18).unwrap().article_count;

    // An upsert by id replaces the content; the count stays.
    let got = publish(&mut client, vec![article(900_001, 18, "Python 3.15 正式发布")]).await;
    assert_eq!(outcomes(&got), [PublishOutcome::Updated]);
    assert_eq!(client.articles(vec![900_001]).await[0].title, "Python 3.15 正式发布");
    let channels = client.catalog.channels(v1::ChannelsRequest {}).await.unwrap().into_inner().channels;
    assert_eq!(channels.iter().find(|c| c.id == 18).unwrap().article_count, before);
}

#[tokio::test]
async fn a_retracted_article_is_in_no_refresh_and_history_is_unchanged() {
    let server = TestServer::start_with(with_token()).await;
    let mut client = server.client().await;
    let t0 = now_ms() - 1_000;
    let first = client.feed("reader", 0, 10, t0).await;
    let gone = ids(&first)[3];
    let before = client.feed("reader", 0, 10, t0).await.encode_to_vec();

    let got = retract(&mut client, vec![gone, gone, 424_242_424], "版权投诉").await;
    let got: Vec<RetractOutcome> = got.results.iter().map(|r| r.outcome()).collect();
    assert_eq!(got, [RetractOutcome::Retracted, RetractOutcome::AlreadyRetracted, RetractOutcome::NotFound]);

    let after = client.feed("reader", 0, 10, t0).await.encode_to_vec();
    assert_eq!(before, after, "a history read returns the stored batch byte for byte");
    let channel = client.articles(vec![gone]).await[0].channel_id;
    for user in ["reader", "someone", "else"] {
        for (c, t) in [(0, now_ms()), (channel, now_ms() + 1)] {
            let feed = client.feed(user, c, 100, t).await;
            assert!(!ids(&feed).contains(&gone), "{user} in channel {c} was served retracted {gone}");
        }
    }
    let info = client.articles(vec![gone]).await;
    assert!(info[0].retracted);
    assert_eq!(info[0].retract_reason, "版权投诉");
    assert!(info[0].retract_time > 0);

    // Events on it from before still count (the user saw it), as the param is the server's.
    let click = first.recommends[3].track.as_ref().unwrap().click.clone();
    let verdict = client.report(vec![common::event(&click)]).await;
    assert_eq!(verdict[0].verdict(), v1::Verdict::Accepted, "{}", verdict[0].reason);

    // Publishing it again brings it back.
    let mut again = client.articles(vec![gone]).await.remove(0);
    again.publish_time = now_ms();
    assert_eq!(outcomes(&publish(&mut client, vec![again]).await), [PublishOutcome::Updated]);
    assert!(!client.articles(vec![gone]).await[0].retracted);
}

#[tokio::test]
async fn bad_articles_are_rejected_one_by_one_naming_the_field() {
    let server = TestServer::start_with(with_token()).await;
    let mut client = server.client().await;
    let no_title = article(900_011, 18, "  ");
    let bad_channel = article(900_012, 99, "t");
    let recommended = article(900_013, 0, "t");
    let future = v1::ArticleInfo { publish_time: now_ms() + 3_600_000, ..article(900_014, 18, "t") };
    let long = article(900_015, 18, &"长".repeat(301));
    let bad_id = article(0, 18, "t");
    let articles = vec![
        article(900_010, 18, "good"),
        no_title,
        bad_channel,
        recommended,
        future,
        long,
        bad_id,
        article(900_010, 18, "again"),
    ];
    let got = publish(&mut client, articles).await;
    use PublishOutcome::{Created, Rejected};
    assert_eq!(outcomes(&got), [Created, Rejected, Rejected, Rejected, Rejected, Rejected, Rejected, Rejected]);
    assert_eq!((got.created, got.rejected), (1, 7));
    let reasons: Vec<&str> = got.results.iter().map(|r| r.reason.as_str()).collect();
    for (i, field) in [(1, "title"), (2, "channel_id 99"), (3, "channel_id 0"), (4, "publish_time"), (5, "title")] {
        assert!(reasons[i].contains(field), "result {i}: {}", reasons[i]);
    }
    assert!(reasons[5].contains("at most 300"), "{}", reasons[5]);
    assert!(reasons[6].contains("id must be > 0"), "{}", reasons[6]);
    assert!(reasons[7].contains("repeated"), "{}", reasons[7]);
    assert_eq!(client.articles(vec![900_010]).await[0].title, "good");
    let missing = client.catalog.articles(v1::ArticlesRequest { article_ids: vec![900_011, 900_014] }).await;
    assert_eq!(missing.unwrap().into_inner().missing_ids, [900_011, 900_014]);

    // Each refusal names its field (or quota) in grpc-status-details-bin too.
    let field = |status: &tonic::Status| status.get_details_bad_request().unwrap().field_violations[0].field.clone();
    let empty = client.catalog.publish(authorized(v1::PublishRequest { articles: vec![] }, TOKEN)).await;
    let empty = empty.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(field(&empty), "articles", "{}", empty.message());
    let many = (1..=1001).map(|i| article(i, 18, "t")).collect();
    let many = client.catalog.publish(authorized(v1::PublishRequest { articles: many }, TOKEN)).await.unwrap_err();
    assert_eq!(many.code(), Code::ResourceExhausted, "{}", many.message());
    assert!(many.message().contains("at most 1000"), "{}", many.message());
    assert_eq!(many.get_details_quota_failure().unwrap().violations[0].subject, "articles");
    let no_reason =
        client.catalog.retract(authorized(v1::RetractRequest { article_ids: vec![1], reason: " ".into() }, TOKEN));
    let no_reason = no_reason.await.unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(no_reason.message().contains("reason"), "{}", no_reason.message());
    assert_eq!(field(&no_reason), "reason");
    let no_ids =
        client.catalog.retract(authorized(v1::RetractRequest { article_ids: vec![], reason: "r".into() }, TOKEN));
    assert_eq!(field(&no_ids.await.unwrap_err()), "article_ids");
}

#[tokio::test]
async fn writes_need_the_admin_token_over_grpc() {
    let server = TestServer::start_with(with_token()).await;
    let mut client = server.client().await;
    let request = || v1::PublishRequest { articles: vec![article(900_020, 18, "t")] };
    let none = client.catalog.publish(request()).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{}", none.message());
    let wrong = client.catalog.publish(authorized(request(), "publisher-token-0123456780")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::PermissionDenied, "{}", wrong.message());
    let mut basic = tonic::Request::new(request());
    basic.metadata_mut().insert("authorization", format!("Basic {TOKEN}").parse().unwrap());
    assert_eq!(client.catalog.publish(basic).await.unwrap_err().code(), Code::Unauthenticated);
    let retract = v1::RetractRequest { article_ids: vec![1], reason: "r".into() };
    assert_eq!(client.catalog.retract(retract).await.unwrap_err().code(), Code::Unauthenticated);
    let missing = client.catalog.articles(v1::ArticlesRequest { article_ids: vec![900_020] }).await.unwrap();
    assert_eq!(missing.into_inner().missing_ids, [900_020], "a refused publish changes nothing");

    // Without a configured token, writes are off for everyone; reads stay open.
    let open = TestServer::start().await;
    let mut client = open.client().await;
    let off = client.catalog.publish(authorized(request(), TOKEN)).await.unwrap_err();
    assert_eq!(off.code(), Code::PermissionDenied);
    assert!(off.message().contains("--admin-token"), "{}", off.message());
    assert_eq!(client.articles(vec![1]).await.len(), 1);
}

#[tokio::test]
async fn writes_need_the_admin_token_over_grpc_web() {
    let server = TestServer::start_with(with_token()).await;
    let body = || frame(&v1::PublishRequest { articles: vec![article(900_030, 18, "网页发布")] });
    let path = "/reco.v1.Catalog/Publish";
    let kind = "application/grpc-web+proto";
    let bearer = format!("Bearer {TOKEN}");
    for (headers, status) in [
        (vec![], "grpc-status:16"),
        (vec![("authorization", "Bearer nope-nope-nope-nope")], "grpc-status:7"),
        (vec![("authorization", bearer.as_str())], "grpc-status:0"),
    ] {
        let (parts, bytes) = post_with(&server, path, kind, body(), &headers).await;
        // An error comes trailers-only: the status in the HTTP headers and no body.
        let (data, trailer) = if bytes.is_empty() {
            let code = parts.headers["grpc-status"].to_str().unwrap();
            (Vec::new(), format!("grpc-status:{code}"))
        } else {
            frames(&bytes)
        };
        assert!(trailer.contains(status), "{headers:?}: {trailer} {:?}", parts.headers);
        if status == "grpc-status:0" {
            let got = v1::PublishResponse::decode(data[0].as_slice()).unwrap();
            assert_eq!(got.created, 1);
        }
    }
    let mut client = server.client().await;
    assert_eq!(client.articles(vec![900_030]).await[0].title, "网页发布");
}

#[tokio::test]
async fn published_and_retracted_articles_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), with_token(), EngineConfig::default()).await;
    let mut client = server.client().await;
    let batch: Vec<v1::ArticleInfo> = (0..1000).map(|i| article(910_000 + i, 1 + (i % 25) as i32, "t")).collect();
    assert_eq!(publish(&mut client, batch).await.created, 1000);
    retract(&mut client, vec![910_007], "撤稿").await;
    drop(client);
    server.abort().await;

    let server = TestServer::start_in(dir.path(), with_token(), EngineConfig::default()).await;
    let mut client = server.client().await;
    let got = client.articles((910_000..911_000).collect()).await;
    assert_eq!(got.len(), 1000);
    assert!(got[7].retracted && got[7].retract_reason == "撤稿");
    assert_eq!(got.iter().filter(|a| a.retracted).count(), 1);
    let feed = client.feed("after-crash", 0, 100, now_ms()).await;
    assert!(!ids(&feed).contains(&910_007));
}

async fn watch(client: &mut Client, channel_ids: Vec<i32>, since: u64) -> tonic::Streaming<v1::CatalogChange> {
    client.catalog.watch(v1::WatchRequest { channel_ids, since }).await.unwrap().into_inner()
}

async fn next(stream: &mut tonic::Streaming<v1::CatalogChange>) -> v1::CatalogChange {
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await;
    got.expect("a change within 10 s").unwrap().expect("the stream is open")
}

#[tokio::test]
async fn watchers_see_changes_of_their_channels_in_order_and_catch_up_with_since() {
    use v1::ChangeKind::{Published, Resync, Retracted, Subscribed, Updated};
    let server = TestServer::start_with(with_token()).await;
    let mut client = server.client().await;
    let mut python = watch(&mut client, vec![18], 0).await;
    let mut all = watch(&mut client, vec![], 0).await;
    let hello = next(&mut python).await;
    assert_eq!(hello.kind(), Subscribed);
    assert_eq!(next(&mut all).await.kind(), Subscribed);

    publish(&mut client, vec![article(920_001, 18, "py"), article(920_002, 19, "java")]).await;
    publish(&mut client, vec![article(920_001, 18, "py, edited")]).await;
    retract(&mut client, vec![920_001], "wrong").await;
    let seen: Vec<(v1::ChangeKind, i64)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let c = next(&mut python).await;
            v.push((c.kind(), c.article.unwrap().article_id));
        }
        v
    };
    assert_eq!(seen, [(Published, 920_001), (Updated, 920_001), (Retracted, 920_001)]);
    let mut seqs = Vec::new();
    for want in [920_001, 920_002, 920_001, 920_001] {
        let c = next(&mut all).await;
        assert_eq!(c.article.as_ref().unwrap().article_id, want);
        seqs.push(c.seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > hello.seq, "{seqs:?} after {}", hello.seq);

    // A watcher that reconnects with the last number it saw gets what it missed first.
    let mut back = watch(&mut client, vec![], seqs[0]).await;
    assert_eq!(next(&mut back).await.kind(), Subscribed);
    let missed: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(next(&mut back).await.seq);
        }
        v
    };
    assert_eq!(missed, seqs[1..]);
    // One from before this server's start (its ring starts empty) is told to reload.
    let mut stale = watch(&mut client, vec![], hello.seq - 1_000_000).await;
    assert_eq!(next(&mut stale).await.kind(), Subscribed);
    assert_eq!(next(&mut stale).await.kind(), Resync);

    let bad = client.catalog.watch(v1::WatchRequest { channel_ids: vec![99], since: 0 }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("channel_ids"), "{}", bad.message());
    assert_eq!(bad.get_details_bad_request().unwrap().field_violations[0].field, "channel_ids");
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_ended_and_never_slows_publishing() {
    let server = TestServer::start_with(with_token()).await;
    let mut client = server.client().await;
    // Its own connection with HTTP/2's smallest windows, so that not reading fills them soon.
    let narrow = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut idle = v1::catalog_client::CatalogClient::new(narrow)
        .watch(v1::WatchRequest { channel_ids: vec![], since: 0 })
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    for round in 0..10 {
        let batch = (0..1000).map(|i| article(930_000 + round * 1000 + i, 1 + (i % 25) as i32, "t")).collect();
        assert_eq!(publish(&mut client, batch).await.created, 1000);
    }
    let publishing = started.elapsed();
    let mut received = 0;
    let status = loop {
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), idle.message()).await;
        match got.unwrap_or_else(|_| panic!("no status after {received} changes")) {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stream ended without a status after {received} changes"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());
    assert!(status.message().contains("resubscribe with since"), "{}", status.message());
    assert_eq!(status.get_details_quota_failure().unwrap().violations[0].subject, "watch buffer");
    assert_eq!(status.get_details_retry_info().unwrap().retry_delay, Some(std::time::Duration::ZERO), "at once");
    assert!(received < 10_000, "{received}");
    eprintln!("10,000 articles published in {publishing:?} beside a watcher that did not read; it got {received}");
}
