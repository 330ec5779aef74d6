//! The engine: the feed paging rules and the tracking loop over a [`Store`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::{self, Catalog};
use crate::feed::{self, Exclusion, RankConfig, RankInput};
use crate::hot::HotIndex;
use crate::model::{Action, Article, ArticleId, Channel, ChannelId};
use crate::params::{ParamError, Signer, TrackParam, Verified};
use crate::store::{AppendOutcome, ArticleCounters, Batch, BatchItem, EventRecord, Store, StoreError};

/// Engine settings; validated by [`Engine::new`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Largest `article_num` a request may ask for.
    pub max_article_num: u32,
    /// Params older than this (by their batch time) are refused as expired.
    pub param_max_age_ms: i64,
    /// Largest number of events in one report.
    pub max_report_events: usize,
    pub rank: RankConfig,
    /// Version tag written in front of the sources in `algorithmCombine`.
    pub algorithm: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_article_num: 100,
            param_max_age_ms: 30 * 24 * 3_600_000,
            max_report_events: 1000,
            rank: RankConfig::default(),
            algorithm: "v1".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A `user_recommend` request, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedRequest {
    pub user_id: String,
    pub channel_id: ChannelId,
    pub article_num: u32,
    pub time_stamp: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FeedItem {
    pub article_id: ArticleId,
    /// click, collect, share, read params, in `Action::TRACKED` order.
    pub track: [String; 4],
}

#[derive(Clone, Debug, PartialEq)]
pub struct FeedResponse {
    /// The batch's exposure param; empty for a history read.
    pub exposure: String,
    /// Refresh: time of the previous batch. History: time of the next older batch. 0: none.
    pub time_stamp: i64,
    pub items: Vec<FeedItem>,
    /// Whether this was a refresh (a new batch) or a history read.
    pub refreshed: bool,
}

/// A reported event before verification.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedEvent {
    pub param: String,
    /// ms; 0 means now.
    pub action_time: i64,
    pub read_duration_ms: i64,
    /// "Not interested", reported with one of a card's params instead of its action.
    pub dislike: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Accepted(TrackParam),
    Duplicate(TrackParam),
    Rejected { reason: String, param: Option<TrackParam> },
}

/// Counters of one article now.
#[derive(Clone, Debug, PartialEq)]
pub struct ArticleStats {
    pub counters: ArticleCounters,
    pub popularity: f64,
}

/// What was found for a list of ids, and the ids that were not.
pub type Found<T> = (Vec<T>, Vec<ArticleId>);

/// Stripes of the per-user lock that makes read-rank-append atomic within this process.
const USER_LOCKS: usize = 64;

pub struct Engine<S> {
    store: S,
    catalog: Catalog,
    hot: RwLock<HotIndex>,
    signer: Signer,
    config: EngineConfig,
    user_locks: Vec<Mutex<()>>,
    next_request: AtomicU64,
}

impl<S: Store> Engine<S> {
    /// Loads the catalog and counters from `store`.
    pub fn new(store: S, secret: &[u8], config: EngineConfig) -> Result<Self, EngineError> {
        if config.max_article_num == 0 {
            return Err(EngineError::InvalidArgument("max_article_num must be at least 1".into()));
        }
        if secret.len() < 16 {
            return Err(EngineError::InvalidArgument("the tracking secret must be at least 16 bytes".into()));
        }
        let catalog = Catalog::new(store.load_articles()?);
        let mut hot = HotIndex::default();
        for (id, c) in store.all_counters()? {
            if let Some(a) = catalog.get(id) {
                hot.set(id, a.channel_id, c.popularity_log2);
            }
        }
        let seed = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        Ok(Self {
            store,
            catalog,
            hot: RwLock::new(hot),
            signer: Signer::new(secret),
            config,
            user_locks: (0..USER_LOCKS).map(|_| Mutex::new(())).collect(),
            next_request: AtomicU64::new(seed ^ now_nanos()),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Checks a raw request against the contract's ranges.
    pub fn validate(
        &self,
        user_id: &str,
        channel_id: i32,
        article_num: i32,
        time_stamp: i64,
    ) -> Result<FeedRequest, EngineError> {
        let max = self.config.max_article_num;
        if user_id.trim().is_empty() {
            return Err(invalid("user_id is empty: send the user's id, or a stable anonymous id for guests"));
        }
        if user_id.len() > 256 {
            return Err(invalid(format!("user_id is {} bytes, at most 256 are allowed", user_id.len())));
        }
        if article_num <= 0 || article_num as u32 > max {
            return Err(invalid(format!("article_num must be in 1..={max}, got {article_num}")));
        }
        if !catalog::is_channel(channel_id) {
            let last = catalog::CHANNELS.last().map_or(0, |c| c.0);
            return Err(invalid(format!(
                "channel_id {channel_id} is unknown: use 0 (推荐, all channels) or 1..={last} (see Catalog.Channels)"
            )));
        }
        if time_stamp <= 0 {
            return Err(invalid(format!("time_stamp must be Unix milliseconds > 0, got {time_stamp}")));
        }
        Ok(FeedRequest { user_id: user_id.to_owned(), channel_id, article_num: article_num as u32, time_stamp })
    }

    /// The seed's `user_recommend`: a refresh when `time_stamp` is newer than the user's newest
    /// batch in the channel, else a history read.
    pub fn recommend(&self, req: &FeedRequest, now_ms: i64) -> Result<FeedResponse, EngineError> {
        let _guard = self.user_lock(&req.user_id);
        loop {
            let plan = self.store.with_user(&req.user_id, |user| {
                let history = user.channel(req.channel_id);
                let latest = history.latest_time();
                if req.time_stamp <= latest {
                    let found = history.at_or_before(req.time_stamp).map(|(b, older)| (Arc::clone(b), older));
                    return Plan::History(found);
                }
                let input = RankInput {
                    catalog: &self.catalog,
                    hot: &self.hot.read().unwrap_or_else(|e| e.into_inner()),
                    channel: req.channel_id,
                    article_num: req.article_num as usize,
                    now_ms,
                    config: &self.config.rank,
                };
                Plan::Refresh(feed::rank(&input, &Exclusion::new(user, req.channel_id)))
            })?;
            match plan {
                Plan::History(None) => {
                    return Ok(FeedResponse {
                        exposure: String::new(),
                        time_stamp: 0,
                        items: Vec::new(),
                        refreshed: false,
                    });
                }
                Plan::History(Some((batch, older))) => {
                    let (_, items) = self.mint(req, &batch, false);
                    return Ok(FeedResponse { exposure: String::new(), time_stamp: older, items, refreshed: false });
                }
                Plan::Refresh(picked) => {
                    let batch = Batch {
                        time: req.time_stamp,
                        request_id: self.next_request.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
                        items: picked.iter().map(|s| BatchItem { article_id: s.id, sources: s.sources }).collect(),
                    };
                    let (exposure, items) = self.mint(req, &batch, true);
                    match self.store.append_batch(&req.user_id, req.channel_id, batch)? {
                        AppendOutcome::Appended { previous } => {
                            return Ok(FeedResponse { exposure, time_stamp: previous, items, refreshed: true });
                        }
                        // Another process refreshed this feed meanwhile: answer from history.
                        AppendOutcome::Stale { .. } => continue,
                    }
                }
            }
        }
    }

    fn mint(&self, req: &FeedRequest, batch: &Batch, with_exposure: bool) -> (String, Vec<FeedItem>) {
        let mut param = TrackParam {
            action: Action::Exposure,
            user_id: req.user_id.clone(),
            article_ids: batch.items.iter().map(|i| i.article_id).collect(),
            algorithm_combine: self.config.algorithm.clone(),
            channel_id: req.channel_id,
            position: None,
            request_id: batch.request_id,
            ts: batch.time,
        };
        let exposure = if with_exposure { self.signer.mint(&param) } else { String::new() };
        let items = batch
            .items
            .iter()
            .enumerate()
            .map(|(pos, item)| {
                param.article_ids.clear();
                param.article_ids.push(item.article_id);
                param.position = Some(pos as u32);
                param.algorithm_combine.clear();
                param.algorithm_combine.push_str(&self.config.algorithm);
                param.algorithm_combine.push(':');
                item.sources.write_label(&mut param.algorithm_combine);
                let track = self.signer.mint_card(&param);
                FeedItem { article_id: item.article_id, track }
            })
            .collect();
        (exposure, items)
    }

    /// Verifies and stores reported events; durable when it returns. One verdict per event.
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
        if !records.is_empty() {
            let fresh = self.store.record_events(&records)?;
            let mut touched: Vec<ArticleId> = Vec::new();
            for ((slot, seq), record) in record_slots.iter().zip(fresh).zip(&records) {
                if seq.is_some() {
                    touched.extend(&record.article_ids);
                } else if let Some(Verdict::Accepted(p)) = verdicts[*slot].take() {
                    verdicts[*slot] = Some(Verdict::Duplicate(p));
                }
            }
            self.refresh_hot(&touched)?;
        }
        Ok(verdicts.into_iter().map(|v| v.expect("every event has a verdict")).collect())
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
        if let Some(unknown) = p.article_ids.iter().find(|id| !self.catalog.contains(**id)) {
            return Err(reject(format!("unknown article {unknown}"), Some(p)));
        }
        let action_time = match ev.action_time {
            0 => now_ms,
            t if t < 0 => return Err(reject(format!("action_time must be Unix ms >= 0, got {t}"), Some(p))),
            t if t > now_ms + 5 * 60_000 => {
                return Err(reject(format!("action_time {t} is in the future (server time {now_ms})"), Some(p)));
            }
            t => t,
        };
        if now_ms - p.ts > self.config.param_max_age_ms {
            return Err(reject(format!("param expired: served at {}, older than the allowed age", p.ts), Some(p)));
        }
        let read_ms = match (p.action, ev.read_duration_ms) {
            (Action::Read, d) if d <= 0 => {
                return Err(reject(format!("a read event needs read_duration_ms > 0, got {d}"), Some(p)));
            }
            (Action::Read, d) => d as u64,
            _ => 0,
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
            sources: Vec::new(),
            position: p.position,
            bucket: 0,
        };
        Ok((verified, record))
    }

    fn refresh_hot(&self, touched: &[ArticleId]) -> Result<(), EngineError> {
        if touched.is_empty() {
            return Ok(());
        }
        // Read the counters under the lock: of two concurrent reports, the one that sets last
        // then also read last, so the index never goes back to older counters.
        let mut hot = self.hot.write().unwrap_or_else(|e| e.into_inner());
        let counters = self.store.counters(touched)?;
        for (id, c) in touched.iter().zip(counters) {
            if let Some(a) = self.catalog.get(*id) {
                hot.set(*id, a.channel_id, c.popularity_log2);
            }
        }
        Ok(())
    }

    /// Decodes and checks params without recording anything.
    pub fn verify(&self, params: &[String]) -> Vec<Result<TrackParam, ParamError>> {
        params.iter().map(|p| self.signer.verify(p).map(|v| v.param)).collect()
    }

    /// Counters of known articles; unknown ids come back in the second list.
    pub fn article_stats(
        &self,
        ids: &[ArticleId],
        now_ms: i64,
    ) -> Result<Found<(ArticleId, ArticleStats)>, EngineError> {
        let (known, missing): (Vec<ArticleId>, Vec<ArticleId>) = ids.iter().partition(|id| self.catalog.contains(**id));
        let counters = self.store.counters(&known)?;
        let stats = known
            .into_iter()
            .zip(counters)
            .map(|(id, counters)| {
                let popularity = self.config.rank.popularity.value(counters.popularity_log2, now_ms);
                (id, ArticleStats { counters, popularity })
            })
            .collect();
        Ok((stats, missing))
    }

    /// Article info for `ids` in order; unknown ids in the second list.
    pub fn articles(&self, ids: &[ArticleId]) -> Found<&Article> {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for &id in ids {
            match self.catalog.get(id) {
                Some(a) => found.push(a),
                None => missing.push(id),
            }
        }
        (found, missing)
    }

    pub fn channels(&self) -> Vec<(Channel, usize)> {
        self.catalog.channels()
    }

    fn user_lock(&self, user: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(user) as usize;
        self.user_locks[h % USER_LOCKS].lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Plan {
    History(Option<(Arc<Batch>, i64)>),
    Refresh(Vec<feed::Scored>),
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(msg.into())
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
