//! The live inspector: every tracking event the server judges, from every client, as
//! `Tracking.Watch` streams them (the page's own reports, other pages', plain gRPC clients').
//!
//! The list keeps the newest [`MAX_KEPT`] entries and counts what it lost: events the server
//! skipped because the page fell behind (its `dropped` markers, also shown in place as a gap)
//! and entries the page let go past its cap. Pausing holds new entries back until resume
//! (capped the same way, and counted), so nothing that arrives meanwhile is lost silently.
//!
//! Filters apply on the server: a changed [`Filter`] resubscribes, so the stream carries only
//! what is asked for (and the server's per-subscriber buffer is spent on it). Entries already
//! listed are filtered by the same rule on the page, so the list always matches the filter.

use std::collections::VecDeque;

use crate::json::{Value, object};

use crate::{
    feed::Feed,
    live::{self, Connection},
    param::{Action, pretty_json},
};

/// Entries kept on the list (shown or held); older ones go and are counted.
pub const MAX_KEPT: usize = 500;

/// A verdict as a filter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerdictKind {
    Accepted,
    Duplicate,
    Rejected,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 3] = [VerdictKind::Accepted, VerdictKind::Duplicate, VerdictKind::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Accepted => "accepted",
            VerdictKind::Duplicate => "duplicate",
            VerdictKind::Rejected => "rejected",
        }
    }

    pub fn parse(name: &str) -> Option<VerdictKind> {
        VerdictKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The server's judgement of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Duplicate,
    Rejected(String),
}

impl Verdict {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Accepted => VerdictKind::Accepted,
            Verdict::Duplicate => VerdictKind::Duplicate,
            Verdict::Rejected(_) => VerdictKind::Rejected,
        }
    }

    pub fn label(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Rejected(reason) if !reason.is_empty() => Some(reason),
            _ => None,
        }
    }
}

/// One judged event, in the page's terms (see `WatchedEvent` in `proto/reco_v1.proto`).
#[derive(Clone, Debug, PartialEq)]
pub struct Watched {
    pub verdict: Verdict,
    /// As the server names it; empty when the param did not decode.
    pub action: String,
    pub user_id: String,
    pub article_ids: Vec<i64>,
    /// The served batch's channel, time (Unix ms) and request id; 0 when unknown.
    pub channel_id: i32,
    pub batch_time: i64,
    pub request_id: u64,
    /// The card's position; `None` for an exposure (or an undecodable param).
    pub position: Option<u32>,
    pub sources: String,
    pub bucket: u32,
    /// The param exactly as sent; empty for another replica's event.
    pub param: String,
    pub action_time: i64,
    pub read_duration_ms: i64,
    pub dislike: bool,
    /// Server time of the verdict, Unix ms.
    pub judged_ms: i64,
    /// The event log's number of an accepted event; 0 otherwise.
    pub seq: u64,
    /// Accepted by another replica.
    pub remote: bool,
}

impl Watched {
    pub fn action_name(&self) -> &str {
        if self.action.is_empty() { "unknown" } else { &self.action }
    }
}

/// What the stream delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Event(Box<Watched>),
    /// The server skipped this many events here (the page fell behind).
    Dropped(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum EntryKind {
    Event {
        event: Box<Watched>,
        /// The param, pretty-printed (or as sent when it is not JSON).
        pretty: String,
    },
    Gap {
        dropped: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Unique on this page, in arrival order.
    pub id: u64,
    pub kind: EntryKind,
}

impl Entry {
    pub fn event(&self) -> Option<&Watched> {
        match &self.kind {
            EntryKind::Event { event, .. } => Some(event),
            EntryKind::Gap { .. } => None,
        }
    }

    /// The entry as pretty JSON, for the clipboard.
    pub fn to_json(&self) -> String {
        self.to_value().pretty()
    }

    fn to_value(&self) -> Value {
        let event = match &self.kind {
            EntryKind::Gap { dropped } => return object([("dropped", (*dropped).into())]),
            EntryKind::Event { event, .. } => event,
        };
        let payload = Value::parse(&event.param).unwrap_or_else(|| event.param.as_str().into());
        object([
            ("verdict", event.verdict.label().into()),
            ("reason", event.verdict.reason().into()),
            ("action", event.action_name().into()),
            ("userId", event.user_id.as_str().into()),
            ("articleIds", event.article_ids.clone().into()),
            ("channelId", event.channel_id.into()),
            ("batchTime", event.batch_time.into()),
            ("requestId", format!("{:016x}", event.request_id).into()),
            ("position", event.position.into()),
            ("sources", event.sources.as_str().into()),
            ("bucket", event.bucket.into()),
            ("actionTime", event.action_time.into()),
            ("readDurationMs", (event.read_duration_ms > 0).then_some(event.read_duration_ms).into()),
            ("dislike", event.dislike.into()),
            ("judgedMs", event.judged_ms.into()),
            ("seq", event.seq.into()),
            ("remote", event.remote.into()),
            ("param", event.param.as_str().into()),
            ("payload", payload),
        ])
    }
}

/// What the inspector asks the server for; the default is everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exactly this user id; empty: everyone.
    pub user_id: String,
    pub action: Option<Action>,
    pub verdict: Option<VerdictKind>,
    /// The served batch's channel (0 is 推荐's batches).
    pub channel: Option<i32>,
}

impl Filter {
    /// The server's rule (`reco-server`'s `EventFilter`), for entries listed before a change.
    pub fn matches(&self, event: &Watched) -> bool {
        (self.user_id.is_empty() || self.user_id == event.user_id)
            && self.action.is_none_or(|action| action.as_str() == event.action)
            && self.verdict.is_none_or(|verdict| verdict == event.verdict.kind())
            && self.channel.is_none_or(|channel| !event.action.is_empty() && channel == event.channel_id)
    }

    /// The `<select>` value of an optional choice: `all` or its name.
    pub fn choice<T>(value: Option<T>, name: impl Fn(T) -> String) -> String {
        value.map_or_else(|| "all".to_owned(), name)
    }
}

/// Reads a channel `<select>` value: `all` or a channel id.
pub fn parse_channel(value: &str) -> Option<i32> {
    value.parse().ok()
}

/// Where an event's card (or, for an exposure, its batch) is on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub batch: u64,
    /// `None`: the whole batch (an exposure).
    pub article_id: Option<i64>,
}

/// The card and batch `event` came from, when they are on the page: the batch whose params
/// carry the event's request id, and in it the card of the event's article.
pub fn locate(feed: &Feed, event: &Watched) -> Option<Target> {
    if event.request_id == 0 {
        return None;
    }
    let served = |raw: Option<&crate::param::Param>| {
        raw.and_then(|param| param.payload.as_ref().ok())
            .and_then(|payload| payload.request_id.as_deref())
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            == Some(event.request_id)
    };
    feed.batches().iter().find_map(|batch| {
        if event.position.is_none() {
            // An exposure names the whole batch.
            let ours =
                served(batch.data.exposure.as_ref()) || batch.data.cards.iter().any(|card| served(card.params.first()));
            return ours.then_some(Target { batch: batch.key, article_id: None });
        }
        let article_id = *event.article_ids.first()?;
        batch
            .data
            .cards
            .iter()
            .find(|card| card.article_id == article_id && served(card.params.first()))
            .map(|_| Target { batch: batch.key, article_id: Some(article_id) })
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inspector {
    connection: Connection,
    filter: Filter,
    /// Oldest first.
    shown: VecDeque<Entry>,
    held: VecDeque<Entry>,
    paused: bool,
    next_id: u64,
    /// Events the server skipped (its `dropped` markers).
    server_dropped: u64,
    /// Entries let go past [`MAX_KEPT`].
    page_dropped: u64,
}

impl Default for Inspector {
    fn default() -> Inspector {
        Inspector {
            connection: Connection::Connecting,
            filter: Filter::default(),
            shown: VecDeque::new(),
            held: VecDeque::new(),
            paused: false,
            next_id: 0,
            server_dropped: 0,
            page_dropped: 0,
        }
    }
}

impl Inspector {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Sets the filter; returns whether it changed (then the stream must be reopened with it).
    pub fn set_filter(&mut self, filter: Filter) -> bool {
        if self.filter == filter {
            return false;
        }
        self.filter = filter;
        self.connection = Connection::Connecting;
        true
    }

    /// The stream is open.
    pub fn connected(&mut self) {
        self.connection = Connection::Live;
    }

    /// The stream failed or ended: how long to wait before reopening it, ms (as [`live`]).
    pub fn fail(&mut self, message: String) -> u32 {
        let attempt = match &self.connection {
            Connection::Down { attempt, .. } => attempt + 1,
            Connection::Connecting | Connection::Live => 1,
        };
        self.connection = Connection::Down { message, attempt };
        live::retry_after(attempt)
    }

    pub fn push(&mut self, item: Item) {
        self.next_id += 1;
        let kind = match item {
            Item::Event(event) => {
                let pretty = pretty_json(&event.param).unwrap_or_else(|| event.param.clone());
                EntryKind::Event { event, pretty }
            }
            Item::Dropped(dropped) => {
                self.server_dropped = self.server_dropped.saturating_add(dropped);
                EntryKind::Gap { dropped }
            }
        };
        let entry = Entry { id: self.next_id, kind };
        if self.paused {
            self.held.push_back(entry);
            // What is shown stays put while paused; the held ones are capped alone.
            Self::trim(&mut self.held, &mut self.page_dropped);
        } else {
            self.shown.push_back(entry);
            Self::trim(&mut self.shown, &mut self.page_dropped);
        }
    }

    fn trim(entries: &mut VecDeque<Entry>, dropped: &mut u64) {
        while entries.len() > MAX_KEPT {
            if let Some(Entry { kind: EntryKind::Event { .. }, .. }) = entries.pop_front() {
                *dropped += 1;
            }
        }
    }

    /// Listed entries that pass the filter (gaps always), newest first.
    pub fn visible(&self) -> Vec<Entry> {
        self.shown
            .iter()
            .rev()
            .filter(|entry| entry.event().is_none_or(|event| self.filter.matches(event)))
            .cloned()
            .collect()
    }

    /// Events listed (not gaps).
    pub fn len(&self) -> usize {
        self.shown.iter().filter(|entry| entry.event().is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.shown.iter().find(|entry| entry.id == id)
    }

    /// Events the server skipped plus entries the page let go.
    pub fn dropped(&self) -> u64 {
        self.server_dropped + self.page_dropped
    }

    pub fn server_dropped(&self) -> u64 {
        self.server_dropped
    }

    pub fn page_dropped(&self) -> u64 {
        self.page_dropped
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

    /// Lists what arrived while paused, then keeps the newest [`MAX_KEPT`].
    pub fn resume(&mut self) {
        self.paused = false;
        self.shown.append(&mut self.held);
        Self::trim(&mut self.shown, &mut self.page_dropped);
    }

    /// Empties the list (held entries still come on resume) and the drop counts.
    pub fn clear(&mut self) {
        self.shown.clear();
        self.server_dropped = 0;
        self.page_dropped = 0;
    }

    /// The visible list as a JSON document, newest first, for a file.
    pub fn export(&self, now_ms: i64) -> String {
        let entries: Vec<Value> = self.visible().iter().map(Entry::to_value).collect();
        let filter = &self.filter;
        object([
            ("exportedMs", now_ms.into()),
            (
                "filter",
                object([
                    ("userId", filter.user_id.as_str().into()),
                    ("action", filter.action.map(Action::as_str).into()),
                    ("verdict", filter.verdict.map(VerdictKind::as_str).into()),
                    ("channelId", filter.channel.into()),
                ]),
            ),
            ("droppedByServer", self.server_dropped.into()),
            ("droppedByPage", self.page_dropped.into()),
            ("entries", entries.into()),
        ])
        .pretty()
    }

    /// A word on the stream.
    pub fn status_text(&self) -> String {
        match &self.connection {
            Connection::Connecting => "connecting to the event stream…".to_owned(),
            Connection::Live => "live: every client's events as the server judges them".to_owned(),
            Connection::Down { message, attempt } => {
                format!("disconnected ({message}); reconnecting on its own, attempt {attempt}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        feed::{BatchData, Card},
        param::Param,
    };

    fn event(user: &str, action: &str, verdict: Verdict) -> Watched {
        Watched {
            verdict,
            action: action.into(),
            user_id: user.into(),
            article_ids: vec![7],
            channel_id: 3,
            batch_time: 1_000,
            request_id: 0xab,
            position: (action != "exposure").then_some(0),
            sources: "fresh".into(),
            bucket: 1,
            param: format!(r#"{{"action":"{action}","userId":"{user}","articleId":7,"sig":"s"}}"#),
            action_time: 1_001,
            read_duration_ms: 0,
            dislike: false,
            judged_ms: 1_002,
            seq: 5,
            remote: false,
        }
    }

    fn push(inspector: &mut Inspector, event: Watched) {
        inspector.push(Item::Event(Box::new(event)));
    }

    fn users(entries: &[Entry]) -> Vec<String> {
        entries.iter().filter_map(Entry::event).map(|event| event.user_id.clone()).collect()
    }

    #[test]
    fn lists_events_newest_first_with_the_param_pretty_printed() {
        let mut inspector = Inspector::default();
        push(&mut inspector, event("a", "click", Verdict::Accepted));
        push(&mut inspector, event("b", "share", Verdict::Rejected("bad signature".into())));
        let visible = inspector.visible();
        assert_eq!(users(&visible), ["b", "a"]);
        let EntryKind::Event { event, pretty } = &visible[0].kind else { panic!("a gap: {visible:?}") };
        assert_eq!(event.verdict.label(), "rejected");
        assert_eq!(event.verdict.reason(), Some("bad signature"));
        assert!(pretty.contains("\n  \"action\": \"share\""), "{pretty}");
        assert_eq!(inspector.len(), 2);
    }

    #[test]
    fn keeps_the_newest_and_counts_both_kinds_of_loss() {
        let mut inspector = Inspector::default();
        for i in 0..MAX_KEPT + 20 {
            push(&mut inspector, event(&i.to_string(), "click", Verdict::Accepted));
        }
        inspector.push(Item::Dropped(7));
        assert_eq!(inspector.page_dropped(), 21, "20 over the cap, and one more for the gap");
        assert_eq!(inspector.server_dropped(), 7);
        assert_eq!(inspector.dropped(), 28);
        let visible = inspector.visible();
        assert_eq!(visible.len(), MAX_KEPT);
        assert_eq!(visible[0].kind, EntryKind::Gap { dropped: 7 });
        assert_eq!(users(&visible[1..2]), [(MAX_KEPT + 19).to_string()]);
        inspector.clear();
        assert_eq!((inspector.dropped(), inspector.len()), (0, 0));
    }

    #[test]
    fn pause_holds_what_arrives_and_resume_loses_none() {
        let mut inspector = Inspector::default();
        push(&mut inspector, event("before", "click", Verdict::Accepted));
        inspector.pause();
        push(&mut inspector, event("during-1", "click", Verdict::Accepted));
        inspector.push(Item::Dropped(2));
        push(&mut inspector, event("during-2", "read", Verdict::Duplicate));
        assert!(inspector.is_paused());
        assert_eq!(users(&inspector.visible()), ["before"]);
        assert_eq!(inspector.held(), 3);
        inspector.resume();
        assert_eq!(inspector.held(), 0);
        assert_eq!(users(&inspector.visible()), ["during-2", "during-1", "before"]);
        assert_eq!(inspector.visible().len(), 4, "the gap is listed where it happened");
    }

    #[test]
    fn a_long_pause_keeps_the_newest_held() {
        let mut inspector = Inspector::default();
        push(&mut inspector, event("shown", "click", Verdict::Accepted));
        inspector.pause();
        for i in 0..MAX_KEPT + 3 {
            push(&mut inspector, event(&i.to_string(), "click", Verdict::Accepted));
        }
        assert_eq!(inspector.held(), MAX_KEPT);
        assert_eq!(users(&inspector.visible()), ["shown"]);
        inspector.resume();
        assert_eq!(inspector.len(), MAX_KEPT);
        assert_eq!(inspector.page_dropped(), 4);
        assert_eq!(users(&inspector.visible()[..1]), [(MAX_KEPT + 2).to_string()]);
    }

    #[test]
    fn filters_as_the_server_does() {
        let accepted = event("u1", "click", Verdict::Accepted);
        let rejected = event("u2", "click", Verdict::Rejected("bad signature".into()));
        let undecoded = Watched { action: String::new(), ..event("", "", Verdict::Rejected("not JSON".into())) };
        let all = Filter::default();
        assert!(all.matches(&accepted) && all.matches(&rejected) && all.matches(&undecoded));
        let user = Filter { user_id: "u1".into(), ..Filter::default() };
        assert!(user.matches(&accepted) && !user.matches(&rejected));
        let verdict = Filter { verdict: Some(VerdictKind::Rejected), ..Filter::default() };
        assert!(!verdict.matches(&accepted) && verdict.matches(&rejected) && verdict.matches(&undecoded));
        let action = Filter { action: Some(Action::Read), ..Filter::default() };
        assert!(!action.matches(&accepted));
        let channel = Filter { channel: Some(3), ..Filter::default() };
        assert!(channel.matches(&accepted) && !channel.matches(&undecoded));
        assert!(!Filter { channel: Some(4), ..Filter::default() }.matches(&accepted));
    }

    #[test]
    fn a_filter_change_resubscribes_and_filters_the_list() {
        let mut inspector = Inspector::default();
        inspector.connected();
        push(&mut inspector, event("u1", "click", Verdict::Accepted));
        push(&mut inspector, event("u2", "click", Verdict::Accepted));
        let only_u1 = Filter { user_id: "u1".into(), ..Filter::default() };
        assert!(inspector.set_filter(only_u1.clone()));
        assert_eq!(inspector.connection(), &Connection::Connecting);
        assert!(!inspector.set_filter(only_u1));
        assert_eq!(users(&inspector.visible()), ["u1"]);
        assert!(inspector.set_filter(Filter::default()));
        assert_eq!(users(&inspector.visible()), ["u2", "u1"]);
    }

    #[test]
    fn reconnects_with_backoff_and_says_so() {
        let mut inspector = Inspector::default();
        inspector.connected();
        let waits: Vec<u32> = (0..5).map(|_| inspector.fail("server gone".into())).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000]);
        let status = inspector.status_text();
        assert!(status.contains("disconnected (server gone)") && status.contains("attempt 5"), "{status}");
        inspector.connected();
        assert_eq!(inspector.fail("again".into()), 1_000);
    }

    #[test]
    fn copies_and_exports_as_json() {
        let mut inspector = Inspector::default();
        push(&mut inspector, event("u1", "read", Verdict::Rejected("read without duration".into())));
        inspector.push(Item::Dropped(3));
        let entry = inspector.visible().into_iter().find(|entry| entry.event().is_some()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&entry.to_json()).unwrap();
        assert_eq!(json["verdict"], "rejected");
        assert_eq!(json["reason"], "read without duration");
        assert_eq!(json["requestId"], "00000000000000ab");
        assert_eq!(json["payload"]["sig"], "s");
        assert_eq!(json["readDurationMs"], serde_json::Value::Null);
        let export: serde_json::Value = serde_json::from_str(&inspector.export(9)).unwrap();
        assert_eq!(export["droppedByServer"], 3);
        assert_eq!(export["entries"].as_array().unwrap().len(), 2);
        assert_eq!(export["entries"][0]["dropped"], 3);
        assert_eq!(export["entries"][1]["userId"], "u1");
        assert_eq!(export["filter"]["action"], serde_json::Value::Null);
    }

    #[test]
    fn verdict_names_round_trip() {
        for kind in VerdictKind::ALL {
            assert_eq!(VerdictKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(VerdictKind::parse("all"), None);
        assert_eq!(parse_channel("all"), None);
        assert_eq!(parse_channel("12"), Some(12));
    }

    fn served(action: &str, article_id: i64, request_id: &str) -> Param {
        Param::new(format!(
            r#"{{"action":"{action}","userId":"u1","articleId":{article_id},"requestId":"{request_id}","sig":"s"}}"#
        ))
    }

    fn feed_with(request_id: &str, ids: &[i64]) -> Feed {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(1_000);
        let cards = ids
            .iter()
            .enumerate()
            .map(|(position, &id)| Card {
                article_id: id,
                position: position as u32,
                meta: crate::feed::Meta::Pending,
                params: ["click", "collect", "share", "read"].map(|action| served(action, id, request_id)),
            })
            .collect();
        let data = BatchData { exposure: Some(served("exposure", 0, request_id)), pre_timestamp: 0, cards };
        feed.apply(ticket, data).unwrap();
        feed
    }

    #[test]
    fn finds_the_card_and_batch_an_event_came_from() {
        let feed = feed_with("00000000000000ab", &[7, 8]);
        let key = feed.batches()[0].key;
        let click = event("u1", "click", Verdict::Accepted);
        assert_eq!(locate(&feed, &click), Some(Target { batch: key, article_id: Some(7) }));
        let exposure = event("u1", "exposure", Verdict::Accepted);
        assert_eq!(locate(&feed, &exposure), Some(Target { batch: key, article_id: None }));
        let elsewhere = Watched { request_id: 0xac, ..click.clone() };
        assert_eq!(locate(&feed, &elsewhere), None, "another batch");
        let gone = Watched { article_ids: vec![9], ..click.clone() };
        assert_eq!(locate(&feed, &gone), None, "not a card of that batch");
        let remote = Watched { request_id: 0, ..click };
        assert_eq!(locate(&feed, &remote), None, "another replica's event has no request id");
    }
}
