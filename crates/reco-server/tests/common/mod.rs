//! Boots the real server on 127.0.0.1:0 over a real redb store in a temp dir, and the small
//! client helpers the tests share.
#![allow(dead_code)]

pub mod web;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use reco_engine::store::Store;
use reco_engine::{Engine, EngineConfig, Variant};
use reco_proto::seed::user_recommend_client::UserRecommendClient;
use reco_proto::seed::{ArticleResponse, UserRequest};
use reco_proto::v1::catalog_client::CatalogClient;
use reco_proto::v1::tracking_client::TrackingClient;
use reco_proto::v1::{self, TrackEvent};
use reco_server::ServerConfig;
use reco_store::RedbStore;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const SECRET: &[u8] = b"integration-test-secret-0123456789";

/// Up to which event log sequence number the learner checkpoint in `store` covers.
pub fn checkpointed<S: Store>(store: &S) -> Option<u64> {
    Engine::checkpointed_through(store).unwrap()
}

/// Two buckets: the learned ranker, and engine v1's order without exploration.
pub const TWO_VARIANTS: &str = "main:ranker=on,explore=0.1;base:ranker=off,explore=0";

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    engine: Weak<Engine<RedbStore>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(dir.path(), config, EngineConfig::default()).await;
        server._dir = Some(dir);
        server
    }

    /// A server over the store in `dir`, which outlives it (for restarts).
    pub async fn start_in(dir: &Path, config: ServerConfig, engine: EngineConfig) -> Self {
        let store = RedbStore::open(dir).unwrap();
        let engine = Arc::new(reco_server::open_engine(store, Some(SECRET), engine).unwrap());
        let weak = Arc::downgrade(&engine);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            reco_server::serve(listener, engine, &config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { addr, stop: Some(stop), task, engine: weak, _dir: None }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.unwrap()
    }

    pub async fn client(&self) -> Client {
        let channel = self.channel().await;
        Client {
            feed: UserRecommendClient::new(channel.clone()),
            catalog: CatalogClient::new(channel.clone()),
            tracking: TrackingClient::new(channel),
        }
    }

    /// What the running server's checkpoint covers (see [`checkpointed`]).
    pub fn checkpointed(&self) -> Option<u64> {
        checkpointed(self.engine.upgrade().expect("the server is running").store())
    }

    /// A graceful shutdown: the server checkpoints the learner and flushes the store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
        self.released().await;
    }

    /// Drops the server without its shutdown steps (no last checkpoint), as a crash would;
    /// the store still closes when the engine is dropped.
    pub async fn abort(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.released().await;
    }

    /// Waits until the engine (and so the store's file lock) is gone: connection tasks that
    /// still hold it end when their clients have hung up.
    async fn released(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.engine.strong_count() > 0 {
            assert!(Instant::now() < deadline, "the engine is still held 30 s after the server stopped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The three services over one connection.
#[derive(Clone)]
pub struct Client {
    pub feed: UserRecommendClient<Channel>,
    pub catalog: CatalogClient<Channel>,
    pub tracking: TrackingClient<Channel>,
}

impl Client {
    pub async fn feed(&mut self, user: &str, channel: i32, num: i32, time_stamp: i64) -> ArticleResponse {
        let req = UserRequest { user_id: user.into(), channel_id: channel, article_num: num, time_stamp };
        self.feed.user_recommend(req).await.unwrap().into_inner()
    }

    pub async fn report(&mut self, events: Vec<TrackEvent>) -> Vec<v1::EventResult> {
        self.tracking.report(v1::ReportRequest { events }).await.unwrap().into_inner().results
    }

    pub async fn articles(&mut self, ids: Vec<i64>) -> Vec<v1::ArticleInfo> {
        let got = self.catalog.articles(v1::ArticlesRequest { article_ids: ids }).await.unwrap().into_inner();
        assert!(got.missing_ids.is_empty(), "{:?}", got.missing_ids);
        got.articles
    }

    /// `Tracking.ArticleStats` of known ids, in the order asked.
    pub async fn article_stats(&mut self, ids: Vec<i64>) -> Vec<v1::ArticleStats> {
        let req = v1::ArticleStatsRequest { article_ids: ids };
        let got = self.tracking.article_stats(req).await.unwrap().into_inner();
        assert!(got.missing_ids.is_empty(), "{:?}", got.missing_ids);
        got.stats
    }

    pub async fn explain(&mut self, user: &str, article_id: i64) -> Result<v1::ExplainResponse, tonic::Status> {
        self.tracking.explain(v1::ExplainRequest { user_id: user.into(), article_id }).await.map(|r| r.into_inner())
    }
}

pub fn event(param: &str) -> TrackEvent {
    TrackEvent { param: param.into(), action_time: 0, read_duration_ms: 0, dislike: false }
}

pub fn read_event(param: &str, read_ms: i64) -> TrackEvent {
    TrackEvent { read_duration_ms: read_ms, ..event(param) }
}

pub fn dislike(param: &str) -> TrackEvent {
    TrackEvent { dislike: true, ..event(param) }
}

pub fn ids(r: &ArticleResponse) -> Vec<i64> {
    r.recommends.iter().map(|a| a.article_id).collect()
}

/// A card's `algorithmCombine`, e.g. `v2.b1:fresh+similar`.
pub fn combine(param: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(param).unwrap();
    v["algorithmCombine"].as_str().unwrap().to_owned()
}

/// The bucket and source names of an `algorithmCombine`.
pub fn parse_combine(combine: &str) -> (u32, Vec<String>) {
    let (head, sources) = combine.split_once(':').unwrap_or((combine, ""));
    let bucket = head.rsplit_once(".b").unwrap().1.parse().unwrap();
    (bucket, sources.split('+').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// Bucket and sources of each card of a batch.
pub fn card_combines(r: &ArticleResponse) -> Vec<(u32, Vec<String>)> {
    r.recommends.iter().map(|a| parse_combine(&combine(&a.track.as_ref().unwrap().click))).collect()
}

pub fn engine_config(variants: &str) -> EngineConfig {
    EngineConfig { variants: Variant::parse_list(variants).unwrap(), ..EngineConfig::default() }
}

pub fn now_ms() -> i64 {
    reco_server::now_ms()
}
