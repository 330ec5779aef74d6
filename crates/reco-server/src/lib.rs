//! The reco server: tonic services over the engine, gRPC and gRPC-Web on one port.
//!
//! This is the only crate that knows tonic. It composes the services with health, reflection,
//! gRPC-Web, CORS and the feed page, opens the store and the engine, checkpoints the engine's
//! learner now and then, and shuts down gracefully: a last checkpoint, then a store flush.

mod convert;
mod edge;
mod inspect;
mod metrics;
mod services;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use rand::RngCore;
use reco_engine::catalog::{self, DEMO_SIZE};
use reco_engine::store::{Store, StoreError};
use reco_engine::{Engine, EngineConfig, EngineError};
use reco_proto::seed::user_recommend_server::UserRecommendServer;
use reco_proto::v1::catalog_server::CatalogServer;
use reco_proto::v1::tracking_server::TrackingServer;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use convert::article_info;
pub use services::now_ms;

/// Default origins allowed to call from a browser.
pub const DEFAULT_CORS: &[&str] = &["http://localhost:*", "http://127.0.0.1:*"];
const SECRET_META: &str = "tracking_secret";
const DEMO_META: &str = "demo_catalog";

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Origins allowed for CORS; `*` as the port matches any port.
    pub cors_origins: Vec<String>,
    /// The built page, served at `/`.
    pub web_dir: Option<PathBuf>,
    /// Largest request message accepted (before decompression, and again after it); a larger
    /// one is answered RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// The encodings answers may be compressed with, for a client that lists one of them in
    /// `grpc-accept-encoding` (the client's order decides); empty: answers go out plain.
    /// Requests compressed with gzip or zstd are accepted whatever this says.
    pub compression: Vec<CompressionEncoding>,
    /// How long a shutdown waits for open connections (clients that keep a channel open
    /// never close it themselves) before it closes them and flushes the store.
    pub shutdown_grace: Duration,
    /// How often the learner is checkpointed into the store, so that a restart replays only
    /// the events logged since; zero: only at shutdown. Events are durable without it.
    pub checkpoint_interval: Duration,
    /// How often the engine reads the events other processes logged into a shared store and
    /// the catalog changes they made (replicas on one backend learn from each other's events
    /// and serve each other's `Publish` and `Retract` this way); zero: never, for a store only
    /// this process writes.
    pub follow_interval: Duration,
    /// The bearer token that `Catalog.Publish` and `Catalog.Retract` require; `None` turns
    /// them off.
    pub admin_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            cors_origins: DEFAULT_CORS.iter().map(|s| s.to_string()).collect(),
            web_dir: None,
            max_message_bytes: 1 << 20,
            compression: vec![CompressionEncoding::Gzip],
            shutdown_grace: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(60),
            follow_interval: Duration::ZERO,
            admin_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("bad configuration: {0}")]
    Config(String),
}

/// Loads the built-in demo catalog of `articles` articles into `store` if it has none.
pub fn seed_demo_catalog<S: Store>(store: &S, articles: usize) -> Result<(), OpenError> {
    if articles == 0 {
        return Err(OpenError::Config("the demo catalog needs at least one article".into()));
    }
    if store.load_articles()?.is_empty() {
        let now = now_ms();
        tracing::info!(articles, "empty catalog: loading the built-in demo catalog");
        store.upsert_articles(&catalog::demo_articles(1, now, articles))?;
        store.put_meta(DEMO_META, &now.to_le_bytes())?;
    }
    Ok(())
}

/// Builds the engine over `store`: seeds the demo catalog into an empty store, and uses
/// `secret` or the store's own persistent tracking secret (made on first start).
pub fn open_engine<S: Store>(store: S, secret: Option<&[u8]>, config: EngineConfig) -> Result<Engine<S>, OpenError> {
    seed_demo_catalog(&store, DEMO_SIZE)?;
    let secret = match secret {
        Some(s) => s.to_vec(),
        None => match store.get_meta(SECRET_META)? {
            Some(s) => s,
            None => {
                // Replicas starting together on one backend each draw one; the first stored wins.
                let mut s = vec![0u8; 32];
                rand::rng().fill_bytes(&mut s);
                store.init_meta(SECRET_META, &s)?
            }
        },
    };
    Ok(Engine::new(store, &secret, config)?)
}

/// Serves on `listener` until `shutdown` resolves, checkpointing the learner every
/// `checkpoint_interval`; then writes a last checkpoint and flushes the store.
pub async fn serve<S: Store>(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine<S>>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cors = cors_layer(&config.cors_origins).map_err(OpenError::Config)?;
    let loopback = listener.local_addr()?.ip().is_loopback();
    // Tells open event streams that the server stops, so they end and their connections close.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let metrics = metrics::Metrics::new()?;
    engine.on_event(metrics.event_notifier());
    engine.store().observe_commits(metrics.commit_observer());
    let reco = services::Reco::new(Arc::clone(&engine))
        .with_admin_token(config.admin_token.as_deref())
        .on_loopback_only(loopback)
        .ending_with(closed)
        .with_metrics(Arc::clone(&metrics));
    let max = config.max_message_bytes;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<UserRecommendServer<services::Reco<S>>>().await;
    health.set_serving::<CatalogServer<services::Reco<S>>>().await;
    health.set_serving::<TrackingServer<services::Reco<S>>>().await;
    // Reflection describes the public services (and itself) in both versions clients ask for:
    // v1, and v1alpha, the one Python's grpcio-reflection asks. Health is not described.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(reco_proto::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);

    // Every service takes gzip and zstd requests and compresses its answers as configured.
    macro_rules! compressed {
        ($server:expr) => {{
            let mut server =
                $server.accept_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Zstd);
            for &encoding in &config.compression {
                server = server.send_compressed(encoding);
            }
            server
        }};
    }
    let routes = Routes::new(compressed!(UserRecommendServer::new(reco.clone()).max_decoding_message_size(max)))
        .add_service(compressed!(CatalogServer::new(reco.clone()).max_decoding_message_size(max)))
        .add_service(compressed!(TrackingServer::new(reco).max_decoding_message_size(max)))
        .add_service(compressed!(health_service))
        .add_service(compressed!(reflection_v1))
        .add_service(compressed!(reflection_v1alpha))
        .prepare();
    // gRPC-Web wraps the gRPC routes only: it answers any other HTTP/1.1 request with 400,
    // and the page's GET requests must reach the page. The edge (deadlines, the size limit)
    // sits inside it, so it sees gRPC framing for both; metering sits between the two, so both
    // protocols count alike, with the edge's answers. /metrics and /healthz are plain GETs
    // beside the RPCs.
    let metered = Arc::clone(&metrics);
    let scraped = Arc::clone(&engine);
    let probed = Arc::clone(&engine);
    let grpc = routes
        .into_axum_router()
        .layer(edge::EdgeLayer { max_message_bytes: max })
        .layer(axum::middleware::from_fn(move |request, next| metrics::meter(Arc::clone(&metered), request, next)))
        .layer(tonic_web::GrpcWebLayer::new())
        .route("/metrics", axum::routing::get(move || async move { metrics.render(&scraped) }))
        .route("/healthz", axum::routing::get(move || metrics::healthz(Arc::clone(&probed))));
    let router = web::with_page(grpc, config.web_dir.as_deref());

    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        closing.send_replace(true);
        let _ = stopping.send(());
    };
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(Some(256))
        .layer(cors)
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(incoming, shutdown);
    let (stop_checkpoints, checkpoints_stopped) = tokio::sync::oneshot::channel::<()>();
    let checkpoints = tokio::spawn(every(config.checkpoint_interval, checkpoints_stopped, {
        let engine = Arc::clone(&engine);
        move || checkpoint(Arc::clone(&engine), false)
    }));
    let (stop_following, following_stopped) = tokio::sync::oneshot::channel::<()>();
    let following = tokio::spawn(every(config.follow_interval, following_stopped, {
        let engine = Arc::clone(&engine);
        move || follow_log(Arc::clone(&engine))
    }));
    let grace = config.shutdown_grace;
    let served = tokio::select! {
        served = server => served,
        () = async move {
            if stopped.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("connections still open {grace:?} after the shutdown signal: closing them");
            Ok(())
        }
    };
    // Let a checkpoint under way finish, so that the last one written is the one below.
    let _ = stop_following.send(());
    let _ = stop_checkpoints.send(());
    for (task, name) in [(following, "log following"), (checkpoints, "checkpoint")] {
        if let Err(e) = task.await {
            tracing::warn!("the {name} task failed: {e}");
        }
    }
    tracing::info!("stopped serving; writing the learner checkpoint and flushing the store");
    checkpoint(Arc::clone(&engine), true).await;
    engine.store().flush()?;
    served?;
    Ok(())
}

/// Runs `job` every `interval` (never when it is zero), one run at a time, until `stop`
/// resolves; a run under way finishes first.
async fn every<F: Future<Output = ()>>(
    interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    mut job: impl FnMut() -> F,
) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => job().await,
            _ = &mut stop => return,
        }
    }
}

/// Applies what other replicas logged (events, then catalog changes), off the async workers.
/// A failure (the shared store unreachable) is logged; the next tick tries again.
async fn follow_log<S: Store>(engine: Arc<Engine<S>>) {
    let work = tokio::task::spawn_blocking(move || (engine.follow_log(), engine.follow_catalog(now_ms())));
    match work.await {
        Ok((events, changes)) => {
            match events {
                Ok(0) => {}
                Ok(applied) => tracing::trace!(applied, "events other replicas logged applied"),
                Err(e) => tracing::warn!("cannot read the shared event log (will retry): {e}"),
            }
            match changes {
                Ok(0) => {}
                Ok(changed) => tracing::debug!(changed, "catalog changes other replicas made applied"),
                Err(e) => tracing::warn!("cannot read the shared catalog change log (will retry): {e}"),
            }
        }
        Err(e) => tracing::warn!("the log following task failed: {e}"),
    }
}

/// Writes the learner's checkpoint off the async workers; the one at shutdown is logged at
/// info, the periodic ones at debug. A failure is logged and otherwise ignored: events are
/// durable in the store, so a missing checkpoint only lengthens the replay at the next start.
async fn checkpoint<S: Store>(engine: Arc<Engine<S>>, at_shutdown: bool) {
    let writer = Arc::clone(&engine);
    match tokio::task::spawn_blocking(move || writer.checkpoint(now_ms())).await {
        Ok(Ok(bytes)) if at_shutdown => {
            tracing::info!(bytes, learner = %engine.learner_summary(), "learner checkpoint written");
        }
        Ok(Ok(bytes)) => tracing::debug!(bytes, learner = %engine.learner_summary(), "learner checkpoint written"),
        Ok(Err(e)) => tracing::warn!("cannot write the learner checkpoint (a restart will replay more events): {e}"),
        Err(e) => tracing::warn!("the learner checkpoint task failed: {e}"),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

/// CORS for browsers calling gRPC-Web: the allow-list, and the gRPC headers exposed.
pub fn cors_layer(origins: &[String]) -> Result<CorsLayer, String> {
    let patterns = origins.iter().map(|o| OriginPattern::parse(o)).collect::<Result<Vec<_>, _>>()?;
    let allow = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin.to_str().is_ok_and(|o| patterns.iter().any(|p| p.matches(o)))
    });
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers(
            ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization"]
                .map(HeaderName::from_static),
        )
        .expose_headers(["grpc-status", "grpc-message", "grpc-status-details-bin"].map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 3600)))
}

/// The `--compress` list: `gzip`, `zstd` or both, comma-separated, or `none`.
pub fn parse_compression(list: &str) -> Result<Vec<CompressionEncoding>, String> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        let encoding = match name {
            "gzip" => CompressionEncoding::Gzip,
            "zstd" => CompressionEncoding::Zstd,
            _ => return Err(format!("compression {name:?} is unknown: use gzip, zstd, gzip,zstd or none")),
        };
        if !out.contains(&encoding) {
            out.push(encoding);
        }
    }
    Ok(out)
}

/// `scheme://host[:port]`, where the port may be `*`; or `*` alone for any origin.
#[derive(Debug)]
enum OriginPattern {
    Any,
    Exact(String),
    AnyPort(String),
}

impl OriginPattern {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        if !(s.starts_with("http://") || s.starts_with("https://")) || s.ends_with('/') {
            return Err(format!("CORS origin {s:?} must look like http://host[:port] or http://host:*"));
        }
        Ok(match s.strip_suffix(":*") {
            Some(base) => Self::AnyPort(base.to_owned()),
            None => Self::Exact(s.to_owned()),
        })
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(o) => o == origin,
            Self::AnyPort(base) => origin.strip_prefix(base.as_str()).is_some_and(|rest| {
                rest.is_empty()
                    || rest.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            }),
        }
    }
}

/// Where the page is looked for when no `--web-dir` is given: `dist/` in the working directory.
pub fn default_web_dir() -> Option<PathBuf> {
    let dir = Path::new("dist");
    dir.join("index.html").is_file().then(|| dir.to_path_buf())
}

/// The address the server is reachable at, for log lines.
pub fn display_addr(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::{CompressionEncoding, OriginPattern, parse_compression};

    #[test]
    fn compression_lists() {
        assert_eq!(parse_compression("gzip"), Ok(vec![CompressionEncoding::Gzip]));
        assert_eq!(
            parse_compression("zstd, gzip,zstd"),
            Ok(vec![CompressionEncoding::Zstd, CompressionEncoding::Gzip])
        );
        assert_eq!(parse_compression("none"), Ok(vec![]));
        assert!(parse_compression("br").is_err() && parse_compression("").is_err());
    }

    #[test]
    fn origin_patterns() {
        let p = OriginPattern::parse("http://localhost:*").unwrap();
        assert!(p.matches("http://localhost:8080"));
        assert!(p.matches("http://localhost"));
        assert!(!p.matches("http://localhost.evil.com"));
        assert!(!p.matches("http://localhost:80a"));
        assert!(!p.matches("https://localhost:8080"));
        let e = OriginPattern::parse("https://news.example").unwrap();
        assert!(e.matches("https://news.example") && !e.matches("https://news.example:444"));
        assert!(OriginPattern::parse("localhost:8080").is_err());
        assert!(OriginPattern::parse("*").unwrap().matches("http://x"));
    }
}
