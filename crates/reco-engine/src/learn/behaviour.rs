//! The behaviour ranker: how an article's audience has taken it so far, weighed by weights
//! learned from whole impressions.
//!
//! Its inputs are statistics of the article's exposures and positives ([`Engagement`]): the
//! log-odds of its click-through rate over half-day windows (smoothed toward the prior), and
//! the logs of its recent positives and of its exposures over half a day and over an hour;
//! and the personal ranker's logit (the FTRL model on content, profile and context features),
//! so how far to trust personalisation against the audience's verdict is learned too.
//! Pointwise labels teach the base rate of clicks, not which of the articles shown together
//! draws the click; so these weights learn listwise: the articles one user was shown at one
//! moment form an impression, and when its window closes (or the user's next impression
//! starts) with a click and a non-click in it, one AdaGrad step of the softmax cross-entropy
//! over its articles moves the weights toward the clicked ones. On real impression logs this
//! beats a hand-tuned decayed CTR (BENCHMARKS.md, issue 12).

use serde::{Deserialize, Serialize};

use crate::model::ArticleId;

use super::{Engagement, LearnConfig};

/// The inputs of one article, in the order of [`Behaviour::weights`].
pub const INPUTS: usize = 5;
pub type Inputs = [f32; INPUTS];

/// The names of the inputs, for explanations.
pub const INPUT_NAMES: [&str; INPUTS] =
    ["ctr_log_odds", "recent_positives_log", "exposures_log", "recent_exposures_log", "ranker_logit"];

/// Where the personal ranker's logit goes among the inputs.
pub const RANKER: usize = 4;

/// Open impressions kept at most; past it the oldest closes early (it learns from what it has).
pub const MAX_OPEN_IMPRESSIONS: usize = 8_192;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    pub weights: [f64; INPUTS],
    /// AdaGrad's sums of squared gradients.
    squares: [f64; INPUTS],
}

impl Default for Behaviour {
    /// Starts by trusting the click-through rate and the personal ranker alike.
    fn default() -> Self {
        Self { weights: [1.0, 0.0, 0.0, 0.0, 1.0], squares: [1e-6; INPUTS] }
    }
}

impl Behaviour {
    pub fn score(&self, x: &Inputs) -> f64 {
        self.weights.iter().zip(x).map(|(w, x)| w * f64::from(*x)).sum()
    }

    /// One step on an impression: `items` are the articles shown together, with whether each
    /// drew a positive. Nothing to learn without both kinds.
    pub fn learn(&mut self, rate: f64, items: &[(ArticleId, Inputs, bool)]) {
        let positives = items.iter().filter(|i| i.2).count();
        if positives == 0 || positives == items.len() {
            return;
        }
        let scores: Vec<f64> = items.iter().map(|(_, x, _)| self.score(x)).collect();
        let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
        let total: f64 = exps.iter().sum();
        let mut gradient = [0.0; INPUTS];
        for ((_, x, clicked), e) in items.iter().zip(&exps) {
            let coefficient = e / total - if *clicked { 1.0 / positives as f64 } else { 0.0 };
            for (g, x) in gradient.iter_mut().zip(x) {
                *g += coefficient * f64::from(*x);
            }
        }
        for ((w, s), g) in self.weights.iter_mut().zip(&mut self.squares).zip(gradient) {
            if g.is_finite() {
                *s += g * g;
                *w -= rate * g / s.sqrt();
            }
        }
    }
}

/// The articles one user was shown at one moment, waiting for their positives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    pub at: i64,
    pub expires: i64,
    pub items: Vec<(ArticleId, Inputs, bool)>,
}

/// The inputs of an article with engagement `e` at `now_ms`.
pub(crate) fn inputs(cfg: &LearnConfig, e: &Engagement, now_ms: i64) -> Inputs {
    let long = e.at(now_ms, cfg.ctr_half_life_ms);
    let ctr = (f64::from(long.positives) + cfg.ctr_prior_clicks) / (f64::from(long.decayed) + cfg.ctr_prior_exposures);
    let ctr = ctr.clamp(1e-6, 1.0 - 1e-6);
    let recent = e.recent_at(now_ms, cfg.recent_half_life_ms);
    [(ctr / (1.0 - ctr)).ln() as f32, recent.1.ln_1p(), long.decayed.ln_1p(), recent.0.ln_1p(), 0.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impression_moves_the_weights_toward_what_was_clicked() {
        let mut b = Behaviour::default();
        // Two articles alike in CTR; the clicked one has fewer recent exposures.
        let items = [(1, [-3.0, 0.0, 2.0, 0.5, 0.0], true), (2, [-3.0, 0.0, 2.0, 3.0, 0.0], false)];
        let before = b.score(&items[0].1) - b.score(&items[1].1);
        for _ in 0..20 {
            b.learn(0.1, &items);
        }
        let after = b.score(&items[0].1) - b.score(&items[1].1);
        assert!(before == 0.0 && after > 0.5, "{before} -> {after}: {:?}", b.weights);
        assert!(b.weights[3] < 0.0, "recent exposures weigh against: {:?}", b.weights);
    }

    #[test]
    fn an_impression_without_both_kinds_teaches_nothing() {
        let mut b = Behaviour::default();
        b.learn(0.1, &[(1, [1.0; INPUTS], true), (2, [2.0; INPUTS], true)]);
        b.learn(0.1, &[(1, [1.0; INPUTS], false)]);
        assert_eq!(b, Behaviour::default());
    }
}
