//! A card's debug view: why the engine would pick its article for the user now
//! (`Tracking.Explain`), in the page's own types, and how the panel words the numbers.

use crate::param::split_sources;

/// How many contributions the panel lists.
pub const TOP_CONTRIBUTIONS: usize = 8;

/// One feature's share of the ranker's logit.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    /// e.g. `user×keyword=足球`, `article_age=4..8h`, `source=similar`.
    pub feature: String,
    pub weight: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The user's A/B bucket and its variant's name.
    pub bucket: u32,
    pub variant: String,
    /// Whether the variant ranks with the learned model (else freshness and popularity).
    pub ranker: bool,
    /// The sources that would propose the article now (`fresh+similar`), as sent.
    pub sources: String,
    /// The sources it was served by; empty when it is not in the user's feed history.
    pub served_sources: String,
    pub score: f64,
    /// The model's click probability.
    pub probability: f64,
    /// Multiplier from the user's dislikes of the article's topic (1 = none).
    pub demotion: f64,
    /// Read or disliked: never shown to this user again.
    pub hidden: bool,
    pub contributions: Vec<Contribution>,
}

/// A source name in the "now" or "served" list, and whether the other list (when there is
/// one) lacks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceChip {
    pub name: String,
    pub differs: bool,
}

impl Explanation {
    /// The `n` largest contributions by absolute weight, largest first. The server sends
    /// them in that order already; sorting again keeps the table right if it does not.
    pub fn top(&self, n: usize) -> Vec<Contribution> {
        let mut top = self.contributions.clone();
        sort_small(&mut top, |a, b| a.weight.abs().total_cmp(&b.weight.abs()).is_gt());
        top.truncate(n);
        top
    }

    /// The sources now and the sources served, each chip marked when the other list lacks it.
    pub fn source_chips(&self) -> (Vec<SourceChip>, Vec<SourceChip>) {
        (chips(&self.sources, &self.served_sources), chips(&self.served_sources, &self.sources))
    }
}

/// A source list as chips: none for an empty list, the string itself as one chip when it is
/// not a `+`-joined list of names. Nothing differs from an empty or unreadable other list.
fn chips(list: &str, other: &str) -> Vec<SourceChip> {
    if list.is_empty() {
        return Vec::new();
    }
    let other = split_sources(other);
    let differs = |name: &String| other.as_ref().is_some_and(|other| !other.contains(name));
    match split_sources(list) {
        Some(names) => names.into_iter().map(|name| SourceChip { differs: differs(&name), name }).collect(),
        None => vec![SourceChip { name: list.to_owned(), differs: other.is_some() }],
    }
}

/// Sorts `items` stably, `before(a, b)` telling whether `a` goes before `b`: an insertion
/// sort, for the few dozen items the page sorts (`sort_by`'s driftsort is KBs of wasm per use).
fn sort_small<T>(items: &mut [T], before: impl Fn(&T, &T) -> bool) {
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && before(&items[j], &items[j - 1]) {
            items.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// `value` rounded to `digits` decimals (halves away from zero); a dash for NaN, infinities
/// and magnitudes beyond 2^53 once scaled, which nothing the page shows comes near.
///
/// Integer arithmetic rather than `format!("{value:.digits$}")`: Rust's float formatting is
/// several KB of the page's wasm.
pub fn fixed(value: f64, digits: usize) -> String {
    let scale = 10u64.pow(digits as u32);
    let scaled = (value.abs() * scale as f64).round();
    // Also NaN and infinities.
    if !scaled.is_finite() || scaled >= 9_007_199_254_740_992.0 {
        return "—".to_owned();
    }
    let scaled = scaled as u64;
    let sign = if value < 0.0 && scaled > 0 { "-" } else { "" };
    let whole = scaled / scale;
    if digits == 0 {
        return format!("{sign}{whole}");
    }
    format!("{sign}{whole}.{:0digits$}", scaled % scale)
}

/// A logit weight with its sign: `+0.412`, `-0.120`.
pub fn signed(value: f64) -> String {
    let text = fixed(value, 3);
    if text.starts_with(['-', '—']) { text } else { format!("+{text}") }
}

/// A probability or a rate as a percentage: `12.3%`.
pub fn percent(value: f64) -> String {
    let text = fixed(value * 100.0, 1);
    if value.is_finite() { text + "%" } else { text }
}

/// The dislike demotion: `none` at 1, else the multiplier (`×0.50`).
pub fn demotion(value: f64) -> String {
    if !value.is_finite() {
        "—".to_owned()
    } else if (value - 1.0).abs() < 1e-9 {
        "none (×1)".to_owned()
    } else {
        format!("×{}", fixed(value, 2))
    }
}

/// Width of a weight's bar, in percent of the largest absolute weight shown.
pub fn bar_percent(weight: f64, largest: f64) -> f64 {
    if !weight.is_finite() || !largest.is_finite() || largest <= 0.0 {
        return 0.0;
    }
    (weight.abs() / largest * 100.0).clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explanation(sources: &str, served: &str, weights: &[f64]) -> Explanation {
        Explanation {
            bucket: 1,
            variant: "ftrl".into(),
            ranker: true,
            sources: sources.into(),
            served_sources: served.into(),
            score: 0.5,
            probability: 0.1,
            demotion: 1.0,
            hidden: false,
            contributions: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| Contribution { feature: format!("f{i}"), weight })
                .collect(),
        }
    }

    fn names(chips: &[SourceChip]) -> Vec<(&str, bool)> {
        chips.iter().map(|chip| (chip.name.as_str(), chip.differs)).collect()
    }

    #[test]
    fn top_contributions_are_the_largest_by_absolute_weight() {
        let explained = explanation("", "", &[0.1, -0.9, 0.5, f64::NAN, -0.2]);
        let top = explained.top(3);
        let features: Vec<&str> = top.iter().map(|c| c.feature.as_str()).collect();
        // NaN sorts above every number under total_cmp of the absolute value: shown, not lost.
        assert_eq!(features, ["f3", "f1", "f2"]);
        assert_eq!(explained.top(10).len(), 5);
        assert!(explanation("", "", &[]).top(TOP_CONTRIBUTIONS).is_empty());
    }

    #[test]
    fn source_chips_mark_what_both_lists_name() {
        let (now, served) = explanation("fresh+similar", "fresh+hot", &[]).source_chips();
        assert_eq!(names(&now), [("fresh", false), ("similar", true)]);
        assert_eq!(names(&served), [("fresh", false), ("hot", true)]);
    }

    #[test]
    fn source_chips_of_an_article_never_served() {
        let (now, served) = explanation("explore", "", &[]).source_chips();
        assert_eq!(names(&now), [("explore", false)], "nothing to differ from");
        assert!(served.is_empty());
        let (now, served) = explanation("", "hot", &[]).source_chips();
        assert!(now.is_empty());
        assert_eq!(names(&served), [("hot", false)]);
    }

    #[test]
    fn an_unreadable_source_list_is_one_raw_chip() {
        let (now, served) = explanation("fresh, hot", "fresh", &[]).source_chips();
        assert_eq!(names(&now), [("fresh, hot", true)]);
        assert_eq!(names(&served), [("fresh", false)], "nothing readable to differ from");
    }

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(fixed(0.123456, 4), "0.1235");
        assert_eq!(fixed(f64::NAN, 2), "—");
        assert_eq!(signed(0.4123), "+0.412");
        assert_eq!(signed(-0.12), "-0.120");
        assert_eq!(signed(f64::INFINITY), "—");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(demotion(1.0), "none (×1)");
        assert_eq!(demotion(0.5), "×0.50");
        assert_eq!(demotion(f64::NAN), "—");
        assert_eq!(fixed(2.5, 0), "3");
        assert_eq!(fixed(-0.0004, 3), "0.000");
        assert_eq!(fixed(-1.05, 1), "-1.1");
        assert_eq!(fixed(12.0, 2), "12.00");
        assert_eq!(fixed(1e300, 1), "—");
        assert_eq!(signed(0.0), "+0.000");
        assert_eq!(percent(f64::INFINITY), "—");
    }

    #[test]
    fn bars_scale_to_the_largest_weight() {
        assert_eq!(bar_percent(-0.5, 1.0), 50.0);
        assert_eq!(bar_percent(2.0, 1.0), 100.0);
        assert_eq!(bar_percent(0.3, 0.0), 0.0);
        assert_eq!(bar_percent(f64::NAN, 1.0), 0.0);
    }
}
