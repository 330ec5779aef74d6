//! The feed: batches newest first, "load earlier" at the bottom, and what went wrong.

use leptos::prelude::*;

use crate::{
    card::ArticleCard,
    clock,
    feed::{Batch, Cursor, LoadKind, Meta, Status},
    inspector::Target,
    live::Connection,
    page::{self, Page},
};

#[component]
pub fn FeedPanel() -> impl IntoView {
    let page = expect_context::<Page>();
    let batches = Memo::new(move |_| page.feed.with(|feed| feed.batches().to_vec()));
    let status = Memo::new(move |_| page.feed.with(|feed| feed.status().clone()));
    let cursor = Memo::new(move |_| page.feed.with(|feed| feed.cursor()));
    let empty = move || batches.with(Vec::is_empty);

    Effect::new(move || {
        if batches.with(|batches| batches.iter().any(|batch| !batch.data.cards.is_empty())) {
            page::mark_first_card();
        }
    });

    let failed = move |kind: LoadKind| {
        move || match status.get() {
            Status::Failed { kind: failed, message } if failed == kind => Some(view! { <LoadError message /> }),
            _ => None,
        }
    };
    let loading = move |kind: LoadKind| move || status.get() == Status::Loading(kind);
    let nothing_new = move || {
        status.get() == Status::Idle
            && batches.with(|batches| {
                batches.first().is_some_and(|batch| batch.kind == LoadKind::Refresh && batch.data.cards.is_empty())
            })
    };

    let banner = move || page.live.with(|live| live.banner());
    let live_status = move || page.live.with(|live| live.status_text());
    let live_state = move || {
        page.live.with(|live| match live.connection() {
            Connection::Live => "live",
            Connection::Connecting => "connecting",
            Connection::Down { .. } => "down",
        })
    };

    view! {
        <section class="feed" data-testid="feed">
            <p class="live-status" data-testid="live-status" data-state=live_state>
                {live_status}
            </p>
            {move || {
                banner()
                    .map(|text| {
                        view! {
                            <button class="new-articles" data-testid="new-articles" on:click=move |_| page.refresh()>
                                {text}
                            </button>
                        }
                    })
            }}
            {failed(LoadKind::Refresh)}
            <Show when=move || loading(LoadKind::Refresh)() && empty()>
                <p class="loading" data-testid="loading">"loading the feed…"</p>
            </Show>
            <Show when=nothing_new>
                <p class="notice" data-testid="nothing-new">
                    "nothing new: this user has seen every article of this channel"
                </p>
            </Show>
            <For each=move || batches.get() key=|batch| batch.key let:batch>
                <BatchView batch />
            </For>
            <footer class="feed-foot">
                {failed(LoadKind::Earlier)}
                {move || match cursor.get() {
                    Cursor::Earlier(_) => {
                        view! {
                            <button
                                data-testid="load-earlier"
                                disabled=move || status.with(|status| matches!(status, Status::Loading(_)))
                                on:click=move |_| page.load_earlier()
                            >
                                {move || {
                                    if loading(LoadKind::Earlier)() {
                                        "loading earlier…"
                                    } else {
                                        "load earlier"
                                    }
                                }}
                            </button>
                        }
                            .into_any()
                    }
                    Cursor::End => {
                        view! {
                            <p class="muted" data-testid="no-more">
                                "no earlier batches: this is the first one served"
                            </p>
                        }
                            .into_any()
                    }
                    Cursor::Unknown => ().into_any(),
                }}
            </footer>
        </section>
    }
}

/// A batch; its cards follow the feed, so a dismissed card leaves and the others stay put.
#[component]
fn BatchView(batch: Batch) -> impl IntoView {
    let page = expect_context::<Page>();
    let (kind, label) = match batch.kind {
        LoadKind::Refresh => ("refresh", "new batch"),
        LoadKind::Earlier => ("earlier", "earlier batch"),
    };
    let key = batch.key;
    let cards = Memo::new(move |_| {
        page.feed.with(|feed| feed.batch(key).map(|batch| batch.data.cards.clone()).unwrap_or_default())
    });
    let count = move || cards.with(Vec::len);
    let highlighted = move || page.highlight.get() == Some(Target { batch: key, article_id: None });

    view! {
        <section
            class="batch"
            class:highlighted=highlighted
            data-testid="batch"
            data-kind=kind
            data-batch=key
            data-highlighted=move || highlighted().to_string()
        >
            <h2 class="batch-head">
                {label} " · " {clock::time_of_day(batch.requested)} " UTC · " {count}
                {move || if count() == 1 { " article" } else { " articles" }}
                {(batch.data.pre_timestamp == 0).then_some(" · first batch")}
            </h2>
            // A card is built again when the catalog's answer comes (it shows no title before).
            <For each=move || cards.get() key=|card| (card.article_id, matches!(card.meta, Meta::Pending)) let:card>
                <ArticleCard card batch=key />
            </For>
        </section>
    }
}

/// The plain "cannot reach the server" state, with a way out.
#[component]
fn LoadError(message: String) -> impl IntoView {
    let page = expect_context::<Page>();
    view! {
        <div class="error" data-testid="error" role="alert">
            <strong>"Cannot load the feed from the reco server"</strong>
            <p>
                "The gRPC-Web call to " <code>{page.api_base()}</code> " failed: " {message}
            </p>
            <p class="muted">
                "Is " <code>"reco serve"</code> " running? Retry once it is."
            </p>
            <button class="primary" data-testid="retry" on:click=move |_| page.retry()>
                "retry"
            </button>
        </div>
    }
}
