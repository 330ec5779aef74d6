//! A seeded generator of a small synthetic MIND-format dataset, for tests and CI.
//!
//! Each user has hidden interests over the categories (a few strong, most weak) and each
//! article a hidden appeal. A user clicks a candidate with probability
//! `base_ctr * interest(user, category) * appeal(article)` (capped at 0.9); every ordinary
//! impression gets at least one click and one non-click, like MIND's. Histories are drawn
//! from the same model. So popularity can learn appeal, and a personal model can learn
//! interests on top.
//!
//! Deliberately messy lines, counted in [`Injected`], exercise every skip path: malformed
//! news and behaviors lines, a duplicate news id, candidate and history ids without a
//! `news.tsv` row, empty histories, impressions without a click, with only clicks, and one
//! whose every candidate lacks a row (scored all the same). Behaviors lines are not in time
//! order.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::EvalError;
use crate::mind::format_time;

/// The size and seed of a fixture.
#[derive(Clone, Debug)]
pub struct FixtureConfig {
    pub seed: u64,
    pub news: usize,
    pub users: usize,
    /// Ordinary (well-formed, two-class) impressions.
    pub impressions: usize,
    /// Candidates per ordinary impression.
    pub candidates: usize,
}

impl Default for FixtureConfig {
    fn default() -> Self {
        Self { seed: 42, news: 300, users: 200, impressions: 2_000, candidates: 12 }
    }
}

/// What the generator injected, in the terms of [`crate::mind::SkipReason::kind`] and
/// [`crate::Counts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// `news.tsv` lines with too few fields, with an empty id, and repeating an id.
    pub news_too_few_fields: usize,
    pub news_empty_id: usize,
    pub news_duplicate: usize,
    /// `behaviors.tsv` lines that cannot be parsed, one of each kind.
    pub behaviors_too_few_fields: usize,
    pub behaviors_bad_impression_id: usize,
    pub behaviors_bad_time: usize,
    pub behaviors_bad_candidate: usize,
    /// Well-formed impressions that cannot be scored.
    pub no_positive: usize,
    pub no_negative: usize,
    /// Impressions whose every candidate lacks a `news.tsv` row (scored all the same).
    pub without_content_only: usize,
    /// Well-formed impressions, scored or not.
    pub impressions: usize,
    /// Distinct users of well-formed impressions, and those with an empty history.
    pub users: usize,
    pub users_without_history: usize,
    /// Candidate ids without a `news.tsv` row, over all well-formed impressions.
    pub candidates_without_content: usize,
    /// History ids without a `news.tsv` row, once per user of a well-formed impression.
    pub history_without_content: usize,
}

/// A generated dataset: the two files' contents and what was injected into them.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub news_tsv: String,
    pub behaviors_tsv: String,
    pub injected: Injected,
}

impl Fixture {
    /// Writes `news.tsv` and `behaviors.tsv` into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<(), EvalError> {
        for (name, text) in [("news.tsv", &self.news_tsv), ("behaviors.tsv", &self.behaviors_tsv)] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| EvalError::Write { path, source })?;
        }
        Ok(())
    }
}

const CATEGORIES: [&str; 8] = ["news", "sports", "finance", "lifestyle", "health", "travel", "music", "foodanddrink"];
const BASE_CTR: f64 = 0.08;
/// 2019-11-09 00:00:00 UTC, MIND's first day; impressions span five days from there.
const START_MS: i64 = 1_573_257_600_000;
const SPAN_MS: i64 = 5 * 86_400_000;

struct User {
    id: String,
    interest: [f64; CATEGORIES.len()],
    history: Vec<String>,
}

struct Article {
    category: usize,
    appeal: f64,
}

struct Line {
    time_ms: i64,
    user: usize,
    candidates: Vec<(String, bool)>,
}

/// Generates a fixture; the same config always gives the same bytes.
pub fn generate(config: &FixtureConfig) -> Fixture {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let news_count = config.news.max(config.candidates + 1).max(2);
    let candidates = config.candidates.max(2);
    let mut injected = Injected::default();

    let articles: Vec<Article> = (0..news_count)
        .map(|_| Article {
            category: rng.random_range(0..CATEGORIES.len()),
            // Log-uniform over [1/4, 4].
            appeal: 4f64.powf(rng.random_range(-1.0..1.0)),
        })
        .collect();
    let news_id = |i: usize| format!("N{}", i + 1);

    let mut news_tsv = String::new();
    for (i, a) in articles.iter().enumerate() {
        let category = CATEGORIES[a.category];
        // Every 7th line stops after the title: the later columns may be missing.
        let tail = if i % 7 == 3 {
            String::new()
        } else {
            format!("\tAbstract of article {}.\thttps://example.invalid/{i}\t[]\t[]", i + 1)
        };
        news_tsv.push_str(&format!("{}\t{category}\t{category}_sub\t{category} story {}{tail}\n", news_id(i), i + 1));
        if i == 10 {
            news_tsv.push_str("N-broken\tnews\n");
            injected.news_too_few_fields += 1;
            news_tsv.push_str("\tnews\tnews_sub\tan article without id\n");
            injected.news_empty_id += 1;
        }
        if i == 20 {
            news_tsv.push_str(&format!("{}\tnews\tnews_sub\tduplicate\n", news_id(0)));
            injected.news_duplicate += 1;
        }
    }

    let click_p = |user: &User, a: &Article| (BASE_CTR * user.interest[a.category] * a.appeal).min(0.9);
    let mut users: Vec<User> = (0..config.users.max(1))
        .map(|u| {
            let mut interest = [0.0; CATEGORIES.len()];
            interest.iter_mut().for_each(|w| *w = rng.random::<f64>().powi(3));
            let total: f64 = interest.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            // Mean interest 1 over categories.
            interest.iter_mut().for_each(|w| *w *= CATEGORIES.len() as f64 / total);
            User { id: format!("U{}", u + 1), interest, history: Vec::new() }
        })
        .collect();
    for (u, user) in users.iter_mut().enumerate() {
        // Every 10th user is new: no history.
        if u % 10 == 0 {
            continue;
        }
        let wanted = rng.random_range(1..=15);
        for _ in 0..200 {
            if user.history.len() == wanted {
                break;
            }
            let i = rng.random_range(0..news_count);
            if rng.random::<f64>() < click_p(user, &articles[i]) {
                user.history.push(news_id(i));
            }
        }
        // Every 17th user's history cites an article missing from news.tsv.
        if u % 17 == 1 {
            user.history.push(format!("NX{u}"));
        }
    }

    let mut lines = Vec::new();
    for _ in 0..config.impressions {
        let u = rng.random_range(0..users.len());
        let mut shown: Vec<(String, bool)> = Vec::with_capacity(candidates + 1);
        let mut p = Vec::with_capacity(candidates);
        for i in sample(&mut rng, news_count, candidates) {
            let pi = click_p(&users[u], &articles[i]);
            shown.push((news_id(i), rng.random::<f64>() < pi));
            p.push(pi);
        }
        if !shown.iter().any(|c| c.1) {
            // At least one click, drawn in proportion to the click probabilities.
            let mut pick = rng.random::<f64>() * p.iter().sum::<f64>();
            let chosen = p.iter().position(|&pi| {
                pick -= pi;
                pick < 0.0
            });
            shown[chosen.unwrap_or(candidates - 1)].1 = true;
        }
        if shown.iter().all(|c| c.1) {
            let i = rng.random_range(0..candidates);
            shown[i].1 = false;
        }
        lines.push(Line { time_ms: START_MS + rng.random_range(0..SPAN_MS), user: u, candidates: shown });
    }
    // Candidates without content (never clicked, so no impression's click depends on them).
    for (n, line) in lines.iter_mut().enumerate().filter(|(n, _)| n % 50 == 7) {
        let at = rng.random_range(0..=line.candidates.len());
        line.candidates.insert(at, (format!("NY{n}"), false));
        injected.candidates_without_content += 1;
    }
    // Impressions that cannot be scored (and one whose candidates all lack content, which can).
    let odd_line = |rng: &mut ChaCha8Rng, labels: &[bool]| Line {
        time_ms: START_MS + rng.random_range(0..SPAN_MS),
        user: rng.random_range(0..users.len()),
        candidates: labels.iter().map(|&clicked| (news_id(rng.random_range(0..news_count)), clicked)).collect(),
    };
    for _ in 0..3 {
        lines.push(odd_line(&mut rng, &[false, false, false]));
        injected.no_positive += 1;
    }
    for _ in 0..2 {
        lines.push(odd_line(&mut rng, &[true, true]));
        injected.no_negative += 1;
    }
    let mut bare_only = odd_line(&mut rng, &[true, false]);
    bare_only.candidates = vec![("NZ1".into(), true), ("NZ2".into(), false)];
    lines.push(bare_only);
    injected.without_content_only += 1;
    injected.candidates_without_content += 2;
    lines.shuffle(&mut rng);

    let mut behaviors_tsv = String::new();
    let mut seen = vec![false; users.len()];
    for (n, line) in lines.iter().enumerate() {
        let user = &users[line.user];
        // A user's history is the same on each of their lines, as in MIND.
        let history = user.history.join(" ");
        if !seen[line.user] {
            seen[line.user] = true;
            injected.users += 1;
            injected.users_without_history += usize::from(user.history.is_empty());
            injected.history_without_content += user.history.iter().filter(|h| h.starts_with("NX")).count();
        }
        let candidates: Vec<String> =
            line.candidates.iter().map(|(id, clicked)| format!("{id}-{}", u8::from(*clicked))).collect();
        behaviors_tsv.push_str(&format!(
            "{}\t{}\t{}\t{history}\t{}\n",
            n + 1,
            user.id,
            format_time(line.time_ms),
            candidates.join(" ")
        ));
        injected.impressions += 1;
        if n == 5 {
            let time = format_time(START_MS);
            behaviors_tsv.push_str("a line that is not a behaviors record\n");
            injected.behaviors_too_few_fields += 1;
            behaviors_tsv.push_str(&format!("x1\tU1\t{time}\t\tN1-1 N2-0\n"));
            injected.behaviors_bad_impression_id += 1;
            behaviors_tsv.push_str("900001\tU1\t11/31/2019 8:00:00 AM\t\tN1-1 N2-0\n");
            injected.behaviors_bad_time += 1;
            behaviors_tsv.push_str(&format!("900002\tU1\t{time}\t\tN1-1 N2-?\n"));
            injected.behaviors_bad_candidate += 1;
        }
    }
    Fixture { news_tsv, behaviors_tsv, injected }
}
