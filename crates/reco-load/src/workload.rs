//! What one worker sends and what it expects back.
//!
//! Users are partitioned between workers (global user `g` belongs to worker `g % workers`) and a
//! worker has one request in flight, so no two requests for the same `(user, channel)` ever race.
//! A refresh carries `time_stamp = max(now_ms, last + 1)` where `last` is the newest batch time
//! this run saw for that pair: strictly newer than anything the server stored for it, and close to
//! real time, so a later run with the same users still sends refreshes. A history read names the
//! exact time of a batch this run was served, so its answer must be that batch again.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_proto::seed::UserRequest;

use crate::wire::Answer;

/// Channel ids of the seed contract: 0 (all) and 1..=25.
pub const CHANNELS: i32 = 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every request is a refresh (new batch, ranking work and a write on the server).
    Refresh,
    /// Every measured request re-reads a batch served while priming.
    History,
    /// Refreshes and history reads of batches served earlier in the run (see --refresh-ratio).
    Mixed,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Refresh => "refresh",
            Mode::History => "history",
            Mode::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checks {
    /// reco's paging rules too: a refresh carries an exposure and points at the previous batch,
    /// a history read has no exposure.
    Full,
    /// Only what any server of the seed contract satisfies (e.g. the Python reference with its
    /// fake data): status OK, at most article_num distinct positive ids, each with a track.
    Basic,
}

/// The newest batch this run was served for one `(user, channel)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub time: i64,
    pub len: usize,
    pub digest: u64,
}

/// What the answer to one request must look like.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    Refresh { time: i64, previous: Option<i64> },
    History(Batch),
}

#[derive(Clone, Copy, Debug)]
pub struct Call {
    key: u64,
    pub expect: Expect,
}

/// The verdict on one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A valid refresh with fewer than article_num articles (the user's candidates ran out).
    Short,
    /// A well-formed gRPC answer that breaks the contract.
    Wrong(&'static str),
}

pub struct Settings {
    pub mode: Mode,
    pub checks: Checks,
    pub article_num: i32,
    pub refresh_ratio: f64,
}

pub struct Workload {
    users: Vec<String>,
    settings: Settings,
    rng: ChaCha8Rng,
    batches: HashMap<u64, Batch>,
    /// Pairs that history mode re-reads (those primed successfully), in a stable order.
    primed: Vec<u64>,
    scratch: Vec<i64>,
}

fn key(user: usize, channel: i32) -> u64 {
    ((user as u64) << 8) | channel as u64
}

fn channel_of(key: u64) -> i32 {
    (key & 0xff) as i32
}

fn digest(ids: impl Iterator<Item = i64>) -> u64 {
    ids.fold(0xcbf2_9ce4_8422_2325, |h: u64, id| (h.rotate_left(5) ^ id as u64).wrapping_mul(0x0100_0000_01b3))
}

impl Workload {
    /// Worker `worker` of `workers`: users `prefix{g}` for every `g < users` with `g % workers == worker`.
    pub fn new(worker: usize, workers: usize, users: usize, prefix: &str, seed: u64, settings: Settings) -> Self {
        let users = (worker..users).step_by(workers).map(|g| format!("{prefix}{g}")).collect();
        let rng = ChaCha8Rng::seed_from_u64(seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self { users, settings, rng, batches: HashMap::new(), primed: Vec::new(), scratch: Vec::new() }
    }

    /// Whether history mode has a batch to read (some priming refresh succeeded).
    pub fn has_history(&self) -> bool {
        !self.primed.is_empty()
    }

    /// One refresh per user of this worker, each in a random channel: the batches history mode re-reads.
    pub fn priming_calls(&mut self, now_ms: i64) -> Vec<(UserRequest, Call)> {
        (0..self.users.len())
            .map(|user| {
                let channel = self.rng.random_range(0..CHANNELS);
                self.refresh(user, channel, now_ms)
            })
            .collect()
    }

    /// Freezes the set of pairs history mode reads: those whose priming refresh succeeded.
    pub fn finish_priming(&mut self) -> usize {
        self.primed = self.batches.keys().copied().collect();
        self.primed.sort_unstable();
        self.primed.len()
    }

    /// The next request of the closed loop.
    pub fn next(&mut self, now_ms: i64) -> (UserRequest, Call) {
        match self.settings.mode {
            Mode::Refresh => {
                let (user, channel) = self.pick();
                self.refresh(user, channel, now_ms)
            }
            Mode::History => {
                let key = self.primed[self.rng.random_range(0..self.primed.len())];
                self.history(key)
            }
            Mode::Mixed => {
                let (user, channel) = self.pick();
                let key = key(user, channel);
                if self.batches.contains_key(&key) && !self.rng.random_bool(self.settings.refresh_ratio) {
                    self.history(key)
                } else {
                    self.refresh(user, channel, now_ms)
                }
            }
        }
    }

    fn pick(&mut self) -> (usize, i32) {
        (self.rng.random_range(0..self.users.len()), self.rng.random_range(0..CHANNELS))
    }

    fn request(&self, key: u64, time_stamp: i64) -> UserRequest {
        UserRequest {
            user_id: self.users[(key >> 8) as usize].clone(),
            channel_id: channel_of(key),
            article_num: self.settings.article_num,
            time_stamp,
        }
    }

    fn refresh(&self, user: usize, channel: i32, now_ms: i64) -> (UserRequest, Call) {
        let key = key(user, channel);
        let previous = self.batches.get(&key).map(|b| b.time);
        let time = previous.map_or(now_ms, |p| now_ms.max(p + 1));
        (self.request(key, time), Call { key, expect: Expect::Refresh { time, previous } })
    }

    fn history(&self, key: u64) -> (UserRequest, Call) {
        let batch = self.batches[&key];
        (self.request(key, batch.time), Call { key, expect: Expect::History(batch) })
    }

    /// Verifies an OK answer to `call` and remembers the batch a refresh was served.
    pub fn check(&mut self, call: &Call, answer: &Answer) -> Outcome {
        let full = self.settings.checks == Checks::Full;
        let n = answer.recommends.len();
        match call.expect {
            Expect::Refresh { time, previous } => {
                if n > self.settings.article_num as usize {
                    return Outcome::Wrong("more articles than article_num");
                }
                if answer.recommends.iter().any(|a| a.article_id <= 0 || a.track.is_empty()) {
                    return Outcome::Wrong("article without a positive id or without a track");
                }
                self.scratch.clear();
                self.scratch.extend(answer.recommends.iter().map(|a| a.article_id));
                self.scratch.sort_unstable();
                if self.scratch.windows(2).any(|w| w[0] == w[1]) {
                    return Outcome::Wrong("an article twice in one batch");
                }
                if full {
                    if n > 0 && answer.exposure.is_empty() {
                        return Outcome::Wrong("refresh answered without exposure (served as a history read?)");
                    }
                    match previous {
                        Some(p) if answer.time_stamp != p => {
                            return Outcome::Wrong("refresh time_stamp is not the previous batch's time");
                        }
                        None if answer.time_stamp >= time => {
                            return Outcome::Wrong("refresh time_stamp is not older than the request's");
                        }
                        _ => {}
                    }
                }
                let batch = Batch { time, len: n, digest: digest(answer.recommends.iter().map(|a| a.article_id)) };
                self.batches.insert(call.key, batch);
                if n < self.settings.article_num as usize { Outcome::Short } else { Outcome::Ok }
            }
            Expect::History(batch) => {
                if n != batch.len || digest(answer.recommends.iter().map(|a| a.article_id)) != batch.digest {
                    return Outcome::Wrong("history read differs from the batch served");
                }
                if full && !answer.exposure.is_empty() {
                    return Outcome::Wrong("history read answered with an exposure");
                }
                Outcome::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wire::Item;

    fn settings(mode: Mode) -> Settings {
        Settings { mode, checks: Checks::Full, article_num: 3, refresh_ratio: 0.5 }
    }

    fn answer(exposure: &str, time_stamp: i64, ids: &[i64]) -> Answer {
        Answer {
            exposure: Bytes::copy_from_slice(exposure.as_bytes()),
            time_stamp,
            recommends: ids.iter().map(|&id| Item { article_id: id, track: Bytes::from_static(b"t") }).collect(),
        }
    }

    #[test]
    fn workers_partition_the_users() {
        let ids = |w| {
            let load = Workload::new(w, 3, 10, "u", 1, settings(Mode::Refresh));
            load.users.clone()
        };
        assert_eq!(ids(0), ["u0", "u3", "u6", "u9"]);
        assert_eq!(ids(2), ["u2", "u5", "u8"]);
    }

    #[test]
    fn refreshes_of_one_pair_get_strictly_newer_times_and_point_back() {
        let mut load = Workload::new(0, 1, 1, "u", 7, settings(Mode::Refresh));
        let mut times = Vec::new();
        let mut previous = 0;
        let mut seen: HashMap<i32, i64> = HashMap::new();
        for _ in 0..200 {
            let (req, call) = load.next(1_000);
            assert!((0..CHANNELS).contains(&req.channel_id));
            let pointer = seen.get(&req.channel_id).copied().unwrap_or(0);
            assert!(req.time_stamp > pointer, "{} <= {pointer}", req.time_stamp);
            let id = previous + 1;
            previous = id;
            assert_eq!(load.check(&call, &answer("e", pointer, &[id])), Outcome::Short);
            seen.insert(req.channel_id, req.time_stamp);
            times.push(req.time_stamp);
        }
        assert!(times.iter().all(|&t| t >= 1_000));
    }

    #[test]
    fn the_same_seed_gives_the_same_requests() {
        let run = |seed| {
            let mut load = Workload::new(1, 4, 1000, "u", seed, settings(Mode::Refresh));
            (0..50).map(|_| load.next(5).0).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn refresh_answers_are_checked() {
        let mut load = Workload::new(0, 1, 5, "u", 1, settings(Mode::Refresh));
        let (_, call) = load.next(100);
        assert_eq!(load.check(&call, &answer("e", 0, &[1, 2, 3])), Outcome::Ok);
        assert_eq!(load.check(&call, &answer("e", 0, &[1])), Outcome::Short);
        assert!(matches!(load.check(&call, &answer("e", 0, &[1, 2, 3, 4])), Outcome::Wrong(_)));
        assert!(matches!(load.check(&call, &answer("e", 0, &[2, 2])), Outcome::Wrong(_)));
        assert!(matches!(load.check(&call, &answer("", 0, &[1, 2])), Outcome::Wrong(_)));
        assert!(matches!(load.check(&call, &answer("e", 100, &[1, 2])), Outcome::Wrong(_)));
        assert!(matches!(load.check(&call, &answer("e", 0, &[0, 2])), Outcome::Wrong(_)));
    }

    #[test]
    fn basic_checks_accept_the_reference_servers_fake_answers() {
        let mut load = Workload::new(0, 1, 5, "u", 1, Settings { checks: Checks::Basic, ..settings(Mode::Refresh) });
        let (_, call) = load.next(100);
        assert_eq!(load.check(&call, &answer("exposure param", 1_999_999, &[1, 2, 3])), Outcome::Ok);
    }

    #[test]
    fn history_reads_must_return_the_batch_served() {
        let mut load = Workload::new(0, 1, 4, "u", 1, settings(Mode::History));
        let primes = load.priming_calls(100);
        assert_eq!(primes.len(), 4);
        for (i, (_, call)) in primes.iter().enumerate() {
            let id = i as i64 * 10 + 1;
            assert_eq!(load.check(call, &answer("e", 0, &[id, id + 1, id + 2])), Outcome::Ok);
        }
        assert_eq!(load.finish_priming(), 4);
        for _ in 0..20 {
            let (req, call) = load.next(10_000);
            let Expect::History(batch) = call.expect else { panic!("history mode sent a refresh") };
            assert_eq!(req.time_stamp, batch.time);
            let user: i64 = req.user_id[1..].parse().unwrap();
            let id = user * 10 + 1;
            assert_eq!(load.check(&call, &answer("", 5, &[id, id + 1, id + 2])), Outcome::Ok);
            assert!(matches!(load.check(&call, &answer("", 5, &[id + 1, id, id + 2])), Outcome::Wrong(_)));
            assert!(matches!(load.check(&call, &answer("e", 5, &[id, id + 1, id + 2])), Outcome::Wrong(_)));
        }
    }

    #[test]
    fn mixed_mode_reads_back_only_batches_it_was_served() {
        let mut load = Workload::new(0, 1, 2, "u", 9, settings(Mode::Mixed));
        let (mut refreshes, mut reads) = (0, 0);
        for i in 0..400 {
            let (_, call) = load.next(1_000 + i);
            match call.expect {
                Expect::Refresh { previous, .. } => {
                    refreshes += 1;
                    assert_eq!(load.check(&call, &answer("e", previous.unwrap_or(0), &[i + 1])), Outcome::Short);
                }
                Expect::History(batch) => {
                    reads += 1;
                    assert_eq!(batch, load.batches[&call.key]);
                }
            }
        }
        assert!(refreshes > 50 && reads > 50, "{refreshes} refreshes, {reads} reads");
    }
}
