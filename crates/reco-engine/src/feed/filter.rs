//! The filter: what the sources proposed, minus what the user must not see, one candidate per id.

use rustc_hash::FxHashMap;

use super::{Candidate, Exclusion};
use crate::model::ArticleId;

/// Drops excluded ids and merges an id proposed by several sources into one candidate.
pub fn filter<'a, const N: usize>(exclusion: &Exclusion<'_>, sources: [Vec<Candidate<'a>>; N]) -> Vec<Candidate<'a>> {
    let mut merged: Vec<Candidate<'a>> = Vec::with_capacity(sources.iter().map(Vec::len).sum());
    let mut slot: FxHashMap<ArticleId, usize> =
        FxHashMap::with_capacity_and_hasher(merged.capacity(), Default::default());
    for c in sources.into_iter().flatten() {
        if exclusion.excludes(c.id) {
            continue;
        }
        match slot.get(&c.id) {
            Some(&i) => merged[i].sources = merged[i].sources.union(c.sources),
            None => {
                slot.insert(c.id, merged.len());
                merged.push(c);
            }
        }
    }
    merged
}
