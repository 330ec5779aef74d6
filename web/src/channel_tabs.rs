//! Channel tabs from `Catalog.Channels`, 推荐 (all channels) first.

use leptos::prelude::*;

use crate::{api::Channel, page::Page, remote::Remote};

#[component]
pub fn ChannelTabs() -> impl IntoView {
    let page = expect_context::<Page>();
    let tabs = move || {
        page.channels.with(|channels| match channels.state() {
            Remote::Idle | Remote::Loading => view! { <span class="muted">"loading channels…"</span> }.into_any(),
            Remote::Ready(channels) => channels
                .iter()
                .map(|channel| view! { <ChannelTab channel=channel.clone() /> })
                .collect_view()
                .into_any(),
            Remote::Failed(message) => view! {
                <div class="error inline" data-testid="channels-error" role="alert">
                    "could not load the channels: "
                    {message.clone()}
                    <button on:click=move |_| page.load_channels()>"retry"</button>
                </div>
            }
            .into_any(),
        })
    };

    view! {
        <nav class="channels" data-testid="channels">
            {tabs}
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
