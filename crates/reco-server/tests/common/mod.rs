//! Boots the real server on 127.0.0.1:0 over a real redb store in a temp dir.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use reco_engine::EngineConfig;
use reco_server::ServerConfig;
use reco_store::RedbStore;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const SECRET: &[u8] = b"integration-test-secret-0123456789";

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let engine = Arc::new(reco_server::open_engine(store, Some(SECRET), EngineConfig::default()).unwrap());
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
        Self { addr, stop: Some(stop), task, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

pub fn now_ms() -> i64 {
    reco_server::now_ms()
}
