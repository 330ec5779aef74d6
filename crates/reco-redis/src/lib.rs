//! A reco store on Redis: the engine's [`Store`] trait on one `redis-server` or a Redis
//! Cluster, so that several `reco serve` replicas can share one state. The first slice of
//! scale-out: correctness with several replicas first, so nothing is cached across calls
//! (every `with_user` reads the user's keys). Each replica keeps its own learner, fed by the
//! shared event log (`Engine::follow_log`).
//!
//! # Key layout
//!
//! Every key carries a Cluster hash tag, and what one atomic step changes shares its tag, so it
//! lives in one slot (see [`keys`] for the full table): a user's kept batches, trimmed ids and
//! read set under `{u:<hex user id>}`; the event log, its dedup sets, its sequence counter and
//! the per-article counters under `{ev}`; the catalog and its change log under `{cat}`; meta
//! under `{meta}`. The
//! event side is one slot, so one node takes every report: the price of numbering events
//! gap-free in commit order, which the learner's replay needs.
//!
//! # Atomic scripts
//!
//! - `append_batch` is one Lua script on the user's slot (`lua/append_batch.lua`): it refuses
//!   the batch unless it is newer than the channel's newest (answering `Stale { latest }`)
//!   and, for `append_batch_seen`, unless the channel's newest and 推荐's newest are still the
//!   ones the refresh ranked against (a batch another replica appended meanwhile may hold the
//!   same articles: the refresh then ranks again), stores it, moves the ids of the batches past `max_batches` to the trimmed set and drops
//!   them, and answers `Appended { previous }`. Redis runs a script alone, so of two replicas
//!   refreshing one user at the same time exactly one wins each batch time.
//! - `record_events` is one Lua script on `{ev}` (`lua/record_events.lua`): per event, a key
//!   already in the dedup set of a day of the dedup window is a duplicate (answered `None`,
//!   nothing changes); a new one goes to today's set (which expires a window after its last
//!   addition: a param the engine no longer accepts needs no dedup) and gets
//!   the next sequence number (`INCR`, from 1), is appended to the log stream as entry
//!   `<seq>-0`, and updates its articles' counters: saturating `u64` counts (kept as two exact
//!   32-bit halves, Lua numbers being doubles) and `popularity_log2` by the engine's
//!   `log2_add` formula. The read set lives in the user's slot, which a script on `{ev}` may
//!   not touch, so the call then `SADD`s the ids of every read or dislike to their users' read
//!   sets. A crash between the two leaves events logged and counted whose articles are not in
//!   the read set yet. It heals: the `SADD` is idempotent and runs for duplicates too, so the
//!   client's retry of the failed report adds them; and the log holds every event, so a pass
//!   over it could rebuild every read set (no such repair tool exists yet).
//!
//! - `upsert_articles` and `retract_articles` are one Lua script on `{cat}`
//!   (`lua/catalog_change.lua`): the rows change and the change log gets the next number with
//!   the changed ids, so a replica that reads the log ([`Store::catalog_changes`]) never misses
//!   a change that is stored. The log keeps the latest [`CATALOG_LOG_CALLS`] changes; a reader
//!   further behind reloads the catalog.
//! - `trim_event_log` is one Lua script on `{ev}` (`lua/trim_events.lua`): `XTRIM MINID` and
//!   the number trimmed through, which never goes back; learners that had not read the
//!   trimmed events skip them ([`Store::event_log_trimmed`]).
//!
//! # Memory
//!
//! What grows without a bound of its own: users' keys (each bounded per user: `max_batches`
//! per channel, the trimmed ids and read set as in the other backends) and the catalog with
//! its counters (the store keeps aged articles for history reads). The event side is bounded
//! by time: dedup keys live the dedup window (`RedisOptions::dedup_window`, 32 days, the
//! lifetime of a param), and checkpoints trim the log to the events after the newest one
//! (less `EngineConfig::event_log_keep`, 100,000).
//!
//! # Round trips per call
//!
//! `catalog_changes`: 1 (a `MULTI` of `GET` and `XRANGE`), plus 1 per further page of 1,000
//! changes; `trim_event_log`, `event_log_trimmed`: 1. `with_user`: 1 (a `MULTI` of `ZRANGE`, `SMEMBERS`, `SMEMBERS` on the user's slot, so the
//! record is one snapshot; it is rebuilt with [`UserRecord::append`],
//! [`UserRecord::restore_trimmed`] and [`UserRecord::mark_read`]). `append_batch`: 1 (the
//! script). `record_events`: 1 (the script), plus 1 when events hide articles (one `SADD` per
//! user, sent concurrently). `counters`, `get_meta`, `put_meta`, `retract_articles`: 1;
//! `upsert_articles`: 1 (the script also clears retractions); `get_articles`: 1 (two
//! `HMGET`s pipelined); `scan_events`: 1 per started page of 1,000 events; `all_counters`,
//! `load_articles`, `load_retractions`: 1 per `HSCAN` page. A script's first call on a node adds two (`EVALSHA`
//! answers `NOSCRIPT`, then `SCRIPT LOAD` and the `EVALSHA` again).
//!
//! # Threads
//!
//! The trait is synchronous and is called from the server's runtime threads, where blocking on
//! another future with `block_on` would panic. The store owns a small runtime of its own (one
//! worker thread): each call spawns its Redis work there and waits on a channel. Decoding and
//! rebuilding records happen on the caller's thread.
//!
//! # Durability
//!
//! A call returns once Redis acknowledged it; [`Store::flush`] has nothing more to do. What an
//! acknowledgement means is Redis's configuration: with `appendonly yes` and `appendfsync
//! everysec` (the usual setting) a Redis crash can lose the last second of acknowledged writes,
//! events included; `appendfsync always` fsyncs before each reply and closes that (the tests
//! run with it). Scripts are written to the append-only file whole, so a crash never leaves
//! half a script.

pub mod keys;

mod codec;
mod conn;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reco_engine::catalog::Retraction;
use reco_engine::model::{ALL_CHANNELS, Action, Article, ArticleId, ChannelId};
use reco_engine::store::{
    AppendOutcome, ArticleCounters, Batch, CATALOG_LOG_CALLS, CatalogChanges, CommitObserver, DEFAULT_MAX_BATCHES,
    EventRecord, Seen, Store, StoreError, StoredArticle, UserRecord,
};
use redis::{RedisError, Script};
use tokio::runtime::Runtime;

use crate::conn::Conn;
use crate::keys::{Keys, channel_bytes, time_bytes, time_from_bytes};

/// How a [`RedisStore`] names its keys and bounds its calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Put before every key, so several stores can share one Redis (tests give each its own).
    /// It may not hold `{` or `}`, which would move the keys' hash tags. Default `reco:`.
    pub prefix: String,
    /// Batches kept per (user, channel), at least 1 (0 is taken as 1: the newest batch is what
    /// the refresh rule compares with). Older ones fall off history; their ids stay served.
    /// Default [`DEFAULT_MAX_BATCHES`].
    pub max_batches: usize,
    /// The bound on each attempt to connect to a node. Default 2 s.
    pub connect_timeout: Duration,
    /// The bound on each store call, whatever it waits for (replies, reconnects, cluster
    /// redirections): past it the call fails instead of hanging. Default 10 s.
    pub call_timeout: Duration,
    /// How long an event's key is remembered to refuse a replay of it: at least as long as
    /// the engine accepts a param (`EngineConfig::param_max_age_ms`) plus the clock skew it
    /// allows, rounded up to whole days (sets per day). Default 32 days (30 + a day of margin
    /// either side, for replicas whose clocks differ).
    pub dedup_window: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "reco:".to_owned(),
            max_batches: DEFAULT_MAX_BATCHES,
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            dedup_window: Duration::from_secs(32 * DAY_SECS),
        }
    }
}

/// The engine's store on Redis: one server (`redis://host:port/db`) or a Redis Cluster
/// (`redis+cluster://host1:port1,host2:port2,...`, any reachable nodes as seeds). See the
/// crate doc for the layout, the scripts and the round trips.
pub struct RedisStore {
    /// `Some` until drop, which shuts it down without waiting (it may run inside a runtime).
    runtime: Option<Runtime>,
    conn: Conn,
    keys: Keys,
    max_batches: usize,
    call_timeout: Duration,
    /// Days of event keys checked for duplicates before today's set.
    dedup_days: u64,
    /// Told how long each acknowledged write took (metrics), once set.
    commit_observer: std::sync::OnceLock<CommitObserver>,
}

static APPEND_BATCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/append_batch.lua")));
static CATALOG_CHANGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/catalog_change.lua")));
static TRIM_EVENTS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/trim_events.lua")));
static RECORD_EVENTS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/record_events.lua")));

const DAY_SECS: u64 = 86_400;

/// Entries per `XRANGE` of [`Store::scan_events`], and the `COUNT` hint per `HSCAN`.
const PAGE: usize = 1_000;

impl RedisStore {
    /// Connects to the Redis the URL names, and checks that it answers. An unreachable Redis
    /// fails within about twice `connect_timeout`, naming the URL (its password redacted).
    pub fn open(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let keys = Keys::new(&options.prefix).ok_or_else(|| {
            StoreError::Backend(format!(
                "redis key prefix {:?} holds a brace, which would move hash tags",
                options.prefix
            ))
        })?;
        let target = conn::parse(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("reco-redis")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the redis store's runtime: {e}")))?;
        let (connect_timeout, call_timeout) = (options.connect_timeout, options.call_timeout);
        let shown = conn::redact(url);
        let conn = run_on(&runtime, "connect", connect_timeout * 2, async move {
            Conn::open(&target, connect_timeout, call_timeout).await.map_err(failed("connect"))
        })
        .map_err(|e| match e {
            StoreError::Backend(why) => StoreError::Backend(format!("cannot reach redis at {shown}: {why}")),
            other => other,
        })?;
        tracing::info!(url = %shown, prefix = %options.prefix, "redis store opened");
        let dedup_days = options.dedup_window.as_secs().div_ceil(DAY_SECS).max(1);
        Ok(Self {
            runtime: Some(runtime),
            conn,
            keys,
            max_batches: options.max_batches.max(1),
            call_timeout,
            dedup_days,
            commit_observer: std::sync::OnceLock::new(),
        })
    }

    /// The store's key names, for operators and tests that look at Redis itself.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Every (field, value) of a hash, a field once, by `HSCAN`: one call (and timeout) per page.
    fn scan_hash(&self, key: &str, what: &'static str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        let mut all = BTreeMap::new();
        let mut cursor = "0".to_owned();
        loop {
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(key).arg(&cursor).arg("COUNT").arg(PAGE);
            let (next, flat): (String, Vec<Vec<u8>>) =
                self.call(what, |mut conn| async move { cmd.query_async(&mut conn).await.map_err(failed(what)) })?;
            let mut items = flat.into_iter();
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                // A scan may return a field twice (while the hash rehashes): keep one.
                all.insert(field, value);
            }
            if next == "0" {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// Runs `catalog_change.lua`: the rows (id, encoded article or retraction) written and the
    /// change logged, in one script on the catalog's slot.
    fn change_catalog(&self, mode: &'static str, rows: Vec<(ArticleId, Vec<u8>)>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let keys = self.keys.catalog();
        let ids: Vec<u8> = rows.iter().flat_map(|(id, _)| codec::id_bytes(*id)).collect();
        let mut invocation = CATALOG_CHANGE.prepare_invoke();
        invocation.key(keys.articles).key(keys.retracted).key(keys.seq).key(keys.changes);
        invocation.arg(mode).arg(CATALOG_LOG_CALLS).arg(ids);
        for (id, value) in &rows {
            invocation.arg(*id).arg(&value[..]);
        }
        self.call(if mode == "upsert" { "upsert_articles" } else { "retract_articles" }, |mut conn| async move {
            invocation.invoke_async::<u64>(&mut conn).await.map(drop).map_err(failed("catalog change"))
        })
    }

    /// Tells the commit observer, if any, how long a write acknowledged now took.
    fn observed(&self, started: std::time::Instant) {
        if let Some(observe) = self.commit_observer.get() {
            observe(started.elapsed());
        }
    }

    /// Runs `work` on the store's runtime, bounded by the call timeout, and waits for it.
    fn call<T, F>(&self, what: &'static str, work: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        run_on(runtime, what, self.call_timeout, work(self.conn.clone()))
    }
}

fn run_on<T: Send + 'static>(
    runtime: &Runtime,
    what: &'static str,
    limit: Duration,
    work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let out = tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend(format!("redis {what} timed out after {limit:?}"))));
        // The caller waits for this; it only goes away if its thread panicked.
        let _ = tx.send(out);
    });
    rx.recv().map_err(|_| StoreError::Backend(format!("redis {what}: the store's runtime stopped")))?
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn failed(what: &'static str) -> impl Fn(RedisError) -> StoreError {
    move |e| StoreError::Backend(format!("redis {what}: {e}"))
}

/// The 1-based index, in the counters `record_events.lua` unpacks (two `u32` halves per
/// `u64`), of the low half of the count an action adds to.
fn count_index(action: Action) -> usize {
    match action {
        Action::Exposure => 1,
        Action::Click => 3,
        Action::Collect => 5,
        Action::Share => 7,
        Action::Read => 9,
        Action::Dislike => 14,
    }
}

impl Store for RedisStore {
    fn load_articles(&self) -> Result<Vec<Article>, StoreError> {
        let rows = self.scan_hash(&self.keys.catalog().articles, "load_articles")?;
        rows.iter().map(|(field, value)| codec::decode_article(codec::parse_id_field(field)?, value)).collect()
    }

    fn upsert_articles(&self, articles: &[Article]) -> Result<(), StoreError> {
        let rows = articles.iter().map(|a| Ok((a.id, codec::encode_article(a)?))).collect::<Result<Vec<_>, _>>()?;
        self.change_catalog("upsert", rows)
    }

    fn retract_articles(&self, retractions: &[(ArticleId, Retraction)]) -> Result<(), StoreError> {
        let rows =
            retractions.iter().map(|(id, r)| Ok((*id, codec::encode_retraction(r)?))).collect::<Result<Vec<_>, _>>()?;
        self.change_catalog("retract", rows)
    }

    /// `GET` of the change number and the first page of the log after `after` in one `MULTI`,
    /// then one `XRANGE` per further page, up to that number.
    fn catalog_changes(&self, after: u64) -> Result<CatalogChanges, StoreError> {
        let keys = self.keys.catalog();
        let start = after.saturating_add(1);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("GET").arg(&keys.seq);
        pipe.cmd("XRANGE").arg(&keys.changes).arg(format!("{start}-0")).arg("+").arg("COUNT").arg(PAGE);
        type First = (Option<u64>, Vec<(String, Vec<Vec<u8>>)>);
        let (head, mut page): First = self.call("catalog_changes", |mut conn| async move {
            pipe.query_async(&mut conn).await.map_err(failed("catalog_changes"))
        })?;
        let head = head.unwrap_or(0);
        if after >= head {
            return Ok(CatalogChanges { head, changed: Some(Vec::new()) });
        }
        let mut seen = std::collections::HashSet::new();
        let mut changed = Vec::new();
        let mut expect = start;
        loop {
            let full = page.len() == PAGE;
            for (id, fields) in page {
                let seq = parse_entry_id(&id, "catalog change log")?;
                if seq > head {
                    return Ok(CatalogChanges { head, changed: Some(changed) });
                }
                if seq != expect {
                    // Trimmed (or, at the first entry, already past `after`): reload.
                    return Ok(CatalogChanges { head, changed: None });
                }
                let [_, ids] = <[Vec<u8>; 2]>::try_from(fields)
                    .map_err(|_| StoreError::Corrupt(format!("catalog change {seq} is not one field")))?;
                for chunk in ids.chunks(8) {
                    let id = codec::decode_id(chunk)?;
                    if seen.insert(id) {
                        changed.push(id);
                    }
                }
                expect = seq + 1;
            }
            if expect > head {
                return Ok(CatalogChanges { head, changed: Some(changed) });
            }
            if !full {
                // The log ends before `head`: its entries up to there were trimmed meanwhile.
                return Ok(CatalogChanges { head, changed: None });
            }
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&keys.changes).arg(format!("{expect}-0")).arg(format!("{head}-0")).arg("COUNT").arg(PAGE);
            page = self.call("catalog_changes", |mut conn| async move {
                cmd.query_async(&mut conn).await.map_err(failed("catalog_changes"))
            })?;
        }
    }

    fn load_retractions(&self) -> Result<Vec<(ArticleId, Retraction)>, StoreError> {
        let rows = self.scan_hash(&self.keys.catalog().retracted, "load_retractions")?;
        rows.iter()
            .map(|(field, value)| {
                let id = codec::parse_id_field(field)?;
                Ok((id, codec::decode_retraction(id, value)?))
            })
            .collect()
    }

    fn get_articles(&self, ids: &[ArticleId]) -> Result<Vec<Option<StoredArticle>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys.catalog();
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(&keys.articles).arg(ids).cmd("HMGET").arg(&keys.retracted).arg(ids);
        type Rows = (Vec<Option<Vec<u8>>>, Vec<Option<Vec<u8>>>);
        let (articles, retractions): Rows = self.call("get_articles", |mut conn| async move {
            pipe.query_async(&mut conn).await.map_err(failed("get_articles"))
        })?;
        ids.iter()
            .zip(articles.into_iter().zip(retractions))
            .map(|(&id, (article, retraction))| {
                let Some(article) = article else { return Ok(None) };
                let retraction = retraction.map(|r| codec::decode_retraction(id, &r)).transpose()?;
                Ok(Some((codec::decode_article(id, &article)?, retraction)))
            })
            .collect()
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.keys.meta()).arg(key);
        self.call("get_meta", |mut conn| async move { cmd.query_async(&mut conn).await.map_err(failed("get_meta")) })
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.keys.meta()).arg(key).arg(value);
        self.call(
            "put_meta",
            |mut conn| async move { cmd.query_async::<()>(&mut conn).await.map_err(failed("put_meta")) },
        )
    }

    fn is_remote(&self) -> bool {
        true
    }

    /// HSETNX then HGET in one MULTI on the meta hash: the value stored first, whichever
    /// replica stored it.
    fn init_meta(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HSETNX").arg(self.keys.meta()).arg(key).arg(value).ignore();
        pipe.cmd("HGET").arg(self.keys.meta()).arg(key);
        let (stored,): (Vec<u8>,) = self.call("init_meta", |mut conn| async move {
            pipe.query_async(&mut conn).await.map_err(failed("init_meta"))
        })?;
        Ok(stored)
    }

    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        let keys = self.keys.user(user);
        let mut pipe = redis::pipe();
        // One MULTI: the three reads see one state, whatever another replica appends meanwhile.
        pipe.atomic()
            .cmd("ZRANGE")
            .arg(&keys.batches)
            .arg(0)
            .arg(-1)
            .cmd("SMEMBERS")
            .arg(&keys.trimmed)
            .cmd("SMEMBERS")
            .arg(&keys.read);
        type Rows = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);
        let (batches, trimmed, read): Rows = self.call("with_user", |mut conn| async move {
            pipe.query_async(&mut conn).await.map_err(failed("with_user"))
        })?;
        let mut record = UserRecord::default();
        // Members sort by channel, then time: each one appends to its channel.
        for member in &batches {
            let (channel, batch) = codec::decode_member(member)?;
            record.append(channel, Arc::new(batch), self.max_batches);
        }
        let mut by_channel: BTreeMap<ChannelId, Vec<ArticleId>> = BTreeMap::new();
        for member in &trimmed {
            let (channel, id) = codec::decode_trimmed(member)?;
            by_channel.entry(channel).or_default().push(id);
        }
        for (channel, ids) in by_channel {
            record.restore_trimmed(channel, ids);
        }
        for member in &read {
            record.mark_read(codec::decode_id(member)?);
        }
        Ok(f(&record))
    }

    fn append_batch_seen(
        &self,
        user: &str,
        channel: ChannelId,
        batch: Batch,
        seen: Option<Seen>,
    ) -> Result<AppendOutcome, StoreError> {
        let keys = self.keys.user(user);
        let prefix = channel_bytes(channel);
        let (lower, upper) = channel_range(channel);
        let (all_lower, all_upper) = channel_range(ALL_CHANNELS);
        // The newest batch times the refresh saw, as the script compares them ('' for none).
        let time_arg = |t: i64| if t == 0 { Vec::new() } else { time_bytes(t).to_vec() };
        let (check, seen_channel, check_all, seen_all) = match seen {
            None => ("0", Vec::new(), "0", Vec::new()),
            Some(Seen { channel: c, all: None }) => ("1", time_arg(c), "0", Vec::new()),
            Some(Seen { channel: c, all: Some(a) }) => ("1", time_arg(c), "1", time_arg(a)),
        };
        let member = codec::encode_member(channel, &batch);
        let position = [&b"["[..], &member[..12]].concat();
        let mut invocation = APPEND_BATCH.prepare_invoke();
        invocation
            .key(keys.batches)
            .key(keys.trimmed)
            .arg(lower)
            .arg(upper)
            .arg(position)
            .arg(member)
            .arg(self.max_batches)
            .arg(&prefix[..])
            .arg(if batch.time <= 0 { "1" } else { "0" })
            .arg(check)
            .arg(seen_channel)
            .arg(check_all)
            .arg(all_lower)
            .arg(all_upper)
            .arg(seen_all);
        let started = std::time::Instant::now();
        let (stored, latest): (u8, Vec<u8>) = self.call("append_batch", |mut conn| async move {
            invocation.invoke_async(&mut conn).await.map_err(failed("append_batch"))
        })?;
        self.observed(started);
        let latest = match <[u8; 8]>::try_from(latest.as_slice()) {
            Ok(bytes) => time_from_bytes(bytes),
            Err(_) if latest.is_empty() => 0,
            Err(_) => {
                return Err(StoreError::Corrupt(format!("a batch time of user {user:?} has {} bytes", latest.len())));
            }
        };
        Ok(if stored == 1 { AppendOutcome::Appended { previous: latest } } else { AppendOutcome::Stale { latest } })
    }

    fn record_events(&self, events: &[EventRecord]) -> Result<Vec<Option<u64>>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys.events();
        let mut invocation = RECORD_EVENTS.prepare_invoke();
        invocation.key(&keys.seq).key(&keys.log).key(&keys.counters);
        // Today's set first (by this replica's clock), then the window's other days, one
        // ahead for replicas whose clocks run ahead of this one's.
        let today =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / DAY_SECS);
        invocation.key(format!("{}{today}", keys.keys_of_day));
        for day in today.saturating_sub(self.dedup_days)..=today + 1 {
            if day != today {
                invocation.key(format!("{}{day}", keys.keys_of_day));
            }
        }
        invocation.arg((self.dedup_days + 1) * DAY_SECS);
        for event in events {
            invocation
                .arg(&event.key.0[..])
                .arg(codec::encode_event(event)?)
                .arg(count_index(event.action))
                .arg(&event.read_ms.to_le_bytes()[..])
                .arg(&event.popularity_log2.to_le_bytes()[..])
                .arg(event.article_ids.len())
                .arg(&event.article_ids);
        }
        // Every hiding event, new or duplicate, goes to the read set (see the crate doc).
        let mut hidden: BTreeMap<&str, Vec<[u8; 8]>> = BTreeMap::new();
        for event in events.iter().filter(|e| e.hides() && !e.article_ids.is_empty()) {
            hidden.entry(&event.user).or_default().extend(event.article_ids.iter().map(|&id| codec::id_bytes(id)));
        }
        let reads: Vec<redis::Cmd> = hidden
            .into_iter()
            .map(|(user, ids)| {
                let mut cmd = redis::cmd("SADD");
                cmd.arg(self.keys.user(user).read);
                for id in &ids {
                    cmd.arg(&id[..]);
                }
                cmd
            })
            .collect();
        let started = std::time::Instant::now();
        let seqs: Vec<u64> = self.call("record_events", |mut conn| async move {
            let seqs: Vec<u64> = invocation.invoke_async(&mut conn).await.map_err(failed("record_events"))?;
            let sadds = reads.iter().map(|cmd| {
                let mut conn = conn.clone();
                async move { cmd.query_async::<()>(&mut conn).await }
            });
            for result in futures_util::future::join_all(sadds).await {
                result.map_err(failed("record_events (read sets)"))?;
            }
            Ok(seqs)
        })?;
        self.observed(started);
        if seqs.len() != events.len() {
            return Err(StoreError::Corrupt(format!("{} sequence numbers for {} events", seqs.len(), events.len())));
        }
        Ok(seqs.into_iter().map(|seq| (seq > 0).then_some(seq)).collect())
    }

    fn scan_events(&self, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError> {
        let log = self.keys.events().log;
        let mut next = after;
        loop {
            let Some(start) = next.checked_add(1) else { return Ok(()) };
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&log).arg(format!("{start}-0")).arg("+").arg("COUNT").arg(PAGE);
            let page: Vec<(String, Vec<Vec<u8>>)> = self.call("scan_events", |mut conn| async move {
                cmd.query_async(&mut conn).await.map_err(failed("scan_events"))
            })?;
            let full = page.len() == PAGE;
            for (id, fields) in page {
                let seq = parse_entry_id(&id, "event log")?;
                let [field, value] = <[Vec<u8>; 2]>::try_from(fields)
                    .map_err(|_| StoreError::Corrupt(format!("logged event {seq} is not one field")))?;
                if field != b"e" {
                    return Err(StoreError::Corrupt(format!("logged event {seq} has no field e")));
                }
                f(seq, codec::decode_event(seq, &value)?);
                next = seq;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// One script: `XTRIM MINID` and the number trimmed through, which never goes back.
    fn trim_event_log(&self, upto: u64) -> Result<(), StoreError> {
        let keys = self.keys.events();
        let mut invocation = TRIM_EVENTS.prepare_invoke();
        invocation.key(keys.log).key(keys.trimmed).arg(upto);
        self.call("trim_event_log", |mut conn| async move {
            invocation.invoke_async::<u64>(&mut conn).await.map(drop).map_err(failed("trim_event_log"))
        })
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.events().seq);
        let seq: Option<u64> = self.call("last_event_seq", |mut conn| async move {
            cmd.query_async(&mut conn).await.map_err(failed("last_event_seq"))
        })?;
        Ok(seq.unwrap_or(0))
    }

    fn round_trips(&self) -> u64 {
        self.conn.requests()
    }

    /// Redis acknowledges each write when it is as durable as its configuration makes it:
    /// the observer gets each report's and each refresh's acknowledged write.
    fn observe_commits(&self, observe: CommitObserver) {
        let _ = self.commit_observer.set(observe);
    }

    fn event_log_trimmed(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.events().trimmed);
        let trimmed: Option<u64> = self.call("event_log_trimmed", |mut conn| async move {
            cmd.query_async(&mut conn).await.map_err(failed("event_log_trimmed"))
        })?;
        Ok(trimmed.unwrap_or(0))
    }

    fn counters(&self, ids: &[ArticleId]) -> Result<Vec<ArticleCounters>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.events().counters).arg(ids);
        let rows: Vec<Option<Vec<u8>>> = self
            .call("counters", |mut conn| async move { cmd.query_async(&mut conn).await.map_err(failed("counters")) })?;
        rows.iter().map(|row| row.as_deref().map_or(Ok(ArticleCounters::default()), codec::decode_counters)).collect()
    }

    fn all_counters(&self) -> Result<Vec<(ArticleId, ArticleCounters)>, StoreError> {
        let rows = self.scan_hash(&self.keys.events().counters, "all_counters")?;
        rows.iter().map(|(field, value)| Ok((codec::parse_id_field(field)?, codec::decode_counters(value)?))).collect()
    }

    /// Nothing to do: every call returned after Redis acknowledged it (see the crate doc for
    /// what that guarantees).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The sequence number of a stream entry whose id is `<seq>-0`.
fn parse_entry_id(id: &str, what: &str) -> Result<u64, StoreError> {
    id.strip_suffix("-0")
        .and_then(|seq| seq.parse::<u64>().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("the {what} has an entry {id:?}")))
}

/// The lexicographic bounds of a channel's members in a user's batches: `[channel` to
/// `(next channel` (or `+`).
fn channel_range(channel: ChannelId) -> (Vec<u8>, Vec<u8>) {
    let lower = [&b"["[..], &channel_bytes(channel)].concat();
    let upper = match channel.checked_add(1) {
        Some(next) => [&b"("[..], &channel_bytes(next)].concat(),
        None => b"+".to_vec(),
    };
    (lower, upper)
}
