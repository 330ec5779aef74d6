//! The single writer thread: it owns every write transaction and commits in groups.
//!
//! Each round takes every queued command, applies them all in one write transaction, commits it,
//! publishes the committed changes to the in-memory counters and user records, then answers the
//! waiters. A group that someone waits for (events, articles, meta, a flush, the close) commits
//! with [`Durability::Immediate`] (one fsync for the whole group, and for every commit before
//! it). A group of written-behind batches only commits with [`Durability::None`] (visible to
//! every later read, written to disk by the next immediate commit) unless [`DURABLE_EVERY`]
//! has passed or [`DURABLE_BATCHES`] commands wait for disk since the last immediate commit: a
//! batch is written (and pages touched by many commits are written once) at most about a second
//! after it was served, and a crash loses at most that much served history. A failed
//! commit answers every waiter with the error, is remembered by the store, and stops the thread.
//! After every round, committing or idle, it advances the cache's clock and sweeps it (see
//! `users`): the store's only background work, off the request path.
//!
//! The writer also numbers the event log: being the only writer, it hands out sequence numbers
//! in commit order, and writes each one in the transaction that stores its event. A number is
//! only taken for good once its commit succeeded; a failed commit stops the thread, so no
//! number is ever handed out twice or skipped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use reco_engine::model::{ArticleId, ChannelId};
use reco_engine::store::{ArticleCounters, EventRecord, StoreError};
use redb::{Durability, ReadableTable, Table};

use crate::schema::{ARTICLES, BATCHES, COUNTERS, EVENT_LOG, EVENTS, META, READS, RETRACTIONS, TRIMMED};
use crate::{State, codec, db_error, lock, read_lock, write_lock};

pub(crate) type Reply<T> = SyncSender<Result<T, StoreError>>;

pub(crate) enum Command {
    /// Written behind: nobody waits for it.
    Batch {
        user: String,
        channel: ChannelId,
        time: i64,
        value: Vec<u8>,
    },
    /// Written behind, after the `Batch` whose append trimmed history: deletes the channel's
    /// rows at or before `through` and stores `ids`, the channel's whole trimmed list.
    Trim {
        user: String,
        channel: ChannelId,
        through: i64,
        ids: Vec<ArticleId>,
    },
    Events {
        events: Vec<EventRecord>,
        reply: Reply<Vec<Option<u64>>>,
    },
    /// Upserts `rows` (clearing their retractions) and then stores `retract`.
    Articles {
        rows: Vec<(ArticleId, Vec<u8>)>,
        retract: Vec<(ArticleId, Vec<u8>)>,
        reply: Reply<()>,
    },
    Meta {
        key: String,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    Flush {
        reply: Reply<()>,
    },
    /// Commit what is queued, answer, and stop.
    Close {
        reply: Reply<()>,
    },
}

impl Command {
    fn writes(&self) -> bool {
        !matches!(self, Command::Flush { .. } | Command::Close { .. })
    }

    /// Answers the waiter, if any; `Ok` carries the per-event answer of an `Events` command.
    fn answer(self, result: Result<Vec<Option<u64>>, &str>) {
        let failed = |msg: &str| StoreError::Backend(format!("commit failed: {msg}"));
        // A waiter that is gone has nothing left to learn, so send errors are ignored.
        match self {
            Command::Batch { .. } | Command::Trim { .. } => {}
            Command::Events { reply, .. } => {
                let _ = reply.send(result.map_err(failed));
            }
            Command::Articles { reply, .. }
            | Command::Meta { reply, .. }
            | Command::Flush { reply }
            | Command::Close { reply } => {
                let _ = reply.send(result.map(drop).map_err(failed));
            }
        }
    }
}

/// How often the writer takes the written-behind batches when no command wakes it. Nobody
/// waits for them, so fewer, larger commits (fewer fsyncs and page copies) cost nothing.
const WRITE_BEHIND_WINDOW: Duration = Duration::from_millis(10);

/// Written-behind commits reach the disk at least this often...
pub(crate) const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// ...and when this many written-behind commands are not on disk yet (which bounds the dirty
/// pages the database holds in memory between immediate commits).
pub(crate) const DURABLE_BATCHES: usize = 4_096;

/// Written-behind commands committed since the last immediate commit.
struct NotDurable {
    since: std::time::Instant,
    commands: usize,
}

/// Runs until the store closes or a commit fails; `last_seq` is the newest number in the event
/// log at open (0 for an empty log).
pub(crate) fn run(state: &State, commands: Receiver<Command>, mut last_seq: u64) {
    let mut not_durable = NotDurable { since: std::time::Instant::now(), commands: 0 };
    loop {
        let (mut group, hung_up) = match commands.recv_timeout(WRITE_BEHIND_WINDOW) {
            Ok(first) => {
                let mut group = vec![first];
                group.extend(commands.try_iter());
                (group, false)
            }
            Err(RecvTimeoutError::Timeout) => (Vec::new(), false),
            Err(RecvTimeoutError::Disconnected) => (Vec::new(), true),
        };
        // Batches queued before these commands go first, so a flush covers what came before it.
        let (behind, queued) = {
            let mut behind = lock(&state.behind);
            (std::mem::take(&mut behind.commands), behind.queued)
        };
        group.splice(0..0, behind);
        let closing = group.iter().any(|c| matches!(c, Command::Close { .. }));
        let behind = group.iter().filter(|c| matches!(c, Command::Batch { .. } | Command::Trim { .. })).count();
        let waited = behind < group.len();
        let due = not_durable.commands > 0
            && (not_durable.since.elapsed() >= DURABLE_EVERY || not_durable.commands + behind >= DURABLE_BATCHES);
        // An immediate commit with nothing new to write still makes the earlier ones durable.
        let sync = (waited || due) && not_durable.commands > 0;
        if !group.is_empty() || due {
            let started = std::time::Instant::now();
            let immediate = waited || due;
            let durability = if immediate { Durability::Immediate } else { Durability::None };
            match commit(state, &group, last_seq, durability, sync) {
                Ok(Committed { fresh, counters, last_seq: committed_seq }) => {
                    tracing::trace!(
                        commands = group.len(),
                        last_seq = committed_seq,
                        immediate,
                        "store group committed"
                    );
                    if immediate {
                        not_durable = NotDurable { since: std::time::Instant::now(), commands: 0 };
                    } else {
                        not_durable.commands += behind;
                    }
                    if let Some(observe) = state.commit_observer.get() {
                        observe(started.elapsed());
                    }
                    last_seq = committed_seq;
                    state.last_seq.store(committed_seq, Ordering::Release);
                    // Before anything else can sweep: a reload now reads these appends.
                    state.committed.store(queued, Ordering::Release);
                    publish(state, &group, &fresh, counters);
                    for (command, fresh) in group.into_iter().zip(fresh) {
                        command.answer(Ok(fresh));
                    }
                }
                Err(e) => {
                    let msg = match e {
                        StoreError::Backend(msg) => msg,
                        e => e.to_string(),
                    };
                    tracing::error!(error = %msg, commands = group.len(), "store commit failed; refusing further writes");
                    state.fail(msg.clone());
                    for command in group {
                        command.answer(Err(&msg));
                    }
                    return;
                }
            }
        }
        if closing || hung_up {
            return;
        }
        state.users.tick();
        state.users.sweep(state.committed.load(Ordering::Acquire));
    }
}

/// What a committed group changed, for the in-memory state.
struct Committed {
    /// Per command, in order: for `Events`, each event's log sequence number when it was new,
    /// `None` for a duplicate; empty otherwise.
    fresh: Vec<Vec<Option<u64>>>,
    counters: HashMap<ArticleId, ArticleCounters>,
    /// The newest number in the event log after the commit.
    last_seq: u64,
}

/// Applies `group` in one write transaction committed with `durability`; with nothing to write,
/// commits only when `sync` (to make earlier non-durable commits durable).
fn commit(
    state: &State,
    group: &[Command],
    last_seq: u64,
    durability: Durability,
    sync: bool,
) -> Result<Committed, StoreError> {
    let mut committed = Committed { fresh: Vec::with_capacity(group.len()), counters: HashMap::new(), last_seq };
    if !group.iter().any(Command::writes) && !sync {
        committed.fresh.resize(group.len(), Vec::new());
        return Ok(committed);
    }
    // A channel's later trim covers an earlier one in the group: it deletes through a later
    // time and its list holds the earlier list's ids.
    let last_trims: HashMap<(&str, ChannelId), usize> = group
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Command::Trim { user, channel, .. } => Some(((user.as_str(), *channel), i)),
            _ => None,
        })
        .collect();
    let mut txn = state.db.begin_write().map_err(db_error)?;
    txn.set_durability(durability).map_err(|e| StoreError::Backend(e.to_string()))?;
    {
        let mut batches = txn.open_table(BATCHES).map_err(db_error)?;
        let mut trimmed = txn.open_table(TRIMMED).map_err(db_error)?;
        let mut articles = txn.open_table(ARTICLES).map_err(db_error)?;
        let mut retractions = txn.open_table(RETRACTIONS).map_err(db_error)?;
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let mut events = EventTables {
            events: txn.open_table(EVENTS).map_err(db_error)?,
            log: txn.open_table(EVENT_LOG).map_err(db_error)?,
            reads: txn.open_table(READS).map_err(db_error)?,
            counters: txn.open_table(COUNTERS).map_err(db_error)?,
            last_seq,
        };
        for (i, command) in group.iter().enumerate() {
            let mut fresh = Vec::new();
            match command {
                Command::Batch { user, channel, time, value } => {
                    batches.insert((user.as_str(), *channel, *time), value.as_slice()).map_err(db_error)?;
                }
                Command::Trim { user, channel, through, ids } => {
                    let key = (user.as_str(), *channel);
                    if last_trims.get(&key) == Some(&i) {
                        batches
                            .retain_in(
                                (user.as_str(), *channel, i64::MIN)..=(user.as_str(), *channel, *through),
                                |_, _| false,
                            )
                            .map_err(db_error)?;
                        trimmed.insert(key, codec::encode_ids(ids).as_slice()).map_err(db_error)?;
                    }
                }
                Command::Events { events: records, .. } => {
                    for event in records {
                        fresh.push(events.record(state, event, &mut committed.counters)?);
                    }
                }
                Command::Articles { rows, retract, .. } => {
                    for (id, value) in rows {
                        articles.insert(*id, value.as_slice()).map_err(db_error)?;
                        retractions.remove(*id).map_err(db_error)?;
                    }
                    for (id, value) in retract {
                        retractions.insert(*id, value.as_slice()).map_err(db_error)?;
                    }
                }
                Command::Meta { key, value, .. } => {
                    meta.insert(key.as_str(), value.as_slice()).map_err(db_error)?;
                }
                Command::Flush { .. } | Command::Close { .. } => {}
            }
            committed.fresh.push(fresh);
        }
        committed.last_seq = events.last_seq;
        for (id, c) in &committed.counters {
            events.counters.insert(*id, codec::encode_counters(c).as_slice()).map_err(db_error)?;
        }
    }
    txn.commit().map_err(db_error)?;
    Ok(committed)
}

struct EventTables<'txn> {
    events: Table<'txn, &'static [u8; 16], &'static [u8]>,
    log: Table<'txn, u64, &'static [u8; 16]>,
    reads: Table<'txn, (&'static str, ArticleId), ()>,
    counters: Table<'txn, ArticleId, &'static [u8]>,
    /// The newest number in the log, this transaction's entries included.
    last_seq: u64,
}

impl EventTables<'_> {
    /// Stores `event` unless its key is known, with its log entry and read-set rows; folds it
    /// into `counters` (which start from the committed values: in memory, or in the table for
    /// an article whose counters were let go from memory). Answers its sequence
    /// number when it was new. A key seen earlier in the same transaction is a duplicate too:
    /// the transaction reads its own writes.
    fn record(
        &mut self,
        state: &State,
        event: &EventRecord,
        counters: &mut HashMap<ArticleId, ArticleCounters>,
    ) -> Result<Option<u64>, StoreError> {
        if self.events.get(&event.key.0).map_err(db_error)?.is_some() {
            return Ok(None);
        }
        self.events.insert(&event.key.0, codec::encode_event(event).as_slice()).map_err(db_error)?;
        let seq = self.last_seq + 1;
        self.log.insert(seq, &event.key.0).map_err(db_error)?;
        self.last_seq = seq;
        // The durable side of `UserRecord::apply_event`: a read or a dislike joins the read set.
        if event.hides() {
            for &id in &event.article_ids {
                self.reads.insert((event.user.as_str(), id), ()).map_err(db_error)?;
            }
        }
        for &id in &event.article_ids {
            let c = match counters.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let known = read_lock(&state.counters).get(&id).copied();
                    let c = match known {
                        Some(c) => c,
                        None => match self.counters.get(id).map_err(db_error)? {
                            Some(v) => codec::decode_counters(v.value())?,
                            None => ArticleCounters::default(),
                        },
                    };
                    e.insert(c)
                }
            };
            c.apply(event);
        }
        Ok(Some(seq))
    }
}

/// Makes a committed group visible in memory. Runs after the commit, so that a user whose
/// record is not cached (or is evicted meanwhile) loads the commit (see `users`).
fn publish(
    state: &State,
    group: &[Command],
    fresh: &[Vec<Option<u64>>],
    counters: HashMap<ArticleId, ArticleCounters>,
) {
    write_lock(&state.counters).extend(counters);
    let events = group
        .iter()
        .zip(fresh)
        .filter_map(|(command, fresh)| match command {
            Command::Events { events, .. } => Some(events.iter().zip(fresh)),
            _ => None,
        })
        .flatten()
        .filter(|(_, seq)| seq.is_some())
        .map(|(event, _)| event);
    state.users.publish(events);
}
