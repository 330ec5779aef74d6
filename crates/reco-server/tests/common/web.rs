//! gRPC-Web over HTTP/1.1 as a browser sends it: framing, and a POST with the browser's headers.

use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use prost::bytes::Bytes;

use super::TestServer;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Splits a gRPC-Web body into its data frames and the trailer frame's text.
pub fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut data = Vec::new();
    let mut trailer = None;
    while !body.is_empty() {
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = body[5..5 + len].to_vec();
        body = &body[5 + len..];
        if flag & 0x80 != 0 {
            trailer = Some(String::from_utf8(payload).unwrap());
        } else {
            data.push(payload);
        }
    }
    (data, trailer.expect("a trailer frame"))
}

pub async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (http::response::Parts, Vec<u8>) {
    post_with(server, path, content_type, body, &[]).await
}

/// [`post`] with more request headers (e.g. `authorization`).
pub async fn post_with(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (http::response::Parts, Vec<u8>) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", server.url()))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, content_type)
        .header("x-grpc-web", "1")
        .header(header::ORIGIN, "http://localhost:8080");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_11);
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.unwrap().to_bytes().to_vec())
}

/// A plain GET over HTTP/1.1 with `headers`: the status, the response headers and the body.
pub async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (http::response::Parts, Vec<u8>) {
    let mut req = Request::builder().method(Method::GET).uri(format!("{}{path}", server.url()));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client().request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.unwrap().to_bytes().to_vec())
}
