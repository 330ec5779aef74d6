//! What fills a feed: the baselines, a perfect-knowledge ceiling, and the real engine.
//!
//! Every policy answers a refresh with up to `n` articles the user has not been shown yet,
//! and is told afterwards what the user did with them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reco_engine::store::MemStore;
use reco_engine::{Engine, EngineConfig, ReportedEvent, Verdict};
use rustc_hash::FxHashSet;

use crate::world::{ClickModel, START_MS, World};

/// One refresh. `seen` holds every article already shown to the user in this run.
pub struct Request<'a> {
    pub user: usize,
    pub now_ms: i64,
    pub n: usize,
    pub seen: &'a FxHashSet<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Click,
    Collect,
    Share,
    Read { ms: i64 },
    Dislike,
}

/// An action on the card at `position` of the last batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    pub position: usize,
    pub act: Act,
    pub time_ms: i64,
}

pub trait Policy {
    fn name(&self) -> &'static str;

    /// Article indexes for a new batch, best first.
    fn recommend(&mut self, req: &Request<'_>) -> Result<Vec<u32>>;

    /// What the user did with the batch served at `served_ms`; `now_ms` is the time of the last
    /// interaction (or the exposure when there was none).
    fn feedback(&mut self, user: usize, served_ms: i64, interactions: &[Interaction], now_ms: i64) -> Result<()>;
}

/// Uniform over the unseen articles.
pub struct Random {
    articles: u32,
    rng: ChaCha8Rng,
}

impl Random {
    pub fn new(world: &World) -> Self {
        // Its own stream: the world's draws must not depend on which policy runs.
        Self {
            articles: world.articles.len() as u32,
            rng: ChaCha8Rng::seed_from_u64(world.config.seed ^ 0x5EED_0FBA_5E00),
        }
    }
}

impl Policy for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn recommend(&mut self, req: &Request<'_>) -> Result<Vec<u32>> {
        let unseen = self.articles as usize - req.seen.len();
        let mut picked: Vec<u32> = Vec::with_capacity(req.n);
        if unseen <= 2 * req.n {
            // Nearly exhausted: rejection sampling would spin, so list what is left.
            let mut left: Vec<u32> = (0..self.articles).filter(|a| !req.seen.contains(a)).collect();
            while !left.is_empty() && picked.len() < req.n {
                picked.push(left.swap_remove(self.rng.random_range(0..left.len())));
            }
            return Ok(picked);
        }
        while picked.len() < req.n {
            let a = self.rng.random_range(0..self.articles);
            if !req.seen.contains(&a) && !picked.contains(&a) {
                picked.push(a);
            }
        }
        Ok(picked)
    }

    fn feedback(&mut self, _: usize, _: i64, _: &[Interaction], _: i64) -> Result<()> {
        Ok(())
    }
}

/// The newest unseen articles.
pub struct Fresh {
    newest_first: Vec<u32>,
}

impl Fresh {
    pub fn new(world: &World) -> Self {
        Self { newest_first: newest_first(world) }
    }
}

fn newest_first(world: &World) -> Vec<u32> {
    let mut order: Vec<u32> = (0..world.articles.len() as u32).collect();
    order.sort_by_key(|&a| (std::cmp::Reverse(world.articles[a as usize].publish_ms), a));
    order
}

impl Policy for Fresh {
    fn name(&self) -> &'static str {
        "fresh"
    }

    fn recommend(&mut self, req: &Request<'_>) -> Result<Vec<u32>> {
        Ok(self.newest_first.iter().copied().filter(|a| !req.seen.contains(a)).take(req.n).collect())
    }

    fn feedback(&mut self, _: usize, _: i64, _: &[Interaction], _: i64) -> Result<()> {
        Ok(())
    }
}

/// The most clicked unseen articles so far (clicks of every user in this run, no decay);
/// ties, including the cold start where nothing was clicked, go to the newest.
pub struct Popularity {
    clicks: Vec<u32>,
    /// Fresh rank of each article, the tie-break.
    fresh_rank: Vec<u32>,
    /// (clicks, fresh rank, article), most clicked first.
    order: BTreeSet<(std::cmp::Reverse<u32>, u32, u32)>,
    last_batch: Vec<u32>,
}

impl Popularity {
    pub fn new(world: &World) -> Self {
        let mut fresh_rank = vec![0; world.articles.len()];
        for (rank, a) in newest_first(world).into_iter().enumerate() {
            fresh_rank[a as usize] = rank as u32;
        }
        let order =
            (0..world.articles.len() as u32).map(|a| (std::cmp::Reverse(0), fresh_rank[a as usize], a)).collect();
        Self { clicks: vec![0; world.articles.len()], fresh_rank, order, last_batch: Vec::new() }
    }
}

impl Policy for Popularity {
    fn name(&self) -> &'static str {
        "popularity"
    }

    fn recommend(&mut self, req: &Request<'_>) -> Result<Vec<u32>> {
        self.last_batch = self.order.iter().map(|k| k.2).filter(|a| !req.seen.contains(a)).take(req.n).collect();
        Ok(self.last_batch.clone())
    }

    fn feedback(&mut self, _: usize, _: i64, interactions: &[Interaction], _: i64) -> Result<()> {
        for i in interactions.iter().filter(|i| i.act == Act::Click) {
            let a = self.last_batch[i.position];
            let c = &mut self.clicks[a as usize];
            let rank = self.fresh_rank[a as usize];
            self.order.remove(&(std::cmp::Reverse(*c), rank, a));
            *c += 1;
            self.order.insert((std::cmp::Reverse(*c), rank, a));
        }
        Ok(())
    }
}

/// Knows the hidden model: the unseen articles of highest click probability. Not a
/// recommender but the ceiling, to tell how far from it the others are.
pub struct Oracle<'w> {
    world: &'w World,
    model: ClickModel,
    /// Per user, per article: the appeal without its freshness factor, the only one that changes
    /// with time (users × articles floats: fine for benchmark sizes).
    timeless: Vec<Vec<f32>>,
    /// Per article, `2^((publish - START) / half_life)`: freshness then needs no `exp2` per
    /// article and request, as every article is published before the start.
    decay: Vec<f64>,
}

impl<'w> Oracle<'w> {
    pub fn new(world: &'w World, model: ClickModel) -> Self {
        let timeless = (0..world.users.len())
            .map(|u| {
                (0..world.articles.len())
                    .map(|a| (model.base_ctr * world.interest(u, a) * world.articles[a].quality) as f32)
                    .collect()
            })
            .collect();
        let decay = world
            .articles
            .iter()
            .map(|a| ((a.publish_ms - START_MS) as f64 / model.freshness_half_life_ms).exp2())
            .collect();
        Self { world, model, timeless, decay }
    }
}

impl Policy for Oracle<'_> {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn recommend(&mut self, req: &Request<'_>) -> Result<Vec<u32>> {
        let timeless = &self.timeless[req.user];
        let floor = self.model.freshness_floor;
        let now = (-((req.now_ms - START_MS) as f64) / self.model.freshness_half_life_ms).exp2();
        let mut scored: Vec<(f64, u32)> = (0..self.world.articles.len() as u32)
            .filter(|a| !req.seen.contains(a))
            .map(|a| {
                let freshness = floor + (1.0 - floor) * now * self.decay[a as usize];
                (f64::from(timeless[a as usize]) * freshness, a)
            })
            .collect();
        let best_first = |x: &(f64, u32), y: &(f64, u32)| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1));
        if scored.len() > req.n {
            scored.select_nth_unstable_by(req.n, best_first);
            scored.truncate(req.n);
        }
        scored.sort_unstable_by(best_first);
        Ok(scored.into_iter().map(|(_, a)| a).collect())
    }

    fn feedback(&mut self, _: usize, _: i64, _: &[Interaction], _: i64) -> Result<()> {
        Ok(())
    }
}

/// The real engine, in process over a [`MemStore`], through its public API only: refreshes in
/// 推荐 (channel 0), the batch's exposure param and the cards' params reported back.
pub struct EnginePolicy {
    engine: Engine<MemStore>,
    articles: usize,
    user_ids: Vec<String>,
    exposure: String,
    tracks: Vec<[String; 4]>,
    /// Time spent inside `recommend` and `report`.
    pub busy: Duration,
    pub requests: u64,
    pub reports: u64,
    /// Events the engine did not accept as new (rejected or duplicate); should stay 0.
    pub refused: u64,
    pub first_refusal: Option<String>,
}

/// The tracking secret of the simulated deployment (any fixed 16+ bytes).
const SECRET: &[u8] = b"reco-sim fixed tracking secret, not a real one";

impl EnginePolicy {
    pub fn new(world: &World, config: EngineConfig) -> Result<Self> {
        let store = MemStore::new();
        reco_engine::store::Store::upsert_articles(&store, &world.engine_articles())
            .context("cannot load the catalog into the store")?;
        let engine = Engine::new(store, SECRET, config).context("cannot start the engine")?;
        Ok(Self {
            engine,
            articles: world.articles.len(),
            user_ids: (0..world.users.len()).map(|u| format!("sim-user-{u}")).collect(),
            exposure: String::new(),
            tracks: Vec::new(),
            busy: Duration::ZERO,
            requests: 0,
            reports: 0,
            refused: 0,
            first_refusal: None,
        })
    }
}

impl Policy for EnginePolicy {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn recommend(&mut self, req: &Request<'_>) -> Result<Vec<u32>> {
        let started = Instant::now();
        let feed_req = self.engine.validate(&self.user_ids[req.user], 0, req.n as i32, req.now_ms)?;
        let resp = self.engine.recommend(&feed_req, req.now_ms).context("recommend failed")?;
        self.busy += started.elapsed();
        self.requests += 1;
        ensure!(resp.refreshed, "the engine answered a refresh of user {} from history", req.user);
        self.exposure = resp.exposure;
        self.tracks.clear();
        let mut picked = Vec::with_capacity(resp.items.len());
        for item in resp.items {
            let index = item.article_id - 1;
            if index < 0 || index as usize >= self.articles {
                bail!("the engine served unknown article {}", item.article_id);
            }
            picked.push(index as u32);
            self.tracks.push(item.track);
        }
        Ok(picked)
    }

    fn feedback(&mut self, _: usize, served_ms: i64, interactions: &[Interaction], now_ms: i64) -> Result<()> {
        let mut events = Vec::with_capacity(interactions.len() + 1);
        if !self.exposure.is_empty() {
            events.push(ReportedEvent {
                param: std::mem::take(&mut self.exposure),
                action_time: served_ms,
                read_duration_ms: 0,
                dislike: false,
            });
        }
        for i in interactions {
            let track = &self.tracks[i.position];
            // Track order is click, collect, share, read; a dislike rides on the click param.
            let (param, read_duration_ms, dislike) = match i.act {
                Act::Click => (&track[0], 0, false),
                Act::Collect => (&track[1], 0, false),
                Act::Share => (&track[2], 0, false),
                Act::Read { ms } => (&track[3], ms, false),
                Act::Dislike => (&track[0], 0, true),
            };
            events.push(ReportedEvent { param: param.clone(), action_time: i.time_ms, read_duration_ms, dislike });
        }
        if events.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let verdicts = self.engine.report(&events, now_ms).context("report failed")?;
        self.busy += started.elapsed();
        self.reports += 1;
        for v in verdicts {
            if !matches!(v, Verdict::Accepted(_)) {
                self.refused += 1;
                self.first_refusal.get_or_insert_with(|| format!("{v:?}"));
            }
        }
        Ok(())
    }
}
