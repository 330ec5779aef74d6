//! The gRPC services: validate -> convert -> engine -> convert. Nothing else lives here.

use std::sync::Arc;

use reco_engine::store::Store;
use reco_engine::{Engine, ReportedEvent};
use reco_proto::seed::user_recommend_server::UserRecommend;
use reco_proto::v1::catalog_server::Catalog;
use reco_proto::v1::tracking_server::Tracking;
use reco_proto::{seed, v1};
use tonic::{Request, Response, Status};

use crate::convert;

/// Largest id or param list in one call.
const MAX_IDS: usize = 1000;

pub struct Reco<S> {
    engine: Arc<Engine<S>>,
}

impl<S> Reco<S> {
    pub fn new(engine: Arc<Engine<S>>) -> Self {
        Self { engine }
    }
}

impl<S> Clone for Reco<S> {
    fn clone(&self) -> Self {
        Self { engine: Arc::clone(&self.engine) }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn check_len(field: &str, len: usize) -> Result<(), Status> {
    match len {
        0 => Err(Status::invalid_argument(format!("{field} is empty: send at least one"))),
        n if n > MAX_IDS => {
            Err(Status::invalid_argument(format!("{field} has {n} entries, at most {MAX_IDS} are allowed")))
        }
        _ => Ok(()),
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
        let resp = self.engine.recommend(&req, now_ms()).map_err(convert::status)?;
        Ok(Response::new(convert::feed(resp)))
    }
}

#[tonic::async_trait]
impl<S: Store> Catalog for Reco<S> {
    async fn articles(&self, request: Request<v1::ArticlesRequest>) -> Result<Response<v1::ArticlesResponse>, Status> {
        let ids = request.into_inner().article_ids;
        check_len("article_ids", ids.len())?;
        let (found, missing_ids) = self.engine.articles(&ids);
        let articles = found.into_iter().map(convert::article).collect();
        Ok(Response::new(v1::ArticlesResponse { articles, missing_ids }))
    }

    async fn channels(&self, _: Request<v1::ChannelsRequest>) -> Result<Response<v1::ChannelsResponse>, Status> {
        let channels = self
            .engine
            .channels()
            .into_iter()
            .map(|(c, count)| v1::Channel { id: c.id, name: c.name, article_count: count as u32 })
            .collect();
        Ok(Response::new(v1::ChannelsResponse { channels }))
    }
}

#[tonic::async_trait]
impl<S: Store> Tracking for Reco<S> {
    #[tracing::instrument(level = "debug", skip_all, fields(events = request.get_ref().events.len()))]
    async fn report(&self, request: Request<v1::ReportRequest>) -> Result<Response<v1::ReportResponse>, Status> {
        let events: Vec<ReportedEvent> = request.into_inner().events.into_iter().map(convert::event).collect();
        let engine = Arc::clone(&self.engine);
        // Waits for the store's durable commit: off the async workers.
        let verdicts = tokio::task::spawn_blocking(move || engine.report(&events, now_ms()))
            .await
            .map_err(|e| Status::internal(format!("report task failed: {e}")))?
            .map_err(convert::status)?;
        Ok(Response::new(v1::ReportResponse { results: verdicts.into_iter().map(convert::verdict).collect() }))
    }

    async fn article_stats(
        &self,
        request: Request<v1::ArticleStatsRequest>,
    ) -> Result<Response<v1::ArticleStatsResponse>, Status> {
        let ids = request.into_inner().article_ids;
        check_len("article_ids", ids.len())?;
        let (stats, missing_ids) = self.engine.article_stats(&ids, now_ms()).map_err(convert::status)?;
        let stats = stats.into_iter().map(|(id, s)| convert::stats(id, s)).collect();
        Ok(Response::new(v1::ArticleStatsResponse { stats, missing_ids }))
    }

    async fn verify(&self, request: Request<v1::VerifyRequest>) -> Result<Response<v1::VerifyResponse>, Status> {
        let params = request.into_inner().params;
        check_len("params", params.len())?;
        let checks =
            params.iter().zip(self.engine.verify(&params)).map(|(raw, c)| convert::param_check(raw, c)).collect();
        Ok(Response::new(v1::VerifyResponse { checks }))
    }

    async fn stats(&self, request: Request<v1::StatsRequest>) -> Result<Response<v1::StatsResponse>, Status> {
        let window = convert::StatsWindow::resolve(request.get_ref(), now_ms())?;
        let report = self.engine.stats(window.from_ms, window.to_ms);
        Ok(Response::new(convert::stats_report(report)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = %request.get_ref().user_id, article = request.get_ref().article_id))]
    async fn explain(&self, request: Request<v1::ExplainRequest>) -> Result<Response<v1::ExplainResponse>, Status> {
        let r = request.into_inner();
        let explanation = self.engine.explain(&r.user_id, r.article_id, now_ms()).map_err(convert::status)?;
        Ok(Response::new(convert::explanation(r.user_id, r.article_id, explanation)))
    }
}
