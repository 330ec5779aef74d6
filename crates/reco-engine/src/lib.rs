//! The reco feed engine, free of any transport or storage detail.
//!
//! It holds the catalog in memory, applies the paging rules of the seed contract (refresh vs
//! history, never repeat), ranks candidates in named stages (candidates -> filter -> score ->
//! pick), mints and verifies signed tracking params, and turns reported params into events.
//! Everything durable goes through the [`store::Store`] trait; protocol types are converted at
//! the server's edge.

pub mod catalog;
mod engine;
pub mod feed;
pub mod ftrl;
pub mod hot;
mod layered;
pub mod learn;
pub mod mem;
pub mod model;
pub mod params;
pub mod popularity;
pub mod stats;
pub mod store;
pub mod text;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use engine::{
    ArticleStats, CatalogChange, ChangeKind, ChangeNotifier, DAY_MS, Engine, EngineConfig, EngineError, EventNotifier,
    Explanation, FeedItem, FeedRequest, FeedResponse, MAX_CHANGES, Observation, PublishVerdict, ReportedEvent,
    RetractVerdict, Since, StatsReport, Verdict, Wanted, WatchVerdict, WatchedEvent,
};
pub use feed::Variant;

// Unit tests hold memory estimates against what mimalloc really hands out (see `mem`).
#[cfg(test)]
#[global_allocator]
static ALLOC: mem::counting::Counting = mem::counting::Counting;
