//! The page's shared state and what the panels can ask it to do. Components read the
//! signals and call these methods; the decisions live in [`Feed`] and [`EventLog`].

use futures_util::future::{AbortHandle, Abortable};
use leptos::{prelude::*, task::spawn_local};
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{IntersectionObserver, IntersectionObserverEntry, IntersectionObserverInit};

use crate::{
    api::{Api, ApiError, Channel},
    event_log::{EventLog, Outcome, Report},
    explain::Explanation,
    feed::{BatchData, Feed, LoadKind, Status, Ticket},
    inspector::{Filter, Inspector, Target},
    live::Live,
    param::Param,
    remote::{Fetch, Remote},
    stats::{self, Stats},
    user,
};

/// Performance mark set when the first card is on the page (read by the browser test).
pub const FIRST_CARD_MARK: &str = "reco:first-card";

/// A card must be this much in view before its batch counts as exposed.
const EXPOSURE_THRESHOLD: f64 = 0.5;

type Observer = (IntersectionObserver, Closure<dyn FnMut(js_sys::Array, IntersectionObserver)>);

#[derive(Clone, Copy)]
pub struct Page {
    api: StoredValue<Api>,
    pub user: RwSignal<String>,
    pub channel: RwSignal<i32>,
    pub feed: RwSignal<Feed>,
    pub log: RwSignal<EventLog>,
    pub stats: RwSignal<Fetch<Stats>>,
    /// The channel tabs (`Catalog.Channels`), asked once the first load is done.
    pub channels: RwSignal<Fetch<Vec<Channel>>>,
    /// The push stream of catalog changes for the current channel.
    pub live: RwSignal<Live>,
    /// Everyone's judged events (`Tracking.Watch`).
    pub inspector: RwSignal<Inspector>,
    /// The first feed load has finished (cards or an error): what is not needed for the first
    /// card (the channel list, the push streams, the side panels) waits for it.
    pub started: RwSignal<bool>,
    /// The card (or batch) the inspector last pointed at.
    pub highlight: RwSignal<Option<Target>>,
    in_flight: StoredValue<Option<AbortHandle>>,
    watching: StoredValue<Option<AbortHandle>>,
    inspecting: StoredValue<Option<AbortHandle>>,
    observer: StoredValue<Option<Observer>, LocalStorage>,
}

impl Page {
    pub fn new(api: Api) -> Page {
        let api = StoredValue::new(api);
        let page = Page {
            api,
            user: RwSignal::new(user::load()),
            channel: RwSignal::new(0),
            feed: RwSignal::new(Feed::default()),
            log: RwSignal::new(EventLog::default()),
            stats: RwSignal::new(Fetch::default()),
            channels: RwSignal::new(Fetch::default()),
            live: RwSignal::new(Live::default()),
            inspector: RwSignal::new(Inspector::default()),
            started: RwSignal::new(false),
            highlight: RwSignal::new(None),
            in_flight: StoredValue::new(None),
            watching: StoredValue::new(None),
            inspecting: StoredValue::new(None),
            observer: StoredValue::new_local(None),
        };
        page.observer.set_value(page.exposure_observer());
        on_cleanup(move || {
            page.cancel_load();
            for stream in [page.watching, page.inspecting] {
                if let Some(handle) = stream.try_get_value().flatten() {
                    handle.abort();
                }
            }
            page.observer.try_with_value(|observer| {
                if let Some((observer, _)) = observer {
                    observer.disconnect();
                }
            });
        });
        page
    }

    pub fn api_base(&self) -> String {
        self.api.with_value(|api| api.base().to_owned())
    }

    pub fn set_user(&self, user_id: String) {
        if self.user.get_untracked() != user_id {
            user::save(&user_id);
            self.user.set(user_id);
        }
    }

    /// Starts over for the current user and channel.
    pub fn reload(&self) {
        self.feed.update(Feed::reset);
        self.refresh();
    }

    pub fn refresh(&self) {
        self.live.update(Live::seen);
        let ticket = self.feed.try_update(|feed| feed.start_refresh(now_ms())).expect("the feed outlives the page");
        self.load(ticket);
    }

    pub fn load_earlier(&self) {
        if let Some(ticket) = self.feed.try_update(Feed::start_earlier).flatten() {
            self.load(ticket);
        }
    }

    /// Repeats what failed; the channel list too if that failed.
    pub fn retry(&self) {
        if self.channels.with_untracked(|channels| matches!(channels.state(), Remote::Failed(_))) {
            self.load_channels();
        }
        let failed = self.feed.with_untracked(|feed| match feed.status() {
            Status::Failed { kind, .. } => Some(*kind),
            Status::Idle | Status::Loading(_) => None,
        });
        match failed {
            Some(LoadKind::Earlier) => self.load_earlier(),
            Some(LoadKind::Refresh) | None => self.refresh(),
        }
    }

    fn cancel_load(&self) {
        if let Some(handle) = self.in_flight.try_get_value().flatten() {
            handle.abort();
        }
    }

    /// Runs one feed request; a newer one aborts it (and its fetches) so answers never mix.
    fn load(&self, ticket: Ticket) {
        self.cancel_load();
        let (handle, registration) = AbortHandle::new_pair();
        self.in_flight.set_value(Some(handle));
        let page = *self;
        let api = self.api.get_value();
        let user_id = self.user.get_untracked();
        let channel_id = self.channel.get_untracked();
        // Sent now: the first load's request goes out before the page is built.
        let batch = api.batch(&user_id, channel_id, ticket.time_stamp);
        let request = async move {
            let answer = batch.await;
            let raw = answer.as_ref().map(BatchData::raw_params).unwrap_or_default();
            let ids: Vec<i64> =
                answer.as_ref().map(|data| data.cards.iter().map(|card| card.article_id).collect()).unwrap_or_default();
            // A stale answer is one the user no longer wants: dropping it is the point.
            let applied = page
                .feed
                .try_update(|feed| match answer {
                    Ok(data) => feed.apply(ticket, data).ok(),
                    Err(err) => {
                        let _ = feed.fail(ticket, err.to_string());
                        None
                    }
                })
                .flatten();
            if let Some(Some(key)) = applied {
                // The cards are on the page; their catalog info, then their signature checks,
                // fill in when the server has answered, even if another load starts meanwhile
                // (so not under its abort).
                spawn_local(async move {
                    let listings = api.listings(ids).await.ok();
                    page.feed.maybe_update(|feed| feed.set_listings(key, listings.as_deref()));
                    let checks = api.verify(&raw).await;
                    page.feed.maybe_update(|feed| feed.set_checks(&raw, &checks));
                });
            }
            if !page.started.get_untracked() {
                // After the first cards are painted: what starts here (the side panels, the
                // channel list, the push streams) would otherwise delay that paint.
                after_paint().await;
                page.start();
            }
        };
        spawn_local(async move {
            let _ = Abortable::new(request, registration).await;
        });
    }

    /// The first load is done: let what waited for it go (the tabs and channel names can
    /// come after the first cards).
    fn start(&self) {
        self.started.set(true);
        self.load_channels();
    }

    /// (Re)loads the channel tabs.
    pub fn load_channels(&self) {
        let Some(ticket) = self.channels.try_update(Fetch::start) else { return };
        let page = *self;
        let api = self.api.get_value();
        spawn_local(async move {
            let answer = api.channels().await;
            page.channels.update(|fetch| {
                fetch.finish(ticket, answer);
            });
        });
    }

    /// (Re)opens the push stream for the current channel, and keeps it open: after a failure
    /// (a server restart, a network cut) it reconnects with the last change seen, backing off.
    pub fn watch_catalog(&self) {
        if let Some(handle) = self.watching.get_value() {
            handle.abort();
        }
        let (handle, registration) = AbortHandle::new_pair();
        self.watching.set_value(Some(handle));
        self.live.update(Live::restart);
        let page = *self;
        let api = self.api.get_value();
        let channel_id = self.channel.get_untracked();
        let run = async move {
            loop {
                let since = page.live.with_untracked(Live::since);
                let failure = match api.watch(channel_id, since).await {
                    Ok(mut stream) => loop {
                        match stream.next().await {
                            Some(Ok(change)) => {
                                if let Some(id) = page.live.try_update(|live| live.apply(change)).flatten() {
                                    page.feed.update(|feed| {
                                        feed.hide(id);
                                    });
                                }
                            }
                            Some(Err(err)) => break err.to_string(),
                            None => break "the server ended the stream".to_owned(),
                        }
                    },
                    Err(err) => err.to_string(),
                };
                let Some(wait) = page.live.try_update(|live| live.fail(failure)) else { return };
                sleep_ms(wait).await;
            }
        };
        spawn_local(async move {
            let _ = Abortable::new(run, registration).await;
        });
    }

    /// (Re)opens the inspector's event stream with its filter, and keeps it open like
    /// [`Page::watch_catalog`]'s.
    pub fn watch_events(&self) {
        if let Some(handle) = self.inspecting.get_value() {
            handle.abort();
        }
        let (handle, registration) = AbortHandle::new_pair();
        self.inspecting.set_value(Some(handle));
        let page = *self;
        let api = self.api.get_value();
        let run = async move {
            loop {
                let filter = page.inspector.with_untracked(|inspector| inspector.filter().clone());
                let failure = match api.watch_events(&filter).await {
                    Ok(mut stream) => {
                        page.inspector.update(Inspector::connected);
                        loop {
                            match stream.next().await {
                                Some(Ok(item)) => page.inspector.update(|inspector| inspector.push(item)),
                                Some(Err(err)) => break err.to_string(),
                                None => break "the server ended the stream".to_owned(),
                            }
                        }
                    }
                    Err(err) => err.to_string(),
                };
                let Some(wait) = page.inspector.try_update(|inspector| inspector.fail(failure)) else { return };
                sleep_ms(wait).await;
            }
        };
        spawn_local(async move {
            let _ = Abortable::new(run, registration).await;
        });
    }

    /// Applies the inspector's filter on the server: a changed one reopens the stream.
    pub fn set_inspector_filter(&self, filter: Filter) {
        if self.inspector.try_update(|inspector| inspector.set_filter(filter)).unwrap_or(false) {
            self.watch_events();
        }
    }

    /// Scrolls to the card (or batch) an inspected event came from and marks it.
    pub fn show(&self, target: Target) {
        self.highlight.set(Some(target));
        let selector = match target.article_id {
            Some(id) => format!("[data-testid=card][data-batch='{}'][data-article-id='{id}']", target.batch),
            None => format!("[data-testid=batch][data-batch='{}']", target.batch),
        };
        let element = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.query_selector(&selector).ok().flatten());
        if let Some(element) = element {
            element.scroll_into_view();
        }
    }

    /// Sends one tracking event, logs it, and hands its verdict to `done`.
    pub fn report(&self, report: Report, done: impl FnOnce(Outcome) + 'static) {
        let id = self.log.try_update(|log| log.record(&report, now_ms())).expect("the log outlives the page");
        let page = *self;
        let api = self.api.get_value();
        spawn_local(async move {
            let outcome = api.report(&report).await.unwrap_or_else(|err| Outcome::Failed(err.to_string()));
            page.log.update(|log| log.resolve(id, outcome.clone()));
            done(outcome);
        });
    }

    /// Reports the exposure of batch `key`, once, when the first of its cards is seen.
    fn expose(&self, key: u64) {
        let Some(raw) = self.feed.try_update(|feed| feed.take_exposure(key)).flatten() else {
            return;
        };
        self.report(Report::of(Param::new(raw)), |_| {});
    }

    /// Takes a disliked article off the page (see [`Feed::dismiss`]).
    pub fn dismiss(&self, batch: u64, article_id: i64) {
        self.feed.update(|feed| {
            feed.dismiss(batch, article_id);
        });
    }

    /// Asks why the engine would pick `article_id` for the current user now.
    pub fn explain(&self, article_id: i64, done: impl FnOnce(Result<Explanation, ApiError>) + 'static) {
        let api = self.api.get_value();
        let user_id = self.user.get_untracked();
        spawn_local(async move { done(api.explain(&user_id, article_id).await) });
    }

    /// (Re)loads the stats panel: the server's last 24 hours.
    pub fn load_stats(&self) {
        let Some(ticket) = self.stats.try_update(Fetch::start) else { return };
        let page = *self;
        let api = self.api.get_value();
        spawn_local(async move {
            let answer = api.stats(stats::LAST_DAY).await;
            page.stats.update(|fetch| {
                fetch.finish(ticket, answer);
            });
        });
    }

    /// Watches `element` (a card with `data-batch`) until it first scrolls into view.
    pub fn observe(&self, element: &web_sys::Element) {
        self.observer.with_value(|observer| {
            if let Some((observer, _)) = observer {
                observer.observe(element);
            }
        });
    }

    pub fn unobserve(&self, element: &web_sys::Element) {
        self.observer.try_with_value(|observer| {
            if let Some((observer, _)) = observer {
                observer.unobserve(element);
            }
        });
    }

    fn exposure_observer(&self) -> Option<Observer> {
        let page = *self;
        let callback = Closure::new(move |entries: js_sys::Array, observer: IntersectionObserver| {
            for entry in entries.iter() {
                let entry: IntersectionObserverEntry = entry.unchecked_into();
                if !entry.is_intersecting() {
                    continue;
                }
                let card = entry.target();
                observer.unobserve(&card);
                if let Some(key) = card.get_attribute("data-batch").and_then(|key| key.parse().ok()) {
                    page.expose(key);
                }
            }
        });
        let options = IntersectionObserverInit::new();
        options.set_threshold(&EXPOSURE_THRESHOLD.into());
        let observer = IntersectionObserver::new_with_options(callback.as_ref().unchecked_ref(), &options).ok()?;
        Some((observer, callback))
    }

    /// The name of channel `id`, once the channel list is in.
    pub fn channel_name(&self, id: i32) -> String {
        self.channels
            .with(|channels| match channels.state() {
                Remote::Ready(channels) => {
                    channels.iter().find(|channel| channel.id == id).map(|channel| channel.name.clone())
                }
                Remote::Idle | Remote::Loading | Remote::Failed(_) => None,
            })
            .unwrap_or_else(|| format!("channel {id}"))
    }
}

pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// Resolves after `ms` milliseconds (the browser's timer).
async fn sleep_ms(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Resolves after the browser has rendered the next frame (a task after its animation frame
/// callbacks), or after 100 ms if no frame comes (a background tab renders none).
async fn after_paint() {
    let frame = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 100);
            let _ = window.request_animation_frame(&resolve);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(frame).await;
    sleep_ms(0).await;
}

/// Marks the first card for the browser test's timing; later calls do nothing.
pub fn mark_first_card() {
    let Some(performance) = web_sys::window().and_then(|window| window.performance()) else {
        return;
    };
    if performance.get_entries_by_name(FIRST_CARD_MARK).length() == 0 {
        let _ = performance.mark(FIRST_CARD_MARK);
    }
}
