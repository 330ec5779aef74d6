//! Channel tabs from `Catalog.Channels`, 推荐 (all channels) first.

use leptos::prelude::*;

use crate::{api::Channel, page::Page};

#[component]
pub fn ChannelTabs() -> impl IntoView {
    let page = expect_context::<Page>();
    let tabs = move || {
        Suspend::new(async move {
            page.channels
                .await
                .map(|channels| channels.into_iter().map(|channel| view! { <ChannelTab channel /> }).collect_view())
        })
    };

    view! {
        <nav class="channels" data-testid="channels">
            <Transition fallback=|| view! { <span class="muted">"loading channels…"</span> }>
                <ErrorBoundary fallback=move |errors| {
                    view! {
                        <div class="error inline" data-testid="channels-error" role="alert">
                            "could not load the channels: "
                            {move || {
                                errors
                                    .get()
                                    .into_iter()
                                    .map(|(_, err)| err.to_string())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            }}
                            <button on:click=move |_| page.channels.refetch()>"retry"</button>
                        </div>
                    }
                }>{tabs}</ErrorBoundary>
            </Transition>
        </nav>
    }
}

#[component]
fn ChannelTab(channel: Channel) -> impl IntoView {
    let page = expect_context::<Page>();
    let id = channel.id;
    let select = move |_| {
        if page.channel.get_untracked() != id {
            page.channel.set(id);
        }
    };

    view! {
        <button
            class="tab"
            class:active=move || page.channel.get() == id
            data-testid="channel-tab"
            data-channel-id=id
            title=format!("{} articles", channel.article_count)
            on:click=select
        >
            {channel.name}
        </button>
    }
}
