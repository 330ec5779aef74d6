//! `reco import`: a JSON Lines file into a stopped server's data dir, or (`--addr`) into a
//! running server through `Catalog.Publish`, in batches, with progress and per-line verdicts.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reco_engine::catalog;
use reco_engine::model::Article;
use reco_engine::store::Store;
use reco_proto::v1::catalog_client::CatalogClient;
use reco_proto::v1::{self, PublishOutcome};
use reco_store::RedbStore;
use tonic::metadata::MetadataValue;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// One article per line: {"id","channel_id","title","author","publish_time" (ms),"keywords",...}.
    file: PathBuf,
    /// The data dir of a stopped server (ignored with --addr).
    #[arg(long, env = "RECO_DATA_DIR", default_value = "reco-data")]
    data_dir: PathBuf,
    /// Publish into the running server at this URL (e.g. http://127.0.0.1:8888) instead.
    #[arg(long)]
    addr: Option<String>,
    /// The server's admin token (its --admin-token), for --addr.
    #[arg(long, env = "RECO_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Articles per Publish call, 1..=1000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    batch: u32,
}

pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    match &args.addr {
        Some(addr) => {
            let token = args
                .token
                .as_deref()
                .context("--addr needs --token (or RECO_ADMIN_TOKEN): the server's --admin-token")?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(publish(&args.file, addr, token, args.batch as usize))
        }
        None => offline(&args.file, &args.data_dir),
    }
}

fn open(file: &Path) -> anyhow::Result<(BufReader<File>, u64)> {
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata().map_or(0, |m| m.len());
    Ok((BufReader::new(f), size))
}

fn offline(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let (reader, _) = open(file)?;
    // The clock skew a server allows by default: an article may be stamped a little ahead.
    let latest = reco_server::now_ms().saturating_add(reco_engine::EngineConfig::default().max_clock_skew_ms);
    let report = catalog::parse_jsonl(reader, latest).with_context(|| format!("cannot read {}", file.display()))?;
    for (line, reason) in &report.rejected {
        eprintln!("{}:{line}: rejected: {reason}", file.display());
    }
    let store = RedbStore::open(data_dir)?;
    store.upsert_articles(&report.articles)?;
    store.flush()?;
    println!(
        "imported {} articles, rejected {} lines, into {}",
        report.articles.len(),
        report.rejected.len(),
        data_dir.display()
    );
    if !report.rejected.is_empty() {
        bail!("{} lines of {} were rejected", report.rejected.len(), file.display());
    }
    Ok(())
}

/// Counts so far, and how progress is shown: a redrawn line on a terminal, a plain line every
/// few seconds otherwise.
struct Progress {
    start: Instant,
    last: Instant,
    tty: bool,
    size: u64,
    bytes: u64,
    lines: usize,
    created: u64,
    updated: u64,
    rejected: u64,
}

impl Progress {
    fn new(size: u64) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
            size,
            bytes: 0,
            lines: 0,
            created: 0,
            updated: 0,
            rejected: 0,
        }
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let done = self.created + self.updated;
        let rate = done as f64 / secs;
        let share = if self.size == 0 { 1.0 } else { self.bytes as f64 / self.size as f64 };
        let eta = if share > 0.0 { secs * (1.0 - share) / share } else { 0.0 };
        format!(
            "{:5.1}% line {} published {done} (created {}, updated {}) rejected {} | {rate:.0} articles/s, ETA {eta:.0} s",
            share * 100.0,
            self.lines,
            self.created,
            self.updated,
            self.rejected
        )
    }

    fn show(&mut self, force: bool) {
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(2) };
        if !force && self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{}", self.line());
        } else {
            let _ = writeln!(err, "{}", self.line());
        }
    }

    /// A message on its own line (the redrawn line is cleared first).
    fn say(&self, msg: &str) {
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { writeln!(err, "\r\x1b[2K{msg}") } else { writeln!(err, "{msg}") };
    }
}

async fn publish(file: &Path, addr: &str, token: &str, batch: usize) -> anyhow::Result<()> {
    let (reader, size) = open(file)?;
    let channel = tonic::transport::Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("bad --addr {addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let mut client = CatalogClient::new(channel).max_decoding_message_size(16 << 20);
    let bearer: MetadataValue<_> =
        format!("Bearer {token}").parse().context("--token must be printable ASCII (it goes into a header)")?;
    let name = file.display().to_string();
    let mut progress = Progress::new(size);
    let mut pending: Vec<(usize, Article)> = Vec::with_capacity(batch);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {name}"))?;
        progress.bytes += line.len() as u64 + 1;
        progress.lines = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        // Checked here as the server checks it, but for the clock: the server's is the one.
        match catalog::parse_line(&line, i64::MAX) {
            Ok(a) => pending.push((i + 1, a)),
            Err(e) => {
                progress.rejected += 1;
                progress.say(&format!("{name}:{}: rejected: {e}", i + 1));
            }
        }
        if pending.len() == batch {
            send(&mut client, &bearer, &name, std::mem::take(&mut pending), &mut progress).await?;
        }
        progress.show(false);
    }
    if !pending.is_empty() {
        send(&mut client, &bearer, &name, pending, &mut progress).await?;
    }
    progress.show(true);
    if progress.tty {
        eprintln!();
    }
    let secs = progress.start.elapsed().as_secs_f64();
    let published = progress.created + progress.updated;
    println!(
        "published {published} articles (created {}, updated {}), rejected {} lines, to {addr} in {secs:.1} s ({:.0} articles/s)",
        progress.created,
        progress.updated,
        progress.rejected,
        published as f64 / secs.max(1e-3)
    );
    if progress.rejected > 0 {
        bail!("{} lines of {name} were rejected", progress.rejected);
    }
    Ok(())
}

async fn send(
    client: &mut CatalogClient<tonic::transport::Channel>,
    bearer: &MetadataValue<tonic::metadata::Ascii>,
    name: &str,
    batch: Vec<(usize, Article)>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let (lines, articles): (Vec<usize>, Vec<Article>) = batch.into_iter().unzip();
    let mut request = tonic::Request::new(v1::PublishRequest {
        articles: articles.into_iter().map(reco_server::article_info).collect(),
    });
    request.metadata_mut().insert("authorization", bearer.clone());
    let response = client
        .publish(request)
        .await
        .map_err(|s| anyhow::anyhow!("Publish failed at line {}: {:?}: {}", lines[0], s.code(), s.message()))?
        .into_inner();
    for (line, result) in lines.iter().zip(&response.results) {
        match result.outcome() {
            PublishOutcome::Created => progress.created += 1,
            PublishOutcome::Updated => progress.updated += 1,
            _ => {
                progress.rejected += 1;
                progress.say(&format!("{name}:{line}: rejected: {}", result.reason));
            }
        }
    }
    Ok(())
}
