//! Every event as the engine judges it, for live inspectors (the server's `Tracking.Watch`):
//! each `report` hands its verdicts to the watchers, and `follow_log` the events other
//! replicas accepted (read from the shared log; what they refused stays with them). Served
//! batches have watchers of their own, asked first whether anyone wants them, so that a
//! refresh builds nothing while nobody looks.

use std::sync::Mutex;

use crate::model::Action;
use crate::params::TrackParam;
use crate::store::{EventRecord, Sources};

/// One event as judged.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchedEvent {
    pub verdict: WatchVerdict,
    /// The param exactly as the client sent it; empty for an event another replica accepted.
    pub raw: String,
    /// What the param says, when it could be decoded (a rejected one too, when only its
    /// signature is wrong). For another replica's event it is rebuilt from the log, without
    /// the request id and batch time, which the log does not keep.
    pub param: Option<TrackParam>,
    /// Reported as "not interested".
    pub dislike: bool,
    /// When the user acted (ms): the server's clock for an accepted event the client sent
    /// with 0, the client's value otherwise.
    pub action_time: i64,
    pub read_duration_ms: i64,
    /// The server's clock when it was judged (ms).
    pub judged_ms: i64,
    /// Its number in the event log, for an accepted event.
    pub seq: Option<u64>,
    /// Accepted by another replica sharing the store.
    pub remote: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchVerdict {
    Accepted,
    Duplicate,
    Rejected(String),
    /// Not a report: a batch as a refresh served it, with its exposure param.
    Served,
}

/// Receives the events of each report (or of each step following the shared log), in order.
/// Called on the reporting thread: it must not block (the server's hands them to a bounded
/// broadcast channel, which drops for slow subscribers).
pub type EventNotifier = Box<dyn Fn(&[WatchedEvent]) + Send + Sync>;

#[derive(Default)]
pub(super) struct Watchers(Mutex<Vec<EventNotifier>>);

impl Watchers {
    pub(super) fn add(&self, notifier: EventNotifier) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(notifier);
    }

    /// Calls every watcher with the events `make` builds, built only when someone watches.
    pub(super) fn notify(&self, make: impl FnOnce() -> Vec<WatchedEvent>) {
        let watchers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if watchers.is_empty() {
            return;
        }
        let events = make();
        if events.is_empty() {
            return;
        }
        for notify in watchers.iter() {
            notify(&events);
        }
    }
}

/// Whether a served-batch watcher wants batches now; asked on every refresh, so it must be
/// cheap (an atomic load).
pub type Wanted = Box<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
pub(super) struct ServedWatchers(Mutex<Vec<(Wanted, EventNotifier)>>);

impl ServedWatchers {
    pub(super) fn add(&self, wanted: Wanted, notifier: EventNotifier) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((wanted, notifier));
    }

    /// Calls the watchers that want it with the batch `make` builds, built only then.
    pub(super) fn notify(&self, make: impl FnOnce() -> WatchedEvent) {
        let watchers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !watchers.iter().any(|(wanted, _)| wanted()) {
            return;
        }
        let served = [make()];
        for (_, notify) in watchers.iter().filter(|(wanted, _)| wanted()) {
            notify(&served);
        }
    }
}

/// An event another replica accepted, as the log holds it.
pub(super) fn remote(seq: u64, event: &EventRecord, algorithm: &str, judged_ms: i64) -> WatchedEvent {
    let sources = event.sources.iter().fold(Sources::default(), |all, s| all.union(*s));
    let dislike = event.action == Action::Dislike;
    WatchedEvent {
        verdict: WatchVerdict::Accepted,
        raw: String::new(),
        param: Some(TrackParam {
            action: event.action,
            user_id: event.user.clone(),
            article_ids: event.article_ids.clone(),
            algorithm_combine: format!("{algorithm}.b{}:{}", event.bucket, sources.label()),
            channel_id: event.channel,
            position: event.position,
            request_id: 0,
            ts: 0,
        }),
        dislike,
        action_time: event.time,
        read_duration_ms: event.read_ms.min(i64::MAX as u64) as i64,
        judged_ms,
        seq: Some(seq),
        remote: true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn batch() -> WatchedEvent {
        WatchedEvent {
            verdict: WatchVerdict::Served,
            raw: "{}".into(),
            param: None,
            dislike: false,
            action_time: 1,
            read_duration_ms: 0,
            judged_ms: 1,
            seq: None,
            remote: false,
        }
    }

    #[test]
    fn served_batches_are_built_only_while_someone_wants_them() {
        let watchers = ServedWatchers::default();
        let wanted = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let (w, r) = (Arc::clone(&wanted), Arc::clone(&received));
        watchers.add(
            Box::new(move || w.load(Ordering::Relaxed)),
            Box::new(move |served| {
                r.fetch_add(served.len(), Ordering::Relaxed);
            }),
        );
        let built = AtomicUsize::new(0);
        let make = || {
            built.fetch_add(1, Ordering::Relaxed);
            batch()
        };
        watchers.notify(make);
        assert_eq!((built.load(Ordering::Relaxed), received.load(Ordering::Relaxed)), (0, 0), "nobody wants it");
        wanted.store(true, Ordering::Relaxed);
        watchers.notify(make);
        assert_eq!((built.load(Ordering::Relaxed), received.load(Ordering::Relaxed)), (1, 1));
    }
}
