//! The engine: the feed paging rules and the tracking loop over a [`Store`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::{self, Catalog};
use crate::feed::{self, Exclusion, RankConfig, RankInput, Variant};
use crate::hot::HotIndex;
use crate::learn::{Context, Feature, LearnConfig, Learner, World};
use crate::model::{ALL_CHANNELS, Action, Article, ArticleId, Channel, ChannelId};
use crate::params::{ParamError, Signer, TrackParam, Verified};
use crate::stats::{Counts, StatKey};
use crate::store::{AppendOutcome, ArticleCounters, Batch, BatchItem, EventRecord, Sources, Store, StoreError};
use crate::text::{self, TextIndex};

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
    pub learn: LearnConfig,
    /// The A/B variants; a user's bucket is a hash of their id modulo their number.
    pub variants: Vec<Variant>,
    /// Version tag at the front of `algorithmCombine` (`<algorithm>.b<bucket>:<sources>`).
    pub algorithm: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_article_num: 100,
            param_max_age_ms: 30 * 24 * 3_600_000,
            max_report_events: 1000,
            rank: RankConfig::default(),
            learn: LearnConfig::default(),
            variants: vec![Variant::default()],
            algorithm: "v2".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    NotFound(String),
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

/// An action given to [`Engine::observe`].
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub user: &'a str,
    pub article: ArticleId,
    pub action: Action,
    pub time_ms: i64,
    pub read_ms: u64,
    pub position: Option<u32>,
    pub sources: Sources,
    /// A click from an imported history: profile only, no model update.
    pub prior: bool,
}

/// The answer of [`Engine::explain`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub bucket: u8,
    pub variant: String,
    pub ranker: bool,
    /// The sources that would propose the article in 推荐 now.
    pub sources: Sources,
    /// The sources it was served by, when it is in the user's history.
    pub served_sources: Option<Sources>,
    pub score: f64,
    pub probability: f64,
    pub demotion: f64,
    pub hidden: bool,
    /// Feature name and weight, largest magnitude first, at most 10, zeros left out.
    pub contributions: Vec<(String, f64)>,
}

/// The answer of [`Engine::stats`]: rows of (key, counts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub by_bucket: Vec<(String, Counts)>,
    pub by_source: Vec<(String, Counts)>,
    pub by_channel: Vec<(String, Counts)>,
}

/// What was found for a list of ids, and the ids that were not.
pub type Found<T> = (Vec<T>, Vec<ArticleId>);

/// Stripes of the per-user lock that makes read-rank-append atomic within this process.
const USER_LOCKS: usize = 64;

/// Meta key of the learner's checkpoint.
const LEARNER_KEY: &str = "learner.v1";

pub struct Engine<S> {
    store: S,
    catalog: Catalog,
    text: TextIndex,
    hot: RwLock<HotIndex>,
    learner: RwLock<Learner>,
    signer: Signer,
    config: EngineConfig,
    user_locks: Vec<Mutex<()>>,
    next_request: AtomicU64,
    /// The learner's `events` and `negatives` mixed, at the last checkpoint written.
    checkpointed: AtomicU64,
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
        if config.variants.is_empty() || config.variants.len() > 255 {
            return Err(EngineError::InvalidArgument("there must be 1..=255 variants".into()));
        }
        let catalog = Catalog::new(store.load_articles()?);
        let mut hot = HotIndex::default();
        for (id, c) in store.all_counters()? {
            if let Some(a) = catalog.get(id) {
                hot.set(id, a.channel_id, c.popularity_log2);
            }
        }
        let text = TextIndex::new(&catalog);
        let mut learner = match store.get_meta(LEARNER_KEY)? {
            Some(bytes) => Learner::decode(&bytes).unwrap_or_else(|e| {
                tracing::warn!("the learner checkpoint does not decode ({e}): relearning from the whole event log");
                Learner::default()
            }),
            None => Learner::default(),
        };
        let world = World { catalog: &catalog, text: &text, hot: &hot, popularity: &config.rank.popularity };
        let from = learner.applied();
        let mut replayed = 0u64;
        store.scan_events(from, &mut |seq, event| {
            learner.apply(&config.learn, &world, Some(seq), &event);
            replayed += 1;
        })?;
        tracing::info!(checkpoint = from, replayed, users = learner.users(), "learner ready");
        let seed = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        Ok(Self {
            store,
            catalog,
            text,
            hot: RwLock::new(hot),
            learner: RwLock::new(learner),
            signer: Signer::new(secret),
            config,
            user_locks: (0..USER_LOCKS).map(|_| Mutex::new(())).collect(),
            next_request: AtomicU64::new(seed ^ now_nanos()),
            checkpointed: AtomicU64::new(u64::MAX),
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
        let bucket = self.bucket_of(&req.user_id);
        loop {
            let request_id = self.next_request.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            let plan = self.store.with_user(&req.user_id, |user| {
                let history = user.channel(req.channel_id);
                let latest = history.latest_time();
                if req.time_stamp <= latest {
                    let found = history.at_or_before(req.time_stamp).map(|(b, older)| (Arc::clone(b), older));
                    return Plan::History(found);
                }
                let hot = read(&self.hot);
                let learner = read(&self.learner);
                let input = RankInput {
                    // The exploration draw is a function of the request: reproducible runs.
                    seed: text::hash_str(b'x', &req.user_id)
                        ^ text::mix(req.time_stamp as u64 ^ u64::from(req.channel_id as u32)),
                    ..self.rank_input(
                        &hot,
                        &learner,
                        &req.user_id,
                        req.channel_id,
                        req.article_num as usize,
                        now_ms,
                        bucket,
                    )
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
                    // History hands out the params first served, with the bucket of then.
                    let (_, items) = self.mint(req, &batch, batch.bucket, false);
                    return Ok(FeedResponse { exposure: String::new(), time_stamp: older, items, refreshed: false });
                }
                Plan::Refresh(picked) => {
                    let batch = Batch {
                        time: req.time_stamp,
                        request_id,
                        bucket,
                        items: picked.iter().map(|s| BatchItem { article_id: s.id, sources: s.sources }).collect(),
                    };
                    let (exposure, items) = self.mint(req, &batch, bucket, true);
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

    fn mint(&self, req: &FeedRequest, batch: &Batch, bucket: u8, with_exposure: bool) -> (String, Vec<FeedItem>) {
        let mut head = self.config.algorithm.clone();
        head.push_str(".b");
        head.push_str(itoa::Buffer::new().format(bucket));
        let mut param = TrackParam {
            action: Action::Exposure,
            user_id: req.user_id.clone(),
            article_ids: batch.items.iter().map(|i| i.article_id).collect(),
            algorithm_combine: head.clone(),
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
                param.algorithm_combine.push_str(&head);
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
            for ((slot, seq), record) in record_slots.iter().zip(&fresh).zip(&records) {
                if seq.is_some() {
                    touched.extend(&record.article_ids);
                } else if let Some(Verdict::Accepted(p)) = verdicts[*slot].take() {
                    verdicts[*slot] = Some(Verdict::Duplicate(p));
                }
            }
            self.refresh_hot(&touched)?;
            // Learn after the counters moved: a click is in the model and in popularity alike
            // when the next request ranks.
            let hot = read(&self.hot);
            let world = self.world(&hot);
            let mut learner = write(&self.learner);
            for (seq, record) in fresh.iter().zip(&records) {
                if let Some(seq) = seq {
                    learner.apply(&self.config.learn, &world, Some(*seq), record);
                }
            }
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

    fn refresh_hot(&self, touched: &[ArticleId]) -> Result<(), EngineError> {
        if touched.is_empty() {
            return Ok(());
        }
        // Read the counters under the lock: of two concurrent reports, the one that sets last
        // then also read last, so the index never goes back to older counters.
        let mut hot = write(&self.hot);
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

    /// The user's A/B bucket: a stable hash of the id modulo the number of variants.
    pub fn bucket_of(&self, user: &str) -> u8 {
        (text::hash_str(b'b', user) % self.config.variants.len() as u64) as u8
    }

    pub fn variant(&self, bucket: u8) -> Option<&Variant> {
        self.config.variants.get(usize::from(bucket))
    }

    fn world<'a>(&'a self, hot: &'a HotIndex) -> World<'a> {
        World { catalog: &self.catalog, text: &self.text, hot, popularity: &self.config.rank.popularity }
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

    /// Closes the exposure windows that ended by `now_ms` and writes the learner to the store,
    /// so a restart replays only the events logged after it. Returns the checkpoint's size, 0
    /// when nothing was learned since the last one (which is then kept).
    pub fn checkpoint(&self, now_ms: i64) -> Result<usize, EngineError> {
        write(&self.learner).advance(&self.config.learn, now_ms);
        let (bytes, applied) = {
            let learner = read(&self.learner);
            // Nothing learned since the last checkpoint: keep it.
            let mark = learner.events ^ learner.negatives.rotate_left(32);
            if self.checkpointed.swap(mark, Ordering::Relaxed) == mark {
                return Ok(0);
            }
            (
                learner.encode().map_err(|e| StoreError::Backend(format!("cannot encode the learner: {e}")))?,
                learner.applied(),
            )
        };
        if let Err(e) = self.store.put_meta(LEARNER_KEY, &bytes) {
            self.checkpointed.store(u64::MAX, Ordering::Relaxed);
            return Err(e.into());
        }
        tracing::debug!(bytes = bytes.len(), applied, "learner checkpoint written");
        Ok(bytes.len())
    }

    /// Why `article_id` would be picked for `user_id` now, for debug views.
    pub fn explain(&self, user_id: &str, article_id: ArticleId, now_ms: i64) -> Result<Explanation, EngineError> {
        if user_id.trim().is_empty() {
            return Err(invalid("user_id is empty"));
        }
        if user_id.len() > 256 {
            return Err(invalid(format!("user_id is {} bytes, at most 256 are allowed", user_id.len())));
        }
        let article = self
            .catalog
            .get(article_id)
            .ok_or_else(|| EngineError::NotFound(format!("article {article_id} is not in the catalog")))?;
        let bucket = self.bucket_of(user_id);
        let variant = &self.config.variants[usize::from(bucket)];
        let hot = read(&self.hot);
        let learner = read(&self.learner);
        let input = self.rank_input(&hot, &learner, user_id, ALL_CHANNELS, 10, now_ms, bucket);
        let (sources, served, hidden) = self.store.with_user(user_id, |user| {
            let now = feed::candidates(&input, &Exclusion::new(user, ALL_CHANNELS))
                .into_iter()
                .find(|c| c.id == article_id)
                .map_or(Sources::default(), |c| c.sources);
            let served = user
                .channels()
                .flat_map(|(_, h)| h.batches())
                .flat_map(|b| b.items.iter())
                .find(|i| i.article_id == article_id)
                .map(|i| i.sources);
            (now, served, user.has_read(article_id))
        })?;
        let who = learner.who(user_id);
        let score = feed::score_one(&input, who, article, sources);
        let world = self.world(&hot);
        let ctx = Context { now_ms, position: None, sources };
        let prediction = learner.predict(&world, who, article, &ctx);
        let names = text::named_tokens(article);
        let token_text = |t| names.iter().find(|n| n.token == t).map(|n| n.text.clone());
        let mut contributions: Vec<(String, f64)> = learner
            .contributions(&world, who, article, &ctx)
            .into_iter()
            .filter(|(_, w)| *w != 0.0)
            .map(|(f, w): (Feature, f64)| (f.describe(&token_text), w))
            .collect();
        contributions.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        contributions.truncate(10);
        Ok(Explanation {
            bucket,
            variant: variant.name.clone(),
            ranker: variant.ranker,
            sources,
            served_sources: served,
            score,
            probability: prediction.probability,
            demotion: prediction.demotion,
            hidden,
            contributions,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn rank_input<'a>(
        &'a self,
        hot: &'a HotIndex,
        learner: &'a Learner,
        user: &'a str,
        channel: ChannelId,
        article_num: usize,
        now_ms: i64,
        bucket: u8,
    ) -> RankInput<'a> {
        RankInput {
            catalog: &self.catalog,
            hot,
            text: &self.text,
            learner,
            learn: &self.config.learn,
            user,
            channel,
            article_num,
            now_ms,
            config: &self.config.rank,
            variant: &self.config.variants[usize::from(bucket)],
            seed: 0,
        }
    }

    /// Exposures and actions per bucket, source and article channel for events with times in
    /// `[from_ms, to_ms)`.
    pub fn stats(&self, from_ms: i64, to_ms: i64) -> StatsReport {
        let window = read(&self.learner).stats.window(from_ms, to_ms);
        let mut report = StatsReport { from_ms, to_ms, ..StatsReport::default() };
        for (key, counts) in window {
            match key {
                StatKey::Bucket(b) => {
                    let name = self.variant(b).map_or_else(|| format!("b{b}"), |v| v.name.clone());
                    report.by_bucket.push((name, counts));
                }
                StatKey::Source(s) => {
                    let name = s.and_then(|i| Sources::NAMED.get(usize::from(i))).map_or("unknown", |(_, n)| n);
                    report.by_source.push((name.to_owned(), counts));
                }
                StatKey::Channel(c) => report.by_channel.push((c.to_string(), counts)),
            }
        }
        report
    }

    /// Scores `ids` for `user` as the ranker would now (`-inf` for unknown ids), without the
    /// candidate sources: for offline evaluation, where the candidates are given.
    pub fn score_for(&self, user: &str, ids: &[ArticleId], now_ms: i64) -> Vec<f64> {
        let hot = read(&self.hot);
        let learner = read(&self.learner);
        let input = self.rank_input(&hot, &learner, user, ALL_CHANNELS, ids.len(), now_ms, self.bucket_of(user));
        let who = learner.who(user);
        ids.iter()
            .map(|id| {
                self.catalog.get(*id).map_or(f64::NEG_INFINITY, |a| feed::score_one(&input, who, a, Sources::default()))
            })
            .collect()
    }

    /// Learns from one action given directly, outside the signed tracking loop and the store:
    /// for offline evaluation. `prior` marks a positive from an imported history, which moves
    /// the user's profile but trains no model weight.
    pub fn observe(&self, obs: &Observation<'_>) {
        let Some(article) = self.catalog.get(obs.article) else { return };
        if !obs.prior && obs.action.is_positive() {
            // As a reported event moves the counters: popularity offline is popularity online.
            let mut hot = write(&self.hot);
            let add = self.config.rank.popularity.event_log2(obs.action, obs.time_ms, obs.read_ms);
            let now = hot.popularity_log2(article.id);
            hot.set(article.id, article.channel_id, crate::popularity::log2_add(now, add));
        }
        let hot = read(&self.hot);
        let world = self.world(&hot);
        let mut learner = write(&self.learner);
        learner.advance(&self.config.learn, obs.time_ms);
        if obs.prior {
            learner.learn_history(&self.config.learn, &world, obs.user, article);
            return;
        }
        let ctx = Context { now_ms: obs.time_ms, position: obs.position, sources: obs.sources };
        learner.learn(&self.config.learn, &world, obs.user, article, &ctx, obs.action, obs.read_ms);
    }

    /// Counts of what the learner holds, for logs.
    pub fn learner_summary(&self) -> String {
        let l = read(&self.learner);
        format!(
            "events={} negatives={} users={} features={} pending={} applied={}",
            l.events,
            l.negatives,
            l.users(),
            l.model_features(),
            l.pending(),
            l.applied()
        )
    }

    fn user_lock(&self, user: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(user) as usize;
        self.user_locks[h % USER_LOCKS].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `<algorithm>.b<bucket>[:<sources>]` -> bucket (0 when absent, as in v1 params) and sources.
fn parse_combine(text: &str) -> (u8, Option<Sources>) {
    let (head, sources) = match text.split_once(':') {
        Some((head, sources)) => (head, Some(Sources::parse(sources))),
        None => (text, None),
    };
    let bucket = head.rsplit_once(".b").and_then(|(_, b)| b.parse().ok()).unwrap_or(0);
    (bucket, sources)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
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
