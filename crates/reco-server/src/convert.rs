//! Protocol <-> engine conversions, kept at the edge.

use std::time::Duration;

use reco_engine::catalog::Retraction;
use reco_engine::model::{Action, Article, ArticleId};
use reco_engine::params::{ParamError, TrackParam};
use reco_engine::stats::Counts;
use reco_engine::store::StoreError;
use reco_engine::{
    ArticleStats, CatalogChange, ChangeKind, EngineError, Explanation, FeedResponse, PublishVerdict, ReportedEvent,
    RetractVerdict, StatsReport, Verdict,
};
use reco_proto::{seed, v1};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// How long a client should wait before retrying a call the store could not serve.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Every engine error maps to one gRPC status; no catch-all arm, so a new error kind must be
/// placed here deliberately. Besides the message, INVALID_ARGUMENT carries a
/// `google.rpc.BadRequest`, RESOURCE_EXHAUSTED a `QuotaFailure` and UNAVAILABLE a `RetryInfo`
/// in `grpc-status-details-bin`. The engine's messages open with the name of the field they
/// are about (`article_num must be in 1..=100, got 0`); that name is the violation's field.
pub fn status(e: EngineError) -> Status {
    match e {
        EngineError::InvalidArgument(msg) => invalid(subject(&msg).to_owned(), msg),
        EngineError::TooMany(msg) => exhausted(subject(&msg).to_owned(), msg, None),
        EngineError::NotFound(msg) => Status::not_found(msg),
        EngineError::Store(e) => match e {
            StoreError::Backend(_) => unavailable(e.to_string()),
            StoreError::Corrupt(_) => Status::data_loss(e.to_string()),
            StoreError::Locked(_) => unavailable(e.to_string()),
        },
    }
}

/// INVALID_ARGUMENT with `message`, and a `BadRequest` naming `field` with the same
/// description.
pub fn invalid(field: impl Into<String>, message: String) -> Status {
    let details = ErrorDetails::with_bad_request_violation(field, message.clone());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// RESOURCE_EXHAUSTED with `message`, a `QuotaFailure` about `subject`, and a `RetryInfo`
/// when retrying after `retry` can succeed.
pub fn exhausted(subject: impl Into<String>, message: String, retry: Option<Duration>) -> Status {
    let mut details = ErrorDetails::with_quota_failure_violation(subject, message.clone());
    if let Some(delay) = retry {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// UNAVAILABLE with `message` and a `RetryInfo` of [`STORE_RETRY`].
fn unavailable(message: String) -> Status {
    Status::with_error_details(Code::Unavailable, message, ErrorDetails::with_retry_info(Some(STORE_RETRY)))
}

/// The first word of `message` that is a name (lower-case letters, digits and `_`, starting
/// with a letter): `article_num` in `article_num must be …`, `events` in `1001 events in …`.
fn subject(message: &str) -> &str {
    message
        .split_whitespace()
        .find(|w| {
            w.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .unwrap_or("request")
}

pub fn feed(resp: FeedResponse) -> seed::ArticleResponse {
    seed::ArticleResponse {
        exposure: resp.exposure,
        time_stamp: resp.time_stamp,
        recommends: resp
            .items
            .into_iter()
            .map(|item| {
                let [click, collect, share, read] = item.track;
                seed::Article { article_id: item.article_id, track: Some(seed::Track { click, collect, share, read }) }
            })
            .collect(),
    }
}

pub fn article((a, retraction): (Article, Option<Retraction>)) -> v1::ArticleInfo {
    let retracted = retraction.is_some();
    let (retract_reason, retract_time) = retraction.map(|r| (r.reason, r.time_ms)).unwrap_or_default();
    v1::ArticleInfo { retracted, retract_reason, retract_time, ..article_info(a) }
}

/// An article's content as `ArticleInfo` (not retracted): what `Catalog.Publish` takes.
pub fn article_info(a: Article) -> v1::ArticleInfo {
    v1::ArticleInfo {
        article_id: a.id,
        channel_id: a.channel_id,
        title: a.title,
        author: a.author,
        publish_time: a.publish_time,
        keywords: a.keywords,
        summary: a.summary,
        cover: a.cover,
        ..Default::default()
    }
}

/// A change as watchers receive it.
pub fn change(c: &CatalogChange) -> v1::CatalogChange {
    let kind = match c.kind {
        ChangeKind::Published => v1::ChangeKind::Published,
        ChangeKind::Updated => v1::ChangeKind::Updated,
        ChangeKind::Retracted => v1::ChangeKind::Retracted,
    };
    v1::CatalogChange {
        seq: c.seq,
        kind: kind as i32,
        article: Some(article(((*c.article).clone(), c.retraction.clone()))),
    }
}

/// A published article; the retraction fields are not the publisher's to set.
pub fn published(a: v1::ArticleInfo) -> Article {
    Article {
        id: a.article_id,
        channel_id: a.channel_id,
        title: a.title,
        author: a.author,
        publish_time: a.publish_time,
        keywords: a.keywords,
        summary: a.summary,
        cover: a.cover,
    }
}

pub fn publish_results(ids: &[ArticleId], verdicts: Vec<PublishVerdict>) -> v1::PublishResponse {
    let mut out = v1::PublishResponse::default();
    for (&article_id, v) in ids.iter().zip(verdicts) {
        let (outcome, reason) = match v {
            PublishVerdict::Created => {
                out.created += 1;
                (v1::PublishOutcome::Created, String::new())
            }
            PublishVerdict::Updated => {
                out.updated += 1;
                (v1::PublishOutcome::Updated, String::new())
            }
            PublishVerdict::Rejected(reason) => {
                out.rejected += 1;
                (v1::PublishOutcome::Rejected, reason)
            }
        };
        out.results.push(v1::PublishResult { article_id, outcome: outcome as i32, reason });
    }
    out
}

pub fn retract_results(ids: &[ArticleId], verdicts: Vec<RetractVerdict>) -> v1::RetractResponse {
    let results = ids
        .iter()
        .zip(verdicts)
        .map(|(&article_id, v)| {
            let outcome = match v {
                RetractVerdict::Retracted => v1::RetractOutcome::Retracted,
                RetractVerdict::AlreadyRetracted => v1::RetractOutcome::AlreadyRetracted,
                RetractVerdict::Unknown => v1::RetractOutcome::NotFound,
            };
            v1::RetractResult { article_id, outcome: outcome as i32 }
        })
        .collect();
    v1::RetractResponse { results }
}

pub fn event(e: v1::TrackEvent) -> ReportedEvent {
    ReportedEvent {
        param: e.param,
        action_time: e.action_time,
        read_duration_ms: e.read_duration_ms,
        dislike: e.dislike,
    }
}

pub fn verdict(v: Verdict) -> v1::EventResult {
    let (verdict, reason, param) = match v {
        Verdict::Accepted(p) => (v1::Verdict::Accepted, String::new(), Some(p)),
        Verdict::Duplicate(p) => (v1::Verdict::Duplicate, String::new(), Some(p)),
        Verdict::Rejected { reason, param } => (v1::Verdict::Rejected, reason, param),
    };
    let (action, article_ids, user_id) = match param {
        Some(TrackParam { action, article_ids, user_id, .. }) => (action.to_string(), article_ids, user_id),
        None => Default::default(),
    };
    v1::EventResult { verdict: verdict as i32, reason, action, article_ids, user_id }
}

pub fn stats(id: i64, s: ArticleStats) -> v1::ArticleStats {
    let c = s.counters;
    v1::ArticleStats {
        article_id: id,
        exposures: c.exposures,
        clicks: c.clicks,
        collects: c.collects,
        shares: c.shares,
        reads: c.reads,
        read_ms: c.read_ms,
        popularity: s.popularity,
    }
}

pub fn param_check(raw: &str, checked: Result<TrackParam, ParamError>) -> v1::ParamCheck {
    // Show what the param says even when it is not ours, if it is a JSON object at all.
    let is_object = serde_json::from_str::<serde_json::Value>(raw).is_ok_and(|v| v.is_object());
    let payload_json = if is_object { raw.to_owned() } else { String::new() };
    match checked {
        Ok(_) => v1::ParamCheck { valid: true, reason: String::new(), payload_json },
        Err(e) => v1::ParamCheck { valid: false, reason: e.to_string(), payload_json },
    }
}

/// The default window of `Stats`: the last day before `to_ms`.
pub const STATS_DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;

/// A `Stats` request's window, resolved: `[from_ms, to_ms)` with `to_ms = 0` meaning `now_ms`
/// and `from_ms = 0` the day before `to_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsWindow {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl StatsWindow {
    pub fn resolve(r: &v1::StatsRequest, now_ms: i64) -> Result<Self, Status> {
        for (field, value) in [("from_ms", r.from_ms), ("to_ms", r.to_ms)] {
            if value < 0 {
                return Err(invalid(
                    field,
                    format!("{field} must be Unix milliseconds >= 0 (0 = the default), got {value}"),
                ));
            }
        }
        let to_ms = if r.to_ms == 0 { now_ms } else { r.to_ms };
        let from_ms = if r.from_ms == 0 { (to_ms - STATS_DEFAULT_WINDOW_MS).max(0) } else { r.from_ms };
        if from_ms >= to_ms {
            return Err(invalid(
                "from_ms",
                format!("from_ms must be before to_ms, got the window [{from_ms}, {to_ms})"),
            ));
        }
        Ok(Self { from_ms, to_ms })
    }
}

pub fn stats_report(r: StatsReport) -> v1::StatsResponse {
    let rows = |rows: Vec<(String, Counts)>| rows.into_iter().map(|(key, c)| stats_row(key, &c)).collect();
    v1::StatsResponse {
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        by_bucket: rows(r.by_bucket),
        by_source: rows(r.by_source),
        by_channel: rows(r.by_channel),
    }
}

fn stats_row(key: String, c: &Counts) -> v1::StatsRow {
    v1::StatsRow {
        key,
        exposures: c.get(Action::Exposure),
        clicks: c.get(Action::Click),
        collects: c.get(Action::Collect),
        shares: c.get(Action::Share),
        reads: c.get(Action::Read),
        dislikes: c.get(Action::Dislike),
        ctr: c.ctr(),
    }
}

pub fn explanation(user_id: String, article_id: i64, e: Explanation) -> v1::ExplainResponse {
    v1::ExplainResponse {
        user_id,
        article_id,
        bucket: u32::from(e.bucket),
        variant: e.variant,
        ranker: e.ranker,
        sources: e.sources.label(),
        served_sources: e.served_sources.map(|s| s.label()).unwrap_or_default(),
        score: e.score,
        probability: e.probability,
        demotion: e.demotion,
        hidden: e.hidden,
        contributions: e
            .contributions
            .into_iter()
            .map(|(feature, weight)| v1::Contribution { feature, weight })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from_ms: i64, to_ms: i64) -> Result<StatsWindow, Status> {
        StatsWindow::resolve(&v1::StatsRequest { from_ms, to_ms }, 100 * STATS_DEFAULT_WINDOW_MS)
    }

    #[test]
    fn stats_windows_default_to_the_last_day() {
        let now = 100 * STATS_DEFAULT_WINDOW_MS;
        assert_eq!(window(0, 0).unwrap(), StatsWindow { from_ms: now - STATS_DEFAULT_WINDOW_MS, to_ms: now });
        assert_eq!(window(5, 0).unwrap(), StatsWindow { from_ms: 5, to_ms: now });
        assert_eq!(window(0, 1_000).unwrap(), StatsWindow { from_ms: 0, to_ms: 1_000 }, "never before 0");
        assert_eq!(window(7, 9).unwrap(), StatsWindow { from_ms: 7, to_ms: 9 });
        for (from, to) in [(-1, 0), (0, -1), (9, 9), (10, 9), (now + 1, 0)] {
            assert_eq!(window(from, to).unwrap_err().code(), tonic::Code::InvalidArgument, "[{from}, {to})");
        }
    }

    #[test]
    fn engine_errors_carry_details_naming_the_field() {
        let s = status(EngineError::InvalidArgument("article_num must be in 1..=100, got 0".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "article_num must be in 1..=100, got 0");
        let bad = s.get_details_bad_request().expect("a BadRequest");
        assert_eq!(bad.field_violations[0].field, "article_num");
        assert_eq!(bad.field_violations[0].description, s.message());

        let s = status(EngineError::TooMany("1001 events in one report, at most 1000 are allowed".into()));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.get_details_quota_failure().unwrap().violations[0].subject, "events");
        assert!(s.get_details_retry_info().is_none(), "the same request would fail again");

        let s = status(EngineError::Store(StoreError::Backend("connection refused".into())));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.get_details_retry_info().unwrap().retry_delay, Some(STORE_RETRY));
        assert_eq!(subject("channel_id 99 is unknown"), "channel_id");
        assert_eq!(subject("42"), "request");
    }
}
