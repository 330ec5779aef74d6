//! A card's explain view (debug): `Tracking.Explain` for the current user and the card's
//! article, asked each time the view opens, then on "again".

use leptos::{
    either::{Either, EitherOf3},
    prelude::*,
};

use crate::{
    explain::{self, Explanation, SourceChip, TOP_CONTRIBUTIONS},
    page::Page,
    remote::{Fetch, Remote},
};

#[component]
pub fn ExplainPanel(article_id: i64) -> impl IntoView {
    let page = expect_context::<Page>();
    let fetch = RwSignal::new(Fetch::<Explanation>::default());
    let load = move || {
        let Some(ticket) = fetch.try_update(Fetch::start) else { return };
        // Closed before the answer: the signal is gone and the update does nothing.
        page.explain(article_id, move |answer| {
            fetch.update(|fetch| {
                fetch.finish(ticket, answer);
            })
        });
    };
    load();

    view! {
        <div class="explain" data-testid="explain">
            {move || match fetch.with(|fetch| fetch.state().clone()) {
                Remote::Idle | Remote::Loading => {
                    EitherOf3::A(
                        view! {
                            <p class="muted" data-testid="explain-loading">
                                "asking the engine…"
                            </p>
                        },
                    )
                }
                Remote::Failed(message) => {
                    EitherOf3::B(
                        view! {
                            <p class="error inline" data-testid="explain-error" role="alert">
                                "explain failed: "
                                {message}
                            </p>
                        },
                    )
                }
                Remote::Ready(explained) => EitherOf3::C(view! { <ExplanationView explained /> }),
            }}
            <button
                class="quiet again"
                data-testid="explain-again"
                disabled=move || fetch.with(Fetch::is_loading)
                on:click=move |_| load()
            >
                "again"
            </button>
        </div>
    }
}

#[component]
fn ExplanationView(explained: Explanation) -> impl IntoView {
    let (now, served) = explained.source_chips();
    let top = explained.top(TOP_CONTRIBUTIONS);
    let largest =
        top.iter().map(|contribution| contribution.weight.abs()).filter(|w| w.is_finite()).fold(0.0, f64::max);
    let contributions = if top.is_empty() {
        Either::Left(view! {
            <p class="muted" data-testid="explain-no-contributions">
                "no feature contributions (this variant does not rank with the model)"
            </p>
        })
    } else {
        let rows = top
            .into_iter()
            .map(|contribution| {
                let negative = contribution.weight < 0.0;
                let width = explain::fixed(explain::bar_percent(contribution.weight, largest), 0) + "%";
                let feature = contribution.feature.clone();
                view! {
                    <tr data-testid="contribution" data-feature=feature>
                        <td class="feature">{contribution.feature}</td>
                        <td class="weight" class:negative=negative>
                            {explain::signed(contribution.weight)}
                        </td>
                        <td class="bar-cell">
                            <span class="bar" class:negative=negative style:width=width></span>
                        </td>
                    </tr>
                }
            })
            .collect_view();
        Either::Right(view! {
            <table class="contributions" data-testid="explain-contributions">
                <thead>
                    <tr>
                        <th>"feature"</th>
                        <th>"weight"</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        })
    };

    // One row shape for every line keeps the wasm small (each distinct view is its own code).
    let text = |text: String| Either::Left(text);
    let hidden = if explained.hidden { "yes: read or disliked, never shown again" } else { "no" };
    let ranking = if explained.ranker { "learned model" } else { "freshness + popularity" };
    let lines = [
        ("variant", "explain-variant", text(explained.variant)),
        ("bucket", "explain-bucket", text(explained.bucket.to_string())),
        ("ranking", "explain-ranking", text(ranking.to_owned())),
        ("sources now", "explain-sources", Either::Right(chips(now, "none would propose it now"))),
        ("served by", "explain-served", Either::Right(chips(served, "not in this user's feed history"))),
        ("score", "explain-score", text(explain::fixed(explained.score, 4))),
        ("click probability", "explain-probability", text(explain::percent(explained.probability))),
        ("demotion", "explain-demotion", text(explain::demotion(explained.demotion))),
        ("hidden", "explain-hidden", text(hidden.to_owned())),
    ];
    let rows = lines
        .into_iter()
        .map(|(label, testid, value)| {
            view! {
                <tr>
                    <th>{label}</th>
                    <td data-testid=testid>{value}</td>
                </tr>
            }
        })
        .collect_view();

    view! {
        <table class="explain-table" data-testid="explain-table">
            <tbody>{rows}</tbody>
        </table>
        {contributions}
    }
}

/// Source names; one that the other list lacks is marked, so "now" and "served" compare at a
/// glance. `empty` stands in for an empty list.
fn chips(chips: Vec<SourceChip>, empty: &'static str) -> impl IntoView {
    let none = chips.is_empty().then(|| view! { <span class="muted">{empty}</span> });
    let chips = chips
        .into_iter()
        .map(|chip| {
            view! {
                <span class="chip" class:differs=chip.differs>
                    {chip.name}
                </span>
            }
        })
        .collect_view();
    (none, chips)
}
