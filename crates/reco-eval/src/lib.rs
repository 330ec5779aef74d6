//! Offline evaluation of recommenders on MIND-format impression logs.
//!
//! This crate is the library behind `reco eval`: it parses MIND's `news.tsv` and
//! `behaviors.tsv` (skipping and reporting malformed lines instead of failing), replays
//! the impressions in time order through any number of [`Scorer`]s — each impression is
//! scored by every scorer as it stands at that moment, then fed back as exposures and
//! clicks — and computes the MIND benchmark's metrics (AUC, MRR, nDCG@5, nDCG@10).
//! It ships the baselines (random, popularity, recent CTR), the full engine as one more
//! scorer ([`RecoScorer`]: a `reco_engine::Engine` over an in-memory store, fed the same
//! feedback through its offline API) and a seeded generator of a small synthetic
//! MIND-format dataset for tests and CI. It depends on the engine, never the other way.

pub mod engine;
pub mod fixture;
pub mod metrics;
pub mod mind;
pub mod replay;
pub mod scorer;

use std::path::PathBuf;

pub use engine::{ArticleMap, RecoScorer, map_news};
pub use mind::{Impression, News, NewsId, NewsIndex, Parsed, Skip, SkipReason};
pub use replay::{Counts, Report, ScorerReport, replay};
pub use scorer::{DecayedCtr, Event, Feedback, Popularity, Random, RecentCtr, Scorer};

/// What can stop an evaluation (malformed input never does: it is skipped and counted).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot start the engine: {0}")]
    Engine(#[from] reco_engine::EngineError),
    #[error("scorer {scorer} returned {got} scores for {expected} candidates")]
    ScoreCount { scorer: String, expected: usize, got: usize },
}
