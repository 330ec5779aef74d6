//! The cache of user records: loaded from redb on first touch, evicted least recently used
//! first when their estimated bytes pass the budget.
//!
//! Each user has a [`Slot`] in the map. A slot is `Loading` while its first caller reads the
//! record (holding the slot's lock, so the user's other callers wait and nobody else does),
//! then `Ready`, and finally `Gone` once evicted or after a failed load. A `Gone` slot is out
//! of the map for good: a caller that still holds its `Arc` finds it `Gone` under the lock and
//! looks the user up again, so nothing ever changes a record that is no longer the cached one.
//!
//! Eviction must not lose a write, which is why a record is only evicted when:
//! - every write-behind command queued for the user is committed (`Resident::queued` is at
//!   most the writer's committed number): a reload reads what the evicted copy held;
//! - its lock is free (`try_lock`): no caller is using it, and the sweep never waits;
//! - it was not used since the sweep picked it.
//!
//! Events need no such care: the writer publishes a commit into the slots it finds in the map
//! after the commit, so a slot evicted before that lookup is reloaded from a snapshot that has
//! the commit, and one evicted after it is skipped (it is `Gone`) and reloaded the same way.
//!
//! The sweep runs on the writer thread after each round: when the resident bytes pass the
//! budget it reads every slot's last use under the map's read lock, picks the oldest, and
//! evicts them in chunks of [`EVICT_CHUNK`] under the write lock, down to 90 % of the budget.
//! Requests never sweep, so the budget is soft: it can be passed by what one round (about
//! 10 ms) loads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};

use reco_engine::mem;
use reco_engine::model::{ArticleId, ChannelId};
use reco_engine::store::{EventRecord, MemoryUse, StoreError, UserRecord};
use redb::{Database, ReadableDatabase};

use crate::schema::{BATCHES, READS, TRIMMED};
use crate::{at_row, codec, db_error, lock, read_lock, write_lock};

/// Slots evicted per hold of the map's write lock: short enough that lookups barely wait.
const EVICT_CHUNK: usize = 64;

/// Sweeps of the map per eviction round, when the first frees less than hoped (users differ in
/// size; some are busy or have writes in flight). The next round goes on.
const SWEEP_PASSES: usize = 4;

/// What a user's slot allocates beside the record's heap: the slot's `Arc` (the record sits in
/// it) and the key's `Arc<str>`, at the allocator's size classes. The map's buckets are counted
/// once for the map (`Users::map_bytes`).
pub(crate) fn slot_bytes(user: &str) -> usize {
    mem::arc_bytes::<Slot>() + mem::arc_str_bytes(user.len())
}

pub(crate) struct Users {
    map: RwLock<HashMap<Arc<str>, Arc<Slot>>>,
    budget: usize,
    max_batches: usize,
    /// The clock of last use: the writer's round count.
    round: AtomicU64,
    /// The sum of `Resident::bytes` over `Ready` slots.
    bytes: AtomicUsize,
    /// [`Users::map_bytes`] as of the last insert: the map's buckets, which removals never give
    /// back.
    map_bytes: AtomicUsize,
    resident: AtomicUsize,
    evicted: AtomicU64,
    /// Held by a sweep: one at a time, so that a caller's sweep returns only once any sweep
    /// already under way (the writer's, after each round) has finished, and the counts read
    /// after it are not those of an eviction half done.
    sweeping: Mutex<()>,
}

struct Slot {
    user: Arc<str>,
    /// The round of the last use.
    used: AtomicU64,
    state: Mutex<SlotState>,
}

enum SlotState {
    Loading,
    Ready(Resident),
    Gone,
}

/// A cached record, with its bookkeeping.
pub(crate) struct Resident {
    pub(crate) record: UserRecord,
    /// The estimate counted in `Users::bytes` for this record.
    bytes: usize,
    /// The number of the last write-behind append queued for the user (see `State::behind`),
    /// 0 when none was: the record may be evicted once the writer has committed it.
    pub(crate) queued: u64,
}

impl Users {
    pub(crate) fn new(budget: usize, max_batches: usize) -> Self {
        Self {
            map: RwLock::default(),
            budget,
            max_batches,
            round: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            map_bytes: AtomicUsize::new(0),
            resident: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            sweeping: Mutex::new(()),
        }
    }

    pub(crate) fn max_batches(&self) -> usize {
        self.max_batches
    }

    pub(crate) fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_users: self.resident.load(Ordering::Relaxed),
            resident_bytes: self.total(),
            evicted_users: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` on the user's record, loading it first if it is not cached.
    pub(crate) fn read<R>(&self, db: &Database, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        self.with_resident(db, user, |resident| f(&resident.record))
    }

    /// Runs `f` on the user's cached record and its bookkeeping, then counts its new size.
    pub(crate) fn write<R>(
        &self,
        db: &Database,
        user: &str,
        f: impl FnOnce(&mut Resident) -> R,
    ) -> Result<R, StoreError> {
        self.with_resident(db, user, |resident| {
            let out = f(resident);
            self.recount(resident, user);
            out
        })
    }

    /// Only that user's callers wait for a load: the slot is put in the map already locked,
    /// and the load runs outside the map lock. The writer looks slots up after its commit, so
    /// it either finds this one (and waits for the load to finish before it applies its
    /// events) or comes before the insert, and the load reads the commit.
    fn with_resident<R>(&self, db: &Database, user: &str, f: impl FnOnce(&mut Resident) -> R) -> Result<R, StoreError> {
        loop {
            let cached = read_lock(&self.map).get(user).map(Arc::clone);
            if let Some(slot) = cached {
                #[cfg(test)]
                crate::tests::pause("lookup", user);
                let mut state = lock(&slot.state);
                match &mut *state {
                    SlotState::Ready(resident) => {
                        slot.touch(&self.round);
                        return Ok(f(resident));
                    }
                    // Evicted, or its load failed, while this call waited: look again.
                    SlotState::Gone => continue,
                    // Only a loader that panicked leaves a slot it released loading.
                    SlotState::Loading => {
                        return Err(StoreError::Backend(format!(
                            "the record of user {user:?} failed to load in another call"
                        )));
                    }
                }
            }
            let slot = Arc::new(Slot {
                user: Arc::from(user),
                used: AtomicU64::new(self.round.load(Ordering::Relaxed)),
                state: Mutex::new(SlotState::Loading),
            });
            let mut state = lock(&slot.state);
            {
                let mut map = write_lock(&self.map);
                if map.contains_key(user) {
                    // Another caller inserted the user first: wait for its load above.
                    continue;
                }
                map.insert(Arc::clone(&slot.user), Arc::clone(&slot));
                self.map_bytes.store(Self::map_bytes(&map), Ordering::Relaxed);
            }
            let record = match load(db, user, self.max_batches) {
                Ok(record) => record,
                Err(e) => {
                    *state = SlotState::Gone;
                    let mut map = write_lock(&self.map);
                    if map.get(user).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                        map.remove(user);
                    }
                    return Err(e);
                }
            };
            let mut resident = Resident { record, bytes: 0, queued: 0 };
            self.resident.fetch_add(1, Ordering::Relaxed);
            self.recount(&mut resident, user);
            // Ready before `f` runs, so a panicking `f` leaves a usable slot.
            *state = SlotState::Ready(resident);
            let SlotState::Ready(resident) = &mut *state else { unreachable!("the slot was just made ready") };
            return Ok(f(resident));
        }
    }

    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> usize {
        Self::map_bytes(&read_lock(&self.map))
    }

    /// The heap bytes of the map's table: its buckets at their capacity (see [`mem::table_bytes`]).
    fn map_bytes(map: &HashMap<Arc<str>, Arc<Slot>>) -> usize {
        mem::table_bytes::<(Arc<str>, Arc<Slot>)>(map.capacity())
    }

    /// What the budget holds: the records with their slots, and the map.
    fn total(&self) -> usize {
        self.bytes.load(Ordering::Relaxed) + self.map_bytes.load(Ordering::Relaxed)
    }

    /// Brings `resident.bytes`, and the total, up to date with the record.
    fn recount(&self, resident: &mut Resident, user: &str) {
        let bytes = slot_bytes(user) + resident.record.heap_bytes();
        if bytes > resident.bytes {
            self.bytes.fetch_add(bytes - resident.bytes, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(resident.bytes - bytes, Ordering::Relaxed);
        }
        resident.bytes = bytes;
    }

    /// Applies committed events to the cached records of their users. Runs after the commit:
    /// a user not in the map (not loaded, being loaded in a slot inserted later, or evicted)
    /// loads the commit; a slot being loaded is waited for; a `Gone` one is skipped.
    pub(crate) fn publish<'e>(&self, events: impl Iterator<Item = &'e EventRecord>) {
        let updates: Vec<_> = {
            let map = read_lock(&self.map);
            events
                .filter(|event| event.hides())
                .filter_map(|event| Some((Arc::clone(map.get(event.user.as_str())?), event)))
                .collect()
        };
        for (slot, event) in updates {
            if let SlotState::Ready(resident) = &mut *lock(&slot.state) {
                resident.record.apply_event(event);
                self.recount(resident, &slot.user);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn is_resident(&self, user: &str) -> bool {
        read_lock(&self.map).contains_key(user)
    }

    /// Starts a new round of the last-use clock; the writer calls it once per round.
    pub(crate) fn tick(&self) {
        self.round.fetch_add(1, Ordering::Relaxed);
    }

    /// Evicts least recently used records while the total is over the budget, down to 90 % of
    /// it; `committed` is the number of the newest committed write-behind append. Answers how
    /// many were evicted.
    pub(crate) fn sweep(&self, committed: u64) -> usize {
        let _one_at_a_time = lock(&self.sweeping);
        if self.total() <= self.budget {
            return 0;
        }
        // The map keeps its buckets: the records make room under what is left of the budget.
        let target = (self.budget - self.budget / 10).saturating_sub(self.map_bytes.load(Ordering::Relaxed));
        let mut evicted = 0;
        for _ in 0..SWEEP_PASSES {
            let total = self.bytes.load(Ordering::Relaxed);
            if total <= target {
                break;
            }
            let freed = self.sweep_pass(total, target, committed);
            if freed == 0 {
                break;
            }
            evicted += freed;
        }
        if evicted > 0 {
            tracing::debug!(evicted, resident_bytes = self.bytes.load(Ordering::Relaxed), "user records evicted");
        }
        evicted
    }

    fn sweep_pass(&self, total: usize, target: usize, committed: u64) -> usize {
        // The last use that the evicted share of the users, taken as of average size, reaches.
        let threshold = {
            let mut used: Vec<u64> = read_lock(&self.map).values().map(|s| s.used.load(Ordering::Relaxed)).collect();
            if used.is_empty() {
                return 0;
            }
            let share = (total - target) as f64 / total as f64;
            let k = ((used.len() as f64 * share).ceil() as usize).clamp(1, used.len());
            *used.select_nth_unstable(k - 1).1
        };
        let mut candidates: Vec<(u64, Arc<Slot>)> = read_lock(&self.map)
            .values()
            .filter_map(|s| {
                let used = s.used.load(Ordering::Relaxed);
                (used <= threshold).then(|| (used, Arc::clone(s)))
            })
            .collect();
        candidates.sort_unstable_by_key(|(used, _)| *used);
        let mut evicted = 0;
        for chunk in candidates.chunks(EVICT_CHUNK) {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            let mut dropped = Vec::with_capacity(chunk.len());
            {
                let mut map = write_lock(&self.map);
                for (used, slot) in chunk {
                    if self.bytes.load(Ordering::Relaxed) <= target {
                        break;
                    }
                    dropped.extend(self.evict(&mut map, slot, *used, committed));
                }
            }
            evicted += dropped.len();
            // The records are freed outside the map lock.
            drop(dropped);
        }
        evicted
    }

    /// Evicts one slot if it may go (see the module doc), answering its record.
    fn evict(
        &self,
        map: &mut HashMap<Arc<str>, Arc<Slot>>,
        slot: &Slot,
        used: u64,
        committed: u64,
    ) -> Option<UserRecord> {
        let mut state = match slot.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if slot.used.load(Ordering::Relaxed) != used {
            return None;
        }
        match &*state {
            SlotState::Ready(resident) if resident.queued <= committed => {}
            _ => return None,
        }
        let SlotState::Ready(resident) = std::mem::replace(&mut *state, SlotState::Gone) else { return None };
        // A ready slot is always its user's entry; only `Gone` slots leave the map.
        map.remove(&*slot.user);
        if map.is_empty() {
            // Removals keep the buckets; an empty map gives them back.
            *map = HashMap::new();
            self.map_bytes.store(0, Ordering::Relaxed);
        }
        self.bytes.fetch_sub(resident.bytes, Ordering::Relaxed);
        self.resident.fetch_sub(1, Ordering::Relaxed);
        self.evicted.fetch_add(1, Ordering::Relaxed);
        Some(resident.record)
    }
}

impl Slot {
    fn touch(&self, round: &AtomicU64) {
        let now = round.load(Ordering::Relaxed);
        if self.used.load(Ordering::Relaxed) != now {
            self.used.store(now, Ordering::Relaxed);
        }
    }
}

/// Reads the user's record from one snapshot: trimmed ids first, then the kept batches (which
/// trim again if the file holds more than `max_batches`, e.g. after the limit was lowered),
/// then the read set.
fn load(db: &Database, user: &str, max_batches: usize) -> Result<UserRecord, StoreError> {
    let mut record = UserRecord::default();
    let txn = db.begin_read().map_err(db_error)?;
    #[cfg(test)]
    crate::tests::pause("load", user);
    let trimmed = txn.open_table(TRIMMED).map_err(db_error)?;
    for row in trimmed.range((user, ChannelId::MIN)..=(user, ChannelId::MAX)).map_err(db_error)? {
        let (key, value) = row.map_err(db_error)?;
        let (_, channel) = key.value();
        let ids = codec::decode_ids(value.value())
            .map_err(|e| at_row(e, || format!("user {user:?}, channel {channel}, trimmed ids")))?;
        record.restore_trimmed(channel, ids);
    }
    let batches = txn.open_table(BATCHES).map_err(db_error)?;
    for row in batches.range((user, ChannelId::MIN, i64::MIN)..=(user, ChannelId::MAX, i64::MAX)).map_err(db_error)? {
        let (key, value) = row.map_err(db_error)?;
        let (_, channel, time) = key.value();
        let batch = codec::decode_batch(time, value.value())
            .map_err(|e| at_row(e, || format!("user {user:?}, channel {channel}, time {time}")))?;
        // Rows come in time order per channel, so each one appends.
        record.append(channel, Arc::new(batch), max_batches);
    }
    let reads = txn.open_table(READS).map_err(db_error)?;
    for row in reads.range((user, ArticleId::MIN)..=(user, ArticleId::MAX)).map_err(db_error)? {
        let (key, _) = row.map_err(db_error)?;
        record.mark_read(key.value().1);
    }
    Ok(record)
}
