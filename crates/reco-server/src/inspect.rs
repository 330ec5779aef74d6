//! `Tracking.Watch`, the live tracking inspector's feed: the engine's judged events, converted
//! once, through a bounded broadcast channel to each subscriber's filter. A subscriber that
//! falls [`EVENT_BUFFER`] events behind gets a `dropped` marker in their place; reports never
//! wait for subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reco_engine::model::Action;
use reco_engine::store::Sources;
use reco_engine::{WatchVerdict, WatchedEvent};
use reco_proto::v1;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;

/// Events a subscriber may fall behind before it is told how many it missed.
pub const EVENT_BUFFER: usize = 4096;

/// The action names a filter may name, as `WatchedEvent.action` spells them.
const ACTIONS: [&str; 6] = ["exposure", "click", "collect", "share", "read", "dislike"];

/// What one subscriber asked to see; `None`: no filter on that field.
#[derive(Debug, Default)]
pub struct EventFilter {
    /// Served batches too (`EventWatchRequest.served`).
    pub served: bool,
    user: Option<String>,
    actions: Option<Vec<String>>,
    verdicts: Option<Vec<i32>>,
    channels: Option<Vec<i32>>,
}

impl EventFilter {
    pub fn parse(r: v1::EventWatchRequest) -> Result<Self, Status> {
        if r.user_id.len() > 256 {
            let why = format!("user_id is {} bytes, at most 256 are allowed (empty: every user)", r.user_id.len());
            return Err(crate::convert::invalid("user_id", why));
        }
        if let Some(bad) = r.actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
            let why = format!("actions: {bad:?} is unknown (known: {})", ACTIONS.join(", "));
            return Err(crate::convert::invalid("actions", why));
        }
        if let Some(bad) =
            r.verdicts.iter().find(|v| !matches!(v1::Verdict::try_from(**v), Ok(v) if v != v1::Verdict::Unspecified))
        {
            let why = format!("verdicts: {bad} is unknown (known: 1 ACCEPTED, 2 DUPLICATE, 3 REJECTED, 4 SERVED)");
            return Err(crate::convert::invalid("verdicts", why));
        }
        if let Some(bad) = r.channel_ids.iter().find(|c| !reco_engine::catalog::is_channel(**c)) {
            return Err(crate::convert::invalid(
                "channel_ids",
                format!("channel_ids: {bad} is unknown (known: 0..=25)"),
            ));
        }
        // Each list is a set: repeats collapse, so a filter holds at most every known value
        // however long the request's lists are.
        fn some<T: Ord>(mut v: Vec<T>) -> Option<Vec<T>> {
            v.sort_unstable();
            v.dedup();
            (!v.is_empty()).then_some(v)
        }
        Ok(Self {
            served: r.served,
            user: (!r.user_id.is_empty()).then_some(r.user_id),
            actions: some(r.actions),
            verdicts: some(r.verdicts),
            channels: some(r.channel_ids),
        })
    }

    fn wants(&self, e: &v1::WatchedEvent) -> bool {
        (self.served || e.verdict != v1::Verdict::Served as i32)
            && self.user.as_ref().is_none_or(|u| *u == e.user_id)
            && self.actions.as_ref().is_none_or(|a| a.contains(&e.action))
            && self.verdicts.as_ref().is_none_or(|v| v.contains(&e.verdict))
            && self.channels.as_ref().is_none_or(|c| !e.action.is_empty() && c.contains(&e.channel_id))
    }
}

/// Hands the engine's judged events to `live`, converted once, when anyone subscribes.
pub fn notifier(live: broadcast::Sender<Arc<v1::WatchedEvent>>) -> reco_engine::EventNotifier {
    Box::new(move |events| {
        if live.receiver_count() == 0 {
            return;
        }
        for e in events {
            // No subscriber left between the check and the send is not an error.
            let _ = live.send(Arc::new(watched(e)));
        }
    })
}

/// How many subscribers want served batches: the engine builds them only while some do.
#[derive(Clone, Default)]
pub struct ServedSubscribers(Arc<AtomicUsize>);

impl ServedSubscribers {
    pub fn wanted(&self) -> reco_engine::Wanted {
        let count = Arc::clone(&self.0);
        Box::new(move || count.load(Ordering::Relaxed) > 0)
    }

    /// Counts one more subscriber until the guard is dropped (its stream ends).
    pub fn join(&self) -> ServedGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ServedGuard(Arc::clone(&self.0))
    }
}

pub struct ServedGuard(Arc<AtomicUsize>);

impl Drop for ServedGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Feeds one subscriber until it hangs up, or until the server shuts down (`closing` turns
/// true), which ends the stream with UNAVAILABLE: a client should reconnect.
pub async fn feed_subscriber(
    mut live: broadcast::Receiver<Arc<v1::WatchedEvent>>,
    filter: EventFilter,
    out: mpsc::Sender<Result<v1::WatchedEvent, Status>>,
    mut closing: watch::Receiver<bool>,
    // Held while the subscriber is fed, for one that asked for served batches.
    _served: Option<ServedGuard>,
) {
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            _ = async { closing.wait_for(|closing| *closing).await.is_ok() } => {
                let _ = out.send(Err(Status::unavailable("the server is shutting down: reconnect"))).await;
                return;
            }
        };
        let next = match received {
            Ok(e) if filter.wants(&e) => v1::WatchedEvent::clone(&e),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(dropped)) => v1::WatchedEvent { dropped, ..Default::default() },
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if out.send(Ok(next)).await.is_err() {
            return;
        }
    }
}

/// The wire form of a judged event.
pub fn watched(e: &WatchedEvent) -> v1::WatchedEvent {
    let (verdict, reason) = match &e.verdict {
        WatchVerdict::Accepted => (v1::Verdict::Accepted, String::new()),
        WatchVerdict::Duplicate => (v1::Verdict::Duplicate, String::new()),
        WatchVerdict::Rejected(reason) => (v1::Verdict::Rejected, reason.clone()),
        WatchVerdict::Served => (v1::Verdict::Served, String::new()),
    };
    let mut out = v1::WatchedEvent {
        verdict: verdict as i32,
        reason,
        param: e.raw.clone(),
        action_time: e.action_time,
        read_duration_ms: e.read_duration_ms,
        dislike: e.dislike,
        judged_ms: e.judged_ms,
        seq: e.seq.unwrap_or(0),
        remote: e.remote,
        position: -1,
        ..Default::default()
    };
    if let Some(p) = &e.param {
        out.action = if e.dislike { Action::Dislike.to_string() } else { p.action.to_string() };
        out.user_id = p.user_id.clone();
        out.article_ids = p.article_ids.clone();
        out.channel_id = p.channel_id;
        out.batch_time = p.ts;
        out.position = p.position.map_or(-1, |p| p as i32);
        out.request_id = p.request_id;
        out.algorithm_combine = p.algorithm_combine.clone();
        let (head, sources) = p.algorithm_combine.split_once(':').unwrap_or((&p.algorithm_combine, ""));
        out.sources = Sources::parse(sources).label();
        out.bucket = head.rsplit_once(".b").and_then(|(_, b)| b.parse().ok()).unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_filter_values_collapse_to_the_known_ones() {
        let r = v1::EventWatchRequest {
            actions: vec!["click".into(); 10_000],
            verdicts: vec![3; 10_000],
            channel_ids: (0..10_000).map(|i| i % 26).collect(),
            ..Default::default()
        };
        let f = EventFilter::parse(r).unwrap();
        assert_eq!(f.actions.as_deref(), Some(&["click".to_owned()][..]));
        assert_eq!(f.verdicts.as_deref(), Some(&[3][..]));
        assert_eq!(f.channels.map(|c| c.len()), Some(26));
    }
}
