//! `Tracking.Stats` as the stats panel shows it: exposures, clicks and CTR per A/B bucket,
//! per candidate source and per channel, over the server's last 24 hours.

use crate::explain::percent;

/// One line of a stats table.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsRow {
    /// The bucket's variant, the source's name, or the channel id as text.
    pub key: String,
    pub exposures: u64,
    pub clicks: u64,
    pub collects: u64,
    pub shares: u64,
    pub reads: u64,
    pub dislikes: u64,
    /// clicks / exposures, as the server computed it.
    pub ctr: f64,
}

impl StatsRow {
    /// The click-through rate, `None` without exposures. The server's figure, unless it is
    /// not a number, then recomputed.
    pub fn ctr(&self) -> Option<f64> {
        if self.exposures == 0 {
            None
        } else if self.ctr.is_finite() {
            Some(self.ctr)
        } else {
            Some(self.clicks as f64 / self.exposures as f64)
        }
    }

    /// `12.3%`, or a dash without exposures.
    pub fn ctr_label(&self) -> String {
        self.ctr().map_or_else(|| "—".to_owned(), percent)
    }
}

/// How the stats are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Bucket,
    Source,
    Channel,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Bucket, Group::Source, Group::Channel];

    /// The `data-group` of its table.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Bucket => "bucket",
            Group::Source => "source",
            Group::Channel => "channel",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Group::Bucket => "by A/B bucket",
            Group::Source => "by candidate source",
            Group::Channel => "by channel",
        }
    }
}

/// A `Tracking.Stats` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// The window the server used, Unix ms: [from_ms, to_ms).
    pub from_ms: i64,
    pub to_ms: i64,
    pub by_bucket: Vec<StatsRow>,
    /// An event counts once for every source that proposed its article.
    pub by_source: Vec<StatsRow>,
    pub by_channel: Vec<StatsRow>,
}

impl Stats {
    pub fn rows(&self, group: Group) -> &[StatsRow] {
        match group {
            Group::Bucket => &self.by_bucket,
            Group::Source => &self.by_source,
            Group::Channel => &self.by_channel,
        }
    }
}

/// The window the page asks for: `(from_ms, to_ms)` = `(0, 0)`, which the server reads as
/// the last 24 hours before its own now. Event times are the server's (the page reports
/// with `action_time` 0), so the browser's clock must not pick the window.
pub const LAST_DAY: (i64, i64) = (0, 0);

#[cfg(test)]
mod tests {
    use super::*;

    fn row(exposures: u64, clicks: u64, ctr: f64) -> StatsRow {
        StatsRow { key: "k".into(), exposures, clicks, collects: 0, shares: 0, reads: 0, dislikes: 0, ctr }
    }

    #[test]
    fn ctr_is_the_servers_unless_it_is_not_a_number() {
        assert_eq!(row(200, 10, 0.05).ctr(), Some(0.05));
        assert_eq!(row(200, 10, 0.05).ctr_label(), "5.0%");
        assert_eq!(row(4, 1, f64::NAN).ctr(), Some(0.25));
        assert_eq!(row(0, 0, 0.0).ctr(), None);
        assert_eq!(row(0, 3, 0.0).ctr_label(), "—");
    }

    #[test]
    fn rows_by_group() {
        let stats = Stats {
            by_bucket: vec![row(1, 0, 0.0)],
            by_source: vec![row(2, 0, 0.0), row(3, 0, 0.0)],
            by_channel: Vec::new(),
            ..Stats::default()
        };
        let counts: Vec<usize> = Group::ALL.iter().map(|&group| stats.rows(group).len()).collect();
        assert_eq!(counts, [1, 2, 0]);
        assert_eq!(Group::ALL.map(Group::as_str), ["bucket", "source", "channel"]);
    }
}
