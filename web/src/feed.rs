//! The feed as the page holds it: batches newest first, the cursor into history, and
//! which request may still land.
//!
//! "Refresh" asks `user_recommend` with `time_stamp` = now and puts the batch on top.
//! "Load earlier" asks with the `pre_timestamp` of the oldest batch shown and appends the
//! answer, until the server says 0 (no older batch). Every request gets a [`Ticket`]; an
//! answer whose ticket is stale (the user or channel changed, or another load won the
//! race) is dropped instead of mixing feeds.
//!
//! A card the person marked "not interested" is dismissed: it leaves its batch, and a batch
//! paged in later (history is served as it was) does not bring it back.

use crate::param::{Action, Check, Param};

/// Articles asked for per batch.
pub const BATCH_SIZE: i32 = 10;

/// Catalog info of a recommended id (`Catalog.Articles`).
#[derive(Clone, Debug, PartialEq)]
pub struct ArticleMeta {
    pub channel_id: i32,
    pub title: String,
    pub author: String,
    /// Unix time in milliseconds.
    pub publish_time: i64,
}

/// What the catalog says of a card's article. The card is shown as soon as `user_recommend`
/// answers (its id and params are the point); the catalog's answer comes after it.
#[derive(Clone, Debug, PartialEq)]
pub enum Meta {
    /// Asked, not answered yet.
    Pending,
    Known(ArticleMeta),
    /// The catalog does not know the id.
    Missing,
    /// `Catalog.Articles` failed.
    Failed,
}

/// The catalog's answer for one id.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    pub article_id: i64,
    pub meta: ArticleMeta,
    pub retracted: bool,
}

/// One recommended article.
#[derive(Clone, Debug, PartialEq)]
pub struct Card {
    pub article_id: i64,
    /// Index in its batch, as the params record it.
    pub position: u32,
    pub meta: Meta,
    /// One param per [`Action::CARD`], in that order.
    pub params: [Param; 4],
}

impl Card {
    pub fn param(&self, action: Action) -> Option<&Param> {
        Action::CARD.iter().position(|&candidate| candidate == action).map(|index| &self.params[index])
    }
}

/// A `user_recommend` answer. The catalog's info ([`Feed::set_listings`]) and the params'
/// signature checks (`Verify`, [`Feed::set_checks`]) come after the cards are on the page.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchData {
    /// `None` for history batches (the server sends an empty exposure then).
    pub exposure: Option<Param>,
    /// The server's `time_stamp`: the batch before this one, 0 when there is none.
    pub pre_timestamp: i64,
    pub cards: Vec<Card>,
}

impl BatchData {
    /// Every param as served: the exposure first, then each card's four.
    pub fn raw_params(&self) -> Vec<String> {
        let cards = self.cards.iter().flat_map(|card| card.params.iter());
        self.exposure.iter().chain(cards).map(|param| param.raw.clone()).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadKind {
    Refresh,
    Earlier,
}

/// A batch on the page.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Unique on this page; names the batch in the DOM and for exposure.
    pub key: u64,
    pub kind: LoadKind,
    /// The `time_stamp` the batch was asked with.
    pub requested: i64,
    pub data: BatchData,
}

/// Where "load earlier" goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Nothing loaded yet.
    Unknown,
    /// Ask with this `time_stamp`.
    Earlier(i64),
    /// The server has no older batch.
    End,
}

impl Cursor {
    fn after(pre_timestamp: i64) -> Cursor {
        if pre_timestamp > 0 { Cursor::Earlier(pre_timestamp) } else { Cursor::End }
    }
}

/// Names one request so that its answer lands only where it was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    pub kind: LoadKind,
    pub time_stamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Idle,
    Loading(LoadKind),
    Failed { kind: LoadKind, message: String },
}

/// Why an answer was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale;

#[derive(Clone, Debug)]
pub struct Feed {
    /// Newest first.
    batches: Vec<Batch>,
    cursor: Cursor,
    status: Status,
    generation: u64,
    next_key: u64,
    last_refresh: i64,
    /// Batches whose exposure was taken, and articles dismissed: a session's worth, so plain
    /// lists (a `HashSet` is KBs of wasm).
    exposed: Vec<u64>,
    dismissed: Vec<i64>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed {
            batches: Vec::new(),
            cursor: Cursor::Unknown,
            status: Status::Idle,
            generation: 0,
            next_key: 1,
            last_refresh: 0,
            exposed: Vec::new(),
            dismissed: Vec::new(),
        }
    }
}

impl Feed {
    /// Forgets everything shown (another user or channel); answers in flight become stale.
    pub fn reset(&mut self) {
        *self = Feed { generation: self.generation + 1, next_key: self.next_key, ..Feed::default() };
    }

    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    /// Batch `key`, if it is on the page.
    pub fn batch(&self, key: u64) -> Option<&Batch> {
        self.batches.iter().find(|batch| batch.key == key)
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.status, Status::Loading(_))
    }

    pub fn card_count(&self) -> usize {
        self.batches.iter().map(|batch| batch.data.cards.len()).sum()
    }

    /// Starts a refresh. `now` is the wall clock in ms; the server treats a `time_stamp` no
    /// newer than its last batch as a history request, so it never goes backwards.
    pub fn start_refresh(&mut self, now: i64) -> Ticket {
        let time_stamp = now.max(self.last_refresh + 1);
        self.last_refresh = time_stamp;
        self.start(LoadKind::Refresh, time_stamp)
    }

    /// Starts "load earlier", or `None` when there is nothing earlier to ask for.
    pub fn start_earlier(&mut self) -> Option<Ticket> {
        match self.cursor {
            Cursor::Earlier(time_stamp) => Some(self.start(LoadKind::Earlier, time_stamp)),
            Cursor::Unknown | Cursor::End => None,
        }
    }

    fn start(&mut self, kind: LoadKind, time_stamp: i64) -> Ticket {
        self.generation += 1;
        self.status = Status::Loading(kind);
        Ticket { generation: self.generation, kind, time_stamp }
    }

    /// Puts an answer in place: a refresh on top, an earlier batch at the bottom. Returns the
    /// new batch's key (`None`: an earlier answer without cards adds no batch).
    pub fn apply(&mut self, ticket: Ticket, mut data: BatchData) -> Result<Option<u64>, Stale> {
        self.check(ticket)?;
        data.cards.retain(|card| !self.dismissed.contains(&card.article_id));
        self.status = Status::Idle;
        match ticket.kind {
            LoadKind::Refresh => {
                if self.cursor == Cursor::Unknown {
                    self.cursor = Cursor::after(data.pre_timestamp);
                }
                let batch = self.new_batch(ticket, data);
                self.batches.insert(0, batch);
                Ok(Some(self.next_key - 1))
            }
            LoadKind::Earlier => {
                self.cursor = Cursor::after(data.pre_timestamp);
                if data.cards.is_empty() {
                    return Ok(None);
                }
                let batch = self.new_batch(ticket, data);
                self.batches.push(batch);
                Ok(Some(self.next_key - 1))
            }
        }
    }

    /// Puts the catalog's answer on batch `key`'s cards (`None`: the call failed). A card
    /// whose article was retracted since leaves: a history batch is served as it was. Returns
    /// whether the feed changed (not when batch `key` is gone).
    pub fn set_listings(&mut self, key: u64, listings: Option<&[Listing]>) -> bool {
        let Some(batch) = self.batches.iter_mut().find(|batch| batch.key == key) else { return false };
        batch.data.cards.retain_mut(|card| {
            let listing = listings.map(|listings| listings.iter().find(|l| l.article_id == card.article_id));
            card.meta = match listing {
                Some(Some(listing)) => Meta::Known(listing.meta.clone()),
                Some(None) => Meta::Missing,
                None => Meta::Failed,
            };
            !matches!(listing, Some(Some(Listing { retracted: true, .. })))
        });
        true
    }

    pub fn fail(&mut self, ticket: Ticket, message: String) -> Result<(), Stale> {
        self.check(ticket)?;
        self.status = Status::Failed { kind: ticket.kind, message };
        Ok(())
    }

    fn check(&self, ticket: Ticket) -> Result<(), Stale> {
        if ticket.generation == self.generation { Ok(()) } else { Err(Stale) }
    }

    fn new_batch(&mut self, ticket: Ticket, data: BatchData) -> Batch {
        let key = self.next_key;
        self.next_key += 1;
        Batch { key, kind: ticket.kind, requested: ticket.time_stamp, data }
    }

    /// Takes article `article_id` off the page for good (a recorded dislike of its card in
    /// batch `key`). Does nothing when batch `key` is gone (the feed was reset since): the
    /// dislike was for another feed. Returns whether the feed changed.
    pub fn dismiss(&mut self, key: u64, article_id: i64) -> bool {
        self.batch(key).is_some() && self.hide(article_id)
    }

    /// Takes article `article_id` off every batch, and out of answers still on their way (a
    /// retraction). Returns whether the feed changed.
    pub fn hide(&mut self, article_id: i64) -> bool {
        insert(&mut self.dismissed, article_id);
        let before = self.card_count();
        for batch in &mut self.batches {
            batch.data.cards.retain(|card| card.article_id != article_id);
        }
        self.card_count() != before
    }

    /// Sets the server's signature checks (`raw[i]` is judged `checks[i]`) on every param on
    /// the page that is still waiting for one. Returns whether any changed.
    pub fn set_checks(&mut self, raw: &[String], checks: &[Check]) -> bool {
        let mut changed = false;
        for batch in &mut self.batches {
            let cards = batch.data.cards.iter_mut().flat_map(|card| card.params.iter_mut());
            for param in batch.data.exposure.iter_mut().chain(cards) {
                if param.check != Check::Pending {
                    continue;
                }
                if let Some(check) = raw.iter().position(|raw| *raw == param.raw).and_then(|at| checks.get(at)) {
                    param.check = check.clone();
                    changed = true;
                }
            }
        }
        changed
    }

    /// The exposure param of batch `key` the first time one of its cards is seen, then `None`.
    pub fn take_exposure(&mut self, key: u64) -> Option<String> {
        let batch = self.batch(key)?;
        let raw = batch.data.exposure.as_ref()?.raw.clone();
        insert(&mut self.exposed, key).then_some(raw)
    }
}

/// Adds `value` to the list `set` unless it is there; returns whether it was added.
fn insert<T: PartialEq>(set: &mut Vec<T>, value: T) -> bool {
    let new = !set.contains(&value);
    if new {
        set.push(value);
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(article_id: i64, position: u32) -> Card {
        let param = |action: &str| {
            Param::new(format!(
                r#"{{"action":"{action}","userId":"u","articleId":{article_id},"position":{position}}}"#
            ))
        };
        Card {
            article_id,
            position,
            meta: Meta::Pending,
            params: [param("click"), param("collect"), param("share"), param("read")],
        }
    }

    fn data(ids: &[i64], pre_timestamp: i64, exposure: bool) -> BatchData {
        BatchData {
            exposure: exposure.then(|| Param::new(format!(r#"{{"action":"exposure","articleId":{ids:?}}}"#))),
            pre_timestamp,
            cards: ids.iter().enumerate().map(|(position, &id)| card(id, position as u32)).collect(),
        }
    }

    fn ids(feed: &Feed) -> Vec<Vec<i64>> {
        feed.batches().iter().map(|batch| batch.data.cards.iter().map(|card| card.article_id).collect()).collect()
    }

    #[test]
    fn refresh_puts_new_batches_on_top() {
        let mut feed = Feed::default();
        let first = feed.start_refresh(1_000);
        assert_eq!(feed.status(), &Status::Loading(LoadKind::Refresh));
        feed.apply(first, data(&[1, 2], 0, true)).unwrap();
        let second = feed.start_refresh(2_000);
        feed.apply(second, data(&[3, 4], 1_000, true)).unwrap();
        assert_eq!(ids(&feed), [vec![3, 4], vec![1, 2]]);
        assert_eq!(feed.status(), &Status::Idle);
        assert_eq!(feed.card_count(), 4);
        // The first batch said there was nothing before it; a later refresh does not move that.
        assert_eq!(feed.cursor(), Cursor::End);
        assert_eq!(feed.start_earlier(), None);
    }

    #[test]
    fn refresh_time_stamps_never_go_backwards() {
        let mut feed = Feed::default();
        assert_eq!(feed.start_refresh(5_000).time_stamp, 5_000);
        assert_eq!(feed.start_refresh(5_000).time_stamp, 5_001);
        assert_eq!(feed.start_refresh(4_000).time_stamp, 5_002);
        assert_eq!(feed.start_refresh(9_000).time_stamp, 9_000);
    }

    #[test]
    fn load_earlier_follows_pre_timestamp_until_zero() {
        let mut feed = Feed::default();
        let first = feed.start_refresh(3_000);
        feed.apply(first, data(&[5, 6], 2_000, true)).unwrap();
        assert_eq!(feed.cursor(), Cursor::Earlier(2_000));

        let earlier = feed.start_earlier().unwrap();
        assert_eq!((earlier.kind, earlier.time_stamp), (LoadKind::Earlier, 2_000));
        feed.apply(earlier, data(&[3, 4], 1_000, false)).unwrap();
        assert_eq!(feed.cursor(), Cursor::Earlier(1_000));

        let earliest = feed.start_earlier().unwrap();
        assert_eq!(earliest.time_stamp, 1_000);
        feed.apply(earliest, data(&[1, 2], 0, false)).unwrap();
        assert_eq!(feed.cursor(), Cursor::End);
        assert_eq!(feed.start_earlier(), None);
        assert_eq!(ids(&feed), [vec![5, 6], vec![3, 4], vec![1, 2]]);
        assert_eq!(feed.batches()[2].kind, LoadKind::Earlier);
        assert_eq!(feed.batches()[2].requested, 1_000);
    }

    #[test]
    fn an_empty_history_answer_ends_paging_without_an_empty_batch() {
        let mut feed = Feed::default();
        let first = feed.start_refresh(3_000);
        feed.apply(first, data(&[5], 2_000, true)).unwrap();
        let earlier = feed.start_earlier().unwrap();
        feed.apply(earlier, data(&[], 0, false)).unwrap();
        assert_eq!(feed.batches().len(), 1);
        assert_eq!(feed.cursor(), Cursor::End);
    }

    #[test]
    fn answers_for_a_reset_feed_are_dropped() {
        let mut feed = Feed::default();
        let old = feed.start_refresh(1_000);
        feed.reset();
        assert_eq!(feed.apply(old, data(&[1], 0, true)), Err(Stale));
        assert_eq!(feed.fail(old, "gone".into()), Err(Stale));
        assert!(feed.batches().is_empty());
        assert_eq!(feed.status(), &Status::Idle);
    }

    #[test]
    fn only_the_latest_request_lands() {
        let mut feed = Feed::default();
        let first = feed.start_refresh(1_000);
        let second = feed.start_refresh(2_000);
        assert_eq!(feed.apply(first, data(&[1], 0, true)), Err(Stale));
        feed.apply(second, data(&[2], 0, true)).unwrap();
        assert_eq!(ids(&feed), [vec![2]]);
    }

    #[test]
    fn failures_are_kept_until_the_next_load() {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(1_000);
        feed.fail(ticket, "unreachable".into()).unwrap();
        assert_eq!(feed.status(), &Status::Failed { kind: LoadKind::Refresh, message: "unreachable".into() });
        let retry = feed.start_refresh(1_000);
        assert!(feed.is_loading());
        feed.apply(retry, data(&[1], 0, true)).unwrap();
        assert_eq!(feed.status(), &Status::Idle);
    }

    #[test]
    fn batch_keys_stay_unique_across_resets() {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(1_000);
        feed.apply(ticket, data(&[1], 0, true)).unwrap();
        let before = feed.batches()[0].key;
        feed.reset();
        let ticket = feed.start_refresh(2_000);
        feed.apply(ticket, data(&[2], 0, true)).unwrap();
        assert_ne!(feed.batches()[0].key, before);
    }

    #[test]
    fn exposure_is_taken_once_per_batch() {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(1_000);
        feed.apply(ticket, data(&[1, 2], 2_000, true)).unwrap();
        let key = feed.batches()[0].key;
        let raw = feed.take_exposure(key).unwrap();
        assert!(raw.contains("exposure"));
        assert_eq!(feed.take_exposure(key), None);
        assert_eq!(feed.take_exposure(key + 100), None);

        // History batches carry no exposure param.
        let earlier = feed.start_earlier().unwrap();
        feed.apply(earlier, data(&[3], 0, false)).unwrap();
        assert_eq!(feed.take_exposure(feed.batches()[1].key), None);
    }

    #[test]
    fn a_dismissed_card_leaves_and_stays_away() {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(3_000);
        feed.apply(ticket, data(&[5, 6, 7], 2_000, true)).unwrap();
        let key = feed.batches()[0].key;
        assert!(feed.dismiss(key, 6));
        assert_eq!(ids(&feed), [vec![5, 7]]);
        assert_eq!(feed.card_count(), 2);
        // Twice is harmless.
        assert!(!feed.dismiss(key, 6));
        // History served as it was still lists it: it is not shown again.
        let earlier = feed.start_earlier().unwrap();
        feed.apply(earlier, data(&[6, 8], 0, false)).unwrap();
        assert_eq!(ids(&feed), [vec![5, 7], vec![8]]);
        // Exposure of the batch is unaffected.
        assert!(feed.take_exposure(key).is_some());
    }

    #[test]
    fn a_late_dismissal_for_a_reset_feed_is_dropped() {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(1_000);
        feed.apply(ticket, data(&[1, 2], 0, true)).unwrap();
        let old = feed.batches()[0].key;
        feed.reset();
        let ticket = feed.start_refresh(2_000);
        feed.apply(ticket, data(&[2, 3], 0, true)).unwrap();
        assert!(!feed.dismiss(old, 2));
        assert_eq!(ids(&feed), [vec![2, 3]]);
        // A reset forgets dismissals too: the new feed is another user's or channel's.
        let key = feed.batches()[0].key;
        assert!(feed.dismiss(key, 3));
        feed.reset();
        let ticket = feed.start_refresh(3_000);
        feed.apply(ticket, data(&[3], 0, true)).unwrap();
        assert_eq!(ids(&feed), [vec![3]]);
    }

    #[test]
    fn signature_checks_fill_in_after_the_cards_are_shown() {
        let mut feed = Feed::default();
        let ticket = feed.start_refresh(1_000);
        let served = data(&[1, 2], 0, true);
        let raw = served.raw_params();
        assert_eq!(raw.len(), 9, "the exposure and four per card");
        feed.apply(ticket, served).unwrap();
        let pending = |feed: &Feed| {
            let batch = &feed.batches()[0].data;
            let cards = batch.cards.iter().flat_map(|card| card.params.iter());
            batch.exposure.iter().chain(cards).filter(|param| param.check == Check::Pending).count()
        };
        assert_eq!(pending(&feed), 9);
        let mut checks = vec![Check::Valid; raw.len()];
        checks[1] = Check::Invalid("bad signature".into());
        // An answer for a feed that moved on sets nothing it does not know.
        assert!(!feed.set_checks(&["other".to_owned()], &[Check::Valid]));
        assert!(feed.set_checks(&raw, &checks));
        assert_eq!(pending(&feed), 0);
        let click = feed.batches()[0].data.cards[0].param(Action::Click).unwrap();
        assert_eq!(click.check, Check::Invalid("bad signature".into()));
        assert!(!feed.set_checks(&raw, &checks), "a param is checked once");
    }

    #[test]
    fn cards_find_their_param_by_action() {
        let card = card(7, 3);
        for action in Action::CARD {
            assert_eq!(card.param(action).unwrap().action(), Some(action));
        }
        assert_eq!(card.param(Action::Exposure), None);
    }

    #[test]
    fn the_catalogs_answer_fills_cards_in_and_takes_retracted_ones_off() {
        let meta = |title: &str| ArticleMeta {
            channel_id: 1,
            title: title.to_owned(),
            author: String::new(),
            publish_time: 0,
        };
        let listing = |id: i64, retracted: bool| Listing { article_id: id, meta: meta(&format!("t{id}")), retracted };
        let mut feed = Feed::default();
        let first = feed.start_refresh(1_000);
        let key = feed.apply(first, data(&[1, 2, 3], 0, true)).unwrap().unwrap();
        let other = feed.start_refresh(2_000);
        let other = feed.apply(other, data(&[4], 0, true)).unwrap().unwrap();
        assert!(feed.batch(key).unwrap().data.cards.iter().all(|card| card.meta == Meta::Pending));

        // 2 was retracted since it was served; 3 is not in the catalog.
        assert!(feed.set_listings(key, Some(&[listing(1, false), listing(2, true)])));
        let metas: Vec<_> =
            feed.batch(key).unwrap().data.cards.iter().map(|card| (card.article_id, card.meta.clone())).collect();
        assert_eq!(metas, [(1, Meta::Known(meta("t1"))), (3, Meta::Missing)]);
        assert_eq!(feed.batch(other).unwrap().data.cards[0].meta, Meta::Pending, "other batches keep theirs");

        assert!(feed.set_listings(other, None));
        assert_eq!(feed.batch(other).unwrap().data.cards[0].meta, Meta::Failed);
        // An answer for a batch no longer on the page changes nothing.
        feed.reset();
        assert!(!feed.set_listings(key, Some(&[listing(1, false)])));
        // An earlier answer without cards adds no batch.
        let ticket = feed.start_refresh(3_000);
        feed.apply(ticket, data(&[5], 1_000, true)).unwrap();
        let earlier = feed.start_earlier().unwrap();
        assert_eq!(feed.apply(earlier, data(&[], 0, false)), Ok(None));
    }
}
