//! The single writer thread: it owns every write transaction and commits in groups.
//!
//! Each round takes every queued command, applies them all in one write transaction, commits it
//! with [`Durability::Immediate`] (one fsync for the whole group), publishes the committed
//! changes to the in-memory counters and user records, then answers the waiters. A failed
//! commit answers every waiter with the error, is remembered by the store, and stops the thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use reco_engine::model::{ArticleId, ChannelId};
use reco_engine::store::{ArticleCounters, EventRecord, StoreError};
use redb::{Durability, ReadableTable, Table};

use crate::{ARTICLES, BATCHES, COUNTERS, EVENTS, META, READS, State, codec, db_error, read_lock, write_lock};

pub(crate) type Reply<T> = SyncSender<Result<T, StoreError>>;

pub(crate) enum Command {
    /// Written behind: nobody waits for it.
    Batch {
        user: String,
        channel: ChannelId,
        time: i64,
        value: Vec<u8>,
    },
    Events {
        events: Vec<EventRecord>,
        reply: Reply<Vec<bool>>,
    },
    Articles {
        rows: Vec<(ArticleId, Vec<u8>)>,
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
    fn answer(self, result: Result<Vec<bool>, &str>) {
        let failed = |msg: &str| StoreError::Backend(format!("commit failed: {msg}"));
        // A waiter that is gone has nothing left to learn, so send errors are ignored.
        match self {
            Command::Batch { .. } => {}
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

pub(crate) fn run(state: &State, commands: Receiver<Command>) {
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
        let behind = std::mem::take(&mut *state.behind.lock().unwrap_or_else(PoisonError::into_inner));
        group.splice(0..0, behind);
        if group.is_empty() {
            if hung_up {
                return;
            }
            continue;
        }
        let closing = group.iter().any(|c| matches!(c, Command::Close { .. }));
        match commit(state, &group) {
            Ok(Committed { fresh, counters }) => {
                tracing::trace!(commands = group.len(), "store group committed");
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
        if closing || hung_up {
            return;
        }
    }
}

/// What a committed group changed, for the in-memory state.
struct Committed {
    /// Per command, in order: for `Events`, whether each event was new; empty otherwise.
    fresh: Vec<Vec<bool>>,
    counters: HashMap<ArticleId, ArticleCounters>,
}

fn commit(state: &State, group: &[Command]) -> Result<Committed, StoreError> {
    let mut committed = Committed { fresh: Vec::with_capacity(group.len()), counters: HashMap::new() };
    if !group.iter().any(Command::writes) {
        committed.fresh.resize(group.len(), Vec::new());
        return Ok(committed);
    }
    let mut txn = state.db.begin_write().map_err(db_error)?;
    txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Backend(e.to_string()))?;
    {
        let mut batches = txn.open_table(BATCHES).map_err(db_error)?;
        let mut articles = txn.open_table(ARTICLES).map_err(db_error)?;
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let mut events = EventTables {
            events: txn.open_table(EVENTS).map_err(db_error)?,
            reads: txn.open_table(READS).map_err(db_error)?,
        };
        for command in group {
            let mut fresh = Vec::new();
            match command {
                Command::Batch { user, channel, time, value } => {
                    batches.insert((user.as_str(), *channel, *time), value.as_slice()).map_err(db_error)?;
                }
                Command::Events { events: records, .. } => {
                    for event in records {
                        fresh.push(events.record(state, event, &mut committed.counters)?);
                    }
                }
                Command::Articles { rows, .. } => {
                    for (id, value) in rows {
                        articles.insert(*id, value.as_slice()).map_err(db_error)?;
                    }
                }
                Command::Meta { key, value, .. } => {
                    meta.insert(key.as_str(), value.as_slice()).map_err(db_error)?;
                }
                Command::Flush { .. } | Command::Close { .. } => {}
            }
            committed.fresh.push(fresh);
        }
        let mut counters = txn.open_table(COUNTERS).map_err(db_error)?;
        for (id, c) in &committed.counters {
            counters.insert(*id, codec::encode_counters(c).as_slice()).map_err(db_error)?;
        }
    }
    txn.commit().map_err(db_error)?;
    Ok(committed)
}

struct EventTables<'txn> {
    events: Table<'txn, &'static [u8; 16], &'static [u8]>,
    reads: Table<'txn, (&'static str, ArticleId), ()>,
}

impl EventTables<'_> {
    /// Stores `event` unless its key is known, with its read-set rows; folds it into `counters`
    /// (which start from the committed in-memory values). Answers whether it was new.
    fn record(
        &mut self,
        state: &State,
        event: &EventRecord,
        counters: &mut HashMap<ArticleId, ArticleCounters>,
    ) -> Result<bool, StoreError> {
        if self.events.get(&event.key.0).map_err(db_error)?.is_some() {
            return Ok(false);
        }
        self.events.insert(&event.key.0, codec::encode_event(event).as_slice()).map_err(db_error)?;
        // The durable side of `UserRecord::apply_event`: a read joins the read set.
        if event.action == reco_engine::model::Action::Read {
            for &id in &event.article_ids {
                self.reads.insert((event.user.as_str(), id), ()).map_err(db_error)?;
            }
        }
        for &id in &event.article_ids {
            counters
                .entry(id)
                .or_insert_with(|| read_lock(&state.counters).get(&id).copied().unwrap_or_default())
                .apply(event);
        }
        Ok(true)
    }
}

/// Makes a committed group visible in memory. Runs after the commit, so a user whose slot is
/// not in the map yet will load the commit; a slot being loaded is waited for (see
/// `State::user`), and one whose load failed is skipped.
fn publish(state: &State, group: &[Command], fresh: &[Vec<bool>], counters: HashMap<ArticleId, ArticleCounters>) {
    write_lock(&state.counters).extend(counters);
    let updates: Vec<_> = {
        let users = read_lock(&state.users);
        group
            .iter()
            .zip(fresh)
            .filter_map(|(command, fresh)| match command {
                Command::Events { events, .. } => Some(events.iter().zip(fresh)),
                _ => None,
            })
            .flatten()
            .filter(|(_, new)| **new)
            .filter_map(|(event, _)| Some((Arc::clone(users.get(&event.user)?), event)))
            .collect()
    };
    for (slot, event) in updates {
        if let Some(record) = crate::lock(&slot).as_mut() {
            record.apply_event(event);
        }
    }
}
