//! The client side of `/UserRecommend/user_recommend`: requests are `reco_proto::seed::UserRequest`,
//! responses are decoded into a lean mirror of `ArticleResponse` that keeps each `track` as opaque
//! bytes (a slice of the received buffer, no copy) so that decoding a 100-article answer costs the
//! load generator a few allocations rather than four strings per article.

use bytes::Bytes;
use http::uri::PathAndQuery;
use reco_proto::seed::UserRequest;
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

/// A unary client over one HTTP/2 connection; clones share the connection.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
}

impl Client {
    /// Opens one HTTP/2 (h2c) connection to `addr` (`http://host:port`).
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(addr.to_owned())?.tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
        Ok(Self { grpc: tonic::client::Grpc::new(channel) })
    }

    pub async fn user_recommend(&mut self, request: UserRequest) -> Result<Answer, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
        let codec = ProstCodec::<UserRequest, Answer>::default();
        let path = PathAndQuery::from_static(METHOD);
        self.grpc.unary(tonic::Request::new(request), path, codec).await.map(tonic::Response::into_inner)
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
