//! The client side of `/UserRecommend/user_recommend`: requests are `reco_proto::seed::UserRequest`,
//! responses are decoded into a lean mirror of `ArticleResponse` that keeps each `track` as opaque
//! bytes (a slice of the received buffer, no copy) so that decoding a 100-article answer costs the
//! load generator a few allocations rather than four strings per article.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::{
    HeaderValue, Uri, header,
    uri::{Authority, PathAndQuery},
};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use reco_proto::seed::UserRequest;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::{
    codec::CompressionEncoding,
    transport::{Channel, Endpoint},
};
use tonic_prost::ProstCodec;

const METHOD: &str = "/UserRecommend/user_recommend";

/// `ArticleResponse` with the same field numbers; `exposure` and `track` stay undecoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Answer {
    #[prost(bytes = "bytes", tag = "1")]
    pub exposure: Bytes,
    #[prost(int64, tag = "2")]
    pub time_stamp: i64,
    #[prost(message, repeated, tag = "3")]
    pub recommends: Vec<Item>,
}

/// `Article` with its `Track` message kept as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    #[prost(int64, tag = "1")]
    pub article_id: i64,
    #[prost(bytes = "bytes", tag = "2")]
    pub track: Bytes,
}

/// The wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// gRPC over HTTP/2 cleartext (h2c).
    Grpc,
    /// gRPC-Web (`application/grpc-web+proto`) over HTTP/1.1, one request at a time per connection.
    GrpcWeb,
}

/// The HTTP/2 client stack for `--proto grpc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// hyper's HTTP/2 connection driven directly (no tower buffer task in between): the cheapest.
    H2,
    /// tonic's `Channel` (buffer task, reconnects), what a typical tonic client uses.
    Channel,
}

/// Message compression (`--compress`): requests are sent compressed with it and answers
/// accepted compressed with it (`grpc-accept-encoding`); the server decides whether they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    None,
    Gzip,
    Zstd,
}

impl Compress {
    fn encoding(self) -> Option<CompressionEncoding> {
        match self {
            Compress::None => None,
            Compress::Gzip => Some(CompressionEncoding::Gzip),
            Compress::Zstd => Some(CompressionEncoding::Zstd),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compress::None => "none",
            Compress::Gzip => "gzip",
            Compress::Zstd => "zstd",
        }
    }
}

/// Bytes received and sent over every connection the `h2` and gRPC-Web transports opened
/// (TCP payload: HTTP framing and headers included, TCP/IP headers not).
pub static WIRE_RECEIVED: AtomicU64 = AtomicU64::new(0);
pub static WIRE_SENT: AtomicU64 = AtomicU64::new(0);

/// A TCP stream that adds what passes through it to [`WIRE_RECEIVED`] and [`WIRE_SENT`].
struct Counted(TcpStream);

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        WIRE_RECEIVED.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.0).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            WIRE_SENT.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            WIRE_SENT.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A unary client over one connection.
pub enum Client {
    H2(tonic::client::Grpc<H2Conn>),
    Channel(tonic::client::Grpc<Channel>),
    Web(WebConn),
}

/// Flow-control windows large enough that a 100-article answer (~80 KB with reco's signed
/// tracking params) never waits for a WINDOW_UPDATE round trip.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 1 << 24;

async fn tcp(authority: &Authority) -> anyhow::Result<TokioIo<Counted>> {
    let stream =
        TcpStream::connect(authority.as_str()).await.with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(Counted(stream)))
}

/// A tonic client compressing as `--compress` says.
fn compressed<T>(mut grpc: tonic::client::Grpc<T>, compress: Compress) -> tonic::client::Grpc<T> {
    if let Some(encoding) = compress.encoding() {
        grpc = grpc.send_compressed(encoding).accept_compressed(encoding);
    }
    grpc
}

fn unavailable(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::unavailable(format!("connection lost: {e}"))
}

impl Client {
    /// Opens one connection to `addr` (`http://host:port`).
    pub async fn connect(addr: &str, proto: Proto, transport: Transport, compress: Compress) -> anyhow::Result<Self> {
        let origin: Uri = addr.parse().with_context(|| format!("bad --addr {addr}"))?;
        anyhow::ensure!(origin.scheme_str() == Some("http"), "--addr must be http://host:port (cleartext), got {addr}");
        let authority = origin.authority().with_context(|| format!("--addr {addr} has no host:port"))?.clone();
        match (proto, transport) {
            (Proto::GrpcWeb, _) => {
                let (send, connection) = hyper::client::conn::http1::handshake(tcp(&authority).await?)
                    .await
                    .with_context(|| format!("HTTP/1.1 handshake with {authority} failed"))?;
                tokio::spawn(connection);
                let host = HeaderValue::from_str(authority.as_str())?;
                Ok(Self::Web(WebConn { send, host }))
            }
            (Proto::Grpc, Transport::H2) => {
                let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .handshake(tcp(&authority).await?)
                    .await
                    .with_context(|| format!("HTTP/2 handshake with {authority} failed"))?;
                tokio::spawn(connection);
                Ok(Self::H2(compressed(tonic::client::Grpc::with_origin(H2Conn(send), origin), compress)))
            }
            (Proto::Grpc, Transport::Channel) => {
                let channel = Endpoint::from(origin)
                    .tcp_nodelay(true)
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to {authority}"))?;
                Ok(Self::Channel(compressed(tonic::client::Grpc::new(channel), compress)))
            }
        }
    }

    /// Another handle on the same connection, when the protocol multiplexes requests (HTTP/2).
    pub fn share(&self) -> Option<Self> {
        match self {
            Client::H2(grpc) => Some(Client::H2(grpc.clone())),
            Client::Channel(grpc) => Some(Client::Channel(grpc.clone())),
            Client::Web(_) => None,
        }
    }

    pub async fn user_recommend(&mut self, request: UserRequest) -> Result<Answer, tonic::Status> {
        let path = PathAndQuery::from_static(METHOD);
        let codec = ProstCodec::<UserRequest, Answer>::default();
        let answer = match self {
            Client::H2(grpc) => {
                grpc.ready().await.map_err(unavailable)?;
                grpc.unary(tonic::Request::new(request), path, codec).await
            }
            Client::Channel(grpc) => {
                grpc.ready().await.map_err(unavailable)?;
                grpc.unary(tonic::Request::new(request), path, codec).await
            }
            Client::Web(web) => return web.user_recommend(request).await,
        };
        answer.map(tonic::Response::into_inner)
    }
}

/// One HTTP/1.1 connection speaking gRPC-Web (binary `+proto` framing).
pub struct WebConn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl WebConn {
    async fn user_recommend(&mut self, request: UserRequest) -> Result<Answer, tonic::Status> {
        let mut body = BytesMut::with_capacity(5 + request.encoded_len());
        body.put_u8(0);
        body.put_u32(request.encoded_len() as u32);
        request.encode(&mut body).map_err(|e| tonic::Status::internal(format!("cannot encode the request: {e}")))?;
        let request = http::Request::post(METHOD)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, GRPC_WEB)
            .header(header::ACCEPT, GRPC_WEB)
            .header("x-grpc-web", "1")
            .body(Full::new(body.freeze()))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        self.send.ready().await.map_err(unavailable)?;
        let response = self.send.send_request(request).await.map_err(unavailable)?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(tonic::Status::unknown(format!("HTTP status {}", parts.status)));
        }
        let body = body.collect().await.map_err(unavailable)?.to_bytes();
        parse_web(&parts.headers, body)
    }
}

const GRPC_WEB: &str = "application/grpc-web+proto";

/// Decodes a gRPC-Web response body: length-prefixed frames, a message (flag 0x00) then the
/// trailers (flag 0x80, `key: value` lines). A trailers-only answer has its status in the headers.
fn parse_web(headers: &http::HeaderMap, mut body: Bytes) -> Result<Answer, tonic::Status> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (mut status, mut message) = (header("grpc-status"), header("grpc-message").unwrap_or_default());
    let mut data = None;
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(tonic::Status::internal("truncated gRPC-Web frame header"));
        }
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() < 5 + len {
            return Err(tonic::Status::internal("truncated gRPC-Web frame"));
        }
        let payload = body.slice(5..5 + len);
        body = body.slice(5 + len..);
        if flag & 0x80 == 0 {
            data = Some(payload);
            continue;
        }
        for line in String::from_utf8_lossy(&payload).split("\r\n") {
            if let Some((key, value)) = line.split_once(':') {
                match key.trim().to_ascii_lowercase().as_str() {
                    "grpc-status" => status = Some(value.trim().to_owned()),
                    "grpc-message" => message = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
    }
    let code: i32 = status
        .ok_or_else(|| tonic::Status::internal("gRPC-Web answer without grpc-status"))?
        .parse()
        .map_err(|_| tonic::Status::internal("grpc-status is not a number"))?;
    if code != 0 {
        return Err(tonic::Status::new(tonic::Code::from_i32(code), percent_decode(&message)));
    }
    let data = data.ok_or_else(|| tonic::Status::internal("gRPC-Web answer without a message"))?;
    Answer::decode(data).map_err(|e| tonic::Status::internal(format!("cannot decode the answer: {e}")))
}

/// One hyper HTTP/2 connection as the tower service tonic's `Grpc` drives.
#[derive(Clone)]
pub struct H2Conn(SendRequest<tonic::body::Body>);

type ResponseFuture = Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for H2Conn {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// `grpc-message` is percent-encoded on the wire.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use reco_proto::seed::{Article, ArticleResponse, Track};

    use super::*;

    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn grpc_web_bodies_are_parsed() {
        let message = ArticleResponse { exposure: "e".into(), time_stamp: 7, recommends: Vec::new() }.encode_to_vec();
        let mut body = frame(0, &message);
        body.extend(frame(0x80, b"grpc-status:0\r\ngrpc-message:\r\n"));
        let answer = parse_web(&http::HeaderMap::new(), body.into()).unwrap();
        assert_eq!(answer.time_stamp, 7);

        let failed = frame(0x80, b"grpc-status: 3\r\ngrpc-message: article_num%20must be in 1..=100%\r\n");
        let status = parse_web(&http::HeaderMap::new(), failed.into()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "article_num must be in 1..=100%");

        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(parse_web(&headers, Bytes::new()).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(parse_web(&http::HeaderMap::new(), Bytes::new()).unwrap_err().code(), tonic::Code::Internal);
        let truncated = frame(0, &message)[..4].to_vec();
        assert_eq!(parse_web(&http::HeaderMap::new(), truncated.into()).unwrap_err().code(), tonic::Code::Internal);
    }

    #[test]
    fn answer_decodes_what_the_generated_type_encodes() {
        let full = ArticleResponse {
            exposure: "exposure param".into(),
            time_stamp: 42,
            recommends: (1..=3)
                .map(|i| Article {
                    article_id: i,
                    track: Some(Track {
                        click: format!("click {i}"),
                        collect: String::new(),
                        share: "s".into(),
                        read: "r".into(),
                    }),
                })
                .collect(),
        };
        let answer = Answer::decode(full.encode_to_vec().as_slice()).unwrap();
        assert_eq!(answer.exposure, Bytes::from_static(b"exposure param"));
        assert_eq!(answer.time_stamp, 42);
        let ids: Vec<i64> = answer.recommends.iter().map(|a| a.article_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let track = Track::decode(answer.recommends[0].track.clone()).unwrap();
        assert_eq!(track.click, "click 1");
    }
}
