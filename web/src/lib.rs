//! The reco feed page: a Leptos client-side-rendered app that calls the reco services
//! straight from the browser over gRPC-Web (no JSON gateway) and makes the tracking params
//! visible: decoded, signature-checked by the server, and reportable one by one.
//!
//! Logic lives in plain types with ordinary unit tests: [`param`] (decoding,
//! pretty-printing, `algorithmCombine`), [`feed`] (batches, history paging, stale answers,
//! dismissed cards), [`json`] (the little JSON the page reads and writes), [`live`] (the push stream, new and retracted articles), [`event_log`]
//! (reports, filter, pause, clear, copy as JSON), [`inspector`] (everyone's events as the
//! server judges them: filters, pause, drops, export, the card an event came from), [`explain`]
//! and [`stats`] (the debug views' data and wording), [`remote`] (on-demand fetches).
//! [`api`] is the only module that sees protobuf, over [`grpc_web`] (a small gRPC-Web client
//! on `fetch`); [`page::Page`] holds the signals; the other modules are thin panels.

pub mod api;
mod card;
mod channel_tabs;
pub mod clock;
pub mod event_log;
pub mod explain;
mod explain_panel;
pub mod feed;
mod feed_panel;
pub mod grpc_web;
pub mod inspector;
mod inspector_panel;
pub mod json;
pub mod live;
mod log_panel;
pub mod page;
pub mod param;
pub mod remote;
pub mod stats;
mod stats_panel;
mod toolbar;
pub mod user;

use leptos::prelude::*;

use crate::{
    api::Api, channel_tabs::ChannelTabs, feed_panel::FeedPanel, inspector_panel::InspectorPanel, log_panel::LogPanel,
    page::Page, stats_panel::StatsPanel, toolbar::Toolbar,
};

#[component]
pub fn App() -> impl IntoView {
    let page = Page::new(Api::from_location());
    provide_context(page);
    // The first feed request goes out before the page is built, so the two overlap.
    page.reload();
    // A new user or channel starts a new feed.
    Effect::new(move |first: Option<()>| {
        page.user.track();
        page.channel.track();
        if first.is_some() {
            page.reload();
        }
    });
    // The push streams are not needed for the first card: they open once the first load is
    // done (so they never compete with it), the catalog's following the channel.
    Effect::new(move || {
        page.channel.track();
        if page.started.get() {
            page.watch_catalog();
        }
    });
    Effect::new(move || {
        if page.started.get() {
            page.watch_events();
        }
    });

    view! {
        <div class="app">
            <Toolbar />
            <ChannelTabs />
            <main class="columns">
                <FeedPanel />
                <div class="side">
                    // Built once the first load is done, so that they never delay the first card.
                    <Show when=move || page.started.get()>
                        <StatsPanel />
                        <LogPanel />
                        <InspectorPanel />
                    </Show>
                </div>
            </main>
        </div>
    }
}
