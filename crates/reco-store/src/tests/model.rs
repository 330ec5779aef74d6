//! A model check of eviction and trimming: one sequence of refreshes, events and reads runs
//! against a store that evicts every record it may after every step, one that never evicts,
//! and [`MemStore`] (the model, with the same trimming), across close and reopen of the two
//! files. Every answer and every observation of a record must be the same in all three.

use proptest::collection::vec;
use proptest::prelude::*;
use reco_engine::store::MemStore;

use super::*;

const MAX_BATCHES: usize = 3;
const USERS: [&str; 3] = ["ann", "bob", "用户"];
const CHANNELS: [ChannelId; 2] = [0, 1];
const IDS: std::ops::Range<ArticleId> = 0..24;

#[derive(Clone, Debug)]
enum Op {
    /// A refresh at `10 × (step + 1 - back)`: `back` 0 is always newest, others may be stale.
    Append {
        user: usize,
        channel: ChannelId,
        back: i64,
        ids: Vec<ArticleId>,
    },
    /// A new event, or (`again`) the previous one once more.
    Event {
        user: usize,
        action: Action,
        ids: Vec<ArticleId>,
        again: bool,
    },
    Read {
        user: usize,
    },
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let action = prop_oneof![Just(Action::Read), Just(Action::Dislike), Just(Action::Click), Just(Action::Exposure)];
    prop_oneof![
        6 => (0..USERS.len(), 0..2, prop_oneof![4 => Just(0i64), 1 => 0..6i64], vec(IDS, 0..4))
            .prop_map(|(user, channel, back, ids)| Op::Append { user, channel, back, ids }),
        3 => (0..USERS.len(), action, vec(IDS, 1..3), proptest::bool::weighted(0.2))
            .prop_map(|(user, action, ids, again)| Op::Event { user, action, ids, again }),
        3 => (0..USERS.len()).prop_map(|user| Op::Read { user }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// Everything the engine can learn of one channel of a record.
#[derive(Debug, PartialEq)]
struct ChannelSeen {
    latest: i64,
    batches: Vec<Batch>,
    /// `at_or_before` every 5 ms from 0 to past the newest time.
    history: Vec<Option<(Batch, i64)>>,
    served: Vec<ArticleId>,
    served_count: usize,
    trimmed: Vec<ArticleId>,
}

#[derive(Debug, PartialEq)]
struct Seen {
    channels: Vec<ChannelId>,
    per_channel: Vec<ChannelSeen>,
    read: Vec<ArticleId>,
    read_count: usize,
}

fn see(u: &UserRecord, end: i64) -> Seen {
    let mut channels: Vec<ChannelId> = u.channels().map(|(c, _)| c).collect();
    channels.sort_unstable();
    let per_channel = CHANNELS
        .iter()
        .map(|&c| {
            let h = u.channel(c);
            ChannelSeen {
                latest: h.latest_time(),
                batches: h.batches().map(|b| Batch::clone(b)).collect(),
                history: (0..=end)
                    .step_by(5)
                    .chain([i64::MAX])
                    .map(|t| h.at_or_before(t).map(|(b, older)| (Batch::clone(b), older)))
                    .collect(),
                served: IDS.filter(|&id| h.was_served(id)).collect(),
                served_count: h.served_count(),
                trimmed: h.trimmed().to_vec(),
            }
        })
        .collect();
    Seen { channels, per_channel, read: IDS.filter(|&id| u.has_read(id)).collect(), read_count: u.read_count() }
}

struct Stores {
    tiny_dir: tempfile::TempDir,
    huge_dir: tempfile::TempDir,
    tiny: Option<RedbStore>,
    huge: Option<RedbStore>,
    model: MemStore,
}

const TINY: StoreConfig =
    StoreConfig { cache_bytes: 0, max_batches: MAX_BATCHES, db_cache_bytes: DEFAULT_DB_CACHE_BYTES };
const HUGE: StoreConfig =
    StoreConfig { cache_bytes: usize::MAX, max_batches: MAX_BATCHES, db_cache_bytes: DEFAULT_DB_CACHE_BYTES };

impl Stores {
    fn new() -> Self {
        let (tiny_dir, huge_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let tiny = Some(RedbStore::open_with(tiny_dir.path(), TINY).unwrap());
        let huge = Some(RedbStore::open_with(huge_dir.path(), HUGE).unwrap());
        Self { tiny_dir, huge_dir, tiny, huge, model: MemStore::with_max_batches(MAX_BATCHES) }
    }

    fn tiny(&self) -> &RedbStore {
        self.tiny.as_ref().unwrap()
    }

    fn huge(&self) -> &RedbStore {
        self.huge.as_ref().unwrap()
    }

    /// The three answers to `f`, checked equal; answers the model's.
    fn same<R: PartialEq + std::fmt::Debug>(&self, what: &str, f: impl Fn(&dyn Call) -> R) -> R {
        let model = f(&self.model);
        assert_eq!(f(self.tiny()), model, "{what}: the evicting store differs from the model");
        assert_eq!(f(self.huge()), model, "{what}: the caching store differs from the model");
        model
    }

    fn reopen(&mut self) {
        self.tiny.take().unwrap().close().unwrap();
        self.huge.take().unwrap().close().unwrap();
        self.tiny = Some(RedbStore::open_with(self.tiny_dir.path(), TINY).unwrap());
        self.huge = Some(RedbStore::open_with(self.huge_dir.path(), HUGE).unwrap());
    }
}

/// The calls the check makes, object-safe so that the three stores fit in one closure.
trait Call {
    fn append(&self, user: &str, channel: ChannelId, batch: Batch) -> AppendOutcome;
    fn record(&self, events: &[EventRecord]) -> Vec<Option<u64>>;
    fn see(&self, user: &str, end: i64) -> Seen;
}

impl<S: Store> Call for S {
    fn append(&self, user: &str, channel: ChannelId, batch: Batch) -> AppendOutcome {
        self.append_batch(user, channel, batch).unwrap()
    }

    fn record(&self, events: &[EventRecord]) -> Vec<Option<u64>> {
        self.record_events(events).unwrap()
    }

    fn see(&self, user: &str, end: i64) -> Seen {
        self.with_user(user, |u| see(u, end)).unwrap()
    }
}

fn event(n: u16, user: &str, action: Action, ids: &[ArticleId]) -> EventRecord {
    EventRecord {
        key: EventKey(u128::from(n).to_le_bytes()),
        article_ids: ids.to_vec(),
        action,
        sources: ids.iter().map(|_| Sources::FRESH).collect(),
        ..read_event(0, user, 0)
    }
}

fn run(ops: &[Op]) {
    let mut stores = Stores::new();
    let end = 10 * (ops.len() as i64 + 2);
    let mut last_event = None;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append { user, channel, back, ids } => {
                let time = 10 * (step as i64 + 1 - back);
                let batch = Batch {
                    time,
                    request_id: step as u64,
                    bucket: (step % 4) as u8,
                    items: ids
                        .iter()
                        .map(|&article_id| BatchItem { article_id, sources: Sources(1 << (article_id % 6)) })
                        .collect(),
                };
                stores.same(&format!("step {step}: {op:?}"), |s| s.append(USERS[*user], *channel, batch.clone()));
            }
            Op::Event { user, action, ids, again } => {
                let e = match (&last_event, again) {
                    (Some(previous), true) => EventRecord::clone(previous),
                    _ => event(step as u16, USERS[*user], *action, ids),
                };
                stores.same(&format!("step {step}: {op:?}"), |s| s.record(std::slice::from_ref(&e)));
                last_event = Some(e);
            }
            Op::Read { user } => {
                stores.same(&format!("step {step}: {op:?}"), |s| s.see(USERS[*user], end));
            }
            Op::Flush => {
                stores.tiny().flush().unwrap();
                stores.huge().flush().unwrap();
            }
            Op::Reopen => stores.reopen(),
        }
        stores.tiny().sweep_now();
    }
    for user in USERS {
        stores.same(&format!("{user} at the end"), |s| s.see(user, end));
    }
    stores.reopen();
    for user in USERS {
        stores.same(&format!("{user} after a reopen"), |s| s.see(user, end));
    }
    stores.tiny().flush().unwrap();
    stores.tiny().sweep_now();
    assert_eq!(
        stores.tiny().memory(),
        MemoryUse { resident_users: 0, resident_bytes: 0, evicted_users: stores.tiny().memory().evicted_users },
        "once everything is committed every record can go, and the byte count returns to 0"
    );
}

use reco_engine::store::MemoryUse;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn eviction_and_trimming_change_no_answer(ops in vec(op(), 1..60)) {
        run(&ops);
    }
}

#[test]
fn many_refreshes_then_reads_across_evictions() {
    // A fixed long run, so that trims pile up whatever the generator draws.
    let ops: Vec<Op> = (0..80)
        .map(|i| match i % 5 {
            0..=2 => {
                Op::Append { user: i % 3, channel: (i % 2) as ChannelId, back: 0, ids: vec![(i % 24) as ArticleId] }
            }
            3 => Op::Event { user: i % 3, action: Action::Read, ids: vec![(i % 24) as ArticleId], again: false },
            _ if i % 20 == 4 => Op::Reopen,
            _ => Op::Read { user: i % 3 },
        })
        .collect();
    run(&ops);
}
