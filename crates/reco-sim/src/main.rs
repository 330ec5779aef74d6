//! `reco-sim`: a simulator benchmark. Synthetic users with hidden topic interests browse the
//! 推荐 feed and click by a known model; it prints the click-through rate over simulated time
//! for a few baselines and for the real engine, each on an identical world.
//!
//! **World** (all from `--seed`). The catalog has `--articles` articles spread uniformly over
//! the toutiao channels (`catalog::CHANNELS` without 推荐). Each article has 1–3 keywords from
//! its channel's 8-word vocabulary (real words: 大模型, 索引, 协程 …), a hidden
//! quality `q` (log-normal, mean about 1, clipped to 0.2–4) and a publish time in the 4 days
//! before the start. No article arrives during the run: the engine's catalog is fixed when it
//! is built and its fresh source serves future-dated articles too, so a later publish time
//! would only leak the future to it. Each of the `--users` users has 2–3 favourite channels
//! (drawn with Zipf-like channel weights, so some channels are liked by many users and global
//! popularity carries signal), one hated channel, 2–4 favourite keywords from the favourite
//! channels plus one from anywhere, and an activity level (chance of a session per round,
//! 0.2–0.8).
//!
//! **Click model.** For user `u`, article `a` at 0-based position `pos` at time `t`:
//!
//! ```text
//! interest(u, a) = c_u(channel(a)) * (1 + |keywords(a) ∩ favourite_keywords(u)|)
//!                  c_u = 1 for a favourite channel, 0.01 for the hated one, else 0.1
//! freshness(age) = 0.5 + 0.5 * 2^(-age / 2 days)
//! position_decay(pos) = 1 / (1 + 0.15 * pos)
//! P(click) = clamp(0.25 * interest * q(a) * freshness(t - publish(a)) * position_decay(pos), 0, 0.9)
//! ```
//!
//! A click is followed by a read with probability 0.8, lasting 10 s + up to 170 s more for
//! articles of higher interest; a read is collected with probability 0.05 and shared with 0.03.
//! An unclicked article of the user's hated channel is disliked with probability 0.3. Each
//! draw is a hash of the slot (user, round, batch, position), so every policy meets the same
//! coin flips in the same slot.
//!
//! **Sessions.** Time advances in `--rounds` rounds of one simulated hour. In each round, each
//! user starts a session with probability equal to their activity, at a random minute of the
//! round. A session is up to 4 refreshes of `--batch` articles in 推荐: the user scans the batch
//! top-down (exposure reported at the refresh, each click, read and dislike a few seconds or
//! the read time later), the policy is told, and the user refreshes again 5 s after the last
//! action with probability 0.6 if they clicked anything, else 0.3. Refreshes of all users are
//! processed in time order. Articles once shown to a user are never shown to them again.
//!
//! **Policies**, each on its own copy of the same world: `random` (uniform over unseen),
//! `fresh` (newest unseen), `popularity` (most clicked so far among unseen, counting every
//! user's clicks in that run; ties to the newest), `oracle` (the unseen articles of highest
//! true click probability: the ceiling, not a recommender) and `engine` (the real
//! `reco_engine::Engine` with the default `EngineConfig` over a `MemStore`, used through
//! `validate`/`recommend`/`report` only, with the batch's exposure param and the cards' click,
//! read, collect, share params, dislikes on the click param).
//!
//! **Output.** CTR (clicks / exposed items) per tenth of the rounds per policy, then per
//! policy after the warm-up (the first `--warmup-share` of rounds), the engine / popularity
//! ratio, and timing lines. Everything but the lines starting with `timing:` is the same for
//! the same flags (as long as the engine itself is deterministic).
//!
//! Reading it: `random` is the floor. A policy that only knew each user's favourite channels
//! would get about 4× `popularity` in the default world, so a personalising engine has room
//! for the 2× target. The oracle's CTR falls over the run because in a fixed catalog it
//! serves each user's best articles first; the default catalog (5000) is large enough that
//! favourite channels do not run dry within 30 rounds, which would depress every policy late
//! in the run for a reason that is not learning.

mod policy;
mod sim;
mod world;

use std::time::Instant;

use anyhow::{Result, ensure};
use clap::{Parser, ValueEnum};
use reco_engine::EngineConfig;

use crate::policy::{EnginePolicy, Fresh, Oracle, Policy, Popularity, Random};
use crate::sim::{Counts, RunStats, SimConfig};
use crate::world::{ClickModel, World, WorldConfig};

#[derive(Parser, Debug)]
#[command(version, about = "Simulator benchmark: CTR over time of baselines and the engine on synthetic users")]
struct Args {
    /// Seed of everything: catalog, users, sessions, clicks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// Catalog size. Enough that the users' favourite channels do not run dry within the run,
    /// which would make every policy's CTR fall for a reason that is not learning.
    #[arg(long, default_value_t = 5000)]
    articles: usize,
    /// Rounds of one simulated hour; each user has at most one session per round.
    #[arg(long, default_value_t = 30)]
    rounds: u32,
    /// Articles per refresh (`article_num`).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Share of the first rounds left out of the after-warm-up CTR.
    #[arg(long, default_value_t = 0.2)]
    warmup_share: f64,
    /// Policies to run, in column order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "random,fresh,popularity,oracle,engine")]
    policies: Vec<PolicyKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyKind {
    Random,
    Fresh,
    Popularity,
    Oracle,
    Engine,
}

struct Run {
    name: &'static str,
    stats: RunStats,
    extra: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.users > 0, "--users must be at least 1");
    ensure!(args.articles > 0, "--articles must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!((1..=100).contains(&args.batch), "--batch must be in 1..=100 (the engine's default max_article_num)");
    ensure!((0.0..1.0).contains(&args.warmup_share), "--warmup-share must be in [0, 1)");
    ensure!(!args.policies.is_empty(), "--policies is empty");

    let started = Instant::now();
    let world = World::generate(WorldConfig { seed: args.seed, users: args.users, articles: args.articles });
    let model = ClickModel::default();
    let config = SimConfig { rounds: args.rounds, batch: args.batch, ..SimConfig::default() };
    let rounds = args.rounds as usize;
    let warmup = ((args.warmup_share * rounds as f64).round() as usize).min(rounds - 1);

    println!(
        "reco-sim seed={} users={} articles={} rounds={} batch={} warmup_share={} ({} warm-up rounds)",
        args.seed, args.users, args.articles, args.rounds, args.batch, args.warmup_share, warmup
    );
    let keywords_per_user: usize = world.users.iter().map(|u| u.favourite_keywords.len()).sum();
    println!(
        "world: {} channels, {} keywords; articles published over the 4 days before the start; \
         users have 2-3 favourite channels, {:.1} favourite keywords on average",
        world.channels.len(),
        world.keywords.len(),
        keywords_per_user as f64 / world.users.len() as f64
    );

    let mut runs: Vec<Run> = Vec::new();
    let mut timings: Vec<String> = Vec::new();
    for kind in &args.policies {
        let t = Instant::now();
        let run = match kind {
            PolicyKind::Random => plain(&world, &model, &config, Random::new(&world))?,
            PolicyKind::Fresh => plain(&world, &model, &config, Fresh::new(&world))?,
            PolicyKind::Popularity => plain(&world, &model, &config, Popularity::new(&world))?,
            PolicyKind::Oracle => plain(&world, &model, &config, Oracle::new(&world, model.clone()))?,
            PolicyKind::Engine => {
                let mut engine = EnginePolicy::new(&world, EngineConfig::default())?;
                let stats = sim::run(&world, &model, &config, &mut engine)?;
                let wall = t.elapsed().as_secs_f64();
                timings.push(format!(
                    "timing: engine run {wall:.2} s wall ({:.2} s inside recommend+report), {} refreshes, \
                     {:.0} refreshes/s wall, {:.0} refreshes/s inside the engine",
                    engine.busy.as_secs_f64(),
                    engine.requests,
                    engine.requests as f64 / wall,
                    engine.requests as f64 / engine.busy.as_secs_f64().max(1e-9),
                ));
                let mut extra = format!("{} reports, {} events not accepted", engine.reports, engine.refused);
                if let Some(first) = &engine.first_refusal {
                    extra.push_str(&format!(" (first: {first})"));
                }
                Run { name: "engine", stats, extra: Some(extra) }
            }
        };
        if *kind != PolicyKind::Engine {
            timings.push(format!("timing: {} run {:.2} s wall", run.name, t.elapsed().as_secs_f64()));
        }
        runs.push(run);
    }

    print_windows(&runs, rounds);
    print_after_warmup(&runs, warmup, rounds);
    for t in timings {
        println!("{t}");
    }
    println!("timing: total {:.2} s wall", started.elapsed().as_secs_f64());
    Ok(())
}

fn plain(world: &World, model: &ClickModel, config: &SimConfig, mut policy: impl Policy) -> Result<Run> {
    let stats = sim::run(world, model, config, &mut policy)?;
    Ok(Run { name: policy.name(), stats, extra: None })
}

/// CTR per tenth of the rounds (fewer windows when there are fewer rounds).
fn print_windows(runs: &[Run], rounds: usize) {
    let windows = rounds.min(10);
    println!();
    println!("CTR per window (clicks / exposed items); a round is one simulated hour");
    print!("{:<8} {:<8}", "window", "rounds");
    for r in runs {
        print!(" {:>10}", r.name);
    }
    println!();
    for w in 0..windows {
        let (from, to) = (w * rounds / windows, (w + 1) * rounds / windows);
        let span = if to == from + 1 { to.to_string() } else { format!("{}-{}", from + 1, to) };
        print!("{:<8} {:<8}", w + 1, span);
        for r in runs {
            print!(" {:>9.2}%", 100.0 * r.stats.total(from..to).ctr());
        }
        println!();
    }
}

fn print_after_warmup(runs: &[Run], warmup: usize, rounds: usize) {
    println!();
    println!("after warm-up (rounds {}-{}):", warmup + 1, rounds);
    println!(
        "{:<11} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6}",
        "policy", "refreshes", "exposed", "clicks", "CTR", "reads", "dislikes", "repeats", "short"
    );
    let after = |r: &Run| -> Counts { r.stats.total(warmup..rounds) };
    for r in runs {
        let c = after(r);
        println!(
            "{:<11} {:>9} {:>9} {:>8} {:>7.2}% {:>7} {:>8} {:>8} {:>6}",
            r.name,
            c.requests,
            c.exposures,
            c.clicks,
            100.0 * c.ctr(),
            c.reads,
            c.dislikes,
            r.stats.repeats,
            r.stats.short_batches
        );
    }
    for r in runs {
        if let Some(extra) = &r.extra {
            println!("{}: {extra}", r.name);
        }
    }
    let ctr = |name: &str| runs.iter().find(|r| r.name == name).map(|r| after(r).ctr());
    if let (Some(engine), Some(popularity)) = (ctr("engine"), ctr("popularity")) {
        let ratio = if popularity > 0.0 { engine / popularity } else { f64::INFINITY };
        println!("engine / popularity CTR after warm-up: {ratio:.2}x (target: at least 2x)");
    }
    if let (Some(engine), Some(oracle)) = (ctr("engine"), ctr("oracle")) {
        let share = if oracle > 0.0 { engine / oracle } else { 0.0 };
        println!("engine / oracle CTR after warm-up: {share:.2}x");
    }
}
