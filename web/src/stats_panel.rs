//! The stats panel: `Tracking.Stats` over the server's last 24 hours, per A/B bucket, per
//! candidate source and per channel. Loaded when asked, not on page load.

use leptos::{
    either::{Either, EitherOf3},
    prelude::*,
};

use crate::{
    clock,
    page::Page,
    remote::Remote,
    stats::{Group, Stats, StatsRow},
};

#[component]
pub fn StatsPanel() -> impl IntoView {
    let page = expect_context::<Page>();
    let loading = move || page.stats.with(|fetch| fetch.is_loading());
    let loaded = move || page.stats.with(|fetch| matches!(fetch.state(), Remote::Ready(_) | Remote::Failed(_)));

    view! {
        <section class="stats" data-testid="stats">
            <header class="stats-head">
                <h2>"stats " <span class="muted">"last 24 h"</span></h2>
                <button data-testid="stats-refresh" disabled=loading on:click=move |_| page.load_stats()>
                    {move || match (loading(), loaded()) {
                        (true, _) => "loading…",
                        (false, true) => "refresh",
                        (false, false) => "load",
                    }}
                </button>
            </header>
            {move || match page.stats.with(|fetch| fetch.state().clone()) {
                // While loading, the button says so.
                Remote::Idle | Remote::Loading => {
                    EitherOf3::A(
                        view! {
                            <p class="muted stats-note">
                                "Exposures, clicks and CTR by A/B bucket, source and channel."
                            </p>
                        },
                    )
                }
                Remote::Failed(message) => {
                    EitherOf3::B(
                        view! {
                            <p class="error inline stats-note" data-testid="stats-error" role="alert">
                                "stats failed: "
                                {message}
                            </p>
                        },
                    )
                }
                Remote::Ready(stats) => EitherOf3::C(view! { <StatsTables stats /> }),
            }}
        </section>
    }
}

#[component]
fn StatsTables(stats: Stats) -> impl IntoView {
    let window = format!("{} – {}", clock::date_time(stats.from_ms), clock::date_time(stats.to_ms));
    let tables = Group::ALL.map(|group| view! { <StatsTable group rows=stats.rows(group).to_vec() /> }).collect_view();
    view! {
        <p class="muted stats-note" data-testid="stats-window">
            {window}
        </p>
        {tables}
    }
}

#[component]
fn StatsTable(group: Group, rows: Vec<StatsRow>) -> impl IntoView {
    let page = expect_context::<Page>();
    let body = if rows.is_empty() {
        Either::Left(view! {
            <tr>
                <td class="muted" colspan="5">
                    "no events"
                </td>
            </tr>
        })
    } else {
        let rows = rows
            .into_iter()
            .map(|row| {
                let key = row.key.clone();
                // Channel ids get their names once the channel list is in.
                let label = move || match (group, key.parse::<i32>()) {
                    (Group::Channel, Ok(id)) => format!("{id} · {}", page.channel_name(id)),
                    _ => key.clone(),
                };
                let ctr = row.ctr_label();
                view! {
                    <tr data-testid="stats-row" data-key=row.key data-exposures=row.exposures data-clicks=row.clicks>
                        <td class="key">{label}</td>
                        <td>{row.exposures}</td>
                        <td>{row.clicks}</td>
                        <td>{ctr}</td>
                        <td>{row.dislikes}</td>
                    </tr>
                }
            })
            .collect_view();
        Either::Right(rows)
    };

    view! {
        <table class="stats-table" data-testid="stats-table" data-group=group.as_str()>
            <caption>{group.title()}</caption>
            <thead>
                <tr>
                    <th class="key">{group.as_str()}</th>
                    <th>"exp."</th>
                    <th>"clicks"</th>
                    <th>"CTR"</th>
                    <th>"dislikes"</th>
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
    }
}
