//! The picker: fills the batch best-first under the diversity rule, with exploration slots.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use super::{RankInput, Scored};
use crate::model::{ALL_CHANNELS, Article, ChannelId};
use crate::store::Sources;

/// Fills `article_num` slots: exploration slots (on average `explore_rate` of them, at random
/// positions after the first) take random exploration candidates; the others take the best-scored candidate
/// that keeps the diversity rule.
pub fn pick<'a>(input: &RankInput<'a>, mut scored: Vec<Scored<'a>>) -> Vec<Scored<'a>> {
    let n = input.article_num.min(scored.len());
    scored.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let rate = input.variant.explore_rate;
    let mut explore_slots = (rate * n as f64 + rng.random::<f64>()).floor() as usize;
    let pool: Vec<usize> = (0..scored.len()).filter(|&i| scored[i].sources.contains(Sources::EXPLORE)).collect();
    // The top card is always the best-scored one: exploration takes slots 1.. only.
    explore_slots = explore_slots.min(pool.len()).min(n.saturating_sub(1));
    let chosen: Vec<usize> =
        rand::seq::index::sample(&mut rng, pool.len(), explore_slots).into_iter().map(|i| pool[i]).collect();
    let slots: Vec<usize> =
        rand::seq::index::sample(&mut rng, n.saturating_sub(1), explore_slots).into_iter().map(|i| i + 1).collect();

    // Best first, each list in its order; a taken candidate is marked, not removed (removing
    // shifts the rest: quadratic at 100 cards). `first` skips the taken prefix.
    let mut explore: Vec<Scored<'a>> = Vec::with_capacity(explore_slots);
    let mut rest: Vec<Scored<'a>> = Vec::with_capacity(scored.len());
    for (i, s) in scored.into_iter().enumerate() {
        if chosen.contains(&i) { explore.push(s) } else { rest.push(s) }
    }
    let mut explore_taken = vec![false; explore.len()];
    let mut rest_taken = vec![false; rest.len()];
    let mut rest_first = 0;
    let cap = n.div_ceil(3);
    let mut per_channel: FxHashMap<ChannelId, usize> = FxHashMap::default();
    let mut out: Vec<Scored<'a>> = Vec::with_capacity(n);
    let mut prev: Option<&Article> = None;
    // Exploration slots reached but not filled yet (their candidates did not fit there).
    let mut owed = 0;
    for slot in 0..n {
        owed += usize::from(slots.contains(&slot));
        let room =
            |a: &Article| input.channel != ALL_CHANNELS || per_channel.get(&a.channel_id).copied().unwrap_or(0) < cap;
        let apart = |a: &Article| {
            prev.is_none_or(|p| {
                let same_topic = a.keywords.first().is_some_and(|k| p.keywords.first() == Some(k));
                !same_topic && (input.channel != ALL_CHANNELS || a.channel_id != p.channel_id)
            })
        };
        let fits = |s: &Scored<'_>| room(s.article) && apart(s.article);
        let open = |list: &'_ [Scored<'a>], taken: &'_ [bool], from: usize, ok: &dyn Fn(&Scored<'_>) -> bool| {
            (from..list.len()).find(|&i| !taken[i] && ok(&list[i]))
        };
        let explored = if owed > 0 { open(&explore, &explore_taken, 0, &fits) } else { None };
        let s = if let Some(i) = explored {
            owed -= 1;
            explore_taken[i] = true;
            explore[i]
        } else {
            // The whole rule; else keep the channel cap and let neighbours repeat; else the best.
            let i = open(&rest, &rest_taken, rest_first, &fits)
                .or_else(|| open(&rest, &rest_taken, rest_first, &|s| room(s.article)))
                .or_else(|| open(&rest, &rest_taken, rest_first, &|_| true));
            match i {
                Some(i) => {
                    rest_taken[i] = true;
                    rest[i]
                }
                None => match open(&explore, &explore_taken, 0, &|_| true) {
                    Some(i) => {
                        explore_taken[i] = true;
                        explore[i]
                    }
                    None => break,
                },
            }
        };
        while rest_first < rest.len() && rest_taken[rest_first] {
            rest_first += 1;
        }
        *per_channel.entry(s.article.channel_id).or_default() += 1;
        prev = Some(s.article);
        out.push(s);
    }
    out
}
