//! The gRPC-Web edge: calls the reco services from the browser and converts their messages
//! into the page's own types. Nothing else in the crate sees a protobuf type.
//!
//! The endpoint is the page's own origin (so `reco serve` serving the page just works, and
//! `trunk serve` proxies the service paths to the server, see `Trunk.toml`), unless the URL
//! says otherwise with `?api=http://host:port`. The calls go through [`crate::grpc_web`], a
//! small gRPC-Web client over `fetch` (tonic's client stack was most of the page's wasm).

use std::fmt;

use reco_proto::{
    seed::UserRequest,
    v1::{
        self, ArticlesRequest, ChangeKind, ChannelsRequest, EventWatchRequest, ExplainRequest, ExplainResponse,
        ReportRequest, StatsRequest, StatsResponse, TrackEvent, Verdict, VerifyRequest, WatchRequest,
    },
};

use crate::{
    event_log::{Outcome, Report},
    explain::{Contribution, Explanation},
    feed::{ArticleMeta, BATCH_SIZE, BatchData, Card, Listing, Meta},
    grpc_web::{self, Code, Status},
    inspector::{self, Filter, Item, VerdictKind, Watched},
    live::Change,
    param::{Check, Param},
    stats::{Stats, StatsRow},
};

/// An open `Catalog.Watch` stream.
pub struct Watch(grpc_web::Stream<v1::CatalogChange>);

impl Watch {
    /// The next change; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<Change, ApiError>> {
        loop {
            let message = match self.0.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return None,
                Err(status) => return Some(Err(status.into())),
            };
            let seq = message.seq;
            let article_id = message.article.as_ref().map_or(0, |article| article.article_id);
            let change = match message.kind() {
                ChangeKind::Subscribed => Change::Subscribed { seq },
                ChangeKind::Published => Change::Published { seq, article_id },
                ChangeKind::Updated => Change::Updated { seq, article_id },
                ChangeKind::Retracted => Change::Retracted { seq, article_id },
                ChangeKind::Resync => Change::Resync { seq },
                // A kind this page does not know (a newer server): skip it.
                ChangeKind::Unspecified => continue,
            };
            return Some(Ok(change));
        }
    }
}

/// An open `Tracking.Watch` stream.
pub struct EventStream(grpc_web::Stream<v1::WatchedEvent>);

impl EventStream {
    /// The next event or drop marker; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<Item, ApiError>> {
        loop {
            match self.0.message().await {
                Ok(Some(message)) => match watched(message) {
                    Some(item) => return Some(Ok(item)),
                    // A verdict this page does not know (a newer server): skip it.
                    None => continue,
                },
                Ok(None) => return None,
                Err(status) => return Some(Err(status.into())),
            }
        }
    }
}

/// A channel tab.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: i32,
    pub name: String,
    pub article_count: u32,
}

/// A failed call, as the page tells it to a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// The request fields the server refused (`google.rpc.BadRequest` in
    /// `grpc-status-details-bin`): field name and why.
    pub fields: Vec<(String, String)>,
}

impl ApiError {
    fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), fields: Vec::new() }
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> ApiError {
        ApiError { fields: status.field_violations(), code: status.code, message: status.message }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.message.is_empty()) {
            (_, true) => write!(f, "{}", self.code.description())?,
            // What the transport reports (no answer at all) arrives as Unknown.
            (Code::Unknown, false) => return write!(f, "{}", self.message),
            (code, false) => write!(f, "{} ({code:?}", self.message)?,
        }
        for (field, description) in &self.fields {
            if description == &self.message || description.is_empty() {
                write!(f, "; field {field}")?;
            } else {
                write!(f, "; field {field}: {description}")?;
            }
        }
        if !self.message.is_empty() {
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Where the reco services are; cheap to clone, one transport per call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api {
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api { base: base.trim_end_matches('/').to_owned() }
    }

    /// `?api=` from the page URL, else the page's origin.
    pub fn from_location() -> Api {
        let location = web_sys::window().map(|window| window.location());
        let from_query = location
            .as_ref()
            .and_then(|location| location.search().ok())
            .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
            .and_then(|params| params.get("api"))
            .filter(|api| !api.is_empty());
        let origin = || location.as_ref().and_then(|location| location.origin().ok()).unwrap_or_default();
        Api::new(&from_query.unwrap_or_else(origin))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `method` (`package.Service/Method`).
    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base)
    }

    /// Calls unary `method`; the request goes out now (see [`grpc_web::unary`]).
    fn unary<Req: prost::Message + 'static, Res: prost::Message + Default>(
        &self,
        method: &str,
        request: Req,
    ) -> impl Future<Output = Result<Res, Status>> + use<Req, Res> {
        grpc_web::unary(&self.url(method), &request)
    }

    /// Every channel, 推荐 (id 0) first.
    pub async fn channels(&self) -> Result<Vec<Channel>, ApiError> {
        let response: v1::ChannelsResponse = self.unary("reco.v1.Catalog/Channels", ChannelsRequest {}).await?;
        let mut channels: Vec<Channel> = response
            .channels
            .into_iter()
            .map(|channel| Channel { id: channel.id, name: channel.name, article_count: channel.article_count })
            .collect();
        // Not `sort_by_key`: a stable sort is KBs of wasm, for moving one tab.
        if let Some(all) = channels.iter().position(|channel| channel.id == 0) {
            channels[..=all].rotate_right(1);
        }
        Ok(channels)
    }

    /// One `user_recommend` batch. Its cards' catalog info is not asked yet ([`Meta::Pending`]:
    /// [`Api::listings`]) nor are its params checked ([`Check::Pending`]: [`Api::verify`]); both
    /// come after the cards are shown. `user_recommend` goes out now, not when the answer is
    /// first polled.
    pub fn batch(
        &self,
        user_id: &str,
        channel_id: i32,
        time_stamp: i64,
    ) -> impl Future<Output = Result<BatchData, ApiError>> + use<> {
        let request = UserRequest { user_id: user_id.to_owned(), channel_id, article_num: BATCH_SIZE, time_stamp };
        let answer = self.unary::<_, reco_proto::seed::ArticleResponse>("UserRecommend/user_recommend", request);
        async move {
            let response = answer.await?;
            let exposure = (!response.exposure.is_empty()).then(|| Param::new(response.exposure));
            let cards = response
                .recommends
                .into_iter()
                .enumerate()
                .map(|(position, article)| {
                    let track = article.track.unwrap_or_default();
                    let params = [track.click, track.collect, track.share, track.read].map(Param::new);
                    Card { article_id: article.article_id, position: position as u32, meta: Meta::Pending, params }
                })
                .collect();
            Ok(BatchData { exposure, pre_timestamp: response.time_stamp, cards })
        }
    }

    /// What the catalog says of these articles (`Catalog.Articles`).
    pub async fn listings(&self, ids: Vec<i64>) -> Result<Vec<Listing>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let response: v1::ArticlesResponse =
            self.unary("reco.v1.Catalog/Articles", ArticlesRequest { article_ids: ids }).await?;
        Ok(response
            .articles
            .into_iter()
            .map(|info| Listing {
                article_id: info.article_id,
                retracted: info.retracted,
                meta: ArticleMeta {
                    channel_id: info.channel_id,
                    title: info.title,
                    author: info.author,
                    publish_time: info.publish_time,
                },
            })
            .collect())
    }

    /// Opens `Catalog.Watch` for `channel_id` (0: every channel) after change `since`.
    pub async fn watch(&self, channel_id: i32, since: u64) -> Result<Watch, ApiError> {
        let request = WatchRequest { channel_ids: vec![channel_id], since };
        Ok(Watch(grpc_web::server_stream(&self.url("reco.v1.Catalog/Watch"), &request).await?))
    }

    /// Opens `Tracking.Watch` with `filter` applied by the server.
    pub async fn watch_events(&self, filter: &Filter) -> Result<EventStream, ApiError> {
        let url = self.url("reco.v1.Tracking/Watch");
        Ok(EventStream(grpc_web::server_stream(&url, &event_watch_request(filter)).await?))
    }

    /// One check per param, in order; all [`Check::Unchecked`] when `Verify` fails.
    pub async fn verify(&self, params: &[String]) -> Vec<Check> {
        if params.is_empty() {
            return Vec::new();
        }
        let request = VerifyRequest { params: params.to_vec() };
        match self.unary::<_, v1::VerifyResponse>("reco.v1.Tracking/Verify", request).await {
            Ok(response) => {
                let mut checks: Vec<Check> = response
                    .checks
                    .into_iter()
                    .map(|check| if check.valid { Check::Valid } else { Check::Invalid(check.reason) })
                    .collect();
                checks.resize(params.len(), Check::Unchecked("no answer for this param".into()));
                checks
            }
            Err(status) => {
                vec![Check::Unchecked(ApiError::from(status).to_string()); params.len()]
            }
        }
    }

    /// Reports one event. The event time is the server's ("now"), so a skewed browser clock
    /// cannot get events rejected.
    pub async fn report(&self, report: &Report) -> Result<Outcome, ApiError> {
        let request = ReportRequest {
            events: vec![TrackEvent {
                param: report.param.raw.clone(),
                action_time: 0,
                read_duration_ms: report.read_duration_ms.unwrap_or_default(),
                dislike: report.dislike,
            }],
        };
        let response: v1::ReportResponse = self.unary("reco.v1.Tracking/Report", request).await?;
        let result =
            response.results.into_iter().next().ok_or(ApiError::new(Code::Internal, "the server sent no verdict"))?;
        Ok(match result.verdict() {
            Verdict::Accepted => Outcome::Accepted,
            Verdict::Duplicate => Outcome::Duplicate,
            Verdict::Rejected => Outcome::Rejected(result.reason),
            // A report's result is never SERVED (only `Tracking.Watch` sends that, when asked).
            Verdict::Unspecified | Verdict::Served => Outcome::Failed("the server sent no verdict".into()),
        })
    }

    /// Why the engine would pick `article_id` for `user_id` now.
    pub async fn explain(&self, user_id: &str, article_id: i64) -> Result<Explanation, ApiError> {
        let request = ExplainRequest { user_id: user_id.to_owned(), article_id };
        Ok(explanation(self.unary("reco.v1.Tracking/Explain", request).await?))
    }

    /// Exposures, actions and CTR over `(from_ms, to_ms)` (see [`crate::stats::LAST_DAY`]).
    pub async fn stats(&self, (from_ms, to_ms): (i64, i64)) -> Result<Stats, ApiError> {
        Ok(stats(self.unary("reco.v1.Tracking/Stats", StatsRequest { from_ms, to_ms }).await?))
    }
}

fn event_watch_request(filter: &Filter) -> EventWatchRequest {
    let verdict = |kind: VerdictKind| match kind {
        VerdictKind::Accepted => Verdict::Accepted,
        VerdictKind::Duplicate => Verdict::Duplicate,
        VerdictKind::Rejected => Verdict::Rejected,
    };
    EventWatchRequest {
        user_id: filter.user_id.clone(),
        actions: filter.action.map(|action| action.as_str().to_owned()).into_iter().collect(),
        verdicts: filter.verdict.map(|kind| verdict(kind) as i32).into_iter().collect(),
        channel_ids: filter.channel.into_iter().collect(),
        // The inspector lists events, not the batches as they are served.
        served: false,
    }
}

/// A streamed message in the page's terms; `None` for a verdict the page does not know.
fn watched(message: v1::WatchedEvent) -> Option<Item> {
    if message.dropped > 0 {
        return Some(Item::Dropped(message.dropped));
    }
    let verdict = match message.verdict() {
        Verdict::Accepted => inspector::Verdict::Accepted,
        Verdict::Duplicate => inspector::Verdict::Duplicate,
        Verdict::Rejected => inspector::Verdict::Rejected(message.reason),
        Verdict::Unspecified | Verdict::Served => return None,
    };
    Some(Item::Event(Box::new(Watched {
        verdict,
        action: message.action,
        user_id: message.user_id,
        article_ids: message.article_ids,
        channel_id: message.channel_id,
        batch_time: message.batch_time,
        request_id: message.request_id,
        position: u32::try_from(message.position).ok(),
        sources: message.sources,
        bucket: message.bucket,
        param: message.param,
        action_time: message.action_time,
        read_duration_ms: message.read_duration_ms,
        dislike: message.dislike,
        judged_ms: message.judged_ms,
        seq: message.seq,
        remote: message.remote,
    })))
}

fn explanation(response: ExplainResponse) -> Explanation {
    Explanation {
        bucket: response.bucket,
        variant: response.variant,
        ranker: response.ranker,
        sources: response.sources,
        served_sources: response.served_sources,
        score: response.score,
        probability: response.probability,
        demotion: response.demotion,
        hidden: response.hidden,
        contributions: response
            .contributions
            .into_iter()
            .map(|contribution| Contribution { feature: contribution.feature, weight: contribution.weight })
            .collect(),
    }
}

fn stats(response: StatsResponse) -> Stats {
    let rows = |rows: Vec<v1::StatsRow>| {
        rows.into_iter()
            .map(|row| StatsRow {
                key: row.key,
                exposures: row.exposures,
                clicks: row.clicks,
                collects: row.collects,
                shares: row.shares,
                reads: row.reads,
                dislikes: row.dislikes,
                ctr: row.ctr,
            })
            .collect()
    };
    Stats {
        from_ms: response.from_ms,
        to_ms: response.to_ms,
        by_bucket: rows(response.by_bucket),
        by_source: rows(response.by_source),
        by_channel: rows(response.by_channel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_loses_its_trailing_slash() {
        assert_eq!(Api::new("http://127.0.0.1:8888/").base(), "http://127.0.0.1:8888");
        assert_eq!(Api::new("http://h:1").base(), "http://h:1");
    }

    #[test]
    fn errors_read_plainly() {
        let unreachable = ApiError::from(Status::new(Code::Unknown, "TypeError: Failed to fetch"));
        assert_eq!(unreachable.to_string(), "TypeError: Failed to fetch");
        let refused = ApiError::from(Status::new(Code::InvalidArgument, "user_id is empty"));
        assert_eq!(refused.to_string(), "user_id is empty (InvalidArgument)");
        let bare = ApiError::from(Status::new(Code::Unavailable, ""));
        assert_eq!(bare.to_string(), "the service is unavailable");
        let unknown = ApiError::from(Status::new(Code::NotFound, "unknown article 9"));
        assert_eq!(unknown.to_string(), "unknown article 9 (NotFound)");
    }

    #[test]
    fn field_violations_are_named() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let message = "article_num must be in 1..=100, got 0";
        let details = ErrorDetails::with_bad_request_violation("article_num", message);
        let sent = tonic::Status::with_error_details(tonic::Code::InvalidArgument, message, details);
        // As it arrives: the details travel encoded in grpc-status-details-bin.
        let arrived = Status { details: sent.details().to_vec(), ..Status::new(Code::InvalidArgument, message) };
        let error = ApiError::from(arrived);
        assert_eq!(error.fields, [("article_num".to_owned(), message.to_owned())]);
        assert_eq!(error.to_string(), "article_num must be in 1..=100, got 0 (InvalidArgument; field article_num)");
        let mut details = ErrorDetails::with_bad_request_violation("from_ms", "must be before to_ms");
        details.add_bad_request_violation("to_ms", "");
        let sent = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad window", details);
        let arrived = Status { details: sent.details().to_vec(), ..Status::new(Code::InvalidArgument, "bad window") };
        assert_eq!(
            ApiError::from(arrived).to_string(),
            "bad window (InvalidArgument; field from_ms: must be before to_ms; field to_ms)"
        );
    }

    #[test]
    fn watched_events_convert_and_drops_are_markers() {
        assert_eq!(watched(v1::WatchedEvent { dropped: 12, ..Default::default() }), Some(Item::Dropped(12)));
        assert_eq!(watched(v1::WatchedEvent::default()), None, "no verdict");
        let message = v1::WatchedEvent {
            verdict: Verdict::Rejected as i32,
            reason: "bad signature".into(),
            action: "click".into(),
            user_id: "u1".into(),
            article_ids: vec![5],
            channel_id: 2,
            batch_time: 10,
            position: -1,
            request_id: 0xab,
            param: "{}".into(),
            ..Default::default()
        };
        let Some(Item::Event(event)) = watched(message) else { panic!("not an event") };
        assert_eq!(event.verdict, inspector::Verdict::Rejected("bad signature".into()));
        assert_eq!((event.user_id.as_str(), event.article_ids.as_slice(), event.channel_id), ("u1", &[5][..], 2));
        assert_eq!((event.position, event.request_id, event.batch_time), (None, 0xab, 10));
    }

    #[test]
    fn the_inspector_filter_goes_to_the_server() {
        assert_eq!(event_watch_request(&Filter::default()), EventWatchRequest::default());
        let filter = Filter {
            user_id: "u1".into(),
            action: Some(crate::param::Action::Read),
            verdict: Some(VerdictKind::Rejected),
            channel: Some(0),
        };
        let request = event_watch_request(&filter);
        assert_eq!(request.user_id, "u1");
        assert_eq!(request.actions, ["read"]);
        assert_eq!(request.verdicts, [Verdict::Rejected as i32]);
        assert_eq!(request.channel_ids, [0]);
    }

    #[test]
    fn explain_answers_convert_field_by_field() {
        let response = ExplainResponse {
            user_id: "u1".into(),
            article_id: 9,
            bucket: 1,
            variant: "ftrl".into(),
            ranker: true,
            sources: "fresh+similar".into(),
            served_sources: "fresh".into(),
            score: 0.7,
            probability: 0.2,
            demotion: 0.5,
            hidden: true,
            contributions: vec![v1::Contribution { feature: "source=similar".into(), weight: -0.3 }],
        };
        let explained = explanation(response);
        assert_eq!((explained.bucket, explained.variant.as_str(), explained.ranker), (1, "ftrl", true));
        assert_eq!((explained.sources.as_str(), explained.served_sources.as_str()), ("fresh+similar", "fresh"));
        assert_eq!((explained.score, explained.probability, explained.demotion), (0.7, 0.2, 0.5));
        assert!(explained.hidden);
        assert_eq!(explained.contributions, [Contribution { feature: "source=similar".into(), weight: -0.3 }]);
    }

    #[test]
    fn stats_answers_keep_their_three_tables_apart() {
        let row = |key: &str, exposures| v1::StatsRow {
            key: key.into(),
            exposures,
            clicks: 1,
            collects: 2,
            shares: 3,
            reads: 4,
            dislikes: 5,
            ctr: 1.0 / exposures as f64,
        };
        let converted = stats(StatsResponse {
            from_ms: 10,
            to_ms: 20,
            by_bucket: vec![row("control", 10)],
            by_source: vec![row("fresh", 4), row("hot", 8)],
            by_channel: vec![row("1", 2)],
        });
        assert_eq!((converted.from_ms, converted.to_ms), (10, 20));
        assert_eq!(converted.by_bucket[0].key, "control");
        let sources: Vec<&str> = converted.by_source.iter().map(|row| row.key.as_str()).collect();
        assert_eq!(sources, ["fresh", "hot"]);
        let channel = &converted.by_channel[0];
        assert_eq!(
            (channel.exposures, channel.clicks, channel.collects, channel.shares, channel.reads, channel.dislikes),
            (2, 1, 2, 3, 4, 5)
        );
        assert_eq!(channel.ctr, 0.5);
    }
}
