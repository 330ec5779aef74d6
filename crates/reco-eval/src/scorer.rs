//! The [`Scorer`] interface a replay drives, and the baselines.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::mind::NewsId;

/// What a replay tells a scorer after the fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// A click from the user's history, sent once, on first sight of the user, before the
    /// first impression is scored; its true time is unknown (`time_ms` is that impression's).
    History,
    /// The candidate was shown in an impression.
    Exposure,
    /// The candidate was clicked in an impression (after its [`Feedback::Exposure`]).
    Click,
}

/// One piece of feedback.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub user: &'a str,
    pub news: &'a NewsId,
    pub time_ms: i64,
    pub kind: Feedback,
    /// The candidate's 0-based index in its impression line (`None` for history clicks).
    pub position: Option<u32>,
}

/// A model under evaluation. A replay calls [`Scorer::score`] for an impression, then
/// [`Scorer::observe`] with what happened in it, so it learns online, in time order.
pub trait Scorer {
    /// The name printed as `scorer=<name>`.
    fn name(&self) -> &str;

    /// One score per candidate, higher is better.
    fn score(&mut self, user: &str, time_ms: i64, candidates: &[NewsId]) -> Vec<f64>;

    fn observe(&mut self, event: &Event<'_>);
}

/// Uniform random scores from a seeded generator: the floor every model must beat.
#[derive(Debug)]
pub struct Random {
    rng: ChaCha8Rng,
}

impl Random {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }
}

impl Scorer for Random {
    fn name(&self) -> &str {
        "random"
    }

    fn score(&mut self, _user: &str, _time_ms: i64, candidates: &[NewsId]) -> Vec<f64> {
        candidates.iter().map(|_| self.rng.random()).collect()
    }

    fn observe(&mut self, _event: &Event<'_>) {}
}

/// Clicks so far, history clicks included, for everyone alike.
#[derive(Debug, Default)]
pub struct Popularity {
    clicks: FxHashMap<NewsId, u64>,
}

impl Scorer for Popularity {
    fn name(&self) -> &str {
        "popularity"
    }

    fn score(&mut self, _user: &str, _time_ms: i64, candidates: &[NewsId]) -> Vec<f64> {
        candidates.iter().map(|id| self.clicks.get(id).copied().unwrap_or(0) as f64).collect()
    }

    fn observe(&mut self, event: &Event<'_>) {
        if matches!(event.kind, Feedback::History | Feedback::Click) {
            *self.clicks.entry(event.news.clone()).or_insert(0) += 1;
        }
    }
}

/// Click-through rate over a recent window, smoothed toward a prior:
/// `(clicks + prior_ctr * prior_weight) / (exposures + prior_weight)`.
/// History clicks are ignored: they come without exposures or times.
#[derive(Debug)]
pub struct RecentCtr {
    window_ms: i64,
    prior_ctr: f64,
    prior_weight: f64,
    per_news: FxHashMap<NewsId, Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// (time, clicked) of each exposure, oldest first.
    events: VecDeque<(i64, bool)>,
    clicks: u64,
}

impl Window {
    fn expire(&mut self, before_ms: i64) {
        while let Some(&(time, clicked)) = self.events.front() {
            if time >= before_ms {
                break;
            }
            self.events.pop_front();
            self.clicks -= u64::from(clicked);
        }
    }
}

impl RecentCtr {
    pub fn new(window_ms: i64, prior_ctr: f64, prior_weight: f64) -> Self {
        Self { window_ms, prior_ctr, prior_weight, per_news: FxHashMap::default() }
    }
}

impl Default for RecentCtr {
    /// A 6-hour window and a prior of 4% (about MIND's click rate) worth 20 exposures.
    fn default() -> Self {
        Self::new(6 * 3_600_000, 0.04, 20.0)
    }
}

impl Scorer for RecentCtr {
    fn name(&self) -> &str {
        "recent_ctr"
    }

    fn score(&mut self, _user: &str, time_ms: i64, candidates: &[NewsId]) -> Vec<f64> {
        let prior_clicks = self.prior_ctr * self.prior_weight;
        candidates
            .iter()
            .map(|id| {
                let (clicks, exposures) = match self.per_news.get_mut(id) {
                    Some(window) => {
                        window.expire(time_ms - self.window_ms);
                        (window.clicks, window.events.len())
                    }
                    None => (0, 0),
                };
                (clicks as f64 + prior_clicks) / (exposures as f64 + self.prior_weight)
            })
            .collect()
    }

    fn observe(&mut self, event: &Event<'_>) {
        if event.kind == Feedback::History {
            return;
        }
        let window = self.per_news.entry(event.news.clone()).or_default();
        if event.kind == Feedback::Exposure {
            window.events.push_back((event.time_ms, false));
        } else if let Some(last) = window.events.back_mut().filter(|(_, clicked)| !clicked) {
            // The click belongs to the latest exposure of this news, if not yet clicked.
            last.1 = true;
            window.clicks += 1;
        }
    }
}

/// Click-through rate with exponentially decayed counts, smoothed toward a prior:
/// `(clicks + prior_clicks) / (exposures + prior_exposures)`, each click and exposure weighing
/// `2^(-age / half_life)` when scored. A strong, well-known baseline for news (items' appeal
/// fades within hours). History clicks are ignored: they come without exposures or times.
#[derive(Debug)]
pub struct DecayedCtr {
    half_life_ms: f64,
    prior_clicks: f64,
    prior_exposures: f64,
    /// Per news: decayed clicks and exposures as of `at`.
    per_news: FxHashMap<NewsId, Decayed>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Decayed {
    clicks: f64,
    exposures: f64,
    at: i64,
}

impl Decayed {
    /// The counts brought forward to `time_ms` (never backward: a replay is in time order).
    fn at(self, time_ms: i64, half_life_ms: f64) -> Decayed {
        if time_ms <= self.at {
            return self;
        }
        let factor = (-((time_ms - self.at) as f64) / half_life_ms).exp2();
        Decayed { clicks: self.clicks * factor, exposures: self.exposures * factor, at: time_ms }
    }
}

impl DecayedCtr {
    pub fn new(half_life_ms: i64, prior_clicks: f64, prior_exposures: f64) -> Self {
        Self { half_life_ms: half_life_ms.max(1) as f64, prior_clicks, prior_exposures, per_news: FxHashMap::default() }
    }
}

impl Default for DecayedCtr {
    /// A 12-hour half-life and a prior of 1 click in 20 exposures.
    fn default() -> Self {
        Self::new(12 * 3_600_000, 1.0, 20.0)
    }
}

impl Scorer for DecayedCtr {
    fn name(&self) -> &str {
        "decayed_ctr"
    }

    fn score(&mut self, _user: &str, time_ms: i64, candidates: &[NewsId]) -> Vec<f64> {
        candidates
            .iter()
            .map(|id| {
                let d = self.per_news.get(id).copied().unwrap_or_default().at(time_ms, self.half_life_ms);
                (d.clicks + self.prior_clicks) / (d.exposures + self.prior_exposures)
            })
            .collect()
    }

    fn observe(&mut self, event: &Event<'_>) {
        if event.kind == Feedback::History {
            return;
        }
        let half_life = self.half_life_ms;
        let entry =
            self.per_news.entry(event.news.clone()).or_insert(Decayed { at: event.time_ms, ..Decayed::default() });
        let mut d = entry.at(event.time_ms, half_life);
        match event.kind {
            Feedback::Exposure => d.exposures += 1.0,
            Feedback::Click => d.clicks += 1.0,
            Feedback::History => {}
        }
        *entry = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(news: &'a NewsId, time_ms: i64, kind: Feedback) -> Event<'a> {
        Event { user: "U1", news, time_ms, kind, position: None }
    }

    #[test]
    fn random_is_reproducible_per_seed() {
        let ids = [NewsId::from("N1"), NewsId::from("N2"), NewsId::from("N3")];
        let a = Random::new(7).score("U1", 0, &ids);
        assert_eq!(a, Random::new(7).score("U1", 0, &ids));
        assert_ne!(a, Random::new(8).score("U1", 0, &ids));
        assert!(a.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn popularity_counts_history_and_clicks_not_exposures() {
        let (n1, n2) = (NewsId::from("N1"), NewsId::from("N2"));
        let mut p = Popularity::default();
        p.observe(&event(&n1, 0, Feedback::History));
        p.observe(&event(&n2, 0, Feedback::Exposure));
        p.observe(&event(&n2, 0, Feedback::Click));
        p.observe(&event(&n2, 0, Feedback::Click));
        p.observe(&event(&n1, 0, Feedback::Exposure));
        assert_eq!(p.score("U2", 0, &[n1, n2, "N3".into()]), [1.0, 2.0, 0.0]);
    }

    #[test]
    fn recent_ctr_smooths_and_forgets() {
        let (n1, n2) = (NewsId::from("N1"), NewsId::from("N2"));
        let mut r = RecentCtr::new(1000, 0.1, 10.0);
        for t in 0..10 {
            r.observe(&event(&n1, t, Feedback::Exposure));
            r.observe(&event(&n1, t, Feedback::Click));
            r.observe(&event(&n2, t, Feedback::Exposure));
        }
        r.observe(&event(&n2, 5, Feedback::History));
        let scores = r.score("U1", 500, &[n1.clone(), n2.clone(), "N3".into()]);
        // N1: (10 + 1) / (10 + 10); N2: (0 + 1) / 20; unseen: the prior.
        assert_eq!(scores, [0.55, 0.05, 0.1]);
        // At 1005 the exposures at 0..=4 are out of the window.
        let scores = r.score("U1", 1005, &[n1, n2]);
        assert_eq!(scores, [6.0 / 15.0, 1.0 / 15.0]);
    }

    #[test]
    fn decayed_ctr_halves_old_counts_per_half_life() {
        let (n1, n2) = (NewsId::from("N1"), NewsId::from("N2"));
        let mut d = DecayedCtr::new(1000, 1.0, 20.0);
        for _ in 0..20 {
            d.observe(&event(&n1, 0, Feedback::Exposure));
            d.observe(&event(&n1, 0, Feedback::Click));
        }
        d.observe(&event(&n2, 0, Feedback::History));
        // At 0: (20 + 1) / (20 + 20); one half-life later the counts are halved.
        assert_eq!(d.score("U1", 0, &[n1.clone(), n2.clone()]), [21.0 / 40.0, 1.0 / 20.0]);
        assert_eq!(d.score("U1", 1000, std::slice::from_ref(&n1)), [11.0 / 30.0]);
        // Exposures without clicks at 2000 pull it down; the old counts weigh a quarter.
        for _ in 0..10 {
            d.observe(&event(&n1, 2000, Feedback::Exposure));
        }
        assert_eq!(d.score("U1", 2000, &[n1]), [6.0 / 35.0]);
    }

    #[test]
    fn recent_ctr_ignores_a_click_without_exposure() {
        let n1 = NewsId::from("N1");
        let mut r = RecentCtr::new(1000, 0.5, 2.0);
        r.observe(&event(&n1, 0, Feedback::Click));
        r.observe(&event(&n1, 0, Feedback::Exposure));
        r.observe(&event(&n1, 0, Feedback::Click));
        r.observe(&event(&n1, 0, Feedback::Click));
        assert_eq!(r.score("U1", 0, &[n1]), [2.0 / 3.0]);
    }
}
