//! What operators watch: `/metrics` moves by exactly the traffic sent (over gRPC and
//! gRPC-Web alike), `/healthz` answers, and a path that is neither the page, an RPC nor these
//! answers 404.

mod common;

use std::collections::BTreeMap;

use common::web::{frame, get, post};
use common::{TestServer, event, now_ms};
use reco_proto::seed::UserRequest;
use reco_proto::v1::Verdict;

/// The samples of the exposition, `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

async fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let (parts, body) = get(server, "/metrics", &[]).await;
    assert_eq!(parts.status, 200);
    assert!(parts.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    samples(&String::from_utf8(body).unwrap())
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_by_exactly_what_was_sent() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let before = scrape(&server).await;

    let t = now_ms();
    let batch = client.feed("metered", 0, 10, t).await;
    client.feed("metered", 0, 10, t).await; // a history read
    let bad = UserRequest { user_id: String::new(), channel_id: 0, article_num: 10, time_stamp: t };
    assert_eq!(client.feed.user_recommend(bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let click = batch.recommends[0].track.as_ref().unwrap().click.clone();
    let results = client.report(vec![event(&batch.exposure), event(&click), event(&click), event("forged")]).await;
    let verdicts: Vec<Verdict> = results.iter().map(|r| r.verdict()).collect();
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Accepted, Verdict::Duplicate, Verdict::Rejected]);
    // One refresh over gRPC-Web: counted under the same method.
    let req = UserRequest { user_id: "metered-web".into(), channel_id: 0, article_num: 10, time_stamp: t };
    let (parts, _) = post(&server, "/UserRecommend/user_recommend", "application/grpc-web+proto", frame(&req)).await;
    assert_eq!(parts.status, 200);

    let after = scrape(&server).await;
    let feed = "/UserRecommend/user_recommend";
    assert_eq!(delta(&before, &after, &format!("reco_rpc_requests_total{{code=\"Ok\",rpc=\"{feed}\"}}")), 3.0);
    assert_eq!(
        delta(&before, &after, &format!("reco_rpc_requests_total{{code=\"InvalidArgument\",rpc=\"{feed}\"}}")),
        1.0
    );
    assert_eq!(delta(&before, &after, "reco_rpc_requests_total{code=\"Ok\",rpc=\"/reco.v1.Tracking/Report\"}"), 1.0);
    assert_eq!(delta(&before, &after, &format!("reco_rpc_duration_seconds_count{{rpc=\"{feed}\"}}")), 4.0);
    for (action, verdict, n) in [
        ("exposure", "accepted", 1.0),
        ("click", "accepted", 1.0),
        ("click", "duplicate", 1.0),
        ("unknown", "rejected", 1.0),
    ] {
        let key = format!("reco_events_total{{action=\"{action}\",verdict=\"{verdict}\"}}");
        assert_eq!(delta(&before, &after, &key), n, "{key}");
    }
    assert!(after["reco_catalog_articles"] > 0.0);
    assert_eq!(after["reco_learner_lag_events"], 0.0, "one process applies what it logs at once");
    assert!(after["reco_store_commit_seconds_count"] >= 1.0, "the report's commit was timed");
    assert!(after["reco_cached_users"] >= 2.0);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn healthz_answers_and_unknown_paths_are_404() {
    let server = TestServer::start().await;
    let (parts, body) = get(&server, "/healthz", &[]).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(parts.status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    for path in ["/nope", "/metrics/x", "/index.php", "/.env"] {
        let (parts, _) = get(&server, path, &[]).await;
        assert_eq!(parts.status, 404, "{path}");
    }
    let (parts, _) = get(&server, "/", &[]).await;
    assert_eq!(parts.status, 200, "the page (or how to build it) is at /");
    server.stop().await;
}
