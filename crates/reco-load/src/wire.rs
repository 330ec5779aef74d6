//! The client side of `/UserRecommend/user_recommend`: requests are `reco_proto::seed::UserRequest`,
//! responses are decoded into a lean mirror of `ArticleResponse` that keeps each `track` as opaque
//! bytes (a slice of the received buffer, no copy) so that decoding a 100-article answer costs the
//! load generator a few allocations rather than four strings per article.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Uri, uri::PathAndQuery};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reco_proto::seed::UserRequest;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
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

/// How requests reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// hyper's HTTP/2 connection driven directly (no tower buffer task in between): the cheapest.
    H2,
    /// tonic's `Channel` (buffer task, reconnects), what a typical tonic client uses.
    Channel,
}

/// A unary client over one HTTP/2 connection; clones share the connection.
#[derive(Clone)]
pub enum Client {
    H2(tonic::client::Grpc<H2Conn>),
    Channel(tonic::client::Grpc<Channel>),
}

/// Flow-control windows large enough that a 100-article answer (~80 KB with reco's signed
/// tracking params) never waits for a WINDOW_UPDATE round trip.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 1 << 24;

impl Client {
    /// Opens one HTTP/2 (h2c) connection to `addr` (`http://host:port`).
    pub async fn connect(addr: &str, transport: Transport) -> anyhow::Result<Self> {
        let origin: Uri = addr.parse().with_context(|| format!("bad --addr {addr}"))?;
        anyhow::ensure!(origin.scheme_str() == Some("http"), "--addr must be http://host:port (h2c), got {addr}");
        let authority = origin.authority().with_context(|| format!("--addr {addr} has no host:port"))?.clone();
        match transport {
            Transport::H2 => {
                let stream = TcpStream::connect(authority.as_str())
                    .await
                    .with_context(|| format!("cannot connect to {authority}"))?;
                stream.set_nodelay(true)?;
                let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .handshake(TokioIo::new(stream))
                    .await
                    .with_context(|| format!("HTTP/2 handshake with {authority} failed"))?;
                tokio::spawn(connection);
                Ok(Self::H2(tonic::client::Grpc::with_origin(H2Conn(send), origin)))
            }
            Transport::Channel => {
                let channel = Endpoint::from(origin)
                    .tcp_nodelay(true)
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to {authority}"))?;
                Ok(Self::Channel(tonic::client::Grpc::new(channel)))
            }
        }
    }

    pub async fn user_recommend(&mut self, request: UserRequest) -> Result<Answer, tonic::Status> {
        let path = PathAndQuery::from_static(METHOD);
        let codec = ProstCodec::<UserRequest, Answer>::default();
        let request = tonic::Request::new(request);
        let answer = match self {
            Client::H2(grpc) => {
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("connection lost: {e}")))?;
                grpc.unary(request, path, codec).await
            }
            Client::Channel(grpc) => {
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("connection lost: {e}")))?;
                grpc.unary(request, path, codec).await
            }
        };
        answer.map(tonic::Response::into_inner)
    }
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

#[cfg(test)]
mod tests {
    use prost::Message;
    use reco_proto::seed::{Article, ArticleResponse, Track};

    use super::*;

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
