//! gRPC-Web over HTTP/1.1, as a browser sends it: raw requests in binary and text mode that
//! read the trailer frame, and the CORS preflight.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::web::{client, frame, frames, post};
use common::{TestServer, now_ms};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use prost::Message;
use prost::bytes::Bytes;
use reco_proto::seed::{ArticleResponse, UserRequest};

fn user_request(user: &str) -> UserRequest {
    UserRequest { user_id: user.into(), channel_id: 0, article_num: 10, time_stamp: now_ms() }
}

#[tokio::test]
async fn binary_mode_returns_the_message_and_an_ok_trailer() {
    let server = TestServer::start().await;
    for content_type in ["application/grpc-web", "application/grpc-web+proto"] {
        let (parts, body) =
            post(&server, "/UserRecommend/user_recommend", content_type, frame(&user_request(content_type))).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert!(parts.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/grpc-web"));
        assert_eq!(parts.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:8080");
        let exposed = parts.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().to_owned();
        for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            assert!(exposed.contains(h), "{exposed}");
        }
        let (data, trailer) = frames(&body);
        let resp = ArticleResponse::decode(data[0].as_slice()).unwrap();
        assert_eq!(resp.recommends.len(), 10);
        assert!(trailer.contains("grpc-status:0"), "{trailer:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn text_mode_is_base64_both_ways() {
    let server = TestServer::start().await;
    let body = STANDARD.encode(frame(&user_request("text")));
    let (parts, body) =
        post(&server, "/UserRecommend/user_recommend", "application/grpc-web-text", body.into_bytes()).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert!(parts.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/grpc-web-text"));
    // The body may be several base64 chunks (one per frame), each padded on its own; base64
    // quanta of 4 characters decode independently.
    let text = String::from_utf8(body).unwrap();
    let decoded: Vec<u8> = text.as_bytes().chunks(4).flat_map(|q| STANDARD.decode(q).unwrap()).collect();
    let (data, trailer) = frames(&decoded);
    assert_eq!(ArticleResponse::decode(data[0].as_slice()).unwrap().recommends.len(), 10);
    assert!(trailer.contains("grpc-status:0"), "{trailer:?}");
    server.stop().await;
}

#[tokio::test]
async fn errors_arrive_as_grpc_status_in_the_trailer() {
    let server = TestServer::start().await;
    let bad = UserRequest { article_num: 0, ..user_request("e") };
    let (parts, body) = post(&server, "/UserRecommend/user_recommend", "application/grpc-web+proto", frame(&bad)).await;
    assert_eq!(parts.status, StatusCode::OK);
    // A trailers-only error comes in the headers; otherwise in the trailer frame.
    let status = parts.headers.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    let message = match status {
        Some(s) => {
            assert_eq!(s, "3");
            parts.headers["grpc-message"].to_str().unwrap().to_owned()
        }
        None => {
            let (_, trailer) = frames(&body);
            assert!(trailer.contains("grpc-status:3"), "{trailer}");
            trailer
        }
    };
    assert!(message.contains("article_num"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_listed_origins_only() {
    let server = TestServer::start().await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("{}/UserRecommend/user_recommend", server.url()))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type,x-grpc-web,x-user-agent")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let ok = client().request(preflight("http://127.0.0.1:8080")).await.unwrap();
    assert!(ok.status().is_success(), "{:?}", ok.status());
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:8080");
    let methods = ok.headers()[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = ok.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(headers.contains("x-grpc-web") && headers.contains("content-type"), "{headers}");

    let refused = client().request(preflight("http://evil.example")).await.unwrap();
    assert!(refused.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_page_or_a_build_hint_is_served_at_root() {
    let server = TestServer::start().await;
    let resp = client()
        .request(Request::get(format!("{}/", server.url())).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.contains("scripts/build-web.sh"), "{body}");
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>the feed page</p>").unwrap();
    let config = reco_server::ServerConfig { web_dir: Some(dir.path().into()), ..Default::default() };
    let server = TestServer::start_with(config).await;
    let resp = client()
        .request(Request::get(format!("{}/", server.url())).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"<p>the feed page</p>");
    server.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_a_grpc_error_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    // A frame whose payload is not a UserRequest, and a frame cut short.
    for body in [vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff], vec![0, 0, 0, 0, 9, 1]] {
        let (parts, body) = post(&server, "/UserRecommend/user_recommend", "application/grpc-web+proto", body).await;
        assert_eq!(parts.status, StatusCode::OK);
        let status = match parts.headers.get("grpc-status") {
            Some(s) => s.to_str().unwrap().to_owned(),
            None => frames(&body).1,
        };
        assert!(!status.contains("grpc-status:0") && status != "0", "{status}");
    }
    let (_, body) =
        post(&server, "/UserRecommend/user_recommend", "application/grpc-web+proto", frame(&user_request("ok"))).await;
    assert!(frames(&body).1.contains("grpc-status:0"));
    server.stop().await;
}

#[tokio::test]
async fn explain_over_grpc_web() {
    use reco_proto::v1::{ExplainRequest, ExplainResponse};
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let batch = client.feed("web-explain", 0, 5, now_ms()).await;
    let card = batch.recommends[0].clone();
    let click = card.track.as_ref().unwrap().click.clone();
    let results = client.report(vec![common::event(&batch.exposure), common::event(&click)]).await;
    assert!(results.iter().all(|r| r.verdict() == reco_proto::v1::Verdict::Accepted), "{results:?}");

    let ask = |article_id| frame(&ExplainRequest { user_id: "web-explain".into(), article_id });
    let (parts, body) =
        post(&server, "/reco.v1.Tracking/Explain", "application/grpc-web+proto", ask(card.article_id)).await;
    assert_eq!(parts.status, StatusCode::OK);
    let (data, trailer) = frames(&body);
    assert!(trailer.contains("grpc-status:0"), "{trailer:?}");
    let e = ExplainResponse::decode(data[0].as_slice()).unwrap();
    assert_eq!(e.article_id, card.article_id);
    assert_eq!(e.served_sources, common::parse_combine(&common::combine(&click)).1.join("+"));
    assert!(!e.contributions.is_empty(), "{e:?}");

    let (parts, body) = post(&server, "/reco.v1.Tracking/Explain", "application/grpc-web+proto", ask(99_999_999)).await;
    let status = match parts.headers.get("grpc-status") {
        Some(s) => s.to_str().unwrap().to_owned(),
        None => frames(&body).1,
    };
    assert!(status == "5" || status.contains("grpc-status:5"), "NOT_FOUND: {status}");
    drop(client);
    server.stop().await;
}
