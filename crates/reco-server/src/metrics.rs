//! Operators' endpoints beside the RPCs: Prometheus metrics at `GET /metrics` and health at
//! `GET /healthz`.
//!
//! RPCs are metered by a layer inside gRPC-Web (so both protocols count alike) that reads
//! each answer's `grpc-status` (headers of a trailers-only answer, else the trailers) when the
//! answer ends; an answer dropped before its end (the client went away) counts as
//! `Cancelled`. Only the known services' paths are labels: anything else is `other`, so a
//! client cannot grow the label set. Gauges are read from the engine when scraped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use reco_engine::store::Store;
use reco_engine::{Engine, WatchVerdict, WatchedEvent};
use tonic::Code;

/// The services whose methods are labels.
const SERVICES: [&str; 5] = [
    "UserRecommend",
    "reco.v1.Catalog",
    "reco.v1.Tracking",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
];

/// Events not applied by the learner yet beyond which `/healthz` says it is behind.
pub const HEALTHY_LAG: u64 = 10_000;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    events: IntCounterVec,
    short_answers: IntCounter,
    commits: Histogram,
    write_queue: IntGauge,
    /// Follows [`Store::round_trips`], brought up to date when rendered (one render at a
    /// time, so that two never add the same growth).
    round_trips: std::sync::Mutex<IntCounter>,
    learner_lag: IntGauge,
    catalog_articles: IntGauge,
    cached_users: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new_custom(Some("reco".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("rpc_requests_total", "RPCs answered, by method path and gRPC status code"),
            &["rpc", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("rpc_duration_seconds", "Time from request to the answer's end, by method path")
                .buckets(prometheus::exponential_buckets(0.000_1, 2.5, 14)?),
            &["rpc"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("events_total", "Reported events judged by this server, by action and verdict"),
            &["action", "verdict"],
        )?;
        let short_answers = IntCounter::new(
            "short_answers_total",
            "Refreshes that answered fewer articles than asked (catalog exhausted)",
        )?;
        let commits = Histogram::with_opts(
            HistogramOpts::new(
                "store_commit_seconds",
                "Durable writes of the store (group commits, or acknowledged writes)",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.5, 14)?),
        )?;
        let write_queue = IntGauge::new("store_write_queue", "Writes accepted and not durable yet (written behind)")?;
        let round_trips = IntCounter::new(
            "store_round_trips_total",
            "Requests sent to a networked store (Redis) and waited for; 0 for the embedded store",
        )?;
        let learner_lag = IntGauge::new("learner_lag_events", "Logged events the learner has not applied yet")?;
        let catalog_articles =
            IntGauge::new("catalog_articles", "Articles in the live catalog (retracted ones included)")?;
        let cached_users = IntGauge::new("cached_users", "User records the store holds in memory")?;
        for c in [&requests, &events] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(short_answers.clone()))?;
        registry.register(Box::new(commits.clone()))?;
        registry.register(Box::new(round_trips.clone()))?;
        for g in [&write_queue, &learner_lag, &catalog_articles, &cached_users] {
            registry.register(Box::new(g.clone()))?;
        }
        Ok(Arc::new(Self {
            registry,
            requests,
            latency,
            events,
            short_answers,
            commits,
            write_queue,
            round_trips: std::sync::Mutex::new(round_trips),
            learner_lag,
            catalog_articles,
            cached_users,
        }))
    }

    /// Counts the events of each report as the engine judged them (this server's only: what
    /// other replicas judged, they count).
    pub fn event_notifier(self: &Arc<Self>) -> reco_engine::EventNotifier {
        let metrics = Arc::clone(self);
        Box::new(move |events: &[WatchedEvent]| {
            for e in events.iter().filter(|e| !e.remote) {
                let action = match &e.param {
                    _ if e.dislike => "dislike",
                    Some(p) => p.action.as_str(),
                    None => "unknown",
                };
                let verdict = match e.verdict {
                    WatchVerdict::Accepted => "accepted",
                    WatchVerdict::Duplicate => "duplicate",
                    WatchVerdict::Rejected(_) => "rejected",
                    // Served batches are not events (and go to `on_served` watchers only).
                    WatchVerdict::Served => continue,
                };
                metrics.events.with_label_values(&[action, verdict]).inc();
            }
        })
    }

    pub fn commit_observer(self: &Arc<Self>) -> reco_engine::store::CommitObserver {
        let commits = self.commits.clone();
        Arc::new(move |took: Duration| commits.observe(took.as_secs_f64()))
    }

    pub fn short_answer(&self) {
        self.short_answers.inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render<S: Store>(&self, engine: &Engine<S>) -> Response {
        self.write_queue.set(engine.store().write_queue().min(i64::MAX as u64) as i64);
        // A counter only goes up: it takes the store's count's growth since the last render.
        if let Ok(counter) = self.round_trips.lock() {
            counter.inc_by(engine.store().round_trips().saturating_sub(counter.get()));
        }
        self.catalog_articles.set(engine.catalog().len() as i64);
        self.cached_users.set(engine.store().memory().resident_users as i64);
        match engine.learner_lag() {
            Ok(lag) => self.learner_lag.set(lag.min(i64::MAX as u64) as i64),
            Err(e) => tracing::debug!("learner lag unknown for /metrics: {e}"),
        }
        let mut text = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the metrics: {e}\n")).into_response();
        }
        ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
    }

    fn record(&self, rpc: &str, code: Code, took: Duration) {
        let rpc = if code == Code::Unimplemented { "other" } else { rpc };
        self.requests.with_label_values(&[rpc, &format!("{code:?}")]).inc();
        self.latency.with_label_values(&[rpc]).observe(took.as_secs_f64());
    }
}

/// The middleware: meters every request that reaches the gRPC routes.
pub async fn meter(metrics: Arc<Metrics>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let known = path.strip_prefix('/').and_then(|p| p.split_once('/')).is_some_and(|(s, _)| SERVICES.contains(&s));
    let rpc = if known { path.to_owned() } else { "other".to_owned() };
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(code) = response.headers().get("grpc-status") {
        metrics.record(&rpc, Code::from_bytes(code.as_bytes()), started.elapsed());
        return response;
    }
    let (parts, body) = response.into_parts();
    let pending = Some(Pending { metrics, rpc, started });
    Response::from_parts(parts, Body::new(Metered { inner: body, pending }))
}

struct Pending {
    metrics: Arc<Metrics>,
    rpc: String,
    started: Instant,
}

/// An answer's body that records its RPC when the trailers (or the end) pass.
struct Metered {
    inner: Body,
    pending: Option<Pending>,
}

impl Metered {
    fn finish(&mut self, code: Code) {
        if let Some(p) = self.pending.take() {
            p.metrics.record(&p.rpc, code, p.started.elapsed());
        }
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers.get("grpc-status").map_or(Code::Unknown, |c| Code::from_bytes(c.as_bytes()));
                    this.finish(code);
                }
            }
            // Ended without trailers: not a gRPC answer's end.
            Poll::Ready(None) => this.finish(Code::Unknown),
            Poll::Ready(Some(Err(_))) => this.finish(Code::Internal),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// `/healthz`: 200 when the store accepts a durable write (a meta key, within 3 s) and the
/// learner has applied all but at most [`HEALTHY_LAG`] logged events; 503 naming what fails.
pub async fn healthz<S: Store>(engine: Arc<Engine<S>>) -> Response {
    let probe = Arc::clone(&engine);
    let write = tokio::task::spawn_blocking(move || {
        let now = crate::now_ms().to_le_bytes();
        probe.store().put_meta("healthz", &now).map_err(|e| e.to_string())
    });
    let mut failures = Vec::new();
    match tokio::time::timeout(Duration::from_secs(3), write).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => failures.push(format!("the store refuses writes: {e}")),
        Ok(Err(e)) => failures.push(format!("the store write probe failed: {e}")),
        Err(_) => failures.push("the store did not complete a write within 3 s".to_owned()),
    }
    let lag = tokio::task::spawn_blocking(move || engine.learner_lag()).await;
    let lag = match lag {
        Ok(Ok(lag)) => {
            if lag > HEALTHY_LAG {
                failures.push(format!("the learner is {lag} events behind the log (healthy: at most {HEALTHY_LAG})"));
            }
            Some(lag)
        }
        Ok(Err(e)) => {
            failures.push(format!("cannot read the event log: {e}"));
            None
        }
        Err(e) => {
            failures.push(format!("the learner probe failed: {e}"));
            None
        }
    };
    let body = serde_json::json!({
        "status": if failures.is_empty() { "ok" } else { "unhealthy" },
        "failures": failures,
        "learner_lag_events": lag,
    });
    let status = if failures.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(http::header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
}
