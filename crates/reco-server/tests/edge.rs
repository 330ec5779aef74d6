//! What every common gRPC client expects beyond the services themselves, over gRPC (HTTP/2)
//! and gRPC-Web (HTTP/1.1): compression both ways, reflection v1 and v1alpha, UNIMPLEMENTED
//! for unknown services, deadlines answered DEADLINE_EXCEEDED, oversized messages
//! RESOURCE_EXHAUSTED, field violations in `grpc-status-details-bin`.

mod common;

use std::io::Read as _;

use base64::Engine as _;
use common::web::{frame, frames, post, post_with};
use common::{TestServer, now_ms};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use prost::bytes::Bytes;
use reco_proto::seed::user_recommend_client::UserRecommendClient;
use reco_proto::seed::{ArticleResponse, UserRequest};
use reco_proto::v1;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt;

fn user_request(user: &str, num: i32) -> UserRequest {
    UserRequest { user_id: user.into(), channel_id: 0, article_num: num, time_stamp: now_ms() }
}

/// What a raw HTTP/2 gRPC call got: the head, the body's frames (flag, payload) and the
/// trailers (or the headers, for a trailers-only answer).
struct Answer {
    parts: http::response::Parts,
    frames: Vec<(u8, Vec<u8>)>,
    trailers: http::HeaderMap,
}

impl Answer {
    /// `grpc-status` from the trailers, or from the headers of a trailers-only answer.
    fn grpc_status(&self) -> String {
        let v = self.trailers.get("grpc-status").or_else(|| self.parts.headers.get("grpc-status"));
        v.expect("a grpc-status").to_str().unwrap().to_owned()
    }

    fn grpc_message(&self) -> String {
        let v = self.trailers.get("grpc-message").or_else(|| self.parts.headers.get("grpc-message"));
        v.map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
}

/// One gRPC call over HTTP/2 (prior knowledge) with exactly the headers given, so that
/// nothing client-side interferes (a tonic client would time out a `grpc-timeout` itself).
async fn h2_call(server: &TestServer, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let mut req = Request::post(format!("{}{path}", server.url()))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut bytes: &[u8] = &collected.to_bytes();
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        frames.push((bytes[0], bytes[5..5 + len].to_vec()));
        bytes = &bytes[5 + len..];
    }
    Answer { parts, frames, trailers }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

#[tokio::test]
async fn compressed_requests_are_accepted_and_answers_compressed_for_clients_that_accept_it() {
    let server = TestServer::start().await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut feed = UserRecommendClient::new(server.channel().await)
            .send_compressed(encoding)
            .accept_compressed(CompressionEncoding::Gzip);
        let resp = feed.user_recommend(user_request(&format!("{encoding:?}"), 10)).await.unwrap();
        // Answers are compressed with the server's default, gzip, whatever the request used.
        assert_eq!(resp.metadata().get("grpc-encoding").unwrap(), "gzip", "{encoding:?}");
        assert_eq!(resp.into_inner().recommends.len(), 10);
    }

    // On the wire: a 10-article answer is a gzip frame (flag 1) much smaller than the
    // message; a tiny answer goes out plain (flag 0) though the client accepts gzip.
    let call = |user: &str| frame(&user_request(user, 10));
    let gz = h2_call(&server, "/UserRecommend/user_recommend", call("wire"), &[("grpc-accept-encoding", "gzip")]).await;
    assert_eq!(gz.grpc_status(), "0");
    assert_eq!(gz.parts.headers["grpc-encoding"], "gzip");
    let (flag, payload) = &gz.frames[0];
    assert_eq!(*flag, 1, "compressed");
    let message = gunzip(payload);
    assert_eq!(ArticleResponse::decode(message.as_slice()).unwrap().recommends.len(), 10);
    assert!(payload.len() * 2 < message.len(), "{} bytes for {}", payload.len(), message.len());

    let plain = h2_call(&server, "/UserRecommend/user_recommend", call("plain"), &[]).await;
    assert_eq!(plain.frames[0].0, 0, "a client that does not accept gzip gets a plain answer");
    assert!(plain.parts.headers.get("grpc-encoding").is_none());

    // gRPC-Web: a gzip request is accepted too; the answer is plain, as the page's client
    // (which advertises no encoding) needs it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &user_request("web-gzip", 10).encode_to_vec()).unwrap();
    let packed = gz.finish().unwrap();
    let mut body = vec![1];
    body.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    body.extend_from_slice(&packed);
    let headers = [("grpc-encoding", "gzip")];
    let (_, body) =
        post_with(&server, "/UserRecommend/user_recommend", "application/grpc-web+proto", body, &headers).await;
    let (data, trailer) = frames(&body);
    assert!(trailer.contains("grpc-status:0"), "{trailer}");
    assert_eq!(ArticleResponse::decode(data[0].as_slice()).unwrap().recommends.len(), 10);

    let tiny = frame(&v1::VerifyRequest { params: vec!["x".into()] });
    let small = h2_call(&server, "/reco.v1.Tracking/Verify", tiny, &[("grpc-accept-encoding", "gzip")]).await;
    assert_eq!(small.grpc_status(), "0");
    assert_eq!(small.frames[0].0, 0, "under 512 bytes: not worth compressing");
    assert!(v1::VerifyResponse::decode(small.frames[0].1.as_slice()).is_ok());
    server.stop().await;
}

#[tokio::test]
async fn compression_is_configurable() {
    let config = reco_server::ServerConfig { compression: vec![], ..Default::default() };
    let server = TestServer::start_with(config).await;
    let body = frame(&user_request("off", 10));
    let off = h2_call(&server, "/UserRecommend/user_recommend", body, &[("grpc-accept-encoding", "gzip,zstd")]).await;
    assert_eq!((off.grpc_status().as_str(), off.frames[0].0), ("0", 0));
    server.stop().await;

    let zstd = reco_server::parse_compression("zstd").unwrap();
    let server = TestServer::start_with(reco_server::ServerConfig { compression: zstd, ..Default::default() }).await;
    let body = frame(&user_request("zstd", 10));
    let on = h2_call(&server, "/UserRecommend/user_recommend", body, &[("grpc-accept-encoding", "gzip,zstd")]).await;
    assert_eq!(on.parts.headers["grpc-encoding"], "zstd");
    assert_eq!(on.frames[0].0, 1);
    server.stop().await;
}

#[tokio::test]
async fn unknown_services_and_methods_are_unimplemented_over_grpc_and_grpc_web() {
    let server = TestServer::start().await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    for path in ["/Foo/bar", "/UserRecommend/nope", "/grpc.reflection.v2.ServerReflection/ServerReflectionInfo"] {
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<UserRequest, ArticleResponse>::default();
        let path_and_query = http::uri::PathAndQuery::from_static(path);
        let status = grpc.unary(tonic::Request::new(user_request("u", 1)), path_and_query, codec).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
    let status = h2_call(&server, "/Foo/bar", frame(&user_request("u", 1)), &[]).await;
    assert_eq!(status.grpc_status(), "12");
    assert!(status.grpc_message().contains("/Foo/bar"), "{}", status.grpc_message());

    for content_type in ["application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text"] {
        let mut body = frame(&user_request("u", 1));
        if content_type.ends_with("-text") {
            body = base64::engine::general_purpose::STANDARD.encode(body).into_bytes();
        }
        let (parts, _) = post(&server, "/Foo/bar", content_type, body.clone()).await;
        assert_eq!(parts.status, StatusCode::OK, "{content_type}");
        assert_eq!(parts.headers["grpc-status"], "12", "{content_type}");
        assert_eq!(parts.headers[header::CONTENT_TYPE], content_type);
        assert_eq!(parts.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:8080", "CORS still applies");
        // An unknown method of a known service: tonic's answer, through tonic-web.
        // (Trailers-only, so in the headers.)
        let (parts, _) = post(&server, "/UserRecommend/nope", content_type, body).await;
        assert_eq!(parts.headers["grpc-status"], "12", "{content_type}");
    }
    // The page keeps its paths: `/` is the page's build hint, any other GET a plain 404 (the
    // page has no client-side routes), never a gRPC answer.
    for (path, status) in
        [("/", StatusCode::OK), ("/Foo/bar", StatusCode::NOT_FOUND), ("/some/route", StatusCode::NOT_FOUND)]
    {
        let client = common::web::client();
        let resp = client.request(Request::get(format!("{}{path}", server.url())).body(Full::default()).unwrap());
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert!(resp.headers().get("grpc-status").is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn with_a_built_page_unknown_grpc_paths_are_unimplemented_its_files_served_and_the_rest_404() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>the feed page</p>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
    let config = reco_server::ServerConfig { web_dir: Some(dir.path().into()), ..Default::default() };
    let server = TestServer::start_with(config).await;
    let (parts, _) = post(&server, "/Foo/bar", "application/grpc-web+proto", frame(&user_request("u", 1))).await;
    assert_eq!(parts.headers["grpc-status"], "12");
    assert_eq!(h2_call(&server, "/Foo/bar", frame(&user_request("u", 1)), &[]).await.grpc_status(), "12");
    for (path, status, expected) in [
        ("/", StatusCode::OK, "<p>the feed page</p>"),
        ("/app.js", StatusCode::OK, "console.log(1)"),
        ("/feed/7", StatusCode::NOT_FOUND, ""),
    ] {
        let resp = common::web::client()
            .request(Request::get(format!("{}{path}", server.url())).body(Full::default()).unwrap());
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert!(resp.headers().get("grpc-status").is_none());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], expected.as_bytes(), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_public_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["UserRecommend", "grpc.reflection.v1alpha.ServerReflection", "reco.v1.Catalog", "reco.v1.Tracking"],
        "the public services and reflection itself; not health"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_passed_deadline_is_deadline_exceeded_and_stores_nothing() {
    let server = TestServer::start().await;
    let t = now_ms();
    let req = |user: &str, time_stamp| UserRequest { user_id: user.into(), channel_id: 0, article_num: 5, time_stamp };

    // gRPC over HTTP/2: tonic alone would answer CANCELLED.
    let late = h2_call(&server, "/UserRecommend/user_recommend", frame(&req("h2", t)), &[("grpc-timeout", "1n")]).await;
    assert_eq!(late.grpc_status(), "4", "{}", late.grpc_message());
    assert!(late.grpc_message().contains("deadline"), "{}", late.grpc_message());
    // gRPC-Web.
    let headers = [("grpc-timeout", "1n")];
    let (parts, _) = post_with(
        &server,
        "/UserRecommend/user_recommend",
        "application/grpc-web+proto",
        frame(&req("web", t)),
        &headers,
    )
    .await;
    assert_eq!(parts.headers["grpc-status"], "4");

    // Neither refresh stored a batch: the next refresh has no previous batch to point at.
    let mut client = server.client().await;
    for user in ["h2", "web"] {
        assert_eq!(client.feed(user, 0, 5, t + 1).await.time_stamp, 0, "{user}: a batch was stored");
    }
    // A deadline the call meets changes nothing.
    let ok =
        h2_call(&server, "/UserRecommend/user_recommend", frame(&req("h2", t + 2)), &[("grpc-timeout", "10S")]).await;
    assert_eq!(ok.grpc_status(), "0");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_ends_at_its_deadline() {
    let server = TestServer::start().await;
    let watch = frame(&v1::WatchRequest { channel_ids: vec![], since: 0 });
    let started = std::time::Instant::now();
    let call = h2_call(&server, "/reco.v1.Catalog/Watch", watch, &[("grpc-timeout", "300m")]);
    let answer =
        tokio::time::timeout(std::time::Duration::from_secs(10), call).await.expect("the watch outlived its deadline");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250), "{:?}", started.elapsed());
    assert_eq!(answer.grpc_status(), "4", "{}", answer.grpc_message());
    let first = v1::CatalogChange::decode(answer.frames[0].1.as_slice()).unwrap();
    assert_eq!(first.kind(), v1::ChangeKind::Subscribed, "the stream ran until the deadline");

    // gRPC-Web: the same end, in the trailer frame.
    let watch = frame(&v1::WatchRequest { channel_ids: vec![], since: 0 });
    let headers = [("grpc-timeout", "300m")];
    let call = post_with(&server, "/reco.v1.Catalog/Watch", "application/grpc-web+proto", watch, &headers);
    let (_, body) =
        tokio::time::timeout(std::time::Duration::from_secs(10), call).await.expect("the watch outlived its deadline");
    let (data, trailer) = frames(&body);
    assert_eq!(v1::CatalogChange::decode(data[0].as_slice()).unwrap().kind(), v1::ChangeKind::Subscribed);
    assert!(trailer.contains("grpc-status:4"), "{trailer}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_naming_the_limit_over_grpc_web() {
    let config = reco_server::ServerConfig { max_message_bytes: 4096, ..Default::default() };
    let server = TestServer::start_with(config).await;
    let big = v1::VerifyRequest { params: vec!["p".repeat(5000)] };
    let (parts, body) = post(&server, "/reco.v1.Tracking/Verify", "application/grpc-web+proto", frame(&big)).await;
    let (status, message) = match parts.headers.get("grpc-status") {
        Some(s) => (s.to_str().unwrap().to_owned(), parts.headers["grpc-message"].to_str().unwrap().to_owned()),
        None => {
            let trailer = frames(&body).1;
            (trailer.clone(), trailer)
        }
    };
    assert!(status == "8" || status.contains("grpc-status:8"), "{status}");
    assert!(
        message.contains("the%20limit%20is%204096%20bytes") || message.contains("the limit is 4096 bytes"),
        "{message}"
    );
    // Compressed: within the limit on the wire, over it once inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &big.encode_to_vec()).unwrap();
    let packed = gz.finish().unwrap();
    assert!(packed.len() < 4096);
    let mut body = vec![1];
    body.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    body.extend_from_slice(&packed);
    let answer = h2_call(&server, "/reco.v1.Tracking/Verify", body, &[("grpc-encoding", "gzip")]).await;
    assert_eq!(answer.grpc_status(), "8", "{}", answer.grpc_message());
    assert!(answer.grpc_message().contains("4096"), "{}", answer.grpc_message());
    // The server keeps serving.
    let small = v1::VerifyRequest { params: vec!["x".into()] };
    let (_, body) = post(&server, "/reco.v1.Tracking/Verify", "application/grpc-web+proto", frame(&small)).await;
    assert!(frames(&body).1.contains("grpc-status:0"));
    server.stop().await;
}

#[tokio::test]
async fn field_violations_reach_grpc_web_clients_in_status_details() {
    let server = TestServer::start().await;
    let bad = UserRequest { article_num: 0, ..user_request("details", 1) };
    let (parts, body) = post(&server, "/UserRecommend/user_recommend", "application/grpc-web+proto", frame(&bad)).await;
    let details = match parts.headers.get("grpc-status-details-bin") {
        Some(v) => v.to_str().unwrap().to_owned(),
        None => {
            let trailer = frames(&body).1;
            let line = trailer.lines().find_map(|l| l.strip_prefix("grpc-status-details-bin:")).unwrap().to_owned();
            line.trim().to_owned()
        }
    };
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(details.trim_end_matches('=')).unwrap();
    let status = tonic::Status::with_details(Code::InvalidArgument, "", bytes.into());
    let bad_request = status.get_details_bad_request().expect("a google.rpc.BadRequest");
    assert_eq!(bad_request.field_violations[0].field, "article_num");
    assert!(bad_request.field_violations[0].description.contains("1..=100"));
    server.stop().await;
}
