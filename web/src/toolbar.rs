//! The top bar: who the feed is for, refresh, and which server the page talks to.

use leptos::prelude::*;

use crate::{page::Page, user};

#[component]
pub fn Toolbar() -> impl IntoView {
    let page = expect_context::<Page>();
    let loading = move || page.feed.with(|feed| feed.is_loading());
    let set_user = move |ev| {
        if let Some(user_id) = user::normalize(&event_target_value(&ev)) {
            page.set_user(user_id);
        }
    };
    let new_user = move |_| page.set_user(user::anonymous_id(random_u64()));

    view! {
        <header class="topbar">
            <h1>"reco" <span class="subtitle">"feed"</span></h1>
            <label class="user">
                "user"
                <input
                    type="text"
                    data-testid="user-id"
                    spellcheck="false"
                    prop:value=move || page.user.get()
                    on:change=set_user
                />
            </label>
            <button class="quiet" data-testid="new-user" on:click=new_user>
                "new anonymous user"
            </button>
            <button
                class="primary"
                data-testid="refresh"
                disabled=loading
                on:click=move |_| page.refresh()
            >
                "refresh"
            </button>
            <span class="endpoint" title="gRPC-Web endpoint (set with ?api=URL)">
                {page.api_base()}
            </span>
        </header>
    }
}

fn random_u64() -> u64 {
    (js_sys::Math::random() * 2f64.powi(53)) as u64
}
