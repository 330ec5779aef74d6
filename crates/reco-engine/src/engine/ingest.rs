//! The tracking loop's write side: verified events become durable, numbered log entries, and the
//! ingest side applies them in log order to the learner and the popularity index (a [`Model`]),
//! then publishes the model for readers.
//!
//! Two copies of the model make publishing cheap and reading lock-free: readers load the
//! published copy (`ArcSwap`); the ingest side owns the other. Applying a group of ops: wait
//! until no reader holds the private copy any more (readers hold a copy for one ranking), bring
//! it up to date (the ops the published copy has and it lacks, then the new ones), swap it in,
//! and keep the old published copy as the private one, which now lacks only the new ops. So the
//! ingest side may wait for a reader, and a reader never waits for the ingest side. Both copies
//! see the same ops in the same order, and applying an op is deterministic, so they agree.
//!
//! The event log is the one feed of events: the ingest side reads it by sequence number, from a
//! bounded in-memory tail of what this process accepted or, past it, from the store.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::hot::HotIndex;
use crate::learn::{Context, Learner, World};
use crate::mem;
use crate::model::{Action, ArticleId, ChannelId};
use crate::params::{ParamError, TrackParam, Verified};
use crate::popularity::log2_add;
use crate::store::{EventRecord, Sources, Store, StoreError};

use super::watch::{EventNotifier, WatchVerdict, WatchedEvent};
use super::{
    Engine, EngineConfig, EngineError, LEARNER_KEY, Observation, ReportedEvent, Verdict, invalid, parse_combine,
};

/// What ranking reads of what was learned: the learner and the popularity order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Model {
    pub learner: Learner,
    pub hot: HotIndex,
}

#[derive(serde::Deserialize)]
struct Checkpoint {
    learner: Learner,
    popularity: Vec<(ArticleId, ChannelId, f64)>,
}

#[derive(serde::Serialize)]
struct CheckpointRef<'a> {
    learner: &'a Learner,
    popularity: Vec<(ArticleId, ChannelId, f64)>,
}

/// An [`Observation`], owned.
#[derive(Clone, Debug)]
pub(super) struct Observed {
    user: String,
    article: ArticleId,
    action: Action,
    time_ms: i64,
    read_ms: u64,
    position: Option<u32>,
    sources: Sources,
    prior: bool,
}

impl From<&Observation<'_>> for Observed {
    fn from(o: &Observation<'_>) -> Self {
        Self {
            user: o.user.to_owned(),
            article: o.article,
            action: o.action,
            time_ms: o.time_ms,
            read_ms: o.read_ms,
            position: o.position,
            sources: o.sources,
            prior: o.prior,
        }
    }
}

/// A change to the model. Each is applied to both copies, in the same order.
#[derive(Clone, Debug)]
pub(super) enum Op {
    /// A logged event that moves popularity and the learner.
    Event { seq: u64, event: Arc<EventRecord> },
    /// The clock moved: windows that ended close as negatives.
    Advance(i64),
    /// An action given directly (offline evaluation).
    Observe(Arc<Observed>),
    /// Forget the articles that left the catalog (aged out).
    Prune,
    /// Take the events up to this number as applied: trimmed from a shared log unread.
    SkipThrough(u64),
}

/// What applying an op reads besides the model.
struct Statics<'a> {
    catalog: &'a Catalog,
    config: &'a EngineConfig,
}

impl Model {
    /// The model from a checkpoint's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut cp: Checkpoint = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        cp.learner.recount();
        let mut hot = HotIndex::default();
        for (id, channel, log2) in cp.popularity {
            hot.set(id, channel, log2);
        }
        Ok(Self { learner: cp.learner, hot })
    }

    /// A checkpoint's bytes: the learner and the popularity it learned with, so that a restart
    /// replays the later events against popularity as it was when each happened.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let popularity = self.hot.entries().collect();
        postcard::to_allocvec(&CheckpointRef { learner: &self.learner, popularity }).map_err(|e| e.to_string())
    }

    /// Applies a logged event at start-up. `counted`: the popularity index was loaded from the
    /// store's counters, which hold the event already, so only the learner takes it.
    pub fn replay(&mut self, config: &EngineConfig, catalog: &Catalog, seq: u64, e: Arc<EventRecord>, counted: bool) {
        let st = Statics { catalog, config };
        if counted {
            let world = World {
                learn: &config.learn,
                catalog,
                text: catalog.text(),
                hot: &self.hot,
                popularity: &st.config.rank.popularity,
            };
            self.learner.apply(&config.learn, &world, Some(seq), &e);
        } else {
            self.apply(&st, &Op::Event { seq, event: e });
        }
    }

    fn apply(&mut self, st: &Statics<'_>, op: &Op) {
        let cfg = &st.config.learn;
        match op {
            Op::Event { seq, event } => {
                if self.learner.is_applied(*seq) {
                    return;
                }
                // Popularity first: a click is in popularity and in the model alike when the
                // next refresh ranks, as the store's counters have it.
                for &id in &event.article_ids {
                    if let Some(a) = st.catalog.get(id) {
                        let now = self.hot.popularity_log2(id);
                        self.hot.set(id, a.channel_id, log2_add(now, event.popularity_log2));
                    }
                }
                let world = World {
                    learn: &st.config.learn,
                    catalog: st.catalog,
                    text: st.catalog.text(),
                    hot: &self.hot,
                    popularity: &st.config.rank.popularity,
                };
                self.learner.apply(cfg, &world, Some(*seq), event);
            }
            Op::Advance(now_ms) => self.learner.advance(cfg, *now_ms),
            Op::SkipThrough(seq) => self.learner.skip_through(*seq),
            Op::Prune => {
                let known = |id| st.catalog.contains(id);
                self.learner.forget_articles(known);
                self.hot.retain(known);
            }
            Op::Observe(obs) => {
                let Some(article) = st.catalog.get(obs.article) else { return };
                if !obs.prior && obs.action.is_positive() {
                    // As a reported event moves the counters: popularity offline is popularity online.
                    let add = st.config.rank.popularity.event_log2(obs.action, obs.time_ms, obs.read_ms);
                    let now = self.hot.popularity_log2(article.id);
                    self.hot.set(article.id, article.channel_id, log2_add(now, add));
                }
                self.learner.advance(cfg, obs.time_ms);
                let world = World {
                    learn: &st.config.learn,
                    catalog: st.catalog,
                    text: st.catalog.text(),
                    hot: &self.hot,
                    popularity: &st.config.rank.popularity,
                };
                if obs.prior {
                    self.learner.learn_history(cfg, &world, &obs.user, article);
                    return;
                }
                let ctx = Context { now_ms: obs.time_ms, position: obs.position, sources: obs.sources };
                self.learner.learn(cfg, &world, &obs.user, article, &ctx, obs.action, obs.read_ms);
                self.learner.bound(cfg);
            }
        }
    }
}

/// The ingest side's private copy of the model.
pub(super) struct Ingest {
    back: Arc<Model>,
    /// Ops the published copy has and `back` lacks.
    lag: Vec<Op>,
    /// The log sequence number the published copy has applied through.
    applied: u64,
}

impl Ingest {
    pub fn new(model: Model) -> Self {
        let applied = model.learner.applied();
        Self { back: Arc::new(model), lag: Vec::new(), applied }
    }
}

/// The accepted events this process keeps in memory, by log sequence number, within a byte
/// budget (an exposure of 100 cards costs ten times one of 10).
pub(super) struct EventFeed {
    tail: Mutex<Tail>,
    budget: usize,
}

#[derive(Default)]
struct Tail {
    events: BTreeMap<u64, Arc<EventRecord>>,
    bytes: usize,
}

/// Estimated heap bytes of one event in the tail, at the allocator's size classes: the `Arc`
/// with the record, and its buffers. The map's nodes are counted for the map (`Tail::total`).
fn tail_cost(e: &EventRecord) -> usize {
    mem::arc_bytes::<EventRecord>()
        + mem::string_bytes(e.user.capacity())
        + mem::vec_bytes::<ArticleId>(e.article_ids.capacity())
        + mem::vec_bytes::<Sources>(e.sources.capacity())
}

impl Tail {
    /// The events' bytes and the map's nodes.
    fn total(&self) -> usize {
        self.bytes + mem::btree_bytes(self.events.len())
    }
}

impl EventFeed {
    pub fn new(budget: usize) -> Self {
        Self { tail: Mutex::default(), budget }
    }

    pub fn len(&self) -> usize {
        lock(&self.tail).events.len()
    }

    pub fn bytes(&self) -> usize {
        lock(&self.tail).total()
    }

    fn push(&self, seq: u64, event: Arc<EventRecord>) {
        let mut tail = lock(&self.tail);
        let cost = tail_cost(&event);
        if let Some(old) = tail.events.insert(seq, event) {
            tail.bytes -= tail_cost(&old);
        }
        tail.bytes += cost;
        while tail.total() > self.budget && tail.events.len() > 1 {
            let Some((_, old)) = tail.events.pop_first() else { break };
            tail.bytes -= tail_cost(&old);
        }
    }

    /// The logged events after `after`, in order and without gaps, through at least `through`
    /// (when the log has it): from the tail when it holds them, else from the store.
    fn after(&self, store: &impl Store, after: u64, through: u64) -> Result<Vec<(u64, Arc<EventRecord>)>, StoreError> {
        {
            let tail = lock(&self.tail);
            let mut out = Vec::new();
            let mut next = after + 1;
            for (seq, e) in tail.events.range(next..) {
                if *seq != next {
                    break;
                }
                out.push((*seq, Arc::clone(e)));
                next += 1;
            }
            if next > through {
                return Ok(out);
            }
        }
        // Not in the tail (pushed out, or a concurrent report has not pushed it yet): every
        // number up to `through` is committed, so the store has them.
        let mut out = Vec::new();
        store.scan_events(after, &mut |seq, e| out.push((seq, Arc::new(e))))?;
        Ok(out)
    }
}

impl<S: Store> Engine<S> {
    /// Verifies and stores reported events; durable when it returns, and learned from: the
    /// next refresh ranks with them. One verdict per event.
    pub fn report(&self, events: &[ReportedEvent], now_ms: i64) -> Result<Vec<Verdict>, EngineError> {
        let max = self.config.max_report_events;
        if events.is_empty() {
            return Err(invalid("events is empty: send at least one event"));
        }
        if events.len() > max {
            return Err(EngineError::TooMany(format!(
                "{} events in one report, at most {max} are allowed",
                events.len()
            )));
        }
        let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(events.len());
        let mut records = Vec::new();
        let mut record_slots = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            match self.check_event(ev, now_ms) {
                Ok((verified, record)) => {
                    verdicts.push(Some(Verdict::Accepted(verified.param)));
                    records.push(record);
                    record_slots.push(i);
                }
                Err(rejected) => verdicts.push(Some(rejected)),
            }
        }
        // Per event, its log number and action time once stored (for watchers).
        let mut stored: Vec<(Option<u64>, i64)> = events.iter().map(|e| (None, e.action_time)).collect();
        if !records.is_empty() {
            let fresh = self.store.record_events(&records)?;
            let mut through = 0;
            for ((slot, seq), record) in record_slots.iter().zip(&fresh).zip(records) {
                match seq {
                    Some(seq) => {
                        stored[*slot] = (Some(*seq), record.time);
                        self.feed.push(*seq, Arc::new(record));
                        through = through.max(*seq);
                    }
                    None => {
                        if let Some(Verdict::Accepted(p)) = verdicts[*slot].take() {
                            verdicts[*slot] = Some(Verdict::Duplicate(p));
                        }
                    }
                }
            }
            self.ingest_through(through)?;
        }
        let verdicts: Vec<Verdict> = verdicts.into_iter().map(|v| v.expect("every event has a verdict")).collect();
        self.watchers.notify(|| {
            events
                .iter()
                .zip(&verdicts)
                .zip(stored)
                .map(|((ev, verdict), (seq, action_time))| {
                    let (verdict, param) = match verdict {
                        Verdict::Accepted(p) => (WatchVerdict::Accepted, Some(p.clone())),
                        Verdict::Duplicate(p) => (WatchVerdict::Duplicate, Some(p.clone())),
                        Verdict::Rejected { reason, param } => (WatchVerdict::Rejected(reason.clone()), param.clone()),
                    };
                    WatchedEvent {
                        verdict,
                        raw: ev.param.clone(),
                        param,
                        dislike: ev.dislike,
                        action_time,
                        read_duration_ms: ev.read_duration_ms,
                        judged_ms: now_ms,
                        seq,
                        remote: false,
                    }
                })
                .collect()
        });
        Ok(verdicts)
    }

    /// Adds a receiver of every later judged event (see [`WatchedEvent`]).
    pub fn on_event(&self, notifier: EventNotifier) {
        self.watchers.add(notifier);
    }

    /// Adds a receiver of every batch a refresh serves from now on, while `wanted` says so: a
    /// [`WatchedEvent`] with [`WatchVerdict::Served`] and the batch's exposure param as minted.
    pub fn on_served(&self, wanted: super::Wanted, notifier: EventNotifier) {
        self.served_watchers.add(wanted, notifier);
    }

    // A rejection is the rare path and carries the decoded param for the client: its size is fine.
    #[allow(clippy::result_large_err)]
    fn check_event(&self, ev: &ReportedEvent, now_ms: i64) -> Result<(Verified, EventRecord), Verdict> {
        let reject = |reason: String, param: Option<&TrackParam>| Verdict::Rejected { reason, param: param.cloned() };
        let mut verified = self.signer.verify(&ev.param).map_err(|e| {
            let param = match e {
                ParamError::BadSignature => crate::params::decode(&ev.param).ok().map(|(p, _)| p),
                _ => None,
            };
            Verdict::Rejected { reason: e.to_string(), param }
        })?;
        if ev.dislike {
            if verified.param.action == Action::Exposure {
                let p = Some(&verified.param);
                return Err(reject("a dislike is reported with one of a card's params, not an exposure".into(), p));
            }
            verified.param.action = Action::Dislike;
            verified.key.0[15] = Action::Dislike as u8;
        }
        let p = &verified.param;
        // An article that aged out of the catalog since it was served is still in the store.
        let known = self
            .lookup(&p.article_ids, |c, id| c.contains(id).then_some(()), |_| ())
            .map_err(|e| reject(format!("cannot look the articles up: {e}"), Some(p)))?;
        if let Some((unknown, _)) = p.article_ids.iter().zip(&known).find(|(_, k)| k.is_none()) {
            return Err(reject(format!("unknown article {unknown}"), Some(p)));
        }
        let skew = self.config.max_clock_skew_ms;
        let action_time = match ev.action_time {
            // A batch may be stamped a little ahead of this clock (the allowed skew).
            0 => now_ms.max(p.ts),
            t if t < p.ts => {
                return Err(reject(
                    format!("action_time must not be before the batch it reports on (served at {}), got {t}", p.ts),
                    Some(p),
                ));
            }
            t if t > now_ms.saturating_add(skew) => {
                return Err(reject(
                    format!("action_time must be at most {skew} ms ahead of the server's clock ({now_ms}), got {t}"),
                    Some(p),
                ));
            }
            t => t,
        };
        if now_ms.saturating_sub(p.ts) > self.config.param_max_age_ms {
            return Err(reject(format!("param expired: served at {}, older than the allowed age", p.ts), Some(p)));
        }
        let max_read = self.config.max_read_ms;
        let read_ms = match (p.action, ev.read_duration_ms) {
            (Action::Read, d) if d <= 0 || d > max_read => {
                return Err(reject(format!("read_duration_ms must be in 1..={max_read} for a read, got {d}"), Some(p)));
            }
            (Action::Read, d) => d as u64,
            _ => 0,
        };
        let (bucket, card_sources) = parse_combine(&p.algorithm_combine);
        let sources = match p.action {
            Action::Exposure => self.served_sources(p),
            _ => card_sources.into_iter().collect(),
        };
        let record = EventRecord {
            key: verified.key,
            user: p.user_id.clone(),
            channel: p.channel_id,
            action: p.action,
            article_ids: p.article_ids.clone(),
            time: action_time,
            read_ms,
            popularity_log2: self.config.rank.popularity.event_log2(p.action, action_time, read_ms),
            sources,
            position: p.position,
            bucket,
        };
        Ok((verified, record))
    }

    /// The sources of each article of the batch an exposure param stands for, from the user's
    /// stored history (empty when the batch is gone).
    fn served_sources(&self, p: &TrackParam) -> Vec<Sources> {
        self.store
            .with_user(&p.user_id, |u| {
                let (batch, _) = u.channel(p.channel_id).at_or_before(p.ts)?;
                (batch.time == p.ts && batch.request_id == p.request_id)
                    .then(|| batch.items.iter().map(|i| i.sources).collect())
            })
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Applies the logged events through `through` (and any before it) and publishes.
    fn ingest_through(&self, through: u64) -> Result<(), EngineError> {
        let mut ingest = self.lock_ingest();
        if ingest.applied >= through {
            return Ok(());
        }
        let ops = self.logged_after(ingest.applied, through)?;
        self.apply_locked(&mut ingest, ops, |_| ());
        Ok(())
    }

    fn logged_after(&self, after: u64, through: u64) -> Result<Vec<Op>, StoreError> {
        Ok(self
            .feed
            .after(&self.store, after, through)?
            .into_iter()
            .map(|(seq, event)| Op::Event { seq, event })
            .collect())
    }

    /// Applies the events that other processes sharing the store logged since this one last
    /// looked (and any of its own not applied yet), in log order, and publishes: how replicas
    /// on one shared backend learn from each other's events. Answers how many events it
    /// applied. A no-op for a store only this process writes, beyond one read of its log's end.
    pub fn follow_log(&self) -> Result<usize, EngineError> {
        let mut ingest = self.lock_ingest();
        let mut ops = Vec::new();
        let trimmed = self.store.event_log_trimmed()?;
        if trimmed > ingest.applied {
            tracing::warn!(
                from = ingest.applied + 1,
                through = trimmed,
                "events were trimmed from the shared log before this replica read them: it does not learn from them \
                 (their counters, dedup and read sets are kept)"
            );
            ops.push(Op::SkipThrough(trimmed));
        }
        self.store.scan_events(ingest.applied.max(trimmed), &mut |seq, event| {
            ops.push(Op::Event { seq, event: Arc::new(event) });
        })?;
        if ops.is_empty() {
            return Ok(0);
        }
        // What this replica's own reports logged is applied (and watched) already.
        let published = self.model.load();
        let now_ms = super::now_nanos().div_euclid(1_000_000) as i64;
        self.watchers.notify(|| {
            ops.iter()
                .filter_map(|op| match op {
                    Op::Event { seq, event } if !published.learner.is_applied(*seq) => {
                        Some(super::watch::remote(*seq, event, &self.config.algorithm, now_ms))
                    }
                    _ => None,
                })
                .collect()
        });
        drop(published);
        let before = self.model.load().learner.events;
        let after = self.apply_locked(&mut ingest, ops, |m| m.learner.events);
        Ok((after - before) as usize)
    }

    /// Applies `ops` on the ingest side and publishes.
    pub(super) fn apply_ops(&self, ops: Vec<Op>) {
        let mut ingest = self.lock_ingest();
        self.apply_locked(&mut ingest, ops, |_| ());
    }

    /// Brings the private copy up to date with `ops`, lets `inspect` read it, publishes it.
    fn apply_locked<R>(&self, ingest: &mut Ingest, ops: Vec<Op>, inspect: impl FnOnce(&Model) -> R) -> R {
        let catalog = self.catalog.load();
        let st = Statics { catalog: &catalog, config: &self.config };
        let Ingest { back, lag, applied } = ingest;
        let model = exclusive(back);
        for op in lag.iter().chain(&ops) {
            model.apply(&st, op);
        }
        let out = inspect(model);
        *applied = model.learner.applied();
        *back = self.model.swap(Arc::clone(back));
        *lag = ops;
        out
    }

    /// The ingest side. A panic while applying (a bug) may have left the private copy half
    /// updated: it is then rebuilt from the published one, which is whole.
    fn lock_ingest(&self) -> MutexGuard<'_, Ingest> {
        self.ingest.lock().unwrap_or_else(|poisoned| {
            let mut ingest = poisoned.into_inner();
            tracing::error!("the ingest side panicked earlier; rebuilding its copy of the model");
            *ingest = Ingest::new(Model::clone(&self.model.load()));
            self.ingest.clear_poison();
            ingest
        })
    }

    /// Closes the exposure windows that ended by `now_ms` and writes the learner to the store,
    /// so a restart replays only the events logged after it. Returns the checkpoint's size, 0
    /// when nothing was learned since the last one (which is then kept). The learner is
    /// encoded from the ingest side's copy, off the request path; the store write happens after
    /// the ingest side is free again.
    pub fn checkpoint(&self, now_ms: i64) -> Result<usize, EngineError> {
        // An idle server ages its catalog here (a refresh does it too).
        self.age_out(now_ms);
        let encoded = {
            let mut ingest = self.lock_ingest();
            let mut ops = self.logged_after(ingest.applied, 0)?;
            ops.push(Op::Advance(now_ms));
            // Articles that aged out since the last prune: the model and the store forget them.
            let catalog = self.catalog.load();
            if self.pruned.swap(catalog.aged_out(), Ordering::Relaxed) != catalog.aged_out() {
                ops.push(Op::Prune);
                self.store.forget_counters(&|id| catalog.contains(id));
            }
            self.apply_locked(&mut ingest, ops, |model| {
                let learner = &model.learner;
                // Nothing learned since the last checkpoint: keep it.
                let mark = learner.events ^ learner.negatives.rotate_left(32);
                if self.checkpointed.swap(mark, Ordering::Relaxed) == mark {
                    return Ok(None);
                }
                model.encode().map(|bytes| Some((bytes, learner.applied())))
            })
        };
        let (bytes, applied) = match encoded {
            Ok(Some(encoded)) => encoded,
            Ok(None) => return Ok(0),
            Err(e) => {
                self.checkpointed.store(u64::MAX, Ordering::Relaxed);
                return Err(StoreError::Backend(format!("cannot encode the learner: {e}")).into());
            }
        };
        if let Err(e) = self.store.put_meta(LEARNER_KEY, &bytes) {
            self.checkpointed.store(u64::MAX, Ordering::Relaxed);
            return Err(e.into());
        }
        tracing::debug!(bytes = bytes.len(), applied, "learner checkpoint written");
        // A restart starts from this checkpoint (or one a replica writes a little later, never
        // much earlier): the log before it is only kept for replicas that lag behind.
        let upto = applied.saturating_sub(self.config.event_log_keep);
        if upto > 0 {
            self.store.trim_event_log(upto)?;
        }
        Ok(bytes.len())
    }
}

/// The private copy, once no reader holds it any more. Readers hold a copy for one ranking, so
/// this waits microseconds; a longer wait is logged, as it would mean a reader kept a copy.
fn exclusive(back: &mut Arc<Model>) -> &mut Model {
    let start = Instant::now();
    let mut warned = false;
    while Arc::get_mut(back).is_none() {
        if !warned && start.elapsed() > Duration::from_secs(1) {
            tracing::warn!("the ingest side has waited 1 s for a reader of the model's older copy");
            warned = true;
        }
        std::thread::yield_now();
    }
    Arc::get_mut(back).expect("no other reference")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
