//! Many concurrent gRPC clients on the same few users, through the real server on a
//! multi-thread runtime: `user_recommend` in two channels, `Tracking.Report` of the params it
//! hands out (also by other clients, at the same time), `Explain`, `Stats`, `ArticleStats`,
//! with the server checkpointing its learner every few milliseconds meanwhile.
//!
//! A lock cycle in the engine or the store parks the server's threads for good. The handlers
//! run on the runtime's workers, so once all of them are parked not even a
//! `tokio::time::timeout` on that runtime fires, and dropping the runtime would wait for them
//! forever. So the runtime lives on a thread of its own and the test waits for it with a
//! deadline: a deadlock fails the test with a message instead of hanging it. Inside, the
//! client run has a `tokio::time::timeout` too, for stalls that leave a worker free.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{Client, TestServer, event, ids, now_ms, read_event};
use reco_engine::text::mix;
use reco_proto::seed::ArticleResponse;
use reco_proto::v1::{self, EventResult, TrackEvent, Verdict};
use reco_server::ServerConfig;

const CLIENTS: usize = 8;
const ROUNDS: usize = 20;
/// Few users, so that every user has several clients on it at once.
const USERS: [&str; 3] = ["ann", "bo", "cy"];
/// 推荐 and one channel: a refresh in 1 reads 推荐's history too.
const CHANNELS: [i32; 2] = [0, 1];
const CARDS: i32 = 4;
/// The client run takes a few seconds in a debug build; this long means it is stuck.
const DEADLINE: Duration = Duration::from_secs(60);
/// How much longer the test waits for the runtime when the timeout inside it did not fire.
const GRACE: Duration = Duration::from_secs(30);

/// Strictly increasing times, never after now: every refresh has its own `time_stamp`, no
/// `time_stamp` is ahead of the server's clock, and every event is later than its batch.
struct Clock(AtomicI64);

impl Clock {
    async fn next(&self) -> i64 {
        loop {
            let now = now_ms();
            let last = self.0.load(Ordering::Relaxed);
            if last < now {
                if self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    return now;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// What one article's counters should be, from the accepted verdicts: exposures, clicks,
/// shares, reads, read_ms.
type Counted = [u64; 5];

/// A batch as served: its time and its ids.
type Served = (i64, Vec<i64>);

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// (user, channel) -> (time, ids) of every batch this client's refreshes appended.
    batches: BTreeMap<(String, i32), Vec<Served>>,
    /// The params of this client's batches that it reported.
    sent: HashSet<String>,
    /// Per reported param: how often it was accepted.
    accepted: HashMap<String, u32>,
    duplicates: u64,
    counted: HashMap<i64, Counted>,
    /// Per user, the articles with an accepted read: hidden for good.
    read: HashMap<String, HashSet<i64>>,
    refreshes: u64,
    history_reads: u64,
}

impl Tally {
    /// Books the verdicts of `events`; a rejection fails the test.
    fn book(&mut self, events: &[TrackEvent], results: &[EventResult], at: &str) {
        assert_eq!(events.len(), results.len(), "{at}");
        for (ev, r) in events.iter().zip(results) {
            match r.verdict() {
                Verdict::Accepted => {
                    *self.accepted.entry(ev.param.clone()).or_default() += 1;
                    for id in &r.article_ids {
                        let c = self.counted.entry(*id).or_default();
                        match r.action.as_str() {
                            "exposure" => c[0] += 1,
                            "click" => c[1] += 1,
                            "share" => c[2] += 1,
                            "read" => {
                                c[3] += 1;
                                c[4] += ev.read_duration_ms as u64;
                                self.read.entry(r.user_id.clone()).or_default().insert(*id);
                            }
                            other => panic!("{at}: no {other} events are sent"),
                        }
                    }
                }
                // Another client took it from the board and was first.
                Verdict::Duplicate => self.duplicates += 1,
                other => panic!("{at}: {other:?}: {}", r.reason),
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
            t.iter_mut().zip(c).for_each(|(t, c)| *t += c);
        }
        for (user, ids) in other.read {
            self.read.entry(user).or_default().extend(ids);
        }
        self.refreshes += other.refreshes;
        self.history_reads += other.history_reads;
    }
}

/// The batch's exposure, a click and a read of two of its cards, now and then a share.
fn events_of(feed: &ArticleResponse, client: usize, round: usize) -> Vec<TrackEvent> {
    let n = feed.recommends.len();
    let track = |i: usize| feed.recommends[i % n].track.clone().expect("every card has its params");
    let mut events = vec![event(&feed.exposure), event(&track(round).click)];
    events.push(read_event(&track(round + 1).read, 1_000 + 100 * client as i64 + round as i64));
    if round.is_multiple_of(4) {
        events.push(event(&track(0).share));
    }
    events
}

/// Stats over a window that holds the whole run: totals of the rows by bucket (each event
/// counts once there) as [exposures, clicks, shares, reads].
async fn stats_total(client: &mut Client, from_ms: i64) -> [u64; 4] {
    let req = v1::StatsRequest { from_ms, to_ms: now_ms() + 3_600_000 };
    let report = client.tracking.stats(req).await.expect("Stats").into_inner();
    report.by_bucket.iter().fold([0; 4], |t, r| [t[0] + r.exposures, t[1] + r.clicks, t[2] + r.shares, t[3] + r.reads])
}

/// `ArticleStats` of any number of known ids.
async fn article_stats(client: &mut Client, ids: &[i64]) -> Vec<v1::ArticleStats> {
    let mut all = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        all.extend(client.article_stats(chunk.to_vec()).await);
    }
    all
}

/// One client's rounds: every call checks its own answer; what has to be checked across
/// clients goes into the tally.
async fn work(mut client: Client, clock: Arc<Clock>, board: Arc<Mutex<Vec<TrackEvent>>>, me: usize) -> Tally {
    let mut tally = Tally::default();
    let mut own_exposures = 0;
    let start = now_ms() - 3_600_000;
    for round in 0..ROUNDS {
        let at = format!("client {me} round {round}");
        let h = mix((me * 1_000 + round) as u64);
        let user = USERS[(h % USERS.len() as u64) as usize];
        let channel = CHANNELS[((h >> 8) % CHANNELS.len() as u64) as usize];
        let t = clock.next().await;
        let req = reco_proto::seed::UserRequest {
            user_id: user.into(),
            channel_id: channel,
            article_num: CARDS,
            time_stamp: t,
        };
        let feed = client.feed.user_recommend(req).await.unwrap_or_else(|s| panic!("{at}: {s:?}")).into_inner();
        let mut probe = ((h >> 16) % 5_000) as i64 + 1;
        // A history read has no exposure: another client refreshed this feed with a later time.
        if feed.exposure.is_empty() {
            tally.history_reads += 1;
        } else {
            tally.refreshes += 1;
            tally.batches.entry((user.to_owned(), channel)).or_default().push((t, ids(&feed)));
        }
        if !feed.exposure.is_empty() && !feed.recommends.is_empty() {
            probe = feed.recommends[0].article_id;
            let events = events_of(&feed, me, round);
            // On the board before they are sent: other clients may report them at the same time.
            board.lock().unwrap().extend(events.iter().cloned());
            tally.sent.extend(events.iter().map(|e| e.param.clone()));
            let results = client.report(events.clone()).await;
            tally.book(&events, &results, &at);
            own_exposures += results
                .iter()
                .filter(|r| r.verdict() == Verdict::Accepted && r.action == "exposure")
                .map(|r| r.article_ids.len() as u64)
                .sum::<u64>();
            // Read your writes: once Report answered, its events are counted.
            let clicked = results[1].article_ids[0];
            let stats = article_stats(&mut client, &[clicked]).await;
            assert!(stats[0].clicks >= 1, "{at}: article {clicked} right after its click: {stats:?}");
        }
        // A few events of any client's, maybe being reported right now by their own client.
        let again: Vec<TrackEvent> = {
            let board = board.lock().unwrap();
            let from = (h >> 24) as usize % board.len().max(1);
            board.iter().skip(from).take(3).cloned().collect()
        };
        if !again.is_empty() {
            let results = client.report(again.clone()).await;
            tally.book(&again, &results, &at);
        }
        let why = client.explain(user, probe).await.unwrap_or_else(|s| panic!("{at}: Explain: {s:?}"));
        assert!(why.score.is_finite() && why.probability.is_finite(), "{at}: {why:?}");
        if round.is_multiple_of(3) {
            let seen = stats_total(&mut client, start).await;
            assert!(seen[0] >= own_exposures, "{at}: Stats lost exposures: {seen:?} < {own_exposures}");
        }
    }
    tally
}

/// The clients at once; a task's panic is re-raised with its own message.
async fn hammer(server: &TestServer) -> Tally {
    let clock = Arc::new(Clock(AtomicI64::new(0)));
    let board = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for me in 0..CLIENTS {
        let client = server.client().await;
        tasks.spawn(work(client, Arc::clone(&clock), Arc::clone(&board), me));
    }
    let mut all = Tally::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(tally) => all.merge(tally),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a client task failed: {e}"),
        }
    }
    all
}

/// The invariants after the run, through the server.
async fn check(server: &TestServer, tally: &Tally, started: i64) {
    eprintln!(
        "refreshes={} history_reads={} accepted={} duplicates={}",
        tally.refreshes,
        tally.history_reads,
        tally.accepted.len(),
        tally.duplicates
    );
    let mut client = server.client().await;
    // Not a run where the clients happened to take turns on different feeds.
    assert!(tally.refreshes >= (CLIENTS * ROUNDS / 4) as u64, "too few refreshes: {}", tally.refreshes);
    assert!(tally.duplicates > 0, "no event was reported twice");

    // Every event sent was accepted exactly once, whoever sent it and however often.
    let once: Vec<_> = tally.accepted.iter().filter(|(_, n)| **n != 1).collect();
    assert!(once.is_empty(), "events accepted more than once: {once:?}");
    let never: Vec<_> = tally.sent.iter().filter(|p| !tally.accepted.contains_key(*p)).collect();
    assert!(never.is_empty(), "events never accepted: {never:?}");
    assert_eq!(tally.accepted.len(), tally.sent.len(), "only the params sent are accepted");

    // Never a repeat: within a channel across batches, nor within a batch.
    let mut served: HashMap<(String, i32), HashSet<i64>> = HashMap::new();
    for ((user, channel), batches) in &tally.batches {
        let seen = served.entry((user.clone(), *channel)).or_default();
        for (t, ids) in batches {
            for id in ids {
                assert!(seen.insert(*id), "article {id} served twice to {user} in channel {channel} (batch at {t})");
            }
        }
    }

    // Every accepted event counted once in the article's counters.
    let mut all_ids: Vec<i64> = served.values().flatten().copied().collect();
    all_ids.sort_unstable();
    all_ids.dedup();
    for s in article_stats(&mut client, &all_ids).await {
        let got = [s.exposures, s.clicks, s.shares, s.reads, s.read_ms];
        let want = tally.counted.get(&s.article_id).copied().unwrap_or_default();
        assert_eq!(got, want, "counters of article {} (exposures, clicks, shares, reads, read_ms)", s.article_id);
        assert_eq!(s.collects, 0, "article {}", s.article_id);
    }

    // The learner saw every accepted event once: its stats count them.
    let total = tally.counted.values().fold([0; 4], |t, c| [t[0] + c[0], t[1] + c[1], t[2] + c[2], t[3] + c[3]]);
    assert_eq!(stats_total(&mut client, started - 3_600_000).await, total, "Stats: exposures, clicks, shares, reads");
    assert!(server.checkpointed().is_some(), "the server checkpointed during the run");

    // And the paging rules still hold for the next refresh of every feed.
    for user in USERS {
        let read = tally.read.get(user).cloned().unwrap_or_default();
        let all = served.get(&(user.to_owned(), 0)).cloned().unwrap_or_default();
        for channel in [1, 0] {
            let next = client.feed(user, channel, CARDS, now_ms()).await;
            assert!(!next.exposure.is_empty() && !next.recommends.is_empty(), "{user} in {channel}: {next:?}");
            let mine = served.get(&(user.to_owned(), channel)).cloned().unwrap_or_default();
            for id in ids(&next) {
                assert!(!mine.contains(&id) && !all.contains(&id), "{user} in {channel}: article {id} again");
                assert!(!read.contains(&id), "{user} in {channel}: article {id} was read");
            }
        }
    }
}

#[test]
fn many_clients_on_the_same_users_at_once() {
    let (done, finished) = mpsc::channel();
    let run = std::thread::Builder::new()
        .name("concurrency-run".to_owned())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("a runtime");
            let outcome = runtime.block_on(async {
                let config = ServerConfig { checkpoint_interval: Duration::from_millis(20), ..ServerConfig::default() };
                let server = TestServer::start_with(config).await;
                let started = now_ms();
                let clock = Instant::now();
                let Ok(tally) = tokio::time::timeout(DEADLINE, hammer(&server)).await else {
                    return Err(format!(
                        "{CLIENTS} clients on {} users did not finish {ROUNDS} rounds each in {DEADLINE:?}: a \
                         deadlock (a lock cycle in the engine or the store) or a stall is suspected",
                        USERS.len()
                    ));
                };
                eprintln!("the concurrent run took {:?}", clock.elapsed());
                check(&server, &tally, started).await;
                server.stop().await;
                Ok(())
            });
            let stuck = outcome.is_err();
            let _ = done.send(outcome);
            if stuck {
                // Dropping it would wait for the parked threads.
                runtime.shutdown_background();
            }
        })
        .expect("spawn the run");
    match finished.recv_timeout(DEADLINE + GRACE) {
        Ok(Ok(())) => run.join().expect("the run ended"),
        Ok(Err(stuck)) => panic!("{stuck}"),
        // A failed check: its panic, with its message.
        Err(mpsc::RecvTimeoutError::Disconnected) => match run.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the run answers before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "the server's runtime is stuck {:?} after the start: all its workers are parked, a deadlock (a lock \
             cycle in the engine or the store) is suspected",
            DEADLINE + GRACE
        ),
    }
}
