//! Online replay of an impression log through scorers, and its report.

use std::collections::BTreeMap;
use std::fmt;

use rustc_hash::FxHashSet;

use crate::EvalError;
use crate::metrics::{ImpressionMetrics, Metrics, Paired};
use crate::mind::{Impression, NewsId, NewsIndex, Skip, SkipReason, count_by_kind};
use crate::scorer::{Event, Feedback, Scorer};

/// What a replay saw, beyond the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Impressions given to the replay.
    pub impressions: usize,
    /// Impressions scored (in every scorer's average).
    pub scored: usize,
    /// Distinct users, and those among them with an empty history.
    pub users: usize,
    pub users_without_history: usize,
    /// Candidates missing from `news.tsv` (scored like the others, by behaviour alone).
    pub candidates_without_content: usize,
    /// History ids missing from `news.tsv`, counted once per user (fed back like the others).
    pub history_without_content: usize,
    /// Impressions not scored, by [`SkipReason::kind`].
    pub skipped: BTreeMap<&'static str, usize>,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "impressions={} scored={} users={} users_without_history={} \
             candidates_without_content={} history_without_content={}",
            self.impressions,
            self.scored,
            self.users,
            self.users_without_history,
            self.candidates_without_content,
            self.history_without_content
        )?;
        for (kind, n) in &self.skipped {
            write!(f, " skipped_{kind}={n}")?;
        }
        Ok(())
    }
}

/// One scorer's averages.
#[derive(Clone, Debug, PartialEq)]
pub struct ScorerReport {
    pub name: String,
    pub metrics: Metrics,
    /// The first scorer's AUC minus this one's, impression by impression (the first's own is
    /// all zeros).
    pub first_minus_this: Paired,
}

/// The outcome of [`replay`]. Its `Display` prints one line per scorer:
/// `scorer=<name> impressions=<n> auc=<x> mrr=<x> ndcg5=<x> ndcg10=<x>`, then one per scorer
/// after the first, comparing the first with it over the same impressions:
/// `paired=<first>-<name> auc_diff=<mean> ci95=<half-width>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub scorers: Vec<ScorerReport>,
    pub counts: Counts,
    /// The impressions that were not scored, with their lines and reasons.
    pub skipped: Vec<Skip>,
}

impl Report {
    pub fn scorer(&self, name: &str) -> Option<&ScorerReport> {
        self.scorers.iter().find(|s| s.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.scorers {
            let m = &s.metrics;
            writeln!(
                f,
                "scorer={} impressions={} auc={:.4} mrr={:.4} ndcg5={:.4} ndcg10={:.4}",
                s.name,
                m.impressions,
                m.auc(),
                m.mrr(),
                m.ndcg5(),
                m.ndcg10()
            )?;
        }
        if let Some((first, others)) = self.scorers.split_first() {
            for s in others {
                let p = &s.first_minus_this;
                writeln!(f, "paired={}-{} auc_diff={:+.4} ci95={:.4}", first.name, s.name, p.mean(), p.ci95())?;
            }
        }
        Ok(())
    }
}

/// Replays `impressions` in time order (file order among equal times) through every
/// scorer. On first sight of a user, the history ids are fed back as [`Feedback::History`].
/// Every candidate is scored, with or without a row in `news` (an article without content is
/// still an article: scorers rank it by behaviour; `news` only counts what lacks one). An
/// impression without both a click and a non-click is skipped (its feedback is still given);
/// the others are scored by every scorer. Then every candidate is fed back as an exposure,
/// and each clicked one as a click, with its index in the impression line as position.
pub fn replay(
    impressions: &[Impression],
    news: &NewsIndex,
    scorers: &mut [Box<dyn Scorer>],
) -> Result<Report, EvalError> {
    let mut order: Vec<&Impression> = impressions.iter().collect();
    order.sort_by_key(|i| (i.time_ms, i.line));

    let mut counts = Counts { impressions: impressions.len(), ..Counts::default() };
    let mut metrics = vec![Metrics::default(); scorers.len()];
    let mut paired = vec![Paired::default(); scorers.len()];
    let mut aucs: Vec<f64> = Vec::with_capacity(scorers.len());
    let mut skipped = Vec::new();
    let mut seen_users = FxHashSet::default();
    let mut ids: Vec<NewsId> = Vec::new();
    let mut labels: Vec<bool> = Vec::new();
    let mut positions: Vec<Option<u32>> = Vec::new();

    for imp in order {
        let feed = |scorers: &mut [Box<dyn Scorer>], news: &NewsId, kind, position| {
            let event = Event { user: &imp.user, news, time_ms: imp.time_ms, kind, position };
            scorers.iter_mut().for_each(|s| s.observe(&event));
        };

        if seen_users.insert(imp.user.as_str()) {
            counts.users += 1;
            counts.users_without_history += usize::from(imp.history.is_empty());
            for id in &imp.history {
                counts.history_without_content += usize::from(!news.contains(id.as_str()));
                feed(scorers, id, Feedback::History, None);
            }
        }

        ids.clear();
        labels.clear();
        positions.clear();
        for (position, c) in imp.candidates.iter().enumerate() {
            counts.candidates_without_content += usize::from(!news.contains(c.news.as_str()));
            ids.push(c.news.clone());
            labels.push(c.clicked);
            positions.push(u32::try_from(position).ok());
        }

        let skip = if !labels.contains(&true) {
            Some(SkipReason::NoPositive)
        } else if !labels.contains(&false) {
            Some(SkipReason::NoNegative)
        } else {
            None
        };
        match skip {
            Some(reason) => skipped.push(Skip { line: imp.line, reason }),
            None => {
                aucs.clear();
                for (scorer, metrics) in scorers.iter_mut().zip(&mut metrics) {
                    let scores = scorer.score(&imp.user, imp.time_ms, &ids);
                    if scores.len() != ids.len() {
                        return Err(EvalError::ScoreCount {
                            scorer: scorer.name().to_string(),
                            expected: ids.len(),
                            got: scores.len(),
                        });
                    }
                    // Both classes are present, so the metrics exist.
                    if let Some(m) = ImpressionMetrics::compute(&labels, &scores) {
                        metrics.add(m);
                        aucs.push(m.auc);
                    }
                }
                if let Some((&first, _)) = aucs.split_first() {
                    for (p, auc) in paired.iter_mut().zip(&aucs) {
                        p.add(first - auc);
                    }
                }
                counts.scored += 1;
            }
        }

        for ((id, &clicked), &position) in ids.iter().zip(&labels).zip(&positions) {
            feed(scorers, id, Feedback::Exposure, position);
            if clicked {
                feed(scorers, id, Feedback::Click, position);
            }
        }
    }

    counts.skipped = count_by_kind(&skipped);
    let scorers = scorers
        .iter()
        .zip(metrics)
        .zip(paired)
        .map(|((s, metrics), first_minus_this)| ScorerReport { name: s.name().to_string(), metrics, first_minus_this })
        .collect();
    Ok(Report { scorers, counts, skipped })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::mind::{parse_behaviors, parse_news};
    use crate::scorer::{Popularity, Random};

    const NEWS: &str = "N1\tc\ts\tt\nN2\tc\ts\tt\nN3\tc\ts\tt\n";

    fn run(behaviors: &str, scorers: &mut [Box<dyn Scorer>]) -> Result<Report, EvalError> {
        let news = NewsIndex::new(parse_news(NEWS).records);
        let parsed = parse_behaviors(behaviors);
        assert_eq!(parsed.skipped, []);
        replay(&parsed.records, &news, scorers)
    }

    /// Records every call in a shared log, to check what a replay feeds and when.
    struct Recorder(Rc<RefCell<Vec<String>>>);

    impl Scorer for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }

        fn score(&mut self, user: &str, time_ms: i64, candidates: &[NewsId]) -> Vec<f64> {
            let ids: Vec<&str> = candidates.iter().map(NewsId::as_str).collect();
            let call = format!("score {user} {time_ms} {}", ids.join(","));
            self.0.borrow_mut().push(call);
            vec![0.0; candidates.len()]
        }

        fn observe(&mut self, e: &Event<'_>) {
            let position = e.position.map_or(String::new(), |p| format!(" @{p}"));
            let call = format!("{:?} {} {}{position}", e.kind, e.user, e.news);
            self.0.borrow_mut().push(call);
        }
    }

    #[test]
    fn replay_is_online_and_in_time_order() {
        // Line 1 is later than line 2; N9 has no news.tsv row: scored and fed back all the same.
        let behaviors = "1\tU1\t11/15/2019 9:00:00 AM\tN1 N9\tN2-1 N3-0\n\
                         2\tU2\t11/15/2019 8:00:00 AM\t\tN1-0 N9-1 N2-1\n\
                         3\tU1\t11/15/2019 10:00:00 AM\tN1 N9\tN3-0 N2-0\n";
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut scorers: Vec<Box<dyn Scorer>> = vec![Box::new(Recorder(log.clone()))];
        let report = run(behaviors, &mut scorers).unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "score U2 1573804800000 N1,N9,N2",
                "Exposure U2 N1 @0",
                "Exposure U2 N9 @1",
                "Click U2 N9 @1",
                "Exposure U2 N2 @2",
                "Click U2 N2 @2",
                "History U1 N1",
                "History U1 N9",
                "score U1 1573808400000 N2,N3",
                "Exposure U1 N2 @0",
                "Click U1 N2 @0",
                "Exposure U1 N3 @1",
                "Exposure U1 N3 @0",
                "Exposure U1 N2 @1",
            ]
        );
        // All-zero scores tie: MIND's order puts the later candidate first, so the clicks
        // rank 1st and 2nd in the first impression (MRR 3/4, nDCG 1) and 2nd in the second
        // (MRR 1/2, nDCG 1/log2(3)).
        assert_eq!(
            report.to_string(),
            "scorer=recorder impressions=2 auc=0.5000 mrr=0.6250 ndcg5=0.8155 ndcg10=0.8155\n"
        );
        let counts = &report.counts;
        assert_eq!((counts.impressions, counts.scored), (3, 2));
        assert_eq!(report.skipped, [Skip { line: 3, reason: SkipReason::NoPositive }]);
        assert_eq!(
            counts.to_string(),
            "impressions=3 scored=2 users=2 users_without_history=1 \
             candidates_without_content=1 history_without_content=1 skipped_no_positive=1"
        );
    }

    #[test]
    fn popularity_learns_from_earlier_impressions_only() {
        let behaviors = "1\tU1\t11/15/2019 8:00:00 AM\t\tN1-0 N2-1\n\
                         2\tU2\t11/15/2019 9:00:00 AM\t\tN1-0 N2-1\n";
        let mut scorers: Vec<Box<dyn Scorer>> = vec![Box::new(Popularity::default())];
        let report = run(behaviors, &mut scorers).unwrap();
        // The first impression is scored before its click is known (a tie, AUC 1/2);
        // the second after it (AUC 1).
        let m = &report.scorer("popularity").unwrap().metrics;
        assert_eq!((m.impressions, m.auc()), (2, 0.75));
    }

    /// Returns one score too few.
    struct Short;

    impl Scorer for Short {
        fn name(&self) -> &str {
            "short"
        }

        fn score(&mut self, _: &str, _: i64, candidates: &[NewsId]) -> Vec<f64> {
            vec![0.0; candidates.len() - 1]
        }

        fn observe(&mut self, _: &Event<'_>) {}
    }

    #[test]
    fn a_scorer_returning_the_wrong_count_is_an_error() {
        let behaviors = "1\tU1\t11/15/2019 8:00:00 AM\t\tN1-0 N2-1\n";
        let mut scorers: Vec<Box<dyn Scorer>> = vec![Box::new(Random::new(1)), Box::new(Short)];
        let err = run(behaviors, &mut scorers).unwrap_err();
        assert_eq!(err.to_string(), "scorer short returned 1 scores for 2 candidates");
    }
}
