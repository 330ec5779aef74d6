//! The MIND benchmark's per-impression metrics, computed as its `evaluate.py` does.
//!
//! - AUC: sklearn's `roc_auc_score`, i.e. the share of (clicked, not clicked) pairs ordered
//!   correctly, a tie counting 1/2.
//! - MRR: `mrr_score`, the sum of `label / rank` over the ranking, divided by the number of
//!   clicked candidates.
//! - nDCG@k: `ndcg_score`, DCG with gain `2^label - 1` and discount `log2(rank + 1)` over the
//!   top k, divided by the DCG of the ideal order.
//!
//! MRR and nDCG depend on how ties are ordered. MIND ranks with `np.argsort(score)[::-1]`,
//! whose order among ties numpy leaves unspecified; [`ranking`] fixes it as a stable
//! ascending sort reversed (what numpy's scalar introsort gives on short arrays), so tied
//! candidates come in reverse input order. AUC does not depend on it. Scores are compared
//! with [`f64::total_cmp`].
//!
//! An impression whose candidates are all clicked or all unclicked has no AUC; it is left
//! out of every average, and the caller counts it.

/// Candidate indices, best first, in the order MIND's `np.argsort(score)[::-1]` gives.
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.reverse();
    order
}

/// AUC with ties counted 1/2, or `None` without both clicked and unclicked candidates.
/// `labels` and `scores` have one entry per candidate.
pub fn auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    debug_assert_eq!(labels.len(), scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann-Whitney: twice the sum of the positives' mid-ranks, kept in integers.
    let (mut positives, mut twice_rank_sum) = (0u64, 0u64);
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        let mut end = start;
        while end < order.len() && scores[order[end]].total_cmp(&score).is_eq() {
            end += 1;
        }
        // Ranks start + 1 ..= end share the mid-rank (start + 1 + end) / 2.
        let in_group = order[start..end].iter().filter(|&&i| labels[i]).count() as u64;
        positives += in_group;
        twice_rank_sum += in_group * (start as u64 + 1 + end as u64);
        start = end;
    }
    let negatives = labels.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let twice_wins = twice_rank_sum - positives * (positives + 1);
    Some(twice_wins as f64 / (2 * positives * negatives) as f64)
}

/// MIND's `mrr_score`, or `None` without a clicked candidate.
pub fn mrr(labels: &[bool], scores: &[f64]) -> Option<f64> {
    debug_assert_eq!(labels.len(), scores.len());
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let reciprocal_ranks: f64 = ranking(scores)
        .iter()
        .enumerate()
        .filter(|&(_, &i)| labels[i])
        .map(|(rank0, _)| 1.0 / (rank0 + 1) as f64)
        .sum();
    Some(reciprocal_ranks / positives as f64)
}

/// MIND's `ndcg_score` at `k`, or `None` without a clicked candidate.
pub fn ndcg(labels: &[bool], scores: &[f64], k: usize) -> Option<f64> {
    debug_assert_eq!(labels.len(), scores.len());
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let dcg = |clicked: &mut dyn Iterator<Item = bool>| -> f64 {
        clicked.take(k).enumerate().filter(|&(_, l)| l).map(|(rank0, _)| 1.0 / (rank0 as f64 + 2.0).log2()).sum()
    };
    let ideal = dcg(&mut (0..labels.len()).map(|i| i < positives));
    let actual = dcg(&mut ranking(scores).into_iter().map(|i| labels[i]));
    Some(actual / ideal)
}

/// The four metrics of one impression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImpressionMetrics {
    pub auc: f64,
    pub mrr: f64,
    pub ndcg5: f64,
    pub ndcg10: f64,
}

impl ImpressionMetrics {
    /// `None` when the impression has only clicked or only unclicked candidates.
    pub fn compute(labels: &[bool], scores: &[f64]) -> Option<Self> {
        Some(Self {
            auc: auc(labels, scores)?,
            mrr: mrr(labels, scores)?,
            ndcg5: ndcg(labels, scores, 5)?,
            ndcg10: ndcg(labels, scores, 10)?,
        })
    }
}

/// Per-impression metrics averaged over impressions (NaN over none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    pub impressions: usize,
    sum: [f64; 4],
}

impl Metrics {
    pub fn add(&mut self, m: ImpressionMetrics) {
        self.impressions += 1;
        for (sum, x) in self.sum.iter_mut().zip([m.auc, m.mrr, m.ndcg5, m.ndcg10]) {
            *sum += x;
        }
    }

    fn mean(&self, i: usize) -> f64 {
        self.sum[i] / self.impressions as f64
    }

    pub fn auc(&self) -> f64 {
        self.mean(0)
    }

    pub fn mrr(&self) -> f64 {
        self.mean(1)
    }

    pub fn ndcg5(&self) -> f64 {
        self.mean(2)
    }

    pub fn ndcg10(&self) -> f64 {
        self.mean(3)
    }
}

/// The per-impression AUC difference between two scorers over the same impressions, for a
/// paired comparison: its mean, and the half-width of its 95 % confidence interval (normal
/// approximation, `1.96 * sd / sqrt(n)`). Pairing removes what the impressions share (how
/// hard each one is), so it separates two scorers that overlap in their own intervals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Paired {
    pub impressions: usize,
    sum: f64,
    sum_of_squares: f64,
}

impl Paired {
    /// One impression: `a`'s AUC minus `b`'s.
    pub fn add(&mut self, difference: f64) {
        self.impressions += 1;
        self.sum += difference;
        self.sum_of_squares += difference * difference;
    }

    /// The mean difference (NaN over none).
    pub fn mean(&self) -> f64 {
        self.sum / self.impressions as f64
    }

    /// Half the width of the 95 % confidence interval of [`Paired::mean`] (NaN under two).
    pub fn ci95(&self) -> f64 {
        let n = self.impressions as f64;
        let variance = ((self.sum_of_squares - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
        1.96 * (variance / n).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(bits: &[u8]) -> Vec<bool> {
        bits.iter().map(|&b| b == 1).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_counts_pairs_and_half_ties() {
        // Pairs (pos, neg): (0.9, 0.1) 1, (0.9, 0.4) 1, (0.4, 0.1) 1, (0.4, 0.4) 1/2.
        // sklearn: roc_auc_score([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]) == 0.875
        assert_eq!(auc(&labels(&[1, 0, 1, 0]), &[0.9, 0.1, 0.4, 0.4]), Some(0.875));
        assert_eq!(auc(&labels(&[1, 0, 0]), &[0.5, 0.5, 0.5]), Some(0.5));
        assert_eq!(auc(&labels(&[0, 1]), &[0.7, 0.2]), Some(0.0));
        assert_eq!(auc(&labels(&[0, 1, 0]), &[0.1, 0.2, 0.3]), Some(0.5));
        // Tie groups mixing labels: scores 1,1,2,2,3 with labels 0,1,1,0,1.
        // Pos 1 (score 1): vs neg@1 tie 1/2, vs neg@2 0 -> 0.5; pos 2 (2): 1 + 1/2 = 1.5;
        // pos 3 (3): 2. (0.5 + 1.5 + 2) / 6 = 2/3.
        let a = auc(&labels(&[0, 1, 1, 0, 1]), &[1.0, 1.0, 2.0, 2.0, 3.0]).unwrap();
        assert!(close(a, 2.0 / 3.0), "{a}");
    }

    #[test]
    fn auc_needs_both_classes() {
        assert_eq!(auc(&labels(&[1, 1]), &[0.1, 0.2]), None);
        assert_eq!(auc(&labels(&[0, 0]), &[0.1, 0.2]), None);
        assert_eq!(auc(&[], &[]), None);
    }

    #[test]
    fn ranking_reverses_a_stable_ascending_sort() {
        assert_eq!(ranking(&[0.1, 0.9, 0.5]), [1, 2, 0]);
        // Ties come in reverse input order, as np.argsort(...)[::-1] gives.
        assert_eq!(ranking(&[0.5, 0.5, 0.9, 0.5]), [2, 3, 1, 0]);
    }

    #[test]
    fn mrr_matches_mind() {
        // Ranked labels 1, 0, 1, 0: (1/1 + 1/3) / 2 = 2/3.
        let m = mrr(&labels(&[0, 1, 0, 1]), &[0.1, 0.9, 0.5, 0.2]).unwrap();
        assert!(close(m, 2.0 / 3.0), "{m}");
        // A tie puts the later candidate first: ranked labels 0, 1 -> 1/2.
        assert_eq!(mrr(&labels(&[1, 0]), &[0.5, 0.5]), Some(0.5));
        assert_eq!(mrr(&labels(&[0, 1]), &[0.5, 0.5]), Some(1.0));
        assert_eq!(mrr(&labels(&[0, 0]), &[0.5, 0.5]), None);
    }

    #[test]
    fn ndcg_matches_mind() {
        // Ranked labels 1, 0, 1, 0: DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3).
        let (l, s) = (labels(&[0, 1, 0, 1]), [0.1, 0.9, 0.5, 0.2]);
        let n = ndcg(&l, &s, 5).unwrap();
        assert!(close(n, 1.5 / (1.0 + 1.0 / 3f64.log2())), "{n}");
        assert!(close(n, 0.919_720_789_148_187_6), "{n}");
        assert_eq!(ndcg(&l, &s, 1), Some(1.0));
        // The only click is ranked third: nothing in the top 2.
        assert_eq!(ndcg(&labels(&[0, 0, 1]), &[3.0, 2.0, 1.0], 2), Some(0.0));
        let n = ndcg(&labels(&[0, 0, 1]), &[3.0, 2.0, 1.0], 3).unwrap();
        assert!(close(n, 0.5), "{n}");
        // Ties: all equal, ranked in reverse input order -> labels 1, 0, 0.
        assert_eq!(ndcg(&labels(&[0, 0, 1]), &[1.0, 1.0, 1.0], 10), Some(1.0));
        assert_eq!(ndcg(&labels(&[0, 0]), &[1.0, 2.0], 10), None);
    }

    #[test]
    fn single_class_impressions_have_no_metrics() {
        assert_eq!(ImpressionMetrics::compute(&labels(&[1, 1]), &[0.1, 0.2]), None);
        assert_eq!(ImpressionMetrics::compute(&labels(&[0, 0]), &[0.1, 0.2]), None);
    }

    #[test]
    fn metrics_average_over_impressions() {
        let mut metrics = Metrics::default();
        assert!(metrics.auc().is_nan());
        for (l, s) in [([1, 0], [0.9, 0.1]), ([1, 0], [0.1, 0.9])] {
            metrics.add(ImpressionMetrics::compute(&labels(&l), &s).unwrap());
        }
        assert_eq!(metrics.impressions, 2);
        assert_eq!(metrics.auc(), 0.5);
        assert_eq!(metrics.mrr(), 0.75);
        let half_ndcg = (1.0 + 1.0 / 3f64.log2()) / 2.0;
        assert!(close(metrics.ndcg5(), half_ndcg));
        assert!(close(metrics.ndcg10(), half_ndcg));
    }

    #[test]
    fn paired_differences_give_a_mean_and_an_interval() {
        let mut p = Paired::default();
        assert!(p.mean().is_nan());
        for d in [0.1, 0.3, 0.2, 0.2] {
            p.add(d);
        }
        assert_eq!(p.impressions, 4);
        assert!(close(p.mean(), 0.2), "{}", p.mean());
        // Sample variance 0.02 / 3; sd / sqrt(4) = 0.040825; times 1.96.
        assert!((p.ci95() - 1.96 * (0.02f64 / 3.0).sqrt() / 2.0).abs() < 1e-12, "{}", p.ci95());
        // The same difference everywhere is certain.
        let mut same = Paired::default();
        (0..3).for_each(|_| same.add(0.05));
        assert!(same.ci95() < 1e-9, "{}", same.ci95());
    }
}
