//! One recommended article: its catalog info, its four tracking params (decoded, with the
//! server's signature check, or raw), buttons that report them, "not interested" (不感兴趣),
//! which takes the card off the page once the server has it, and the explain toggle.

use leptos::{either::Either, html, prelude::*};

use crate::{
    clock,
    event_log::{Outcome, Report},
    explain_panel::ExplainPanel,
    feed::{Card, Meta},
    inspector::Target,
    page::Page,
    param::{Action, Check, Combine, Param},
};

/// What "read" reports unless the reader types another duration.
const DEFAULT_READ_SECONDS: &str = "30";

#[component]
pub fn ArticleCard(card: Card, batch: u64) -> impl IntoView {
    let page = expect_context::<Page>();
    let node = NodeRef::<html::Article>::new();
    Effect::new(move || {
        if let Some(element) = node.get() {
            page.observe(&element);
            on_cleanup(move || page.unobserve(&element));
        }
    });

    let shown = RwSignal::new(Action::Click);
    let raw = RwSignal::new(false);
    let read_seconds = RwSignal::new(DEFAULT_READ_SECONDS.to_owned());
    let last = RwSignal::new(None::<(Action, Outcome)>);

    let Card { article_id, position, meta, params } = card;
    let channel_id = if let Meta::Known(meta) = &meta { meta.channel_id } else { -1 };
    // The params as the feed holds them now: their signature checks arrive after the card.
    let served = StoredValue::new(params);
    let params = Memo::new(move |_| {
        page.feed
            .with(|feed| {
                let card = feed.batch(batch)?.data.cards.iter().find(|card| card.article_id == article_id)?;
                Some(card.params.clone())
            })
            .unwrap_or_else(|| served.get_value())
    });
    let index = |action: Action| Action::CARD.iter().position(|&candidate| candidate == action);
    let param = move |action: Action| index(action).map(|index| params.with(|params| params[index].clone()));

    let explaining = RwSignal::new(false);
    let highlighted = move || page.highlight.get() == Some(Target { batch, article_id: Some(article_id) });

    let fire = move |action: Action| {
        // A dislike goes with the card's click param.
        let action_of_param = if action == Action::Dislike { Action::Click } else { action };
        let Some(param) = index(action_of_param).map(|index| served.with_value(|params| params[index].clone())) else {
            return;
        };
        let report = match action {
            Action::Read => {
                // JavaScript's parseFloat (str::parse's float parser is KBs of wasm).
                let seconds = js_sys::Number::parse_float(read_seconds.get_untracked().trim());
                let seconds = if seconds.is_finite() { seconds } else { 0.0 };
                Report::read(param, (seconds * 1_000.0).round() as i64)
            }
            Action::Dislike => Report::dislike(param),
            Action::Exposure | Action::Click | Action::Collect | Action::Share => Report::of(param),
        };
        last.set(Some((action, Outcome::Pending)));
        page.report(report, move |outcome| {
            let gone = action == Action::Dislike && outcome.is_recorded();
            last.set(Some((action, outcome)));
            // The server has the dislike: the card leaves (and this component with it).
            if gone {
                page.dismiss(batch, article_id);
            }
        });
    };
    let button = move |action: Action| {
        let label = if action == Action::Dislike { "不感兴趣" } else { action.as_str() };
        view! {
            <button
                class="act"
                class:dislike=action == Action::Dislike
                data-testid=format!("act-{}", action.as_str())
                title=(action == Action::Dislike).then_some("not interested: never show it again")
                on:click=move |_| fire(action)
            >
                {label}
            </button>
        }
    };

    let (title, details) = match meta {
        Meta::Known(meta) => (
            meta.title,
            view! {
                <span data-testid="card-channel">
                    {move || page.channel_name(meta.channel_id)}
                </span>
                " · "
                <span data-testid="card-author">{meta.author}</span>
                " · "
                <span data-testid="card-published">{clock::date_time(meta.publish_time)}</span>
            }
            .into_any(),
        ),
        other => {
            let (state, text) = match other {
                Meta::Pending => ("pending", "…"),
                Meta::Missing | Meta::Known(_) => ("missing", "not in the catalog"),
                Meta::Failed => ("failed", "no catalog info (Catalog.Articles failed)"),
            };
            let details = view! { <span class="warn" data-testid="card-meta" data-state=state>{text}</span> };
            (format!("article {article_id}"), details.into_any())
        }
    };

    let tabs = Action::CARD
        .into_iter()
        .map(|action| {
            let check = move || param(action).map(|param| param.check).unwrap_or(Check::Pending);
            view! {
                <button
                    class="param-tab"
                    class:active=move || shown.get() == action
                    data-testid="param-tab"
                    data-action=action.as_str()
                    on:click=move |_| shown.set(action)
                >
                    {action.as_str()}
                    {move || view! { <SignatureMark check=check() /> }}
                </button>
            }
        })
        .collect_view();

    view! {
        <article
            class="card"
            class:highlighted=highlighted
            node_ref=node
            data-testid="card"
            data-article-id=article_id
            data-channel-id=channel_id
            data-batch=batch
            data-highlighted=move || highlighted().to_string()
        >
            <div class="card-info">
                <p class="card-ids">
                    <span class="article-id" data-testid="card-id">{article_id}</span>
                    <span class="position" data-testid="card-position">
                        "position " {position}
                    </span>
                </p>
                <h3 class="title" data-testid="card-title">{title}</h3>
                <p class="meta">{details}</p>
                <div class="actions">
                    {button(Action::Click)} {button(Action::Collect)} {button(Action::Share)}
                    <span class="read">
                        {button(Action::Read)}
                        <input
                            type="number"
                            min="0"
                            step="1"
                            data-testid="read-seconds"
                            aria-label="read duration in seconds"
                            prop:value=move || read_seconds.get()
                            on:input=move |ev| read_seconds.set(event_target_value(&ev))
                        />
                        "s"
                    </span>
                    {button(Action::Dislike)}
                    <button
                        class="explain-toggle"
                        class:active=move || explaining.get()
                        data-testid="explain-toggle"
                        aria-expanded=move || explaining.get().to_string()
                        on:click=move |_| explaining.update(|open| *open = !*open)
                    >
                        "explain"
                    </button>
                </div>
                {move || {
                    last.get()
                        .map(|(action, outcome)| {
                            view! {
                                <p
                                    class=format!("verdict verdict-{}", outcome.label())
                                    data-testid="card-verdict"
                                    data-action=action.as_str()
                                    data-verdict=outcome.label()
                                >
                                    {action.as_str()} ": " {outcome.label()}
                                    {outcome.reason().map(|reason| format!(" ({reason})"))}
                                </p>
                            }
                        })
                }}
                <Show when=move || explaining.get()>
                    <ExplainPanel article_id />
                </Show>
            </div>
            <div class="card-params">
                <div class="param-tabs">
                    {tabs}
                    <button
                        class="raw-toggle"
                        data-testid="raw-toggle"
                        class:active=move || raw.get()
                        on:click=move |_| raw.update(|raw| *raw = !*raw)
                    >
                        "raw"
                    </button>
                </div>
                {move || {
                    let action = shown.get();
                    param(action).map(|param| view! { <ParamView param action raw=raw.get() /> })
                }}
            </div>
        </article>
    }
}

#[component]
fn ParamView(param: Param, action: Action, raw: bool) -> impl IntoView {
    let combine = (!raw).then(|| param.algorithm_combine().map(str::to_owned)).flatten().map(|combine| {
        view! { <CombineView combine /> }
    });
    let text = if raw { param.raw } else { param.pretty };
    let (state, note) = match &param.check {
        Check::Pending => ("pending", "signature: checking…".to_owned()),
        Check::Valid => ("valid", "signature: valid (checked by the server)".to_owned()),
        Check::Invalid(reason) => ("invalid", format!("signature: INVALID ({reason})")),
        Check::Unchecked(reason) => ("unchecked", format!("signature: not checked ({reason})")),
    };
    view! {
        <pre
            class="param"
            class:raw=raw
            data-testid="param"
            data-action=action.as_str()
            data-format=if raw { "raw" } else { "decoded" }
        >
            {text}
        </pre>
        {combine}
        <p class=format!("sig sig-{state}") data-testid="sig-badge" data-state=state>
            {note}
        </p>
    }
}

/// `algorithmCombine` read: the A/B bucket and the sources, or the string as is.
#[component]
fn CombineView(combine: String) -> impl IntoView {
    match Combine::parse(&combine) {
        Some(parsed) => {
            let bucket = parsed.bucket.map_or_else(|| "none".to_owned(), |bucket| bucket.to_string());
            let bucket_attr = bucket.clone();
            let sources = parsed.sources.join("+");
            let none = parsed.sources.is_empty().then_some("none");
            let chips = parsed
                .sources
                .into_iter()
                .map(|source| view! { <span class="chip" data-testid="combine-source">{source}</span> })
                .collect_view();
            Either::Left(view! {
                <p
                    class="combine"
                    data-testid="param-combine"
                    data-parsed="true"
                    data-bucket=bucket_attr
                    data-sources=sources
                >
                    "algorithm " <code>{parsed.algorithm}</code> " · bucket "
                    <code data-testid="combine-bucket">{bucket}</code> " · sources " {chips} {none}
                </p>
            })
        }
        None => Either::Right(view! {
            <p class="combine" data-testid="param-combine" data-parsed="false">
                "algorithmCombine (not readable): " <code>{combine}</code>
            </p>
        }),
    }
}

/// The small mark on a param tab.
#[component]
fn SignatureMark(check: Check) -> impl IntoView {
    let (state, mark, title) = match &check {
        Check::Pending => ("pending", "…", "checking the signature".to_owned()),
        Check::Valid => ("valid", "✓", "signature valid".to_owned()),
        Check::Invalid(reason) => ("invalid", "✗", format!("signature invalid: {reason}")),
        Check::Unchecked(reason) => ("unchecked", "?", format!("not checked: {reason}")),
    };
    view! {
        <span class=format!("mark sig-{state}") title=title>
            {mark}
        </span>
    }
}
