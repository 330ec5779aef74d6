//! The gRPC services: validate -> convert -> engine -> convert. Nothing else lives here.

use std::sync::Arc;

use reco_engine::store::Store;
use reco_engine::{CatalogChange, Engine, ReportedEvent, Since};
use reco_proto::seed::user_recommend_server::UserRecommend;
use reco_proto::v1::catalog_server::Catalog;
use reco_proto::v1::tracking_server::Tracking;
use reco_proto::{seed, v1};
use tokio::sync::{broadcast, mpsc, watch};
use tonic::codec::SingleMessageCompressionOverride;
use tonic::{Request, Response, Status};

use crate::convert;

/// Largest id or param list in one call.
const MAX_IDS: usize = 1000;

/// Answers smaller than this go out uncompressed even to a client that accepts compression:
/// gzip's 18 bytes of header and trailer and its block overhead eat what it would save on a
/// few hundred bytes of protobuf.
const COMPRESS_MIN_BYTES: usize = 512;

/// A unary answer; compressed (when the call is) only from [`COMPRESS_MIN_BYTES`] on.
fn reply<T: prost::Message>(message: T) -> Response<T> {
    let small = message.encoded_len() < COMPRESS_MIN_BYTES;
    let mut response = Response::new(message);
    if small {
        response.extensions_mut().insert(SingleMessageCompressionOverride::Disable);
    }
    response
}

pub struct Reco<S> {
    engine: Arc<Engine<S>>,
    /// The bearer token of the catalog's writes; `None`: writes are off.
    admin_token: Option<Arc<str>>,
    /// Catalog changes for `Watch`, fed by the engine's notifier.
    changes: broadcast::Sender<Arc<CatalogChange>>,
    /// Judged events for `Tracking.Watch`, fed by the engine's notifier.
    events: broadcast::Sender<Arc<v1::WatchedEvent>>,
    /// The `Tracking.Watch` subscribers that asked for served batches too.
    served: crate::inspect::ServedSubscribers,
    /// Whether `Tracking.Watch` needs the admin token (the server listens beyond loopback).
    watch_needs_token: bool,
    /// Turns true when the server starts to shut down: event streams then end.
    closing: tokio::sync::watch::Receiver<bool>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Changes a watcher may fall behind before it is ended with RESOURCE_EXHAUSTED.
pub const WATCH_BUFFER: usize = 1024;

impl<S: Store> Reco<S> {
    pub fn new(engine: Arc<Engine<S>>) -> Self {
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        let feed = changes.clone();
        // No watcher is not an error: the send fails and nothing waits.
        engine.on_catalog_change(Box::new(move |batch| {
            for c in batch {
                let _ = feed.send(Arc::clone(c));
            }
        }));
        let (events, _) = broadcast::channel(crate::inspect::EVENT_BUFFER);
        engine.on_event(crate::inspect::notifier(events.clone()));
        // Served batches go through the same channel, so they come in order with the events.
        let served = crate::inspect::ServedSubscribers::default();
        engine.on_served(served.wanted(), crate::inspect::notifier(events.clone()));
        Self {
            engine,
            admin_token: None,
            changes,
            events,
            served,
            watch_needs_token: true,
            closing: watch::channel(false).1,
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Ends open event streams (UNAVAILABLE) once `closing` turns true.
    pub fn ending_with(mut self, closing: watch::Receiver<bool>) -> Self {
        self.closing = closing;
        self
    }

    /// Whether the server listens on loopback only, where the event stream needs no token.
    pub fn on_loopback_only(mut self, loopback: bool) -> Self {
        self.watch_needs_token = !loopback;
        self
    }

    pub fn with_admin_token(mut self, token: Option<&str>) -> Self {
        self.admin_token = token.map(Arc::from);
        self
    }

    /// Lets a catalog write through only with `authorization: Bearer <admin token>`.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.authorize_for(request, "catalog writes", "to publish")
    }

    /// [`Reco::authorize`] for `what`, which the messages name.
    fn authorize_for<T>(&self, request: &Request<T>, what: &str, to: &str) -> Result<(), Status> {
        let Some(token) = &self.admin_token else {
            return Err(Status::permission_denied(format!(
                "{what} are off on this server: start it with --admin-token (or RECO_ADMIN_TOKEN) {to}"
            )));
        };
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(format!("{what} need `authorization: Bearer <admin token>` metadata")));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| Status::unauthenticated("the authorization metadata must be `Bearer <admin token>`"))?;
        if !same_secret(presented.trim().as_bytes(), token.as_bytes()) {
            return Err(Status::permission_denied("the admin token is not this server's"));
        }
        Ok(())
    }
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S> Clone for Reco<S> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
            admin_token: self.admin_token.clone(),
            changes: self.changes.clone(),
            events: self.events.clone(),
            served: self.served.clone(),
            watch_needs_token: self.watch_needs_token,
            closing: self.closing.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// What a watcher asked to see: every channel, or these.
fn watched_channels(ids: &[i32]) -> Result<Option<Vec<i32>>, Status> {
    if ids.len() > reco_engine::catalog::CHANNELS.len() {
        let max = reco_engine::catalog::CHANNELS.len();
        return Err(convert::invalid(
            "channel_ids",
            format!("channel_ids has {} entries, at most {max} (every channel) are allowed", ids.len()),
        ));
    }
    if let Some(bad) = ids.iter().find(|c| !reco_engine::catalog::is_channel(**c)) {
        return Err(convert::invalid(
            "channel_ids",
            format!("channel_ids: {bad} is unknown (known: 0..=25, see Catalog.Channels)"),
        ));
    }
    Ok((!ids.is_empty() && !ids.contains(&0)).then(|| ids.to_vec()))
}

type Sent = Result<v1::CatalogChange, Status>;

/// Feeds one watcher: SUBSCRIBED, the changes after `since` (or RESYNC), then live changes
/// until the watcher hangs up or falls [`WATCH_BUFFER`] behind.
async fn feed_watcher(
    mut live: broadcast::Receiver<Arc<CatalogChange>>,
    backlog: Since,
    channels: Option<Vec<i32>>,
    out: mpsc::Sender<Sent>,
) {
    let wanted = |c: &CatalogChange| channels.as_ref().is_none_or(|ids| ids.contains(&c.article.channel_id));
    let marker = |kind: v1::ChangeKind, seq: u64| v1::CatalogChange { seq, kind: kind as i32, article: None };
    let (backlog, mut last) = match backlog {
        Since::Changes(changes, newest) => (Some(changes), newest),
        Since::Gone(newest) => (None, newest),
    };
    if out.send(Ok(marker(v1::ChangeKind::Subscribed, last))).await.is_err() {
        return;
    }
    match backlog {
        Some(changes) => {
            for c in changes.iter().filter(|c| wanted(c)) {
                if out.send(Ok(convert::change(c))).await.is_err() {
                    return;
                }
            }
        }
        None => {
            if out.send(Ok(marker(v1::ChangeKind::Resync, last))).await.is_err() {
                return;
            }
        }
    }
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            () = out.closed() => return,
        };
        match next {
            // Subscribed before the backlog was read: what it held comes again, skip it.
            Ok(c) if c.seq <= last => {}
            Ok(c) => {
                last = c.seq;
                if wanted(&c) && out.send(Ok(convert::change(&c))).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let msg = format!(
                    "this watcher fell {n} changes behind (at most {WATCH_BUFFER} are buffered): resubscribe with since = {last}"
                );
                let status = convert::exhausted("watch buffer", msg, Some(std::time::Duration::ZERO));
                let _ = out.send(Err(status)).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn check_len(field: &str, len: usize) -> Result<(), Status> {
    match len {
        0 => Err(convert::invalid(field, format!("{field} is empty: send at least one"))),
        n if n > MAX_IDS => {
            Err(convert::invalid(field, format!("{field} has {n} entries, at most {MAX_IDS} are allowed")))
        }
        _ => Ok(()),
    }
}

/// Where a handler's engine call runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Blocking {
    /// On the blocking pool: the call waits for a durable commit.
    Always,
    /// On the blocking pool when the store is networked (its round trips then overlap instead
    /// of queuing on the runtime's threads), else right on the handler's thread.
    OnNetwork,
}

impl<S: Store> Reco<S> {
    async fn on_engine<T: Send + 'static>(
        &self,
        what: &str,
        blocking: Blocking,
        call: impl FnOnce(&Engine<S>) -> T + Send + 'static,
    ) -> Result<T, Status> {
        if blocking == Blocking::OnNetwork && !self.engine.store().is_remote() {
            return Ok(call(&self.engine));
        }
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || call(&engine))
            .await
            .map_err(|e| Status::internal(format!("the {what} task failed: {e}")))
    }
}

#[tonic::async_trait]
impl<S: Store> UserRecommend for Reco<S> {
    #[tracing::instrument(level = "debug", skip_all, fields(user = %request.get_ref().user_id, channel = request.get_ref().channel_id))]
    async fn user_recommend(
        &self,
        request: Request<seed::UserRequest>,
    ) -> Result<Response<seed::ArticleResponse>, Status> {
        let r = request.into_inner();
        let req =
            self.engine.validate(&r.user_id, r.channel_id, r.article_num, r.time_stamp).map_err(convert::status)?;
        let asked = req.article_num as usize;
        let resp = self.on_engine("refresh", Blocking::OnNetwork, move |e| e.recommend(&req, now_ms())).await?;
        let resp = resp.map_err(convert::status)?;
        if resp.refreshed && resp.items.len() < asked {
            self.metrics.iter().for_each(|m| m.short_answer());
        }
        Ok(reply(convert::feed(resp)))
    }
}

#[tonic::async_trait]
impl<S: Store> Catalog for Reco<S> {
    type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Sent> + Send>>;

    async fn watch(&self, request: Request<v1::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let channels = watched_channels(&r.channel_ids)?;
        // Subscribed first, then the backlog read: no change falls between the two.
        let live = self.changes.subscribe();
        let backlog = self.engine.catalog_changes_since(r.since);
        let (out, stream) = mpsc::channel(16);
        tokio::spawn(feed_watcher(live, backlog, channels, out));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(stream))))
    }

    async fn articles(&self, request: Request<v1::ArticlesRequest>) -> Result<Response<v1::ArticlesResponse>, Status> {
        let ids = request.into_inner().article_ids;
        check_len("article_ids", ids.len())?;
        let (found, missing_ids) = self
            .on_engine("articles", Blocking::OnNetwork, move |e| e.articles(&ids))
            .await?
            .map_err(convert::status)?;
        let articles = found.into_iter().map(convert::article).collect();
        Ok(reply(v1::ArticlesResponse { articles, missing_ids }))
    }

    async fn channels(&self, _: Request<v1::ChannelsRequest>) -> Result<Response<v1::ChannelsResponse>, Status> {
        let channels = self
            .engine
            .channels()
            .into_iter()
            .map(|(c, count)| v1::Channel { id: c.id, name: c.name, article_count: count as u32 })
            .collect();
        Ok(reply(v1::ChannelsResponse { channels }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(articles = request.get_ref().articles.len()))]
    async fn publish(&self, request: Request<v1::PublishRequest>) -> Result<Response<v1::PublishResponse>, Status> {
        self.authorize(&request)?;
        let articles: Vec<_> = request.into_inner().articles.into_iter().map(convert::published).collect();
        let ids: Vec<i64> = articles.iter().map(|a| a.id).collect();
        // Waits for the store's durable commit and rebuilds the catalog.
        let verdicts = self
            .on_engine("publish", Blocking::Always, move |e| e.publish(articles, now_ms()))
            .await?
            .map_err(convert::status)?;
        Ok(reply(convert::publish_results(&ids, verdicts)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ids = request.get_ref().article_ids.len()))]
    async fn retract(&self, request: Request<v1::RetractRequest>) -> Result<Response<v1::RetractResponse>, Status> {
        self.authorize(&request)?;
        let v1::RetractRequest { article_ids, reason } = request.into_inner();
        let ids = article_ids.clone();
        let verdicts = self
            .on_engine("retract", Blocking::Always, move |e| e.retract(&ids, &reason, now_ms()))
            .await?
            .map_err(convert::status)?;
        Ok(reply(convert::retract_results(&article_ids, verdicts)))
    }
}

#[tonic::async_trait]
impl<S: Store> Tracking for Reco<S> {
    type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::WatchedEvent, Status>> + Send>>;

    async fn watch(&self, request: Request<v1::EventWatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        if self.watch_needs_token {
            self.authorize_for(&request, "event streams (they carry user ids)", "or listen on loopback only")?;
        }
        let filter = crate::inspect::EventFilter::parse(request.into_inner())?;
        let served = filter.served.then(|| self.served.join());
        let (out, stream) = mpsc::channel(16);
        let live = self.events.subscribe();
        tokio::spawn(crate::inspect::feed_subscriber(live, filter, out, self.closing.clone(), served));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(stream))))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(events = request.get_ref().events.len()))]
    async fn report(&self, request: Request<v1::ReportRequest>) -> Result<Response<v1::ReportResponse>, Status> {
        let events: Vec<ReportedEvent> = request.into_inner().events.into_iter().map(convert::event).collect();
        // Waits for the store's durable commit.
        let verdicts = self
            .on_engine("report", Blocking::Always, move |e| e.report(&events, now_ms()))
            .await?
            .map_err(convert::status)?;
        Ok(reply(v1::ReportResponse { results: verdicts.into_iter().map(convert::verdict).collect() }))
    }

    async fn article_stats(
        &self,
        request: Request<v1::ArticleStatsRequest>,
    ) -> Result<Response<v1::ArticleStatsResponse>, Status> {
        let ids = request.into_inner().article_ids;
        check_len("article_ids", ids.len())?;
        let (stats, missing_ids) = self
            .on_engine("article stats", Blocking::OnNetwork, move |e| e.article_stats(&ids, now_ms()))
            .await?
            .map_err(convert::status)?;
        let stats = stats.into_iter().map(|(id, s)| convert::stats(id, s)).collect();
        Ok(reply(v1::ArticleStatsResponse { stats, missing_ids }))
    }

    async fn verify(&self, request: Request<v1::VerifyRequest>) -> Result<Response<v1::VerifyResponse>, Status> {
        let params = request.into_inner().params;
        check_len("params", params.len())?;
        let checks =
            params.iter().zip(self.engine.verify(&params)).map(|(raw, c)| convert::param_check(raw, c)).collect();
        Ok(reply(v1::VerifyResponse { checks }))
    }

    async fn stats(&self, request: Request<v1::StatsRequest>) -> Result<Response<v1::StatsResponse>, Status> {
        let window = convert::StatsWindow::resolve(request.get_ref(), now_ms())?;
        let report = self.engine.stats(window.from_ms, window.to_ms);
        Ok(reply(convert::stats_report(report)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %request.get_ref().user_id, article = request.get_ref().article_id))]
    async fn explain(&self, request: Request<v1::ExplainRequest>) -> Result<Response<v1::ExplainResponse>, Status> {
        let r = request.into_inner();
        let (user, article) = (r.user_id.clone(), r.article_id);
        let explanation = self
            .on_engine("explain", Blocking::OnNetwork, move |e| e.explain(&user, article, now_ms()))
            .await?
            .map_err(convert::status)?;
        Ok(reply(convert::explanation(r.user_id, r.article_id, explanation)))
    }
}
