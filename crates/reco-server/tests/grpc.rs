//! The services over real gRPC (tonic client, HTTP/2).

mod common;

use common::{TestServer, now_ms};
use reco_proto::seed::UserRequest;
use reco_proto::seed::user_recommend_client::UserRecommendClient;
use reco_proto::v1::catalog_client::CatalogClient;
use reco_proto::v1::tracking_client::TrackingClient;
use reco_proto::v1::{self, TrackEvent, Verdict};
use tonic::Code;
use tonic_types::StatusExt;

fn request(user: &str, channel: i32, num: i32, t: i64) -> UserRequest {
    UserRequest { user_id: user.into(), channel_id: channel, article_num: num, time_stamp: t }
}

#[tokio::test]
async fn feed_pages_like_the_seed_web_api() {
    let server = TestServer::start().await;
    let mut feed = UserRecommendClient::new(server.channel().await);
    let mut catalog = CatalogClient::new(server.channel().await);
    let t = now_ms();

    let first = feed.user_recommend(request("1", 18, 10, t)).await.unwrap().into_inner();
    assert_eq!(first.recommends.len(), 10);
    assert_eq!(first.time_stamp, 0, "no earlier batch");
    assert!(first.exposure.contains("\"action\":\"exposure\""));
    let second = feed.user_recommend(request("1", 18, 10, t + 1)).await.unwrap().into_inner();
    assert_eq!(second.time_stamp, t, "pre_timestamp points at the first batch");
    let ids = |r: &reco_proto::seed::ArticleResponse| r.recommends.iter().map(|a| a.article_id).collect::<Vec<_>>();
    assert!(ids(&second).iter().all(|id| !ids(&first).contains(id)), "a refresh never repeats");

    let history = feed.user_recommend(request("1", 18, 10, second.time_stamp)).await.unwrap().into_inner();
    assert_eq!(history.recommends, first.recommends, "history returns the batch as served");
    assert_eq!((history.exposure.as_str(), history.time_stamp), ("", 0));

    // The seed web API's join: ids -> article info.
    let mut wanted = ids(&first);
    wanted.push(99_999_999);
    let info = catalog.articles(v1::ArticlesRequest { article_ids: wanted }).await.unwrap().into_inner();
    assert_eq!(info.articles.iter().map(|a| a.article_id).collect::<Vec<_>>(), ids(&first));
    assert!(info.articles.iter().all(|a| a.channel_id == 18 && !a.title.is_empty() && a.publish_time > 0));
    assert_eq!(info.missing_ids, vec![99_999_999]);

    let channels = catalog.channels(v1::ChannelsRequest {}).await.unwrap().into_inner().channels;
    assert_eq!((channels[0].id, channels[0].name.as_str()), (0, "推荐"));
    assert!(channels.len() >= 20 && channels.iter().skip(1).all(|c| c.article_count > 0));
    assert!(channels[0].article_count >= 5000);
    server.stop().await;
}

#[tokio::test]
async fn tracking_events_are_judged_one_by_one() {
    let server = TestServer::start().await;
    let mut feed = UserRecommendClient::new(server.channel().await);
    let mut tracking = TrackingClient::new(server.channel().await);
    let batch = feed.user_recommend(request("7", 0, 5, now_ms())).await.unwrap().into_inner();
    let card = &batch.recommends[0];
    let track = card.track.clone().unwrap();
    let ev = |param: &str, dur: i64| TrackEvent {
        param: param.into(),
        action_time: 0,
        read_duration_ms: dur,
        dislike: false,
    };
    let forged = track.click.replace("\"userId\":\"7\"", "\"userId\":\"8\"");
    let results = tracking
        .report(v1::ReportRequest {
            events: vec![
                ev(&batch.exposure, 0),
                ev(&track.click, 0),
                ev(&track.click, 0),
                ev(&forged, 0),
                ev("{}", 0),
                ev(&track.read, 45_000),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let verdicts: Vec<Verdict> = results.iter().map(|r| r.verdict()).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::Duplicate,
            Verdict::Rejected,
            Verdict::Rejected,
            Verdict::Accepted
        ]
    );
    assert_eq!(results[1].action, "click");
    assert_eq!(results[1].article_ids, vec![card.article_id]);
    assert!(results[3].reason.contains("bad signature"), "{}", results[3].reason);
    assert!(results[4].reason.contains("not valid tracking JSON"), "{}", results[4].reason);

    let stats = tracking
        .article_stats(v1::ArticleStatsRequest { article_ids: vec![card.article_id] })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!((stats[0].exposures, stats[0].clicks, stats[0].reads, stats[0].read_ms), (1, 1, 1, 45_000));
    assert!(stats[0].popularity > 0.0);

    let checks = tracking
        .verify(v1::VerifyRequest { params: vec![track.share.clone(), forged, "x".into()] })
        .await
        .unwrap()
        .into_inner()
        .checks;
    assert!(checks[0].valid && checks[0].payload_json == track.share);
    assert!(!checks[1].valid && checks[1].reason.contains("bad signature") && !checks[1].payload_json.is_empty());
    assert!(!checks[2].valid && checks[2].payload_json.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut feed = UserRecommendClient::new(server.channel().await);
    let cases = [
        (request("", 1, 10, 1), "user_id", "user_id"),
        (request("u", 1, 0, 1), "article_num", "article_num must be in 1..=100, got 0"),
        (request("u", 1, 101, 1), "article_num", "article_num must be in 1..=100, got 101"),
        (request("u", 1, -1, 1), "article_num", "article_num"),
        (request("u", 4242, 10, 1), "channel_id", "channel_id 4242 is unknown"),
        (request("u", 1, 10, 0), "time_stamp", "time_stamp must be"),
        (request("u", 1, 10, -1), "time_stamp", "time_stamp must be"),
        (request("u", 1, 10, now_ms() + 3_600_000), "time_stamp", "ahead of the server's clock"),
    ];
    for (req, field, needle) in cases {
        let status = feed.user_recommend(req.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{req:?}");
        assert!(status.message().contains(needle), "{req:?}: {}", status.message());
        // The field, machine-readable, in grpc-status-details-bin.
        let bad = status.get_details_bad_request().unwrap_or_else(|| panic!("no BadRequest: {status:?}"));
        assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
        assert_eq!(
            (bad.field_violations[0].field.as_str(), bad.field_violations[0].description.as_str()),
            (field, status.message())
        );
    }
    let mut tracking = TrackingClient::new(server.channel().await);
    let status = tracking.report(v1::ReportRequest { events: vec![] }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "events");
    let many = vec![TrackEvent { param: "x".into(), action_time: 0, read_duration_ms: 0, dislike: false }; 1001];
    let status = tracking.report(v1::ReportRequest { events: many }).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("at most 1000"));
    assert_eq!(status.get_details_quota_failure().unwrap().violations[0].subject, "events");
    let mut catalog = CatalogClient::new(server.channel().await);
    let status = catalog.articles(v1::ArticlesRequest { article_ids: vec![] }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "article_ids");
    let status = tracking.stats(v1::StatsRequest { from_ms: -1, to_ms: 0 }).await.unwrap_err();
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "from_ms");
    // A message over the 1 MiB limit is refused naming the limit, and the server keeps serving.
    let huge = TrackEvent { param: "x".repeat(2 << 20), action_time: 0, read_duration_ms: 0, dislike: false };
    let status = tracking.report(v1::ReportRequest { events: vec![huge] }).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("the limit is 1048576 bytes"), "{}", status.message());
    assert_eq!(status.get_details_quota_failure().unwrap().violations[0].subject, "request message bytes");
    assert!(feed.user_recommend(request("u", 1, 1, 1)).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["UserRecommend", "reco.v1.Catalog", "reco.v1.Tracking"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in ["UserRecommend", "reco.v1.Catalog", "reco.v1.Tracking"] {
        assert!(names.contains(&service.to_string()), "{names:?}");
    }
    server.stop().await;
}
