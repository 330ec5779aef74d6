//! Parsers for the MIND dataset's files.
//!
//! `news.tsv`: `news_id, category, subcategory, title, abstract, url, title_entities,
//! abstract_entities`, tab-separated; the columns after the title may be missing or empty.
//! `behaviors.tsv`: `impression_id, user_id, time, history, impressions`, where time reads
//! `11/15/2019 8:55:22 AM` (taken as UTC), history is space-separated news ids (possibly
//! empty) and impressions are space-separated `N123-1` (clicked) / `N123-0` tokens.
//!
//! Parsing never fails on content: a line that cannot be read is skipped and reported
//! as a [`Skip`] with its 1-based line number. Blank lines are ignored.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::EvalError;

/// A news id as it appears in the files (`N55528`); cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NewsId(Arc<str>);

impl NewsId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NewsId {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl Borrow<str> for NewsId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NewsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `news.tsv` record (entity columns are not kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct News {
    pub id: NewsId,
    pub category: String,
    pub subcategory: String,
    pub title: String,
    pub abstract_text: String,
    pub url: String,
}

/// One candidate of an impression and whether it was clicked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub news: NewsId,
    pub clicked: bool,
}

/// One `behaviors.tsv` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impression {
    /// 1-based line number in the file, for reports.
    pub line: usize,
    pub id: u64,
    pub user: String,
    /// Milliseconds since the Unix epoch, reading the file's time as UTC.
    pub time_ms: i64,
    /// The user's clicks before the log period, oldest first.
    pub history: Vec<NewsId>,
    pub candidates: Vec<Candidate>,
}

/// Why a line (or, during replay, an impression) was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("{found} tab-separated fields, expected at least {expected}")]
    TooFewFields { found: usize, expected: usize },
    #[error("empty news id")]
    EmptyNewsId,
    #[error("duplicate news id {0}")]
    DuplicateNews(NewsId),
    #[error("bad impression id {0:?}")]
    BadImpressionId(String),
    #[error("empty user id")]
    EmptyUser,
    #[error("bad time {0:?}")]
    BadTime(String),
    #[error("bad candidate {0:?}, expected <news id>-<0 or 1>")]
    BadCandidate(String),
    #[error("no candidates")]
    NoCandidates,
    #[error("no clicked candidate")]
    NoPositive,
    #[error("every candidate clicked")]
    NoNegative,
}

impl SkipReason {
    /// A stable short name, for counting skips by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooFewFields { .. } => "too_few_fields",
            Self::EmptyNewsId => "empty_news_id",
            Self::DuplicateNews(_) => "duplicate_news",
            Self::BadImpressionId(_) => "bad_impression_id",
            Self::EmptyUser => "empty_user",
            Self::BadTime(_) => "bad_time",
            Self::BadCandidate(_) => "bad_candidate",
            Self::NoCandidates => "no_candidates",
            Self::NoPositive => "no_positive",
            Self::NoNegative => "no_negative",
        }
    }
}

/// A skipped line and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub line: usize,
    pub reason: SkipReason,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Counts skips by [`SkipReason::kind`].
pub fn count_by_kind(skips: &[Skip]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for skip in skips {
        *counts.entry(skip.reason.kind()).or_insert(0) += 1;
    }
    counts
}

/// The records that could be read, and the lines that could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<T> {
    pub records: Vec<T>,
    pub skipped: Vec<Skip>,
}

/// Non-blank lines with their 1-based numbers, without a trailing `\r`.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.trim().is_empty())
}

/// Parses `news.tsv`; the first record of an id wins, later ones are skipped.
pub fn parse_news(text: &str) -> Parsed<News> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = FxHashMap::default();
    for (line, content) in lines(text) {
        match parse_news_line(content) {
            Ok(news) => {
                if seen.insert(news.id.clone(), ()).is_some() {
                    let reason = SkipReason::DuplicateNews(news.id);
                    skipped.push(Skip { line, reason });
                } else {
                    records.push(news);
                }
            }
            Err(reason) => skipped.push(Skip { line, reason }),
        }
    }
    Parsed { records, skipped }
}

fn parse_news_line(line: &str) -> Result<News, SkipReason> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() < 4 {
        return Err(SkipReason::TooFewFields { found: fields.len(), expected: 4 });
    }
    let id = fields[0].trim();
    if id.is_empty() {
        return Err(SkipReason::EmptyNewsId);
    }
    let field = |i: usize| fields.get(i).map_or_else(String::new, |f| f.to_string());
    Ok(News {
        id: NewsId::from(id),
        category: field(1),
        subcategory: field(2),
        title: field(3),
        abstract_text: field(4),
        url: field(5),
    })
}

/// Parses `behaviors.tsv`.
pub fn parse_behaviors(text: &str) -> Parsed<Impression> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for (line, content) in lines(text) {
        match parse_behaviors_line(line, content) {
            Ok(impression) => records.push(impression),
            Err(reason) => skipped.push(Skip { line, reason }),
        }
    }
    Parsed { records, skipped }
}

fn parse_behaviors_line(line: usize, content: &str) -> Result<Impression, SkipReason> {
    let fields: Vec<&str> = content.split('\t').collect();
    if fields.len() < 5 {
        return Err(SkipReason::TooFewFields { found: fields.len(), expected: 5 });
    }
    let id = fields[0].trim();
    let id = id.parse().map_err(|_| SkipReason::BadImpressionId(id.to_string()))?;
    let user = fields[1].trim();
    if user.is_empty() {
        return Err(SkipReason::EmptyUser);
    }
    let time_ms = parse_time(fields[2]).ok_or_else(|| SkipReason::BadTime(fields[2].to_string()))?;
    let history = fields[3].split_whitespace().map(NewsId::from).collect();
    let candidates = fields[4].split_whitespace().map(parse_candidate).collect::<Result<Vec<_>, _>>()?;
    if candidates.is_empty() {
        return Err(SkipReason::NoCandidates);
    }
    Ok(Impression { line, id, user: user.to_string(), time_ms, history, candidates })
}

fn parse_candidate(token: &str) -> Result<Candidate, SkipReason> {
    let bad = || SkipReason::BadCandidate(token.to_string());
    let (news, label) = token.rsplit_once('-').ok_or_else(bad)?;
    let clicked = match label {
        "1" => true,
        "0" => false,
        _ => return Err(bad()),
    };
    if news.is_empty() {
        return Err(bad());
    }
    Ok(Candidate { news: NewsId::from(news), clicked })
}

/// Reads and parses a `news.tsv` file.
pub fn read_news(path: &Path) -> Result<Parsed<News>, EvalError> {
    Ok(parse_news(&read(path)?))
}

/// Reads and parses a `behaviors.tsv` file.
pub fn read_behaviors(path: &Path) -> Result<Parsed<Impression>, EvalError> {
    Ok(parse_behaviors(&read(path)?))
}

fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: path.to_path_buf(), source })
}

/// The news of a `news.tsv`, by id.
#[derive(Clone, Debug, Default)]
pub struct NewsIndex {
    by_id: FxHashMap<NewsId, News>,
}

impl NewsIndex {
    pub fn new(news: impl IntoIterator<Item = News>) -> Self {
        let by_id = news.into_iter().map(|n| (n.id.clone(), n)).collect();
        Self { by_id }
    }

    pub fn get(&self, id: &str) -> Option<&News> {
        self.by_id.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Parses MIND's `M/D/YYYY h:mm:ss AM` (US order, 12-hour clock) as UTC milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let (date, clock, meridiem) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let pm = match meridiem.to_ascii_uppercase().as_str() {
        "AM" => false,
        "PM" => true,
        _ => return None,
    };
    let [month, day, year] = three(date, '/')?;
    let [hour, minute, second] = three(clock, ':')?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && (1..=12).contains(&hour)
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let hour = hour % 12 + if pm { 12 } else { 0 };
    let seconds = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some((days_from_civil(i64::from(year), month, day) * 86_400 + seconds) * 1000)
}

/// Formats UTC milliseconds the way [`parse_time`] reads them.
pub fn format_time(time_ms: i64) -> String {
    let seconds = time_ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let meridiem = if hour < 12 { "AM" } else { "PM" };
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    format!("{month}/{day}/{year} {hour12}:{minute:02}:{second:02} {meridiem}")
}

/// Splits `a<sep>b<sep>c` into three plain decimal numbers.
fn three(text: &str, sep: char) -> Option<[u32; 3]> {
    let mut parts = text.split(sep);
    let out = [number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?];
    parts.next().is_none().then_some(out)
}

fn number(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.len() <= 4 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_reads_us_order_and_12_hour_clock() {
        // `date -u -d '2019-11-15 08:55:22' +%s` = 1573808122
        assert_eq!(parse_time("11/15/2019 8:55:22 AM"), Some(1_573_808_122_000));
        assert_eq!(parse_time("11/15/2019 8:55:22 PM"), Some(1_573_808_122_000 + 12 * 3_600_000));
        let midnight = parse_time("11/15/2019 12:00:00 AM").unwrap();
        let noon = parse_time("11/15/2019 12:00:00 PM").unwrap();
        assert_eq!(noon - midnight, 12 * 3_600_000);
        assert_eq!(midnight % 86_400_000, 0);
        assert_eq!(parse_time("2/29/2020 1:00:00 am"), Some(1_582_938_000_000));
    }

    #[test]
    fn bad_times_are_rejected() {
        for bad in [
            "",
            "11/15/2019",
            "11/15/2019 8:55:22",
            "13/15/2019 8:55:22 AM",
            "2/29/2019 8:55:22 AM",
            "11/15/2019 0:55:22 AM",
            "11/15/2019 13:55:22 PM",
            "11/15/2019 8:60:22 AM",
            "11/15/2019 8:55:22 XM",
            "11/+5/2019 8:55:22 AM",
            "11/15/2019/1 8:55:22 AM",
            "11/15/2019 8:55:22 AM extra",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_time_round_trips() {
        for text in ["11/15/2019 8:55:22 AM", "1/1/1970 12:00:00 AM", "2/29/2020 11:59:59 PM", "12/31/1999 12:30:00 PM"]
        {
            let ms = parse_time(text).unwrap();
            assert_eq!(format_time(ms), text);
        }
    }

    #[test]
    fn news_keeps_good_lines_and_reports_bad_ones() {
        let text = "N1\tsports\tsoccer\tA title\tAn abstract\thttps://x\t[]\t[]\n\
                    \n\
                    N2\tnews\tworld\tOnly four columns\r\n\
                    broken line\n\
                    \tnews\tworld\tno id\n\
                    N1\tsports\tsoccer\tagain\n";
        let parsed = parse_news(text);
        let ids: Vec<&str> = parsed.records.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["N1", "N2"]);
        assert_eq!(parsed.records[0].abstract_text, "An abstract");
        assert_eq!(parsed.records[1].title, "Only four columns");
        assert_eq!(parsed.records[1].url, "");
        let skipped: Vec<String> = parsed.skipped.iter().map(Skip::to_string).collect();
        assert_eq!(
            skipped,
            [
                "line 4: 1 tab-separated fields, expected at least 4",
                "line 5: empty news id",
                "line 6: duplicate news id N1",
            ]
        );
    }

    #[test]
    fn behaviors_keep_good_lines_and_report_bad_ones() {
        let text = "1\tU1\t11/15/2019 8:55:22 AM\tN1 N2\tN3-1 N4-0\n\
                    2\tU2\t11/15/2019 9:00:00 AM\t\tN3-0 N4-1\n\
                    x\tU3\t11/15/2019 9:00:00 AM\t\tN3-0\n\
                    4\t\t11/15/2019 9:00:00 AM\t\tN3-0\n\
                    5\tU5\tyesterday\t\tN3-0\n\
                    6\tU6\t11/15/2019 9:00:00 AM\t\tN3-0 N4\n\
                    7\tU7\t11/15/2019 9:00:00 AM\t\t\n\
                    8\tU8\t11/15/2019 9:00:00 AM\n";
        let parsed = parse_behaviors(text);
        assert_eq!(parsed.records.len(), 2);
        let first = &parsed.records[0];
        assert_eq!((first.line, first.id, first.user.as_str()), (1, 1, "U1"));
        assert_eq!(first.history, [NewsId::from("N1"), NewsId::from("N2")]);
        assert_eq!(
            first.candidates,
            [Candidate { news: "N3".into(), clicked: true }, Candidate { news: "N4".into(), clicked: false },]
        );
        assert!(parsed.records[1].history.is_empty());
        let kinds: Vec<(usize, &str)> = parsed.skipped.iter().map(|s| (s.line, s.reason.kind())).collect();
        assert_eq!(
            kinds,
            [
                (3, "bad_impression_id"),
                (4, "empty_user"),
                (5, "bad_time"),
                (6, "bad_candidate"),
                (7, "no_candidates"),
                (8, "too_few_fields"),
            ]
        );
    }

    #[test]
    fn reading_a_missing_file_is_a_typed_error() {
        let err = read_news(Path::new("/nonexistent/news.tsv")).unwrap_err();
        assert!(matches!(err, EvalError::Read { .. }), "{err}");
    }
}
