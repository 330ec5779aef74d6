//! The newest-first walks of the fresh and exploration sources, and what the fresh source
//! remembers of its walks per user so that a long tenure costs little: stretches of a
//! channel's newest-first list in which every live article was excluded for the user when a
//! walk passed them, which later walks (of both sources) jump in O(log n) instead of looking at
//! each served article again (~50 ns each, 10,000 of them after 1,000 batches).
//!
//! Why a jump is exact. A stretch `[from, to)` (in [`Newest`] order) held only excluded live
//! articles when a walk recorded it. What a user must not see only grows within a record (a
//! batch's ids stay served when the batch falls off history, reads and dislikes stay), so
//! those articles stay excluded. Removals (retraction, age-out) only take articles out. An
//! insertion lands in the stretch only if it is not newer than every article the list ever
//! held, and the catalog logs every such insertion ([`Catalog::inserted_behind`]): before a
//! walk jumps a stretch, the stretch is cut around each one logged since it was recorded, and
//! when the log cannot say (another catalog line, an older snapshot, more insertions than the
//! log keeps) nothing remembered is used. So the walk that jumps visits every live article that
//! is not excluded, in the same order, and returns what the full walk returns.
//!
//! Where it lives: in the user's record ([`UserRecord`]), beside the served history it
//! summarizes, so it goes when the record is evicted and a reloaded record starts without it:
//! its first walk is a full one and records the stretches anew. Nothing is persisted. A backend
//! that builds the record afresh on every call (Redis) gains nothing from it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Candidate, Exclusion};
use crate::catalog::{Catalog, CatalogPoint, Newest};
use crate::mem;
use crate::model::{Article, ChannelId};
use crate::store::Sources;
#[cfg(doc)]
use crate::store::UserRecord;

/// Stretches of fewer excluded articles are not remembered: jumping one costs about as much
/// as looking at this many.
const MIN_STRETCH: u32 = 8;

/// Stretches remembered per (user, channel), the longest ones: the bound on the memory
/// (32 × 40 bytes).
const MAX_STRETCHES: usize = 32;

/// `[from, to)` of a channel's newest-first list held only articles excluded for the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stretch {
    from: Newest,
    to: Newest,
    /// How many articles the walks passed in it (an upper bound once the stretch was cut):
    /// which stretches are worth keeping.
    len: u32,
}

#[derive(Clone, Debug)]
struct Remembered {
    channel: ChannelId,
    /// The catalog snapshot the stretches were found in.
    at: CatalogPoint,
    /// Sorted, disjoint.
    stretches: Box<[Stretch]>,
}

/// A user's remembered stretches, per channel. Shared by the walks through `&UserRecord` (a
/// backend hands records out by reference), hence the lock; two walks racing leave the last
/// one's stretches, which are as valid as the other's.
#[derive(Debug, Default)]
pub struct Stretches(Mutex<Vec<Remembered>>);

impl Clone for Stretches {
    fn clone(&self) -> Self {
        Self(Mutex::new(self.lock().clone()))
    }
}

impl Stretches {
    fn lock(&self) -> MutexGuard<'_, Vec<Remembered>> {
        // Every change is one assignment: a panic cannot leave the list half-changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stretches a walk of `channel` in `catalog` may jump: those remembered, cut around
    /// every key inserted since among them; none when the catalog cannot say what was.
    fn usable(&self, catalog: &Catalog, channel: ChannelId) -> Vec<Stretch> {
        let (at, mut stretches) = match self.lock().iter().find(|r| r.channel == channel) {
            Some(r) => (r.at, r.stretches.to_vec()),
            None => return Vec::new(),
        };
        let Some(inserted) = catalog.inserted_behind(channel, at) else { return Vec::new() };
        for key in inserted {
            let i = stretches.partition_point(|s| s.to <= key);
            let Some(&s) = stretches.get(i).filter(|s| s.from <= key) else { continue };
            let before = Some(Stretch { to: key, ..s }).filter(|s| s.from < s.to);
            let after = key.successor().map(|next| Stretch { from: next, ..s }).filter(|s| s.from < s.to);
            stretches.splice(i..=i, before.into_iter().chain(after));
        }
        stretches
    }

    /// Keeps the stretches a walk of `channel` in the snapshot at `at` answered (sorted), the
    /// longest [`MAX_STRETCHES`] of at least [`MIN_STRETCH`] articles, in place of what was
    /// remembered for the channel.
    fn remember(&self, channel: ChannelId, at: CatalogPoint, mut passed: Vec<Stretch>) {
        passed.retain(|s| s.len >= MIN_STRETCH);
        if passed.len() > MAX_STRETCHES {
            passed.select_nth_unstable_by(MAX_STRETCHES - 1, |a, b| b.len.cmp(&a.len));
            passed.truncate(MAX_STRETCHES);
            passed.sort_unstable_by_key(|s| s.from);
        }
        // A copy, not `into_boxed_slice`: shrinking in place may keep the larger block, which
        // the memory estimate would not count.
        let stretches: Box<[Stretch]> = passed.as_slice().into();
        let mut all = self.lock();
        let i = all.iter().position(|r| r.channel == channel);
        match (i, stretches.is_empty()) {
            (Some(i), true) => {
                all.swap_remove(i);
            }
            (Some(i), false) => all[i] = Remembered { channel, at, stretches },
            (None, false) => all.push(Remembered { channel, at, stretches }),
            (None, true) => {}
        }
    }

    /// The heap bytes held, as [`UserRecord::heap_bytes`] counts them.
    pub fn heap_bytes(&self) -> usize {
        let all = self.lock();
        mem::vec_bytes::<Remembered>(all.capacity())
            + all.iter().map(|r| mem::vec_bytes::<Stretch>(r.stretches.len())).sum::<usize>()
    }
}

/// The first `limit` live articles of `channel`, newest first, that `exclusion` lets through:
/// what walking the whole list would return, jumping the stretches the user's earlier walks
/// remembered, and remembering this walk's. Stretches are remembered per channel for the
/// exclusion of a refresh in that channel, so a walk under another channel's exclusion uses
/// and keeps none.
pub(super) fn walk_newest<'a>(
    catalog: &'a Catalog,
    channel: ChannelId,
    exclusion: &Exclusion<'_>,
    limit: usize,
) -> Vec<Candidate<'a>> {
    if limit == 0 {
        return Vec::new();
    }
    let memory = memory(exclusion, channel);
    let known = memory.map(|m| m.usable(catalog, channel)).unwrap_or_default();
    let mut out = Vec::with_capacity(limit);
    let passed = walk(catalog, channel, exclusion, &known, Newest::END, |a| {
        out.push(Candidate::new(a, Sources::FRESH));
        out.len() < limit
    });
    if let Some(memory) = memory {
        memory.remember(channel, catalog.point(), passed);
    }
    out
}

/// Calls `take` with the live articles of `channel` before the key `end`, newest first, that
/// `exclusion` lets through, until it answers false: the full walk's articles, jumping the
/// stretches the user's walks remembered (it remembers none itself).
pub(super) fn walk_newest_before<'a>(
    catalog: &'a Catalog,
    channel: ChannelId,
    exclusion: &Exclusion<'_>,
    end: Newest,
    take: impl FnMut(&'a Article) -> bool,
) {
    let known = memory(exclusion, channel).map(|m| m.usable(catalog, channel)).unwrap_or_default();
    walk(catalog, channel, exclusion, &known, end, take);
}

/// The user's stretches of `channel`, when `exclusion` is a refresh's in that channel.
fn memory<'e>(exclusion: &Exclusion<'e>, channel: ChannelId) -> Option<&'e Stretches> {
    (exclusion.channel_id() == channel).then(|| exclusion.user().stretches())
}

/// Calls `take` with every live article of `channel` before `end`, newest first, that
/// `exclusion` lets through, until it answers false; jumps the `known` stretches (sorted,
/// disjoint, valid in `catalog`). Answers the excluded stretches it passed and, when `take`
/// stopped it, the known ones it did not reach, in order.
fn walk<'a>(
    catalog: &'a Catalog,
    channel: ChannelId,
    exclusion: &Exclusion<'_>,
    known: &[Stretch],
    end: Newest,
    mut take: impl FnMut(&'a Article) -> bool,
) -> Vec<Stretch> {
    // The first known stretch not wholly behind the walk.
    let mut next = 0;
    let mut passed = Vec::new();
    // The excluded stretch the walk is in: its first key and its length so far.
    let mut open: Option<(Newest, u32)> = None;
    let mut list = catalog.newest_from(channel, Newest::START);
    loop {
        let Some(article) = list.next().filter(|a| Newest::of(a) < end) else {
            // The end: everything from the open stretch's start on to it is excluded.
            if let Some((from, len)) = open {
                passed.push(Stretch { from, to: end, len });
            }
            break;
        };
        let key = Newest::of(article);
        while known.get(next).is_some_and(|s| s.to <= key) {
            next += 1;
        }
        if let Some(s) = known.get(next).filter(|s| s.from <= key) {
            let (from, len) = open.unwrap_or((key, 0));
            open = Some((from, len.saturating_add(s.len)));
            list = catalog.newest_from(channel, s.to);
            next += 1;
            continue;
        }
        if exclusion.excludes(article.id) {
            let (from, len) = open.unwrap_or((key, 0));
            open = Some((from, len.saturating_add(1)));
            continue;
        }
        if let Some((from, len)) = open.take() {
            passed.push(Stretch { from, to: key, len });
        }
        if !take(article) {
            // Stopped at an article that is not excluded, so in no known stretch: those
            // not reached are all beyond it, still valid, and what the next walk may need
            // once the articles it stopped at are served.
            passed.extend_from_slice(&known[next..]);
            break;
        }
    }
    passed
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::catalog::{BEHIND_LOG, Retraction};
    use crate::model::{ALL_CHANNELS, Article, ArticleId};
    use crate::store::{Batch, BatchItem, UserRecord};

    fn article(id: ArticleId, channel: ChannelId, publish_time: i64) -> Article {
        Article {
            id,
            channel_id: channel,
            title: format!("t{id}"),
            author: String::new(),
            publish_time,
            keywords: vec![format!("k{}", id % 7)],
            summary: String::new(),
            cover: String::new(),
        }
    }

    fn serve(user: &mut UserRecord, channel: ChannelId, time: i64, ids: &[ArticleId], max_batches: usize) {
        let items = ids.iter().map(|&article_id| BatchItem { article_id, sources: Sources::FRESH }).collect();
        user.append(channel, Arc::new(Batch { time, request_id: 0, bucket: 0, items }), max_batches);
    }

    /// The walk with the user's stretches, checked against the walk of every article, and the
    /// windowed walk (with a filter of its own, as exploration's) against its full one.
    fn walk(catalog: &Catalog, channel: ChannelId, user: &UserRecord, limit: usize) -> Vec<ArticleId> {
        let ex = Exclusion::new(user, channel);
        let full: Vec<ArticleId> =
            catalog.newest_first(channel).filter(|a| !ex.excludes(a.id)).take(limit).map(|a| a.id).collect();
        let got: Vec<ArticleId> = walk_newest(catalog, channel, &ex, limit).iter().map(|c| c.id).collect();
        assert_eq!(got, full, "channel {channel}, limit {limit}");
        // The exploration source's walk: the window of the `3 * limit` newest, what the
        // stretches just remembered let it jump.
        let window = 3 * limit;
        let full: Vec<ArticleId> = catalog
            .newest_first(channel)
            .take(window)
            .filter(|a| !ex.excludes(a.id) && a.id % 3 != 0)
            .take(limit)
            .map(|a| a.id)
            .collect();
        let mut windowed = Vec::new();
        walk_newest_before(catalog, channel, &ex, catalog.window_end(channel, window), |a| {
            if a.id % 3 != 0 {
                windowed.push(a.id);
            }
            windowed.len() < limit
        });
        assert_eq!(windowed, full, "channel {channel}, window {window}");
        got
    }

    /// The remembered stretches of `channel` as (from, to, len), ids for keys (0: the end).
    fn remembered(user: &UserRecord, catalog: &Catalog, channel: ChannelId) -> Vec<(ArticleId, ArticleId, u32)> {
        let id = |k: Newest| if k == Newest::END { 0 } else { k.id() };
        user.stretches().usable(catalog, channel).iter().map(|s| (id(s.from), id(s.to), s.len)).collect()
    }

    /// Channel 1 with articles 1..=100, id = publish time (so 100 is the newest).
    fn hundred() -> Catalog {
        Catalog::new((1..=100).map(|id| article(id, 1, id)).collect())
    }

    #[test]
    fn a_walk_remembers_what_it_passed_and_the_next_jumps_it() {
        let catalog = hundred();
        let mut user = UserRecord::default();
        serve(&mut user, 1, 1, &(41..=100).collect::<Vec<_>>(), 50);
        assert_eq!(walk(&catalog, 1, &user, 3), [40, 39, 38]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 40, 60)]);
        // 39 served, 40 and 38 not: the walk jumps 100..=41, passes 39 alone (too short to keep).
        serve(&mut user, 1, 2, &[39], 50);
        assert_eq!(walk(&catalog, 1, &user, 3), [40, 38, 37]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 40, 60)]);
        serve(&mut user, 1, 3, &[40, 38, 37], 50);
        assert_eq!(walk(&catalog, 1, &user, 2), [36, 35]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 36, 64)], "the jumped stretch grows with what follows it");
        // A user who has seen everything: the walk runs to the end and remembers that.
        serve(&mut user, 1, 4, &(1..=36).collect::<Vec<_>>(), 50);
        assert!(walk(&catalog, 1, &user, 5).is_empty());
        assert_eq!(remembered(&user, &catalog, 1), [(100, 0, 100)]);
    }

    #[test]
    fn a_walk_that_stops_early_keeps_the_stretches_beyond() {
        let catalog = hundred();
        let mut user = UserRecord::default();
        serve(&mut user, 1, 1, &(41..=100).filter(|&id| id != 80).collect::<Vec<_>>(), 50);
        assert_eq!(walk(&catalog, 1, &user, 2), [80, 40]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 80, 20), (79, 40, 39)]);
        // Stopped at 80, this walk never reaches the second stretch: it stays remembered, for
        // when 80 is served.
        assert_eq!(walk(&catalog, 1, &user, 1), [80]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 80, 20), (79, 40, 39)]);
        serve(&mut user, 1, 2, &[80], 50);
        assert_eq!(walk(&catalog, 1, &user, 1), [40]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 40, 60)]);
    }

    #[test]
    fn a_backdated_import_among_passed_articles_is_found() {
        let mut catalog = hundred();
        let mut user = UserRecord::default();
        serve(&mut user, 1, 1, &(41..=100).collect::<Vec<_>>(), 50);
        assert_eq!(walk(&catalog, 1, &user, 2), [40, 39]);
        // Published now with an old publish time, between articles the user was served, and
        // one older than everything: both land behind what the walk passed.
        catalog.upsert(Arc::new(article(1_000, 1, 70)));
        catalog.upsert(Arc::new(article(1_001, 1, 0)));
        assert_eq!(
            remembered(&user, &catalog, 1),
            [(100, 1_000, 60), (999, 40, 60)],
            "cut around the import (999 at time 70: the key after it)"
        );
        assert_eq!(walk(&catalog, 1, &user, 2), [1_000, 40]);
        serve(&mut user, 1, 2, &(1..=40).chain([1_000]).collect::<Vec<_>>(), 50);
        assert_eq!(walk(&catalog, 1, &user, 2), [1_001]);
        // A new article on top lands in front of every stretch: nothing is cut.
        catalog.upsert(Arc::new(article(1_002, 1, 500)));
        assert_eq!(remembered(&user, &catalog, 1).len(), 1);
        assert_eq!(walk(&catalog, 1, &user, 2), [1_002, 1_001]);
    }

    #[test]
    fn a_retraction_neither_brings_back_nor_skips_an_article() {
        let mut catalog = hundred();
        let mut user = UserRecord::default();
        serve(&mut user, 1, 1, &(41..=100).collect::<Vec<_>>(), 50);
        assert_eq!(walk(&catalog, 1, &user, 2), [40, 39]);
        let retraction = Retraction { reason: "r".into(), time_ms: 0 };
        // The first article the walk passed, one in the middle, and the first unseen one (the
        // stretch's end).
        for id in [100, 70, 40] {
            assert!(catalog.retract(id, retraction.clone()));
        }
        assert_eq!(walk(&catalog, 1, &user, 2), [39, 38]);
        // Published again (a retracted id may come back) it is served history: still excluded,
        // while the unserved 40 is a candidate again.
        catalog.upsert(Arc::new(article(70, 1, 70)));
        catalog.upsert(Arc::new(article(40, 1, 40)));
        assert_eq!(walk(&catalog, 1, &user, 3), [40, 39, 38]);
    }

    #[test]
    fn memory_is_dropped_for_another_catalog_line_or_an_older_snapshot() {
        let catalog = hundred();
        let mut user = UserRecord::default();
        serve(&mut user, 1, 1, &(41..=100).collect::<Vec<_>>(), 50);
        let before = catalog.clone();
        let mut after = catalog.clone();
        after.retract(60, Retraction { reason: "r".into(), time_ms: 0 });
        after.upsert(Arc::new(article(60, 1, 60)));
        assert_eq!(walk(&after, 1, &user, 2), [40, 39]);
        assert!(!remembered(&user, &after, 1).is_empty());
        assert!(remembered(&user, &before, 1).is_empty(), "the walk was in a later snapshot");
        assert!(remembered(&user, &hundred(), 1).is_empty(), "a catalog built again is another line");
        // More insertions behind the walk than the log keeps: it cannot tell where they went.
        let mut flooded = after.clone();
        for i in 0..BEHIND_LOG as i64 + 1 {
            flooded.upsert(Arc::new(article(10_000 + i, 1, 1)));
        }
        assert!(remembered(&user, &flooded, 1).is_empty());
        assert_eq!(walk(&flooded, 1, &user, 2), [40, 39]);
    }

    #[test]
    fn stretches_are_kept_per_refresh_channel() {
        // Channel 1's list under 推荐's exclusion (the affinity source's view) is not the
        // list a refresh in channel 1 walks: no memory is shared between them.
        let catalog = hundred();
        let mut user = UserRecord::default();
        serve(&mut user, ALL_CHANNELS, 1, &(41..=100).collect::<Vec<_>>(), 50);
        let ex = Exclusion::new(&user, ALL_CHANNELS);
        let got: Vec<ArticleId> = walk_newest(&catalog, 1, &ex, 2).iter().map(|c| c.id).collect();
        assert_eq!(got, [40, 39]);
        assert!(remembered(&user, &catalog, 1).is_empty());
        assert_eq!(walk(&catalog, 1, &user, 2), [40, 39]);
        assert_eq!(remembered(&user, &catalog, 1), [(100, 40, 60)]);
    }

    #[test]
    fn the_records_estimate_covers_the_stretches() {
        // 推荐 and channels 1..=3; everything served but every 61st article: stretches of 60
        // (20 per channel), more in 推荐 than are kept.
        let catalog = Catalog::new((1..=3_000).map(|id| article(id, 1 + (id % 3) as ChannelId, id)).collect());
        let mut user = UserRecord::default();
        serve(&mut user, ALL_CHANNELS, 1, &(1..=3_000).filter(|id| id % 61 != 0).collect::<Vec<_>>(), 50);
        let ((), held, _) = crate::mem::counting::measure(|| {
            for channel in [ALL_CHANNELS, 1, 2, 3] {
                let ex = Exclusion::new(&user, channel);
                assert!(!walk_newest(&catalog, channel, &ex, 100).is_empty());
            }
        });
        assert_eq!(remembered(&user, &catalog, ALL_CHANNELS).len(), MAX_STRETCHES);
        assert!(remembered(&user, &catalog, 2).len() > 10);
        let estimate = user.stretches().heap_bytes() as isize;
        assert!(estimate >= held && estimate <= held + held / 3 + 1_024, "estimated {estimate}, allocated {held}");
    }

    /// Random refreshes (leaving unserved holes, history trimmed to 3 batches) in 推荐 and
    /// three channels, between random catalog changes: publishes on top, backdated ones,
    /// retractions, republished and moved articles, reads, age-out, catalog rebuilds, walks of
    /// an older snapshot. Every walk must return what the full walk returns (`walk` checks).
    #[test]
    fn jumping_walks_return_what_full_walks_do_through_any_change() {
        for seed in 0..12 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut top = 10_000i64;
            let mut next_id = 1i64;
            let mut current: BTreeMap<ArticleId, Article> = BTreeMap::new();
            for _ in 0..600 {
                let a = article(next_id, rng.random_range(1..=3), rng.random_range(1..top));
                current.insert(a.id, a);
                next_id += 1;
            }
            let mut retracted: BTreeSet<ArticleId> = BTreeSet::new();
            let mut catalog = Catalog::new(current.values().cloned().collect());
            let mut older = catalog.clone();
            let mut user = UserRecord::default();
            let mut time = 0;
            let mut walks = 0;
            for _ in 0..1_500 {
                let channel = [ALL_CHANNELS, 1, 2, 3][rng.random_range(0..4)];
                let mut next = catalog.clone();
                let pick = |rng: &mut ChaCha8Rng, current: &BTreeMap<ArticleId, Article>| {
                    *current.keys().nth(rng.random_range(0..current.len())).expect("articles")
                };
                match rng.random_range(0..100) {
                    0..55 => {
                        let limit = rng.random_range(1..30);
                        let got = walk(&catalog, channel, &user, limit);
                        walks += 1;
                        let served: Vec<ArticleId> = got.into_iter().filter(|_| rng.random_bool(0.8)).collect();
                        time += 1;
                        serve(&mut user, channel, time, &served, 3);
                        continue;
                    }
                    55..58 => {
                        walk(&older, channel, &user, rng.random_range(1..30));
                        continue;
                    }
                    58..66 => {
                        top += rng.random_range(0..3);
                        let a = article(next_id, rng.random_range(1..=3), top);
                        next_id += 1;
                        next.upsert(Arc::new(a.clone()));
                        current.insert(a.id, a);
                    }
                    66..74 => {
                        let a = article(next_id, rng.random_range(1..=3), rng.random_range(1..=top));
                        next_id += 1;
                        next.upsert(Arc::new(a.clone()));
                        current.insert(a.id, a);
                    }
                    74..80 => {
                        let id = pick(&mut rng, &current);
                        if next.retract(id, Retraction { reason: "r".into(), time_ms: 0 }) {
                            retracted.insert(id);
                        }
                    }
                    80..84 => {
                        let id = pick(&mut rng, &current);
                        next.upsert(Arc::new(current[&id].clone()));
                        retracted.remove(&id);
                    }
                    84..88 => {
                        let id = pick(&mut rng, &current);
                        let a = current.get_mut(&id).expect("picked");
                        a.publish_time = rng.random_range(1..=top);
                        next.upsert(Arc::new(a.clone()));
                        retracted.remove(&id);
                    }
                    88..94 => {
                        user.mark_read(pick(&mut rng, &current));
                        continue;
                    }
                    94..96 => {
                        let before = current.values().map(|a| a.publish_time).min().unwrap_or(0) + 50;
                        for id in next.age_out(before) {
                            current.remove(&id);
                            retracted.remove(&id);
                        }
                    }
                    96..98 => {
                        let r = retracted.iter().map(|&id| (id, Retraction { reason: "r".into(), time_ms: 0 }));
                        next = Catalog::with_retractions(current.values().cloned().collect(), r.collect());
                    }
                    _ => {
                        for _ in 0..rng.random_range(1..60) {
                            let a = article(next_id, rng.random_range(1..=3), rng.random_range(1..=top));
                            next_id += 1;
                            next.upsert(Arc::new(a.clone()));
                            current.insert(a.id, a);
                        }
                    }
                }
                older = std::mem::replace(&mut catalog, next);
            }
            assert!(walks > 700, "seed {seed}: {walks} walks");
        }
    }
}
