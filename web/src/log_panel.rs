//! The event log: every report sent, its decoded payload and the server's verdict.

use leptos::{prelude::*, task::spawn_local};
use wasm_bindgen_futures::JsFuture;

use crate::{
    clock,
    event_log::{Filter, LogEntry},
    explain,
    page::Page,
    param::Action,
};

#[component]
pub fn LogPanel() -> impl IntoView {
    let page = expect_context::<Page>();
    let filter = RwSignal::new(Filter::All);
    let entries = move || page.log.with(|log| log.visible(filter.get()));
    let total = move || page.log.with(|log| log.len());
    let paused = move || page.log.with(|log| log.is_paused());
    let toggle_pause = move |_| {
        page.log.update(|log| {
            if log.is_paused() {
                log.resume();
            } else {
                log.pause();
            }
        });
    };
    let pause_label = move || {
        page.log.with(|log| match (log.is_paused(), log.held()) {
            (false, _) => "pause".to_owned(),
            (true, 0) => "resume".to_owned(),
            (true, held) => format!("resume ({held} held)"),
        })
    };
    let options = std::iter::once(Filter::All)
        .chain(Action::ALL.map(Filter::Only))
        .map(|option| view! { <option value=option.as_str()>{option.as_str()}</option> })
        .collect_view();

    view! {
        <aside class="log" data-testid="event-log">
            <header class="log-head">
                <h2>"events " <span class="count" data-testid="log-count">{total}</span></h2>
                <select
                    data-testid="log-filter"
                    aria-label="show only this action"
                    prop:value=move || filter.get().as_str()
                    on:change=move |ev| filter.set(Filter::parse(&event_target_value(&ev)))
                >
                    {options}
                </select>
                <button data-testid="log-pause" class:active=paused on:click=toggle_pause>
                    {pause_label}
                </button>
                <button data-testid="log-clear" on:click=move |_| page.log.update(|log| log.clear())>
                    "clear"
                </button>
            </header>
            <Show
                when=move || !entries().is_empty()
                fallback=|| {
                    view! {
                        <p class="muted log-empty">
                            "No events yet. Scroll cards into view (exposure) or press a card's buttons."
                        </p>
                    }
                }
            >
                <ol class="entries">
                    <For
                        each=entries
                        key=|entry| (entry.id, entry.outcome.clone())
                        let:entry
                    >
                        <EntryView entry />
                    </For>
                </ol>
            </Show>
        </aside>
    }
}

#[component]
fn EntryView(entry: LogEntry) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let json = entry.to_json();
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
    let verdict = entry.outcome.label();
    let action = entry.action_name();
    let reason = entry.outcome.reason().map(str::to_owned);
    let ids = entry.article_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let duration = entry.read_duration_ms.map(|ms| format!(" · {} s", explain::fixed(ms as f64 / 1_000.0, 1)));

    view! {
        <li
            class="entry"
            data-testid="log-entry"
            data-action=action
            data-verdict=verdict
        >
            <div class="entry-head">
                <time>{clock::time_of_day(entry.sent_at)}</time>
                <span class="action">{action}</span>
                <span class=format!("verdict verdict-{verdict}") data-testid="log-verdict">
                    {verdict}
                </span>
                <button class="copy" data-testid="log-copy" on:click=copy>
                    {copy_label}
                </button>
            </div>
            <p class="entry-ids">"article " {ids} {duration}</p>
            {reason.map(|reason| view! { <p class="reason">{reason}</p> })}
            <details>
                <summary>"payload"</summary>
                <pre class="param">{entry.payload}</pre>
            </details>
        </li>
    }
}
