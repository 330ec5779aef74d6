//! Protocol <-> engine conversions, kept at the edge.

use reco_engine::params::{ParamError, TrackParam};
use reco_engine::store::StoreError;
use reco_engine::{ArticleStats, EngineError, FeedResponse, Verdict};
use reco_proto::{seed, v1};
use tonic::Status;

/// Every engine error maps to one gRPC status; no catch-all arm, so a new error kind must be
/// placed here deliberately.
pub fn status(e: EngineError) -> Status {
    match e {
        EngineError::InvalidArgument(msg) => Status::invalid_argument(msg),
        EngineError::TooMany(msg) => Status::resource_exhausted(msg),
        EngineError::Store(e) => match e {
            StoreError::Backend(_) => Status::unavailable(e.to_string()),
            StoreError::Corrupt(_) => Status::data_loss(e.to_string()),
            StoreError::Locked(_) => Status::unavailable(e.to_string()),
        },
    }
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

pub fn article(a: &reco_engine::model::Article) -> v1::ArticleInfo {
    v1::ArticleInfo {
        article_id: a.id,
        channel_id: a.channel_id,
        title: a.title.clone(),
        author: a.author.clone(),
        publish_time: a.publish_time,
        keywords: a.keywords.clone(),
        summary: a.summary.clone(),
        cover: a.cover.clone(),
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
