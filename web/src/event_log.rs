//! Every `Tracking.Report` the page sends, with the decoded param and the server's verdict.
//! A [`Report`] is what one event says: a served param, a read's duration, or a dislike.
//!
//! Pausing holds new entries back (they still get their verdicts) until the log resumes, so
//! the entries on screen stay put while someone reads them.

use crate::json::{Value, object};

use crate::param::{Action, Param};

/// One event for `Tracking.Report`: a param exactly as served, and what the person did.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub param: Param,
    /// Read duration in ms; the server requires it (> 0) for reads and ignores it otherwise.
    pub read_duration_ms: Option<i64>,
    /// "Not interested" instead of the param's own action.
    pub dislike: bool,
}

impl Report {
    /// The param's own action (exposure, click, collect, share).
    pub fn of(param: Param) -> Report {
        Report { param, read_duration_ms: None, dislike: false }
    }

    pub fn read(param: Param, duration_ms: i64) -> Report {
        Report { read_duration_ms: Some(duration_ms), ..Report::of(param) }
    }

    /// A dislike, sent with one of the card's params (the page uses its click param).
    pub fn dislike(param: Param) -> Report {
        Report { dislike: true, ..Report::of(param) }
    }

    /// What the server will record.
    pub fn action(&self) -> Option<Action> {
        if self.dislike { Some(Action::Dislike) } else { self.param.action() }
    }
}

/// The server's verdict on one event, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pending,
    Accepted,
    Duplicate,
    Rejected(String),
    /// The call itself failed (server down, network).
    Failed(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Rejected(reason) | Outcome::Failed(reason) if !reason.is_empty() => Some(reason),
            _ => None,
        }
    }

    /// Whether the server has the event: recorded now, or already before.
    pub fn is_recorded(&self) -> bool {
        matches!(self, Outcome::Accepted | Outcome::Duplicate)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub id: u64,
    /// When the page sent it, Unix ms.
    pub sent_at: i64,
    pub action: Option<Action>,
    pub article_ids: Vec<i64>,
    pub user_id: String,
    pub param: String,
    /// The param, pretty-printed.
    pub payload: String,
    pub read_duration_ms: Option<i64>,
    pub outcome: Outcome,
}

impl LogEntry {
    pub fn action_name(&self) -> &'static str {
        self.action.map_or("unknown", Action::as_str)
    }

    /// The entry as pretty JSON, for the clipboard.
    pub fn to_json(&self) -> String {
        let payload = Value::parse(&self.param).unwrap_or_else(|| self.param.as_str().into());
        object([
            ("id", self.id.into()),
            ("sentAt", self.sent_at.into()),
            ("action", self.action_name().into()),
            ("articleIds", self.article_ids.clone().into()),
            ("userId", self.user_id.as_str().into()),
            ("readDurationMs", self.read_duration_ms.into()),
            ("verdict", self.outcome.label().into()),
            ("reason", self.outcome.reason().into()),
            ("param", self.param.as_str().into()),
            ("payload", payload),
        ])
        .pretty()
    }
}

/// Which entries the log shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    #[default]
    All,
    Only(Action),
}

impl Filter {
    pub fn matches(self, entry: &LogEntry) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(action) => entry.action == Some(action),
        }
    }

    /// The `<select>` value: `all` or an action name.
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::All => "all",
            Filter::Only(action) => action.as_str(),
        }
    }

    pub fn parse(value: &str) -> Filter {
        Action::parse(value).map_or(Filter::All, Filter::Only)
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventLog {
    /// Oldest first.
    shown: Vec<LogEntry>,
    held: Vec<LogEntry>,
    paused: bool,
    next_id: u64,
}

impl EventLog {
    /// Logs an event about to be sent and returns its id for [`EventLog::resolve`].
    pub fn record(&mut self, report: &Report, now: i64) -> u64 {
        self.next_id += 1;
        let param = &report.param;
        let entry = LogEntry {
            id: self.next_id,
            sent_at: now,
            action: report.action(),
            article_ids: param.article_ids(),
            user_id: param.user_id().unwrap_or_default().to_owned(),
            param: param.raw.clone(),
            payload: param.pretty.clone(),
            read_duration_ms: report.read_duration_ms,
            outcome: Outcome::Pending,
        };
        if self.paused {
            self.held.push(entry);
        } else {
            self.shown.push(entry);
        }
        self.next_id
    }

    /// Sets the verdict of entry `id`, shown or held; a cleared entry is ignored.
    pub fn resolve(&mut self, id: u64, outcome: Outcome) {
        if let Some(entry) = self.shown.iter_mut().chain(self.held.iter_mut()).find(|entry| entry.id == id) {
            entry.outcome = outcome;
        }
    }

    /// Shown entries that pass `filter`, newest first.
    pub fn visible(&self, filter: Filter) -> Vec<LogEntry> {
        self.shown.iter().rev().filter(|entry| filter.matches(entry)).cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<&LogEntry> {
        self.shown.iter().find(|entry| entry.id == id)
    }

    pub fn len(&self) -> usize {
        self.shown.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Shows what arrived while paused.
    pub fn resume(&mut self) {
        self.paused = false;
        self.shown.append(&mut self.held);
    }

    /// Drops the shown entries; held ones still appear on resume.
    pub fn clear(&mut self) {
        self.shown.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(action: &str, id: i64) -> Param {
        Param::new(format!(r#"{{"action":"{action}","userId":"u9","articleId":{id},"sig":"s"}}"#))
    }

    fn report(action: &str, id: i64) -> Report {
        Report::of(param(action, id))
    }

    fn ids(entries: &[LogEntry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.id).collect()
    }

    #[test]
    fn records_decoded_events_newest_first() {
        let mut log = EventLog::default();
        let click = log.record(&report("click", 1), 10);
        let read = log.record(&Report::read(param("read", 2), 30_000), 20);
        let shown = log.visible(Filter::All);
        assert_eq!(ids(&shown), [read, click]);
        assert_eq!(shown[0].action, Some(Action::Read));
        assert_eq!(shown[0].article_ids, [2]);
        assert_eq!(shown[0].user_id, "u9");
        assert_eq!(shown[0].read_duration_ms, Some(30_000));
        assert_eq!(shown[0].outcome, Outcome::Pending);
        assert!(shown[0].payload.contains("\n  \"action\": \"read\""));
    }

    #[test]
    fn a_dislike_is_logged_as_such_with_the_param_it_was_sent_with() {
        let mut log = EventLog::default();
        let click = param("click", 7);
        let report = Report::dislike(click.clone());
        assert_eq!(report.action(), Some(Action::Dislike));
        assert_eq!(Report::of(click.clone()).action(), Some(Action::Click));
        let id = log.record(&report, 5);
        let entry = log.get(id).unwrap();
        assert_eq!(entry.action_name(), "dislike");
        assert_eq!(entry.article_ids, [7]);
        assert_eq!(entry.param, click.raw);
        assert_eq!(entry.read_duration_ms, None);
        assert_eq!(ids(&log.visible(Filter::Only(Action::Dislike))), [id]);
        assert!(log.visible(Filter::Only(Action::Click)).is_empty());
    }

    #[test]
    fn recorded_outcomes_are_accepted_or_duplicate() {
        assert!(Outcome::Accepted.is_recorded());
        assert!(Outcome::Duplicate.is_recorded());
        for outcome in [Outcome::Pending, Outcome::Rejected("x".into()), Outcome::Failed("y".into())] {
            assert!(!outcome.is_recorded(), "{outcome:?}");
        }
    }

    #[test]
    fn resolve_sets_the_verdict() {
        let mut log = EventLog::default();
        let id = log.record(&report("click", 1), 10);
        log.resolve(id, Outcome::Rejected("bad signature".into()));
        let entry = log.get(id).unwrap();
        assert_eq!(entry.outcome.label(), "rejected");
        assert_eq!(entry.outcome.reason(), Some("bad signature"));
        log.resolve(id + 1, Outcome::Accepted);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn filters_by_action() {
        let mut log = EventLog::default();
        let click = log.record(&report("click", 1), 10);
        log.record(&report("share", 1), 11);
        let other_click = log.record(&report("click", 2), 12);
        log.record(&Report::of(Param::new("garbage".into())), 13);
        assert_eq!(ids(&log.visible(Filter::Only(Action::Click))), [other_click, click]);
        assert!(log.visible(Filter::Only(Action::Exposure)).is_empty());
        assert_eq!(log.visible(Filter::All).len(), 4);
        assert_eq!(log.visible(Filter::All)[0].action_name(), "unknown");
    }

    #[test]
    fn pause_holds_entries_until_resume() {
        let mut log = EventLog::default();
        let before = log.record(&report("click", 1), 10);
        log.pause();
        let during = log.record(&report("collect", 1), 11);
        assert!(log.is_paused());
        assert_eq!(ids(&log.visible(Filter::All)), [before]);
        assert_eq!(log.held(), 1);
        // A held event still gets its verdict.
        log.resolve(during, Outcome::Duplicate);
        log.resume();
        assert!(!log.is_paused());
        assert_eq!(log.held(), 0);
        assert_eq!(ids(&log.visible(Filter::All)), [during, before]);
        assert_eq!(log.get(during).unwrap().outcome, Outcome::Duplicate);
    }

    #[test]
    fn clear_drops_shown_entries_only() {
        let mut log = EventLog::default();
        log.record(&report("click", 1), 10);
        log.pause();
        log.record(&report("click", 2), 11);
        log.clear();
        assert!(log.is_empty());
        log.resume();
        assert_eq!(log.len(), 1);
        // Ids keep counting, so a late verdict for a cleared entry lands nowhere.
        let next = log.record(&report("click", 3), 12);
        assert_eq!(next, 3);
    }

    #[test]
    fn copies_an_entry_as_json() {
        let mut log = EventLog::default();
        let id = log.record(&Report::read(param("read", 4), 1_500), 99);
        log.resolve(id, Outcome::Accepted);
        let json: serde_json::Value = serde_json::from_str(&log.get(id).unwrap().to_json()).unwrap();
        assert_eq!(json["action"], "read");
        assert_eq!(json["verdict"], "accepted");
        assert_eq!(json["reason"], serde_json::Value::Null);
        assert_eq!(json["readDurationMs"], 1_500);
        assert_eq!(json["articleIds"][0], 4);
        assert_eq!(json["payload"]["sig"], "s");
        assert!(json["param"].as_str().unwrap().starts_with("{\"action\":\"read\""));
    }

    #[test]
    fn filter_values_round_trip() {
        assert_eq!(Filter::parse("all"), Filter::All);
        assert_eq!(Filter::parse("nonsense"), Filter::All);
        for action in Action::ALL {
            let filter = Filter::Only(action);
            assert_eq!(Filter::parse(filter.as_str()), filter);
        }
    }
}
