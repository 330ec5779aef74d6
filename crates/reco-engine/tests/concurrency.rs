//! Many threads on the same few users at once, over the in-memory store and over redb:
//! refreshes in two channels, reports of the params they hand out (also by other threads, at
//! the same time), explain, stats, article stats and checkpoints.
//!
//! A lock cycle between the engine's locks and the store's (or a stall) shows as a run that
//! does not end. The run has its own thread and the test waits for it with a deadline, so a
//! deadlock fails the test with a message instead of hanging it. The invariants checked after
//! the run hold for any interleaving: no repeat within a channel, every event accepted exactly
//! once and counted once, the learner saw every accepted event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use reco_engine::catalog::demo_articles;
use reco_engine::model::{Action, ArticleId, ChannelId};
use reco_engine::params::TrackParam;
use reco_engine::store::{MemStore, Store};
use reco_engine::text::mix;
use reco_engine::{Engine, EngineConfig, FeedResponse, ReportedEvent, Verdict};
use reco_store::RedbStore;

const NOW: i64 = 1_763_900_000_000;
const SECRET: &[u8] = b"0123456789abcdef-test-secret";
const ARTICLES: usize = 6_000;
const THREADS: usize = 6;
const ROUNDS: usize = 40;
/// Few users, so that every user has several threads on it at once.
const USERS: [&str; 3] = ["ann", "bo", "cy"];
/// 推荐 and one channel: a refresh in 1 reads 推荐's history too.
const CHANNELS: [ChannelId; 2] = [0, 1];
const CARDS: i32 = 4;
/// The run takes a few seconds in a debug build; a minute means it is stuck.
const DEADLINE: Duration = Duration::from_secs(60);
/// A window of event times that holds the whole run.
const WINDOW: (i64, i64) = (NOW - 3_600_000, NOW + 24 * 3_600_000);

/// Strictly increasing milliseconds shared by all threads: every refresh has its own time and
/// every report is later than the batches it reports on.
struct Clock(AtomicI64);

impl Clock {
    fn tick(&self) -> i64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// What one article's counters should be, from the accepted verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counted {
    exposures: u64,
    clicks: u64,
    shares: u64,
    reads: u64,
    read_ms: u64,
}

/// A batch as served: its time and its ids.
type Served = (i64, Vec<ArticleId>);

/// What one thread saw.
#[derive(Default)]
struct Tally {
    /// (user, channel) -> (batch time, ids) of every batch this thread's refreshes appended.
    batches: BTreeMap<(String, ChannelId), Vec<Served>>,
    /// The params of this thread's batches that it reported.
    sent: HashSet<String>,
    /// Per reported param (no dislikes are sent): how often it was accepted.
    accepted: HashMap<String, u32>,
    duplicates: u64,
    counted: HashMap<ArticleId, Counted>,
    /// Per user, the articles with an accepted read: hidden for good.
    read: HashMap<String, HashSet<ArticleId>>,
    refreshes: u64,
    history_reads: u64,
}

impl Tally {
    fn count(&mut self, event: &ReportedEvent, p: &TrackParam) {
        *self.accepted.entry(event.param.clone()).or_default() += 1;
        for id in &p.article_ids {
            let c = self.counted.entry(*id).or_default();
            match p.action {
                Action::Exposure => c.exposures += 1,
                Action::Click => c.clicks += 1,
                Action::Share => c.shares += 1,
                Action::Read => {
                    c.reads += 1;
                    c.read_ms += event.read_duration_ms as u64;
                    self.read.entry(p.user_id.clone()).or_default().insert(*id);
                }
                other => panic!("no {other} events are sent"),
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        for (feed, batches) in other.batches {
            self.batches.entry(feed).or_default().extend(batches);
        }
        self.sent.extend(other.sent);
        for (param, n) in other.accepted {
            *self.accepted.entry(param).or_default() += n;
        }
        self.duplicates += other.duplicates;
        for (id, c) in other.counted {
            let t = self.counted.entry(id).or_default();
            t.exposures += c.exposures;
            t.clicks += c.clicks;
            t.shares += c.shares;
            t.reads += c.reads;
            t.read_ms += c.read_ms;
        }
        for (user, ids) in other.read {
            self.read.entry(user).or_default().extend(ids);
        }
        self.refreshes += other.refreshes;
        self.history_reads += other.history_reads;
    }

    fn total(&self) -> Counted {
        self.counted.values().fold(Counted::default(), |mut t, c| {
            t.exposures += c.exposures;
            t.clicks += c.clicks;
            t.shares += c.shares;
            t.reads += c.reads;
            t.read_ms += c.read_ms;
            t
        })
    }
}

fn event(param: &str) -> ReportedEvent {
    ReportedEvent { param: param.into(), action_time: 0, read_duration_ms: 0, dislike: false }
}

/// The batch's exposure, a click and a read of two of its cards, now and then a share.
fn events_of(feed: &FeedResponse, thread: usize, round: usize) -> Vec<ReportedEvent> {
    let n = feed.items.len();
    let mut events = vec![event(&feed.exposure), event(&feed.items[round % n].track[0])];
    let read_ms = 1_000 + 100 * thread as i64 + round as i64;
    events.push(ReportedEvent { read_duration_ms: read_ms, ..event(&feed.items[(round + 1) % n].track[3]) });
    if round.is_multiple_of(4) {
        events.push(event(&feed.items[0].track[2]));
    }
    events
}

/// Sums of the stats rows by bucket (each event counts once there).
fn stats_total<S: Store>(e: &Engine<S>) -> Counted {
    let report = e.stats(WINDOW.0, WINDOW.1);
    let sum = |a: Action| report.by_bucket.iter().map(|(_, c)| c.get(a)).sum::<u64>();
    Counted {
        exposures: sum(Action::Exposure),
        clicks: sum(Action::Click),
        shares: sum(Action::Share),
        reads: sum(Action::Read),
        read_ms: 0,
    }
}

/// The learner's counts by name, from its summary (`events=12 negatives=3 ...`).
fn learner_counts<S: Store>(e: &Engine<S>) -> HashMap<String, u64> {
    e.learner_summary()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or_else(|_| panic!("{k}={v} in {}", e.learner_summary()))))
        .collect()
}

/// One thread's rounds: every call checks its own answer; what has to be checked across
/// threads goes into the tally.
fn work<S: Store>(e: &Engine<S>, clock: &Clock, board: &Mutex<Vec<ReportedEvent>>, thread: usize) -> Tally {
    let mut tally = Tally::default();
    let mut own_exposures = 0;
    for round in 0..ROUNDS {
        let h = mix((thread * 1_000 + round) as u64);
        let user = USERS[(h % USERS.len() as u64) as usize];
        let channel = CHANNELS[((h >> 8) % CHANNELS.len() as u64) as usize];
        let t = clock.tick();
        let req = e.validate(user, channel, CARDS, t).expect("a valid request");
        let feed = e.recommend(&req, t).expect("recommend");
        let mut probe = ((h >> 16) % ARTICLES as u64) as ArticleId + 1;
        if feed.refreshed {
            tally.refreshes += 1;
            let ids: Vec<ArticleId> = feed.items.iter().map(|i| i.article_id).collect();
            tally.batches.entry((user.to_owned(), channel)).or_default().push((t, ids));
        } else {
            // Another thread refreshed this feed with a later time first.
            tally.history_reads += 1;
        }
        if feed.refreshed && !feed.items.is_empty() {
            assert!(!feed.exposure.is_empty(), "a refresh with cards has an exposure");
            probe = feed.items[0].article_id;
            let events = events_of(&feed, thread, round);
            // On the board before they are sent: other threads may report them at the same time.
            board.lock().unwrap().extend(events.iter().cloned());
            tally.sent.extend(events.iter().map(|ev| ev.param.clone()));
            let verdicts = e.report(&events, clock.tick()).expect("report");
            assert_eq!(verdicts.len(), events.len());
            for (ev, v) in events.iter().zip(&verdicts) {
                match v {
                    Verdict::Accepted(p) => {
                        if p.action == Action::Exposure {
                            own_exposures += p.article_ids.len() as u64;
                        }
                        tally.count(ev, p);
                    }
                    // Another thread took it from the board and was first.
                    Verdict::Duplicate(_) => tally.duplicates += 1,
                    Verdict::Rejected { reason, .. } => panic!("thread {thread} round {round}: rejected: {reason}"),
                }
            }
            // Read your writes: once the report returned, its events are counted and learned.
            let clicked = events[1].param.as_str();
            let clicked_id = feed.items.iter().find(|i| i.track[0] == clicked).expect("the clicked card").article_id;
            let (stats, _) = e.article_stats(&[clicked_id], clock.tick()).expect("article stats");
            assert!(stats[0].1.counters.clicks >= 1, "article {clicked_id} right after its click: {stats:?}");
        }
        // A few events of any thread's, maybe being reported right now by their own thread.
        let again: Vec<ReportedEvent> = {
            let board = board.lock().unwrap();
            let from = (h >> 24) as usize % board.len().max(1);
            board.iter().skip(from).take(3).cloned().collect()
        };
        if !again.is_empty() {
            for (ev, v) in again.iter().zip(e.report(&again, clock.tick()).expect("report")) {
                match v {
                    Verdict::Accepted(p) => tally.count(ev, &p),
                    Verdict::Duplicate(_) => tally.duplicates += 1,
                    Verdict::Rejected { reason, .. } => panic!("thread {thread} round {round}: rejected: {reason}"),
                }
            }
        }
        let why = e.explain(user, probe, clock.tick()).expect("explain");
        assert!(why.score.is_finite() && why.probability.is_finite(), "{why:?}");
        if round.is_multiple_of(3) {
            let seen = stats_total(e);
            assert!(seen.exposures >= own_exposures, "stats lost exposures: {seen:?} < {own_exposures}");
        }
        if round.is_multiple_of(5) {
            e.checkpoint(clock.tick()).expect("checkpoint");
        }
    }
    tally
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(not a string)".to_owned())
}

/// Runs [`THREADS`] workers on `engine` at once on a thread of their own, and waits for them
/// at most [`DEADLINE`]. Gives back the engine, what the workers saw and the clock.
fn run<S: Store>(engine: Engine<S>) -> (Engine<S>, Tally, Clock) {
    let (done, finished) = mpsc::channel();
    std::thread::Builder::new()
        .name("concurrency-run".to_owned())
        .spawn(move || {
            let clock = Clock(AtomicI64::new(NOW));
            let board = Mutex::new(Vec::new());
            let tallies: Result<Vec<Tally>, String> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..THREADS)
                    .map(|i| {
                        let (engine, clock, board) = (&engine, &clock, &board);
                        std::thread::Builder::new()
                            .name(format!("worker-{i}"))
                            .spawn_scoped(s, move || work(engine, clock, board, i))
                            .expect("spawn a worker")
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().map_err(|p| panic_message(&*p))).collect()
            });
            let _ = done.send(tallies.map(|tallies| {
                let mut all = Tally::default();
                tallies.into_iter().for_each(|t| all.merge(t));
                (engine, all, clock)
            }));
        })
        .expect("spawn the run");
    let started = Instant::now();
    match finished.recv_timeout(DEADLINE) {
        Ok(Ok(result)) => {
            eprintln!("the concurrent run took {:?}", started.elapsed());
            result
        }
        Ok(Err(message)) => panic!("a worker panicked: {message}"),
        Err(RecvTimeoutError::Timeout) => panic!(
            "{THREADS} threads on {} users did not finish {ROUNDS} rounds each in {DEADLINE:?}: a deadlock \
             (a lock cycle between the engine's locks and the store's) or a stall is suspected",
            USERS.len()
        ),
        Err(RecvTimeoutError::Disconnected) => panic!("the run's thread died without an answer"),
    }
}

/// The run on `engine`, then the invariants; gives the engine back for more checks.
fn hammer_and_check<S: Store>(engine: Engine<S>) -> Engine<S> {
    let (e, tally, clock) = run(engine);
    eprintln!(
        "refreshes={} history_reads={} accepted={} duplicates={}",
        tally.refreshes,
        tally.history_reads,
        tally.accepted.len(),
        tally.duplicates
    );
    // Not a run where the threads happened to take turns on different feeds.
    assert!(tally.refreshes >= (THREADS * ROUNDS / 4) as u64, "too few refreshes: {}", tally.refreshes);
    assert!(tally.duplicates > 0, "no event was reported twice");

    // Every event sent was accepted exactly once, whoever sent it and however often.
    let once: Vec<_> = tally.accepted.iter().filter(|(_, n)| **n != 1).collect();
    assert!(once.is_empty(), "events accepted more than once: {once:?}");
    let never: Vec<_> = tally.sent.iter().filter(|p| !tally.accepted.contains_key(*p)).collect();
    assert!(never.is_empty(), "events never accepted: {never:?}");
    assert_eq!(tally.accepted.len(), tally.sent.len(), "only the params sent are accepted");

    // Never a repeat: within a channel across batches, nor within a batch.
    let mut served: HashMap<(String, ChannelId), HashSet<ArticleId>> = HashMap::new();
    for ((user, channel), batches) in &tally.batches {
        let times: HashSet<i64> = batches.iter().map(|(t, _)| *t).collect();
        assert_eq!(times.len(), batches.len(), "two batches of ({user}, {channel}) have one time");
        let seen = served.entry((user.clone(), *channel)).or_default();
        for (t, ids) in batches {
            for id in ids {
                assert!(seen.insert(*id), "article {id} served twice to {user} in channel {channel} (batch at {t})");
            }
        }
    }

    // Every accepted event counted once in the article's counters.
    let mut ids: Vec<ArticleId> = served.values().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let (stats, missing) = e.article_stats(&ids, clock.tick()).unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    for (id, s) in &stats {
        let c = s.counters;
        let got =
            Counted { exposures: c.exposures, clicks: c.clicks, shares: c.shares, reads: c.reads, read_ms: c.read_ms };
        let want = tally.counted.get(id).copied().unwrap_or_default();
        assert_eq!(got, want, "counters of article {id}");
        assert_eq!((c.collects, c.dislikes), (0, 0), "article {id}");
    }

    // The learner saw every accepted event, once, and so do the stats.
    let total = tally.total();
    assert_eq!(stats_total(&e), Counted { read_ms: 0, ..total });
    let learner = learner_counts(&e);
    let accepted = tally.accepted.len() as u64;
    assert_eq!((learner["events"], learner["applied"]), (accepted, accepted), "{}", e.learner_summary());
    assert!(learner["users"] >= USERS.len() as u64 && learner["features"] > 0, "{}", e.learner_summary());

    // And the paging rules still hold for the next refresh of every feed.
    for user in USERS {
        let read = tally.read.get(user).cloned().unwrap_or_default();
        let all = served.get(&(user.to_owned(), 0)).cloned().unwrap_or_default();
        for channel in [1, 0] {
            let t = clock.tick();
            let next = e.recommend(&e.validate(user, channel, CARDS, t).unwrap(), t).unwrap();
            assert!(next.refreshed && !next.items.is_empty(), "{user} in {channel}: {next:?}");
            let mine = served.get(&(user.to_owned(), channel)).cloned().unwrap_or_default();
            for item in &next.items {
                let id = item.article_id;
                assert!(!mine.contains(&id) && !all.contains(&id), "{user} in {channel}: article {id} again");
                assert!(!read.contains(&id), "{user} in {channel}: article {id} was read");
            }
        }
    }
    e
}

#[test]
fn many_threads_on_the_same_users_over_the_memory_store() {
    let store = MemStore::new();
    store.upsert_articles(&demo_articles(3, NOW, ARTICLES)).unwrap();
    hammer_and_check(Engine::new(store, SECRET, EngineConfig::default()).unwrap());
}

#[test]
fn many_threads_on_the_same_users_over_redb_and_a_restart_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    store.upsert_articles(&demo_articles(3, NOW, ARTICLES)).unwrap();
    let e = hammer_and_check(Engine::new(store, SECRET, EngineConfig::default()).unwrap());
    let end = NOW + 10 * 3_600_000;
    e.checkpoint(end).unwrap();
    let summary = e.learner_summary();
    let ids: Vec<ArticleId> = (1..=ARTICLES as ArticleId).collect();
    let (counters, _) = e.article_stats(&ids, end).unwrap();
    drop(e);

    // What the concurrent run wrote is what a restart reads: the checkpoint and the event log
    // agree, and the counters are the committed ones.
    let again = Engine::new(RedbStore::open(dir.path()).unwrap(), SECRET, EngineConfig::default()).unwrap();
    assert_eq!(again.learner_summary(), summary);
    assert_eq!(again.article_stats(&ids, end).unwrap().0, counters);
}
