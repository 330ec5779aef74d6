//! The live inspector panel: everyone's tracking events as the server judges them
//! (`Tracking.Watch`), with filters (sent to the server), pause, copy, export, and a link to
//! the card an event came from when that card is on this page.

use leptos::{html, prelude::*, task::spawn_local};
use wasm_bindgen_futures::JsFuture;

use crate::{
    clock, explain,
    inspector::{self, Entry, EntryKind, Filter, VerdictKind, Watched},
    live::Connection,
    page::{self, Page},
    param::Action,
};

/// Channel ids the filter offers (0 is 推荐).
const CHANNELS: std::ops::RangeInclusive<i32> = 0..=25;

#[component]
pub fn InspectorPanel() -> impl IntoView {
    let page = expect_context::<Page>();
    let entries = move || page.inspector.with(|inspector| inspector.visible());
    let total = move || page.inspector.with(|inspector| inspector.len());
    let filter = move || page.inspector.with(|inspector| inspector.filter().clone());
    let change = move |edit: &dyn Fn(&mut Filter)| {
        let mut next = page.inspector.with_untracked(|inspector| inspector.filter().clone());
        edit(&mut next);
        page.set_inspector_filter(next);
    };
    let state = move || {
        page.inspector.with(|inspector| match inspector.connection() {
            Connection::Live => "live",
            Connection::Connecting => "connecting",
            Connection::Down { .. } => "down",
        })
    };
    let status = move || page.inspector.with(|inspector| inspector.status_text());
    let dropped = move || {
        page.inspector.with(|inspector| {
            (inspector.dropped() > 0).then(|| {
                format!(
                    "{} dropped: {} skipped by the server (this page fell behind), {} past the page's {} kept",
                    inspector.dropped(),
                    inspector.server_dropped(),
                    inspector.page_dropped(),
                    inspector::MAX_KEPT
                )
            })
        })
    };
    let paused = move || page.inspector.with(|inspector| inspector.is_paused());
    let toggle_pause = move |_| {
        page.inspector.update(|inspector| {
            if inspector.is_paused() {
                inspector.resume();
            } else {
                inspector.pause();
            }
        });
    };
    let pause_label = move || {
        page.inspector.with(|inspector| match (inspector.is_paused(), inspector.held()) {
            (false, _) => "pause".to_owned(),
            (true, 0) => "resume".to_owned(),
            (true, held) => format!("resume ({held} held)"),
        })
    };
    let held = move || page.inspector.with(|inspector| inspector.held());

    let export_link = NodeRef::<html::A>::new();
    let export = move |_| {
        let json = page.inspector.with_untracked(|inspector| inspector.export(page::now_ms()));
        let url = format!("data:application/json;charset=utf-8,{}", js_sys::encode_uri_component(&json));
        if let Some(link) = export_link.get_untracked() {
            // Set before the browser follows the link, in this same click.
            let _ = link.set_attribute("href", &url);
        }
    };

    let action_options = std::iter::once(None)
        .chain(Action::ALL.map(Some))
        .map(|action| {
            let value = Filter::choice(action, |action| action.as_str().to_owned());
            let label = if action.is_none() { "all actions".to_owned() } else { value.clone() };
            view! { <option value=value>{label}</option> }
        })
        .collect_view();
    let verdict_options = std::iter::once(None)
        .chain(VerdictKind::ALL.map(Some))
        .map(|verdict| {
            let value = Filter::choice(verdict, |verdict| verdict.as_str().to_owned());
            let label = if verdict.is_none() { "all verdicts".to_owned() } else { value.clone() };
            view! { <option value=value>{label}</option> }
        })
        .collect_view();
    let channel_options = std::iter::once(view! { <option value="all">"all channels"</option> }.into_any())
        .chain(CHANNELS.map(|id| {
            view! { <option value=id.to_string()>{move || format!("{id} {}", page.channel_name(id))}</option> }
                .into_any()
        }))
        .collect_view();

    view! {
        <aside class="log inspector" data-testid="inspector">
            <header class="log-head">
                <h2>
                    "inspector " <span class="count" data-testid="inspector-count">{total}</span>
                </h2>
                <button
                    data-testid="inspector-pause"
                    data-held=held
                    class:active=paused
                    on:click=toggle_pause
                >
                    {pause_label}
                </button>
                <button
                    data-testid="inspector-clear"
                    on:click=move |_| page.inspector.update(|inspector| inspector.clear())
                >
                    "clear"
                </button>
                <a
                    class="button"
                    node_ref=export_link
                    data-testid="inspector-export"
                    download="reco-events.json"
                    href="#"
                    on:click=export
                >
                    "export"
                </a>
            </header>
            <p class="live-status inspector-status" data-testid="inspector-status" data-state=state>
                {status}
            </p>
            <div class="inspector-filters">
                <input
                    type="text"
                    placeholder="user id"
                    spellcheck="false"
                    data-testid="inspector-user"
                    aria-label="only this user's events"
                    prop:value=move || filter().user_id
                    on:change=move |ev| {
                        let user_id = event_target_value(&ev).trim().to_owned();
                        change(&|filter| filter.user_id = user_id.clone());
                    }
                />
                <select
                    data-testid="inspector-action"
                    aria-label="only this action"
                    prop:value=move || Filter::choice(filter().action, |action| action.as_str().to_owned())
                    on:change=move |ev| {
                        let action = Action::parse(&event_target_value(&ev));
                        change(&|filter| filter.action = action);
                    }
                >
                    {action_options}
                </select>
                <select
                    data-testid="inspector-verdict-filter"
                    aria-label="only this verdict"
                    prop:value=move || Filter::choice(filter().verdict, |verdict| verdict.as_str().to_owned())
                    on:change=move |ev| {
                        let verdict = VerdictKind::parse(&event_target_value(&ev));
                        change(&|filter| filter.verdict = verdict);
                    }
                >
                    {verdict_options}
                </select>
                <select
                    data-testid="inspector-channel"
                    aria-label="only events on this channel's batches"
                    prop:value=move || Filter::choice(filter().channel, |channel| channel.to_string())
                    on:change=move |ev| {
                        let channel = inspector::parse_channel(&event_target_value(&ev));
                        change(&|filter| filter.channel = channel);
                    }
                >
                    {channel_options}
                </select>
            </div>
            {move || dropped().map(|text| view! { <p class="muted inspector-dropped" data-testid="inspector-dropped">{text}</p> })}
            <Show
                when=move || !entries().is_empty()
                fallback=|| {
                    view! {
                        <p class="muted log-empty">
                            "No events yet: whatever any client reports shows here as it is judged."
                        </p>
                    }
                }
            >
                <ol class="entries">
                    <For each=entries key=|entry| entry.id let:entry>
                        <EntryView entry />
                    </For>
                </ol>
            </Show>
        </aside>
    }
}

#[component]
fn EntryView(entry: Entry) -> impl IntoView {
    let json = entry.to_json();
    match entry.kind {
        EntryKind::Gap { dropped } => view! {
            <li class="entry gap" data-testid="inspector-gap" data-dropped=dropped>
                {format!("{dropped} events skipped here: this page fell behind the server")}
            </li>
        }
        .into_any(),
        EntryKind::Event { event, pretty } => view! { <EventView event=*event pretty json /> }.into_any(),
    }
}

#[component]
fn EventView(event: Watched, pretty: String, json: String) -> impl IntoView {
    let page = expect_context::<Page>();
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        let Some(window) = web_sys::window() else { return };
        let written = JsFuture::from(window.navigator().clipboard().write_text(&json));
        spawn_local(async move { copied.set(Some(written.await.is_ok())) });
    };
    let copy_label = move || match copied.get() {
        None => "copy json",
        Some(true) => "copied",
        Some(false) => "clipboard refused",
    };
    let verdict = event.verdict.label();
    let reason = event.verdict.reason().map(str::to_owned);
    let action = event.action_name().to_owned();
    let ids = event.article_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let first_id = event.article_ids.first().copied().unwrap_or_default();
    let duration = (event.read_duration_ms > 0)
        .then(|| format!(" · {} s", explain::fixed(event.read_duration_ms as f64 / 1_000.0, 1)));
    let position = event.position.map(|position| format!(" · position {position}"));
    let sources = (!event.sources.is_empty()).then(|| format!(" · {}", event.sources));
    let remote = event.remote.then_some(" · another replica");
    let user = event.user_id.clone();
    let (action_attr, user_attr) = (action.clone(), user.clone());
    let event = StoredValue::new(event);
    let target = Memo::new(move |_| page.feed.with(|feed| event.with_value(|event| inspector::locate(feed, event))));

    view! {
        <li
            class="entry"
            data-testid="inspector-entry"
            data-action=action_attr
            data-verdict=verdict
            data-user=user_attr
            data-article-id=first_id
        >
            <div class="entry-head">
                <time>{event.with_value(|event| clock::time_of_day(event.judged_ms))}</time>
                <span class="action">{action}</span>
                <span class=format!("verdict verdict-{verdict}") data-testid="inspector-verdict">
                    {verdict}
                </span>
                {move || {
                    target
                        .get()
                        .map(|target| {
                            view! {
                                <button
                                    class="copy"
                                    data-testid="inspector-show-card"
                                    title="scroll to the card this event came from"
                                    on:click=move |_| page.show(target)
                                >
                                    {if target.article_id.is_some() { "show card" } else { "show batch" }}
                                </button>
                            }
                        })
                }}
                <button class="copy" data-testid="inspector-copy" on:click=copy>
                    {copy_label}
                </button>
            </div>
            <p class="entry-ids">
                "user " <code>{user}</code> " · article " {ids} {position} {sources} {duration} {remote}
            </p>
            {reason.map(|reason| view! { <p class="reason" data-testid="inspector-reason">{reason}</p> })}
            <details>
                <summary>"param"</summary>
                <pre class="param" data-testid="inspector-param">{pretty}</pre>
            </details>
        </li>
    }
}
