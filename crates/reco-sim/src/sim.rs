//! The browsing loop: sessions in simulated time, each a few refreshes of 推荐, every batch
//! judged by the click model and fed back to the policy before the next refresh.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use anyhow::Result;
use rustc_hash::FxHashSet;

use crate::policy::{Act, Interaction, Policy, Request};
use crate::world::{ClickModel, HOUR_MS, Purpose, START_MS, Slot, World, unit};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub rounds: u32,
    /// Articles per refresh.
    pub batch: usize,
    /// Simulated time per round; a user has at most one session per round.
    pub round_ms: i64,
    pub max_batches_per_session: u32,
    /// Chance of another refresh after a batch with / without a click.
    pub continue_after_click: f64,
    pub continue_without_click: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            rounds: 30,
            batch: 10,
            round_ms: HOUR_MS,
            max_batches_per_session: 4,
            continue_after_click: 0.6,
            continue_without_click: 0.3,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub exposures: u64,
    pub clicks: u64,
    pub reads: u64,
    pub dislikes: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.exposures += o.exposures;
        self.clicks += o.clicks;
        self.reads += o.reads;
        self.dislikes += o.dislikes;
    }

    pub fn ctr(&self) -> f64 {
        if self.exposures == 0 { 0.0 } else { self.clicks as f64 / self.exposures as f64 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Counts of the sessions that started in each round.
    pub per_round: Vec<Counts>,
    /// Articles served to a user who had been shown them before (a policy bug; should be 0).
    pub repeats: u64,
    /// Batches shorter than asked.
    pub short_batches: u64,
}

impl RunStats {
    pub fn total(&self, rounds: std::ops::Range<usize>) -> Counts {
        let mut c = Counts::default();
        for r in &self.per_round[rounds] {
            c.add(r);
        }
        c
    }
}

/// A refresh waiting to happen, ordered by time (then user, for determinism).
type Pending = Reverse<(i64, u32, u32, u32)>;

/// Runs every session of the world through `policy`.
pub fn run(world: &World, model: &ClickModel, config: &SimConfig, policy: &mut dyn Policy) -> Result<RunStats> {
    let seed = world.config.seed;
    let users = world.users.len();
    let mut stats = RunStats { per_round: vec![Counts::default(); config.rounds as usize], ..RunStats::default() };
    let mut seen: Vec<FxHashSet<u32>> = vec![FxHashSet::default(); users];
    let mut last_request = vec![0i64; users];

    // Who browses when does not depend on the policy: every session start is drawn up front.
    let mut queue: BinaryHeap<Pending> = BinaryHeap::new();
    for round in 0..config.rounds {
        for (u, user) in world.users.iter().enumerate() {
            let key = [u as u32, round, 0, 0];
            if unit(seed, Purpose::Active, key) < user.activity {
                // Starts spread over the first 80% of the round so a session ends within it.
                let offset = (unit(seed, Purpose::Offset, key) * 0.8 * config.round_ms as f64) as i64;
                let start = START_MS + i64::from(round) * config.round_ms + offset;
                queue.push(Reverse((start, u as u32, round, 0)));
            }
        }
    }

    let mut interactions = Vec::new();
    while let Some(Reverse((time, user, round, batch))) = queue.pop() {
        let u = user as usize;
        // A refresh must be newer than the user's previous batch.
        let now = time.max(last_request[u] + 1);
        last_request[u] = now;
        let picked = policy.recommend(&Request { user: u, now_ms: now, n: config.batch, seen: &seen[u] })?;
        let counts = &mut stats.per_round[round as usize];
        counts.requests += 1;
        if picked.len() < config.batch {
            stats.short_batches += 1;
        }

        // The user scans the batch top-down; each click, read and dislike takes time.
        interactions.clear();
        let mut clock = now + 3_000;
        for (position, &a) in picked.iter().enumerate() {
            if !seen[u].insert(a) {
                stats.repeats += 1;
            }
            counts.exposures += 1;
            let slot = Slot { user, round, batch, position: position as u32 };
            let o = model.outcome(world, a as usize, slot, now);
            let mut act = |act: Act, clock: i64| interactions.push(Interaction { position, act, time_ms: clock });
            if o.click {
                counts.clicks += 1;
                clock += 2_000;
                act(Act::Click, clock);
                if let Some(ms) = o.read_ms {
                    counts.reads += 1;
                    clock += ms;
                    act(Act::Read { ms }, clock);
                }
                if o.collect {
                    act(Act::Collect, clock);
                }
                if o.share {
                    act(Act::Share, clock);
                }
            } else if o.dislike {
                counts.dislikes += 1;
                clock += 1_000;
                act(Act::Dislike, clock);
            }
        }
        policy.feedback(u, now, &interactions, clock)?;

        let clicked = interactions.iter().any(|i| i.act == Act::Click);
        let p = if clicked { config.continue_after_click } else { config.continue_without_click };
        if batch + 1 < config.max_batches_per_session && unit(seed, Purpose::Continue, [user, round, batch, 0]) < p {
            queue.push(Reverse((clock + 5_000, user, round, batch + 1)));
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EnginePolicy, Fresh, Oracle, Random};
    use crate::world::WorldConfig;

    #[test]
    fn runs_are_deterministic_and_never_repeat() {
        let world = World::generate(WorldConfig { seed: 11, users: 30, articles: 300 });
        let model = ClickModel::default();
        let config = SimConfig { rounds: 6, ..SimConfig::default() };
        let a = run(&world, &model, &config, &mut Random::new(&world)).unwrap();
        let b = run(&world, &model, &config, &mut Random::new(&world)).unwrap();
        assert_eq!(a.per_round, b.per_round);
        assert_eq!(a.repeats, 0);
        let total = a.total(0..6);
        assert!(total.requests > 0 && total.exposures == total.requests * 10);
        // Knowing the hidden model must beat chance by far.
        let oracle = run(&world, &model, &config, &mut Oracle::new(&world, model.clone())).unwrap();
        assert!(oracle.total(0..6).ctr() > 2.0 * total.ctr());
        let fresh = run(&world, &model, &config, &mut Fresh::new(&world)).unwrap();
        assert_eq!(fresh.repeats, 0);
    }

    #[test]
    fn the_engine_accepts_every_report_and_never_repeats() {
        let world = World::generate(WorldConfig { seed: 12, users: 20, articles: 300 });
        let model = ClickModel::default();
        let config = SimConfig { rounds: 4, ..SimConfig::default() };
        let mut engine = EnginePolicy::new(&world, reco_engine::EngineConfig::default()).unwrap();
        let stats = run(&world, &model, &config, &mut engine).unwrap();
        assert_eq!((engine.refused, engine.first_refusal), (0, None));
        assert_eq!((stats.repeats, stats.short_batches), (0, 0));
        assert_eq!(engine.requests, stats.total(0..4).requests);
        assert_eq!(engine.reports, engine.requests);
    }
}
