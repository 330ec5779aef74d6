//! End to end: the feed page in headless Chromium against a real `reco serve`.
//!
//! Needs the built page in `<workspace>/dist` (`scripts/build-web.sh`; `RECO_WEB_DIST` names
//! another directory, relative to the workspace), Debian's `chromium` and `chromium-driver`.
//! Everything listens on 127.0.0.1; the processes started here are killed by PID when the test
//! ends, however it ends. Prints the wasm size, the time from navigation to the first card and
//! how soon another page's inspector shows an event, and saves screenshots under `target/e2e/`.

use std::{
    error::Error,
    fmt, fs,
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, key::Key};
use reco_proto::{
    seed::{UserRequest, user_recommend_client::UserRecommendClient},
    v1::{
        ArticleStatsRequest, ExplainRequest, ReportRequest, RetractRequest, TrackEvent, Verdict,
        catalog_client::CatalogClient, tracking_client::TrackingClient,
    },
};
use serde::Deserialize;
use serde_json::json;

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
/// How long the page gets for anything it is asked to do.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a just-started browser is left alone before the timed first load.
const BROWSER_SETTLE: Duration = Duration::from_secs(2);
const MIN_CARDS: usize = 10;

/// A process started by this test, killed (by its PID) when dropped.
struct Process {
    name: &'static str,
    child: Option<Child>,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command) -> TestResult<Process> {
        let child = command.spawn().map_err(|err| format!("cannot start {name}: {err}"))?;
        Ok(Process { name, child: Some(child) })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("stopped {} (pid {})", self.name, child.id());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Chromium is started by chromedriver, not by us: find its processes by the profile
/// directory only this test uses, and kill those PIDs if the session did not end cleanly.
struct BrowserProfile {
    dir: tempfile::TempDir,
}

impl Drop for BrowserProfile {
    fn drop(&mut self) {
        let marker = format!("--user-data-dir={}", self.dir.path().display());
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline.split(|&byte| byte == 0).any(|arg| arg == marker.as_bytes()) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root exists")
}

fn free_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(name: &str, port: u16, process: &mut Process) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = process.child.as_mut().and_then(|child| child.try_wait().ok()?) {
            return Err(format!("{name} exited before listening: {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{name} is not listening on 127.0.0.1:{port} after 60 s").into())
}

/// The built page's wasm, under whatever name the build gave it.
fn built_wasm(dist: &Path) -> TestResult<PathBuf> {
    let index = dist.join("index.html");
    if !index.is_file() {
        let message = format!("the feed page is not built: {} is missing; run scripts/build-web.sh", index.display());
        return Err(message.into());
    }
    fs::read_dir(dist)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with("_bg.wasm"))
        .ok_or_else(|| format!("{} has no *_bg.wasm; run scripts/build-web.sh", dist.display()).into())
}

fn gzip_len(bytes: &[u8]) -> TestResult<usize> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

#[derive(Debug, Deserialize)]
struct BatchView {
    kind: String,
    cards: Vec<CardView>,
}

#[derive(Debug, Deserialize)]
struct CardView {
    id: i64,
    channel: i32,
    channel_name: String,
    title: String,
    param: String,
    sig: String,
}

impl BatchView {
    fn ids(&self) -> Vec<i64> {
        self.cards.iter().map(|card| card.id).collect()
    }
}

/// What the feed shows, batch by batch, top to bottom.
async fn batches(client: &Client) -> TestResult<Vec<BatchView>> {
    let value = client
        .execute(
            r#"
            const text = (root, id) => root.querySelector(`[data-testid=${id}]`)?.textContent ?? "";
            return [...document.querySelectorAll("[data-testid=batch]")].map((batch) => ({
                kind: batch.dataset.kind,
                cards: [...batch.querySelectorAll("[data-testid=card]")].map((card) => ({
                    id: Number(card.dataset.articleId),
                    channel: Number(card.dataset.channelId),
                    channel_name: text(card, "card-channel"),
                    title: text(card, "card-title"),
                    param: text(card, "param"),
                    sig: card.querySelector("[data-testid=sig-badge]")?.dataset.state ?? "",
                })),
            }));
            "#,
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(value)?)
}

/// Polls `predicate` (a JS function body returning a boolean) until it holds.
async fn wait_until(client: &Client, what: &str, predicate: &str) -> TestResult {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        if client.execute(predicate, vec![]).await? == json!(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let body = client.execute("return document.body.innerText.slice(0, 2000);", vec![]).await?;
            return Err(format!(
                "timed out after {PAGE_TIMEOUT:?} waiting for {what}; the page says:\n{}",
                body.as_str().unwrap_or_default()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_batches(client: &Client, what: &str, count: usize) -> TestResult {
    let predicate = format!(
        r#"return document.querySelectorAll("[data-testid=batch]").length === {count}
            && !document.querySelector("[data-testid=refresh]").disabled
            && !document.querySelector("[data-testid=card-meta][data-state=pending]")
            && [...document.querySelectorAll("[data-testid=sig-badge]")]
                .every((badge) => badge.dataset.state !== "pending");"#
    );
    wait_until(client, what, &predicate).await
}

/// When the page got its first card, and the steps before it, in ms since navigation start.
#[derive(Debug, Deserialize)]
struct Timing {
    /// The first card painted: the browser's first largest-contentful-paint entry for the
    /// batch after the `reco:first-card` mark (the batch's head and cards are painted in one
    /// frame, and they are the largest content yet); `None` if none.
    card_painted: Option<f64>,
    /// The first card in the DOM (the page's `reco:first-card` mark).
    first_card: f64,
    wasm_loaded: Option<f64>,
    feed_asked: Option<f64>,
    feed_answered: Option<f64>,
    articles_asked: Option<f64>,
    articles_answered: Option<f64>,
    /// The wasm's bytes on the wire (encoded body; 0 when it came from the cache) and decoded.
    wasm_wire: Option<f64>,
    wasm_decoded: Option<f64>,
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |ms: Option<f64>| ms.map_or_else(|| "?".to_owned(), |ms| format!("{ms:.0} ms"));
        write!(
            f,
            "painted {} after navigation start (in the DOM at {:.0} ms; wasm loaded at {}, user_recommend \
             sent at {}, answered at {}, Catalog.Articles sent at {}, answered at {}; wasm {} bytes on the \
             wire, {} decoded)",
            at(self.card_painted),
            self.first_card,
            at(self.wasm_loaded),
            at(self.feed_asked),
            at(self.feed_answered),
            at(self.articles_asked),
            at(self.articles_answered),
            self.wasm_wire.map_or_else(|| "?".to_owned(), |b| format!("{b:.0}")),
            self.wasm_decoded.map_or_else(|| "?".to_owned(), |b| format!("{b:.0}")),
        )
    }
}

async fn load_timing(client: &Client) -> TestResult<Timing> {
    let value = client
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            const resource = (suffix) => performance.getEntriesByType("resource")
                .find((entry) => entry.name.endsWith(suffix));
            const timing = {
                first_card: performance.getEntriesByName("reco:first-card")[0]?.startTime ?? null,
                wasm_loaded: resource(".wasm")?.responseEnd ?? null,
                feed_asked: resource("/UserRecommend/user_recommend")?.startTime ?? null,
                feed_answered: resource("/UserRecommend/user_recommend")?.responseEnd ?? null,
                articles_asked: resource("/reco.v1.Catalog/Articles")?.startTime ?? null,
                articles_answered: resource("/reco.v1.Catalog/Articles")?.responseEnd ?? null,
                wasm_wire: resource(".wasm")?.encodedBodySize ?? null,
                wasm_decoded: resource(".wasm")?.decodedBodySize ?? null,
                card_painted: null,
            };
            // Largest-contentful-paint entries only reach an observer (buffered: the ones so far).
            new PerformanceObserver((list) => {
                for (const entry of list.getEntries()) {
                    // The first paint of the batch after its cards were in the DOM: its head or
                    // a card (the first entry can name an element no longer in the document: a
                    // card is built again when its title comes).
                    const at = entry.renderTime || entry.startTime;
                    if (timing.card_painted === null && at >= timing.first_card
                        && (!entry.element || entry.element.closest("[data-testid=batch]"))) {
                        timing.card_painted = at;
                    }
                }
            }).observe({ type: "largest-contentful-paint", buffered: true });
            setTimeout(() => done(timing), 50);
            "#,
            vec![],
        )
        .await?;
    serde_json::from_value(value).map_err(|err| format!("the page set no reco:first-card mark: {err}").into())
}

async fn input_value(client: &Client, css: &str) -> TestResult<String> {
    let value = client.find(Locator::Css(css)).await?.prop("value").await?;
    value.ok_or_else(|| format!("{css} has no value").into())
}

async fn click(client: &Client, css: &str) -> TestResult {
    client.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

async fn screenshot(client: &Client, path: &Path) -> TestResult {
    fs::create_dir_all(path.parent().expect("screenshots go in a directory"))?;
    fs::write(path, client.screenshot().await?)?;
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

/// Presses 不感兴趣 on card `article_id` and waits until the server accepted the dislike (in
/// the card's verdict or the event log) and the card is gone.
async fn dislike(client: &Client, article_id: i64) -> TestResult {
    let card = format!("[data-testid=card][data-article-id='{article_id}']");
    click(client, &format!("{card} [data-testid=act-dislike]")).await?;
    // Done when the card is gone, or when its verdict says it will not go.
    let settled = format!(
        r#"const verdict = document.querySelector("{card} [data-testid=card-verdict][data-action=dislike]");
        return !document.querySelector("{card}")
            || (!!verdict && !["pending", "accepted", "duplicate"].includes(verdict.dataset.verdict));"#
    );
    wait_until(client, "the dislike's verdict", &settled).await?;
    let verdict = client
        .execute(
            &format!(r#"return document.querySelector("{card} [data-testid=card-verdict]")?.textContent ?? null;"#),
            vec![],
        )
        .await?;
    assert_eq!(verdict, json!(null), "the disliked card stayed: {verdict}");
    wait_until(
        client,
        "the accepted dislike in the event log",
        &format!(
            r#"return [...document.querySelectorAll("[data-testid=log-entry][data-action=dislike][data-verdict=accepted]")]
                .some((entry) => entry.textContent.includes("article {article_id}"));"#
        ),
    )
    .await
}

/// What a card's explain view shows.
#[derive(Debug, Deserialize)]
struct ExplainView {
    error: Option<String>,
    variant: String,
    bucket: String,
    contributions: usize,
    /// The card's click param's `algorithmCombine`, as the param view reads it.
    combine_parsed: String,
    combine_bucket: String,
}

/// Opens the explain view of card `article_id` and reads it once it is answered.
async fn explain(client: &Client, article_id: i64) -> TestResult<ExplainView> {
    let card = format!("[data-testid=card][data-article-id='{article_id}']");
    click(client, &format!("{card} [data-testid=explain-toggle]")).await?;
    wait_until(
        client,
        "the explanation",
        &format!(
            r#"const panel = document.querySelector("{card} [data-testid=explain]");
            return !!panel && !!panel.querySelector("[data-testid=explain-table], [data-testid=explain-error]");"#
        ),
    )
    .await?;
    let value = client
        .execute(
            &format!(
                r#"const card = document.querySelector("{card}");
                const text = (id) => card.querySelector(`[data-testid=${{id}}]`)?.textContent ?? "";
                const combine = card.querySelector("[data-testid=param-combine]");
                return {{
                    error: card.querySelector("[data-testid=explain-error]")?.textContent ?? null,
                    variant: text("explain-variant"),
                    bucket: text("explain-bucket"),
                    contributions: card.querySelectorAll("[data-testid=contribution]").length,
                    combine_parsed: combine?.dataset.parsed ?? "",
                    combine_bucket: combine?.dataset.bucket ?? "",
                }};"#
            ),
            vec![],
        )
        .await?;
    let view: ExplainView = serde_json::from_value(value)?;
    if let Some(error) = &view.error {
        return Err(format!("Explain of {article_id} failed on the page: {error}").into());
    }
    Ok(view)
}

/// A row of the stats panel.
#[derive(Debug, Deserialize)]
struct StatsRowView {
    group: String,
    key: String,
    exposures: u64,
}

/// Loads the stats panel and reads its three tables.
async fn load_stats(client: &Client) -> TestResult<Vec<StatsRowView>> {
    click(client, "[data-testid=stats-refresh]").await?;
    wait_until(
        client,
        "the stats",
        r#"return !!document.querySelector("[data-testid=stats-window], [data-testid=stats-error]")
            && !document.querySelector("[data-testid=stats-refresh]").disabled;"#,
    )
    .await?;
    let value = client
        .execute(
            r#"const error = document.querySelector("[data-testid=stats-error]");
            if (error) return error.textContent;
            return [...document.querySelectorAll("[data-testid=stats-table]")].flatMap((table) =>
                [...table.querySelectorAll("[data-testid=stats-row]")].map((row) => ({
                    group: table.dataset.group,
                    key: row.dataset.key,
                    exposures: Number(row.dataset.exposures),
                })));"#,
            vec![],
        )
        .await?;
    if let Some(error) = value.as_str() {
        return Err(format!("Stats failed on the page: {error}").into());
    }
    Ok(serde_json::from_value(value)?)
}

/// A JS predicate: `selector` matches an element.
fn exists(selector: &str) -> String {
    format!(r#"return !!document.querySelector("{selector}");"#)
}

/// The inspector's stream is in `state` (connecting, live, down).
fn inspector_state(state: &str) -> String {
    format!(r#"return document.querySelector("[data-testid=inspector-status]")?.dataset.state === "{state}";"#)
}

/// An inspector entry by user, action, verdict and article.
fn entry_selector(user: &str, action: &str, verdict: &str, article_id: Option<i64>) -> String {
    let article = article_id.map(|id| format!("[data-article-id='{id}']")).unwrap_or_default();
    format!("[data-testid=inspector-entry][data-user='{user}'][data-action={action}][data-verdict={verdict}]{article}")
}

/// An element's `textContent` (also inside closed `<details>`, which WebDriver's text skips).
async fn text_content(client: &Client, selector: &str) -> TestResult<String> {
    let value = client
        .execute(&format!(r#"return document.querySelector("{selector}")?.textContent ?? null;"#), vec![])
        .await?;
    value.as_str().map(str::to_owned).ok_or_else(|| format!("nothing matches {selector}").into())
}

/// A plain gRPC client's refresh for `user_id`: its first card's click, collect, share and read
/// params, and that card's article id.
async fn served_params(channel: &tonic::transport::Channel, user_id: &str) -> TestResult<(i64, Vec<String>)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let request = UserRequest { user_id: user_id.to_owned(), channel_id: 0, article_num: 5, time_stamp: now };
    let response = UserRecommendClient::new(channel.clone()).user_recommend(request).await?.into_inner();
    let article = response.recommends.into_iter().next().ok_or("user_recommend served nothing")?;
    let track = article.track.ok_or("a recommendation without params")?;
    Ok((article.article_id, vec![track.click, track.collect, track.share, track.read]))
}

/// Reports `param` with a plain gRPC client; the server's verdict must be `expected`. Returns
/// the reason it gave.
async fn report(channel: &tonic::transport::Channel, param: &str, expected: Verdict) -> TestResult<String> {
    let event = TrackEvent { param: param.to_owned(), action_time: 0, read_duration_ms: 0, dislike: false };
    let request = ReportRequest { events: vec![event] };
    let response = TrackingClient::new(channel.clone()).report(request).await?.into_inner();
    let result = response.results.into_iter().next().ok_or("Report answered no verdict")?;
    assert_eq!(result.verdict(), expected, "{result:?}");
    Ok(result.reason)
}

/// Waits for `selector` on `watcher`, which must show it within a second of `since`.
async fn shown_within_a_second(watcher: &Client, what: &str, selector: &str, since: Instant) -> TestResult {
    wait_until(watcher, what, &exists(selector)).await?;
    let after = since.elapsed();
    eprintln!("inspector: {what} shown on the other page {after:?} after it was sent");
    assert!(after < Duration::from_secs(1), "{what} took {after:?} to reach the inspector");
    Ok(())
}

/// Page `page` (user `page_user`) and a plain gRPC client report events; the inspector on
/// `watcher` (another browser) shows each with its verdict, pauses, filters and links to cards.
async fn exercise_inspector(
    page: &Client,
    watcher: &Client,
    url: &str,
    channel: &tonic::transport::Channel,
    page_user: &str,
) -> TestResult {
    watcher.goto(url).await?;
    wait_for_batches(watcher, "the watching page's own feed", 1).await?;
    wait_until(watcher, "the inspector's stream", &inspector_state("live")).await?;
    let watcher_user = input_value(watcher, "[data-testid=user-id]").await?;

    // Page A refreshes: the new batch comes into view (its exposure), then a card is clicked.
    let refreshed = Instant::now();
    click(page, "[data-testid=refresh]").await?;
    let exposure = entry_selector(page_user, "exposure", "accepted", None);
    shown_within_a_second(watcher, "page A's exposure (from its refresh)", &exposure, refreshed).await?;
    wait_until(page, "page A's refresh", r#"return !document.querySelector("[data-testid=refresh]").disabled;"#)
        .await?;
    let clicked = batches(page).await?[0].cards[0].id;
    let pressed = Instant::now();
    click(page, &format!("[data-testid=card][data-article-id='{clicked}'] [data-testid=act-click]")).await?;
    let click_entry = entry_selector(page_user, "click", "accepted", Some(clicked));
    shown_within_a_second(watcher, "page A's click", &click_entry, pressed).await?;

    // A plain gRPC client: accepted, then the same param again (duplicate), then a forgery.
    let (article, params) = served_params(channel, "grpc-client").await?;
    let sent = Instant::now();
    report(channel, &params[0], Verdict::Accepted).await?;
    let accepted = entry_selector("grpc-client", "click", "accepted", Some(article));
    shown_within_a_second(watcher, "a gRPC client's click", &accepted, sent).await?;
    let sent = Instant::now();
    report(channel, &params[0], Verdict::Duplicate).await?;
    let duplicate = entry_selector("grpc-client", "click", "duplicate", Some(article));
    shown_within_a_second(watcher, "the same click again", &duplicate, sent).await?;
    let forged = params[1].replace(r#""userId":"grpc-client""#, r#""userId":"mallory""#);
    assert_ne!(forged, params[1], "no userId to forge in {}", params[1]);
    let sent = Instant::now();
    let reason = report(channel, &forged, Verdict::Rejected).await?;
    let rejected = entry_selector("mallory", "collect", "rejected", Some(article));
    shown_within_a_second(watcher, "a forged param", &rejected, sent).await?;
    assert!(!reason.is_empty(), "a rejection without a reason");
    assert_eq!(text_content(watcher, &format!("{rejected} [data-testid=inspector-reason]")).await?, reason);
    let decoded = text_content(watcher, &format!("{rejected} [data-testid=inspector-param]")).await?;
    assert!(decoded.contains("\n  \"userId\": \"mallory\""), "the forged param, decoded: {decoded}");

    // Paused, the list stays put and counts what it holds; resumed, nothing is lost.
    click(watcher, "[data-testid=inspector-pause]").await?;
    let (held_article, held) = served_params(channel, "grpc-paused").await?;
    for param in &held[..3] {
        report(channel, param, Verdict::Accepted).await?;
    }
    wait_until(
        watcher,
        "three held events",
        r#"return Number(document.querySelector("[data-testid=inspector-pause]").dataset.held) >= 3;"#,
    )
    .await?;
    let paused = watcher.find_all(Locator::Css("[data-testid=inspector-entry][data-user='grpc-paused']")).await?;
    assert!(paused.is_empty(), "events listed while paused");
    click(watcher, "[data-testid=inspector-pause]").await?;
    for action in ["click", "collect", "share"] {
        let selector = entry_selector("grpc-paused", action, "accepted", Some(held_article));
        wait_until(watcher, &format!("the held {action} after resume"), &exists(&selector)).await?;
    }

    // An event of the watching page's own links to its card.
    let own = batches(watcher).await?[0].cards[1].id;
    click(watcher, &format!("[data-testid=card][data-article-id='{own}'] [data-testid=act-click]")).await?;
    let own_entry = entry_selector(&watcher_user, "click", "accepted", Some(own));
    wait_until(watcher, "the page's own click", &exists(&format!("{own_entry} [data-testid=inspector-show-card]")))
        .await?;
    click(watcher, &format!("{own_entry} [data-testid=inspector-show-card]")).await?;
    wait_until(
        watcher,
        "the card to be highlighted",
        &exists(&format!("[data-testid=card][data-article-id='{own}'][data-highlighted=true]")),
    )
    .await?;
    // Another page's card is not on this one: no link.
    let foreign = watcher.find_all(Locator::Css(&format!("{click_entry} [data-testid=inspector-show-card]"))).await?;
    assert!(foreign.is_empty(), "a link to a card that is not on this page");

    // Filters (applied by the server): a user.
    let user_filter = watcher.find(Locator::Css("[data-testid=inspector-user]")).await?;
    user_filter.send_keys(&("grpc-filtered".to_owned() + &Key::Enter)).await?;
    wait_until(watcher, "the filtered stream", &inspector_state("live")).await?;
    let card = format!("[data-testid=card][data-article-id='{clicked}']");
    click(page, &format!("{card} [data-testid=act-share]")).await?;
    wait_until(page, "page A's share", &exists(&format!("{card} [data-testid=card-verdict][data-verdict=accepted]")))
        .await?;
    let (filtered_article, filtered) = served_params(channel, "grpc-filtered").await?;
    report(channel, &filtered[0], Verdict::Accepted).await?;
    let wanted = entry_selector("grpc-filtered", "click", "accepted", Some(filtered_article));
    wait_until(watcher, "the filtered user's event", &exists(&wanted)).await?;
    let users: Vec<String> = serde_json::from_value(
        watcher
            .execute(
                r#"return [...document.querySelectorAll("[data-testid=inspector-entry]")].map((e) => e.dataset.user);"#,
                vec![],
            )
            .await?,
    )?;
    assert!(users.iter().all(|user| user == "grpc-filtered"), "the user filter let through: {users:?}");

    // A verdict and an action: only the forgeries of collects (everyone's again).
    user_filter.clear().await?;
    user_filter.send_keys(&Key::Enter.to_string()).await?;
    watcher.find(Locator::Css("[data-testid=inspector-verdict-filter]")).await?.select_by_value("rejected").await?;
    watcher.find(Locator::Css("[data-testid=inspector-action]")).await?.select_by_value("collect").await?;
    wait_until(watcher, "the verdict and action filter", &inspector_state("live")).await?;
    let (late_article, late) = served_params(channel, "grpc-late").await?;
    report(channel, &late[1], Verdict::Accepted).await?;
    report(channel, &late[1].replace(r#""userId":"grpc-late""#, r#""userId":"eve""#), Verdict::Rejected).await?;
    wait_until(
        watcher,
        "the second forgery",
        &exists(&entry_selector("eve", "collect", "rejected", Some(late_article))),
    )
    .await?;
    let shown: Vec<(String, String)> = serde_json::from_value(
        watcher
            .execute(
                r#"return [...document.querySelectorAll("[data-testid=inspector-entry]")]
                    .map((e) => [e.dataset.action, e.dataset.verdict]);"#,
                vec![],
            )
            .await?,
    )?;
    assert!(shown.len() >= 2, "{shown:?}");
    assert!(shown.iter().all(|(action, verdict)| action == "collect" && verdict == "rejected"), "{shown:?}");
    watcher.find(Locator::Css("[data-testid=inspector-verdict-filter]")).await?.select_by_value("all").await?;
    watcher.find(Locator::Css("[data-testid=inspector-action]")).await?.select_by_value("all").await?;
    wait_until(watcher, "everything again", &exists(&accepted)).await?;

    // The list exports as a JSON file.
    click(watcher, "[data-testid=inspector-export]").await?;
    let href = watcher.find(Locator::Css("[data-testid=inspector-export]")).await?.attr("href").await?;
    assert!(href.is_some_and(|href| href.starts_with("data:application/json")), "the export link");
    wait_until(watcher, "the inspector's stream", &inspector_state("live")).await
}

#[tokio::test]
async fn feed_page_works_in_headless_chromium() -> TestResult {
    let root = workspace_root();
    // scripts/build-web.sh honours the same variable.
    let dist = root.join(std::env::var_os("RECO_WEB_DIST").unwrap_or_else(|| "dist".into()));
    let wasm = fs::read(built_wasm(&dist)?)?;
    let out = root.join("target/e2e");
    fs::create_dir_all(&out)?;

    let data_dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut server = start_server(port, data_dir.path(), &dist, &out)?;
    wait_for_port("reco serve", port, &mut server).await?;

    let driver_port = free_port()?;
    let mut driver = Process::spawn(
        "chromedriver",
        Command::new(CHROMEDRIVER).arg(format!("--port={driver_port}")).stdout(Stdio::null()).stderr(Stdio::null()),
    )?;
    wait_for_port("chromedriver", driver_port, &mut driver).await?;

    // A second browser (its own Chromium and profile) for the inspector, idle until it is used;
    // started first, so that its start-up does not overlap the first page load's timing.
    let (watcher, watcher_profile) = open_browser(driver_port).await?;
    let (client, profile) = open_browser(driver_port).await?;

    let restart = || start_server(port, data_dir.path(), &dist, &out);
    let result = exercise_page(&client, &watcher, port, &mut server, &restart, &out, &wasm).await;
    client.close().await?;
    watcher.close().await?;
    drop(profile);
    drop(watcher_profile);
    result
}

/// A new browser session: its own headless Chromium with a fresh profile.
async fn open_browser(driver_port: u16) -> TestResult<(Client, BrowserProfile)> {
    let profile = BrowserProfile { dir: tempfile::tempdir()? };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.dir.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await?;
    Ok((client, profile))
}

/// `reco serve` on `port` with the admin token, its log appended to `out/server.log`.
fn start_server(port: u16, data_dir: &Path, dist: &Path, out: &Path) -> TestResult<Process> {
    let log = fs::OpenOptions::new().create(true).append(true).open(out.join("server.log"))?;
    Process::spawn(
        "reco serve",
        Command::new(env!("CARGO_BIN_EXE_reco"))
            .arg("serve")
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--web-dir")
            .arg(dist)
            .arg("--admin-token")
            .arg(ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(log),
    )
}

const ADMIN_TOKEN: &str = "browser-test-admin-token";

/// Publishes one article in `channel_id` with `reco import --addr`, as a publisher would.
fn import_one(port: u16, out: &Path, id: i64, channel_id: i32) -> TestResult {
    let file = out.join("breaking.jsonl");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    fs::write(
        &file,
        format!(
            r#"{{"id":{id},"channel_id":{channel_id},"title":"突发：浏览器测试发布的文章","author":"编辑部","publish_time":{now},"keywords":["突发"]}}"#
        ) + "\n",
    )?;
    let output = Command::new(env!("CARGO_BIN_EXE_reco"))
        .arg("import")
        .arg(&file)
        .args(["--addr", &format!("http://127.0.0.1:{port}"), "--token", ADMIN_TOKEN])
        .output()?;
    if !output.status.success() {
        return Err(format!("reco import --addr failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(())
}

async fn exercise_page(
    client: &Client,
    watcher: &Client,
    port: u16,
    server: &mut Process,
    restart: &dyn Fn() -> TestResult<Process>,
    out: &Path,
    wasm: &[u8],
) -> TestResult {
    let url = format!("http://127.0.0.1:{port}/");

    // First load: a batch of cards with ids, titles and decoded, server-checked params. The
    // browser has just started (with a fresh profile): its own first-run work (two of them,
    // on 2 cores) is let settle first, so that the timing is the page's. The profile stays
    // fresh: nothing of the page is cached.
    tokio::time::sleep(BROWSER_SETTLE).await;
    client.goto(&url).await?;
    wait_for_batches(client, "the first batch", 1).await?;
    let cold = load_timing(client).await?;
    match (cold.wasm_wire, cold.wasm_decoded) {
        (Some(wire), Some(decoded)) => {
            assert!(wire > 0.0 && wire < decoded, "the wasm comes compressed: {wire} bytes for {decoded}")
        }
        other => return Err(format!("no resource timing of the wasm: {other:?}").into()),
    }
    let first = batches(client).await?;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].kind, "refresh");
    let batch_a = first[0].ids();
    assert!(batch_a.len() >= MIN_CARDS, "only {} cards: {batch_a:?}", batch_a.len());
    for card in &first[0].cards {
        assert!(card.id > 0, "{card:?}");
        assert!(!card.title.trim().is_empty(), "{card:?}");
        assert!(!card.channel_name.is_empty(), "{card:?}");
        assert!(card.param.contains("\"action\": \"click\""), "{card:?}");
        assert!(card.param.contains(&format!("\"articleId\": {}", card.id)), "{card:?}");
        assert_eq!(card.sig, "valid", "{card:?}");
    }
    // The first batch ever served has nothing before it.
    client.find(Locator::Css("[data-testid=no-more]")).await?;

    // Exposure is reported once the first cards are on screen.
    wait_until(
        client,
        "an accepted exposure in the event log",
        r#"return !!document.querySelector('[data-testid=log-entry][data-action=exposure][data-verdict=accepted]');"#,
    )
    .await?;

    // Refresh: a new batch on top, with ids never shown before.
    click(client, "[data-testid=refresh]").await?;
    wait_for_batches(client, "the refreshed batch", 2).await?;
    let refreshed = batches(client).await?;
    let batch_b = refreshed[0].ids();
    assert_eq!(refreshed[1].ids(), batch_a, "the old batch moves down");
    assert!(batch_b.len() >= MIN_CARDS);
    assert!(batch_b.iter().all(|id| !batch_a.contains(id)), "refresh repeated ids: {batch_b:?} vs {batch_a:?}");

    // A reload starts with a third batch; "load earlier" walks back through B, then A.
    client.goto(&url).await?;
    wait_for_batches(client, "the batch after reloading", 1).await?;
    let warm = load_timing(client).await?;
    let batch_c = batches(client).await?[0].ids();
    assert!(
        batch_c.iter().all(|id| !batch_a.contains(id) && !batch_b.contains(id)),
        "refresh repeated ids: {batch_c:?}"
    );
    click(client, "[data-testid=load-earlier]").await?;
    wait_for_batches(client, "the earlier batch", 2).await?;
    let paged = batches(client).await?;
    assert_eq!(paged[1].kind, "earlier");
    assert_eq!(paged[1].ids(), batch_b, "load earlier brings back batch B as served");
    click(client, "[data-testid=load-earlier]").await?;
    wait_for_batches(client, "the earliest batch", 3).await?;
    assert_eq!(batches(client).await?[2].ids(), batch_a);
    client.find(Locator::Css("[data-testid=no-more]")).await?;

    // Click: accepted by the server, and counted by it.
    let clicked = batch_c[0];
    click(client, &format!("[data-testid=card][data-article-id='{clicked}'] [data-testid=act-click]")).await?;
    wait_until(
        client,
        "the click verdict",
        &format!(
            r#"return !!document.querySelector("[data-testid=card][data-article-id='{clicked}'] [data-testid=card-verdict][data-verdict=accepted]")
                && !!document.querySelector("[data-testid=log-entry][data-action=click][data-verdict=accepted]");"#
        ),
    )
    .await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect().await?;
    let stats = TrackingClient::new(channel.clone())
        .article_stats(ArticleStatsRequest { article_ids: vec![clicked] })
        .await?
        .into_inner();
    let clicks = stats.stats.iter().find(|stats| stats.article_id == clicked).map(|stats| stats.clicks);
    assert!(clicks >= Some(1), "the server has no click for {clicked}: {stats:?}");

    // The same param again is a duplicate; the raw toggle shows the param as served.
    let card = format!("[data-testid=card][data-article-id='{clicked}']");
    click(client, &format!("{card} [data-testid=act-click]")).await?;
    wait_until(
        client,
        "the duplicate verdict",
        &format!(r#"return !!document.querySelector("{card} [data-testid=card-verdict][data-verdict=duplicate]");"#),
    )
    .await?;
    click(client, &format!("{card} [data-testid=raw-toggle]")).await?;
    let raw = client.find(Locator::Css(&format!("{card} [data-testid=param]"))).await?.text().await?;
    assert!(raw.starts_with(r#"{"action":"click","#) && !raw.contains('\n'), "raw param: {raw}");

    // The event log filtered by action.
    let filter = client.find(Locator::Css("[data-testid=log-filter]")).await?;
    filter.select_by_value("click").await?;
    wait_until(
        client,
        "the click filter",
        r#"const entries = [...document.querySelectorAll("[data-testid=log-entry]")];
        return entries.length === 2 && entries.every((entry) => entry.dataset.action === "click");"#,
    )
    .await?;
    filter.select_by_value("all").await?;

    // Not interested (不感兴趣): sent with the card's click param, accepted, and the card leaves.
    let user_id = input_value(client, "[data-testid=user-id]").await?;
    let disliked = batch_c[1];
    dislike(client, disliked).await?;
    assert!(batches(client).await?.iter().all(|batch| !batch.ids().contains(&disliked)));
    let hidden = TrackingClient::new(channel.clone())
        .explain(ExplainRequest { user_id: user_id.clone(), article_id: disliked })
        .await?
        .into_inner();
    assert!(hidden.hidden, "the server still shows the disliked {disliked} to {user_id}: {hidden:?}");

    // Explain: the variant, the sources and the ranker's top contributions, for this user.
    let explained = batch_c[2];
    let shown = explain(client, explained).await?;
    assert!(!shown.variant.trim().is_empty(), "{shown:?}");
    assert!(shown.contributions >= 1, "{shown:?}");
    // The bucket the param was served with is the user's bucket now.
    assert_eq!(shown.combine_parsed, "true", "algorithmCombine not read: {shown:?}");
    assert_eq!(shown.combine_bucket, shown.bucket, "{shown:?}");

    // Stats over the last 24 h: this test's exposures are in a bucket.
    let rows = load_stats(client).await?;
    assert!(rows.iter().any(|row| row.group == "bucket" && row.exposures > 0), "{rows:?}");
    assert!(rows.iter().all(|row| !row.key.is_empty()), "{rows:?}");

    client.execute("window.scrollTo(0, 0);", vec![]).await?;
    screenshot(client, &out.join("feed.png")).await?;

    // A user id the server refuses: the error names the field, from the BadRequest detail
    // (`grpc-status-details-bin`), not only in the message's prose.
    let input = client.find(Locator::Css("[data-testid=user-id]")).await?;
    input.clear().await?;
    input.send_keys(&("u".repeat(300) + &Key::Enter)).await?;
    wait_until(
        client,
        "the field error",
        r#"const error = document.querySelector("[data-testid=error]");
        return !!error && error.textContent.includes("user_id is 300 bytes, at most 256 are allowed (InvalidArgument; field user_id)");"#,
    )
    .await?;

    // Another user: typed in, used for the params, and remembered across reloads.
    let user = "e2e-second-user";
    let input = client.find(Locator::Css("[data-testid=user-id]")).await?;
    input.clear().await?;
    input.send_keys(&(user.to_owned() + &Key::Enter)).await?;
    let for_user = format!(
        r#"const params = [...document.querySelectorAll("[data-testid=param]")];
        return params.length > 0 && params.every((param) => param.textContent.includes('"userId": "{user}"'))
            && !document.querySelector("[data-testid=refresh]").disabled;"#
    );
    wait_until(client, "the other user's feed", &for_user).await?;
    client.goto(&url).await?;
    wait_until(client, "the other user's feed after a reload", &for_user).await?;
    assert_eq!(input_value(client, "[data-testid=user-id]").await?, user);

    // Another channel: only its articles.
    let tab = client.find(Locator::Css("[data-testid=channel-tab]:not([data-channel-id='0'])")).await?;
    let channel_id: i32 = tab.attr("data-channel-id").await?.ok_or("a channel tab without data-channel-id")?.parse()?;
    let channel_name = tab.text().await?;
    tab.click().await?;
    wait_until(
        client,
        "the channel's feed",
        &format!(
            r#"const cards = [...document.querySelectorAll("[data-testid=card]")];
            return cards.length > 0 && cards.every((card) => card.dataset.channelId === "{channel_id}")
                && !document.querySelector("[data-testid=refresh]").disabled;"#
        ),
    )
    .await?;
    let in_channel = batches(client).await?;
    assert_eq!(in_channel.len(), 1);
    for card in &in_channel[0].cards {
        assert_eq!(card.channel, channel_id, "{card:?}");
        assert_eq!(card.channel_name, channel_name, "{card:?}");
    }

    // Live catalog: an article published with `reco import --addr` shows as a banner within a
    // second, and is in the refresh the banner asks for; retracted, it leaves the page.
    wait_until(
        client,
        "the live stream",
        r#"return document.querySelector("[data-testid=live-status]")?.dataset.state === "live";"#,
    )
    .await?;
    let breaking = 990_001;
    import_one(port, out, breaking, channel_id)?;
    let published = Instant::now();
    wait_until(client, "the new-articles banner", r#"return !!document.querySelector("[data-testid=new-articles]");"#)
        .await?;
    let banner_after = published.elapsed();
    let banner = client.find(Locator::Css("[data-testid=new-articles]")).await?.text().await?;
    assert!(banner.contains("1 new article"), "banner says: {banner}");
    assert!(banner_after < Duration::from_secs(1), "the banner took {banner_after:?}");
    eprintln!("new-articles banner {banner_after:?} after reco import --addr returned");
    screenshot(client, &out.join("new-articles.png")).await?;
    click(client, "[data-testid=new-articles]").await?;
    wait_for_batches(client, "the refresh with the new article", 2).await?;
    let with_new = batches(client).await?;
    assert!(with_new[0].ids().contains(&breaking), "the refresh after the banner: {:?}", with_new[0].ids());
    assert!(client.find_all(Locator::Css("[data-testid=new-articles]")).await?.is_empty(), "the banner stays");
    let mut request =
        tonic::Request::new(RetractRequest { article_ids: vec![breaking], reason: "测试撤稿".into() });
    request.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse()?);
    CatalogClient::new(channel.clone()).retract(request).await?;
    wait_until(
        client,
        "the retracted card to leave",
        &format!(r#"return !document.querySelector("[data-testid=card][data-article-id='{breaking}']");"#),
    )
    .await?;

    // The live inspector on a second page sees this page's events and a gRPC client's.
    exercise_inspector(client, watcher, &url, &channel, user).await?;

    // The server goes away: the page says so and offers a retry.
    server.kill();
    click(client, "[data-testid=refresh]").await?;
    wait_until(
        client,
        "the error state",
        r#"const error = document.querySelector("[data-testid=error]");
        return !!error && !!error.querySelector("[data-testid=retry]");"#,
    )
    .await?;
    let message = client.find(Locator::Css("[data-testid=error]")).await?.text().await?;
    assert!(message.contains("Cannot load the feed"), "error state says: {message}");
    wait_until(
        client,
        "the live stream to notice",
        r#"return document.querySelector("[data-testid=live-status]")?.dataset.state === "down";"#,
    )
    .await?;
    wait_until(watcher, "the inspector to notice", &inspector_state("down")).await?;
    let down = client.find(Locator::Css("[data-testid=inspector-status]")).await?.text().await?;
    assert!(down.contains("disconnected") && down.contains("reconnecting"), "the inspector says: {down}");
    screenshot(client, &out.join("error.png")).await?;

    // It comes back: the push stream reconnects on its own.
    *server = restart()?;
    wait_for_port("reco serve", port, server).await?;
    wait_until(
        client,
        "the live stream after the restart",
        r#"return document.querySelector("[data-testid=live-status]")?.dataset.state === "live";"#,
    )
    .await?;
    // So does the inspector's event stream, and events flow again.
    wait_until(watcher, "the inspector after the restart", &inspector_state("live")).await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect().await?;
    let (_, params) = served_params(&channel, "grpc-after-restart").await?;
    let sent = Instant::now();
    report(&channel, &params[0], Verdict::Accepted).await?;
    let selector = entry_selector("grpc-after-restart", "click", "accepted", None);
    wait_until(watcher, "an event after the restart", &exists(&selector)).await?;
    eprintln!("inspector: an event after the server restart shown {:?} after it was reported", sent.elapsed());

    let gzip = gzip_len(wasm)?;
    eprintln!(
        "wasm size: {} bytes raw ({:.1} KiB), {gzip} bytes gzip ({:.1} KiB)",
        wasm.len(),
        wasm.len() as f64 / 1024.0,
        gzip as f64 / 1024.0
    );
    eprintln!("first card, fresh profile: {cold}");
    eprintln!("first card, reload: {warm}");
    Ok(())
}
