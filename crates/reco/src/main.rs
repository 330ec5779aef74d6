//! `reco`: the server and its command-line tools.
//!
//! `serve` runs the service, `import` loads articles into a data dir, `recommend` is the seed
//! tutorial's client, `eval` replays MIND-format impression logs through the engine and the
//! baselines, `eval-fixture` writes a synthetic MIND-format dataset. `serve`'s config comes from
//! flags, `RECO_*` environment variables and a TOML file (`--config`), in that precedence.

mod config;
mod eval;
mod import;
mod text_format;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use reco_engine::{EngineConfig, Variant};
use reco_proto::seed::UserRequest;
use reco_proto::seed::user_recommend_client::UserRecommendClient;
use reco_redis::{RedisOptions, RedisStore};
use reco_server::ServerConfig;
use reco_store::{RedbStore, StoreConfig};

// The request path allocates many small strings (params, frames): mimalloc keeps that cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "reco", version, about = "A news-feed recommendation service (gRPC + gRPC-Web)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC, gRPC-Web and the feed page on one port.
    Serve(Box<ServeArgs>),
    /// Load or update articles from a JSON Lines file: into a stopped server's data dir, or
    /// with --addr into a running server (Catalog.Publish, needs its admin token).
    Import(import::ImportArgs),
    /// Ask a server for recommendations and print them like the seed client (`ret=...`).
    Recommend {
        #[arg(long, env = "RECO_URL", default_value = "http://127.0.0.1:8888")]
        addr: String,
        #[arg(long, default_value = "1")]
        user: String,
        #[arg(long, default_value_t = 1)]
        channel: i32,
        #[arg(long, default_value_t = 10)]
        num: i32,
        /// Request time in Unix ms (default: now, i.e. a refresh).
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Replay MIND-format impression logs in time order through the engine and the baselines
    /// (random, popularity, recent CTR, decayed CTR) and print MIND's metrics per scorer.
    Eval(eval::EvalArgs),
    /// Write a seeded synthetic MIND-format dataset (news.tsv, behaviors.tsv) with some
    /// deliberately malformed lines, for `reco eval`.
    EvalFixture(eval::FixtureArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file of these settings, one key per flag (`follow-ms = 100`): below the
    /// environment and flags, above the built-in defaults.
    #[arg(long, env = "RECO_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "RECO_ADDR", default_value = "127.0.0.1:8888")]
    addr: SocketAddr,
    /// Where the embedded database lives (the default store).
    #[arg(long, env = "RECO_DATA_DIR", default_value = "reco-data")]
    data_dir: PathBuf,
    /// A shared store instead of the data dir, for several replicas: `redis://host:port/db`
    /// (one Redis server) or `redis+cluster://host1:port1,host2:port2,...` (a Redis Cluster;
    /// any reachable nodes as seeds).
    #[arg(long, env = "RECO_STORE")]
    store: Option<String>,
    /// With a shared store, how often this replica applies the events the others logged and
    /// the catalog changes (Publish, Retract) made through them, ms.
    #[arg(long, env = "RECO_FOLLOW_MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    follow_ms: u64,
    /// The built feed page (default: ./dist when it has an index.html).
    #[arg(long, env = "RECO_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Browser origins allowed by CORS, comma-separated; `http://host:*` allows any port.
    #[arg(long, env = "RECO_CORS_ORIGINS", value_delimiter = ',', default_values = reco_server::DEFAULT_CORS)]
    cors_origin: Vec<String>,
    /// Largest article_num a request may ask for.
    #[arg(long, env = "RECO_MAX_ARTICLE_NUM", default_value_t = 100)]
    max_article_num: u32,
    /// HMAC secret for tracking params, at least 16 bytes (default: one generated on first
    /// start and kept in the data dir).
    #[arg(long, env = "RECO_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Seconds a shutdown waits for open connections before closing them.
    #[arg(long, env = "RECO_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    shutdown_grace_secs: u64,
    /// A/B variants, `;`-separated: `name:ranker=on|off,explore=0..1` (users are split among
    /// them by a hash of their id) [default: main:ranker=on,explore=0.1].
    #[arg(long, env = "RECO_VARIANTS", value_parser = parse_variants)]
    variants: Option<Variants>,
    /// Seconds between checkpoints of what the ranker learned (a restart replays only the
    /// events since the last one); 0: only at shutdown.
    #[arg(long, env = "RECO_CHECKPOINT_SECS", default_value_t = 60)]
    checkpoint_secs: u64,
    /// Articles of the built-in demo catalog, loaded when the data dir has no catalog.
    #[arg(long, env = "RECO_DEMO_ARTICLES", default_value_t = reco_engine::catalog::DEMO_SIZE)]
    demo_articles: usize,
    /// Memory budget of cached user records, MiB (least recently used users are evicted and
    /// reload from the data dir on their next request).
    #[arg(long, env = "RECO_CACHE_MIB", default_value_t = 256)]
    cache_mib: usize,
    /// redb's page cache, MiB: memory beside the record budget, filled as the data file grows.
    #[arg(long, env = "RECO_DB_CACHE_MIB", default_value_t = 64)]
    db_cache_mib: usize,
    /// Batches kept per (user, channel); older ones fall off the end of history (their
    /// articles are still never served again).
    #[arg(long, env = "RECO_MAX_BATCHES", default_value_t = reco_engine::store::DEFAULT_MAX_BATCHES)]
    max_batches: usize,
    /// How far ahead of the server's clock a request's time_stamp may be, ms.
    #[arg(long, env = "RECO_MAX_CLOCK_SKEW_MS", default_value_t = 300_000)]
    max_clock_skew_ms: i64,
    /// Longest read_duration_ms of a read event.
    #[arg(long, env = "RECO_MAX_READ_MS", default_value_t = 21_600_000)]
    max_read_ms: i64,
    /// Days after its publish_time that an article leaves every feed (and memory); the store
    /// keeps it for history and article info.
    #[arg(long, env = "RECO_MAX_ARTICLE_AGE_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    max_article_age_days: u32,
    /// Memory bound of user profiles the ranker learned, MiB (least recently active first out).
    /// Per copy of the learner: the engine keeps two (the published one and the ingest side's),
    /// as for the two bounds below.
    #[arg(long, env = "RECO_PROFILE_MIB", default_value_t = 128)]
    profile_mib: usize,
    /// Memory bound of open exposure windows (labels waiting for a click), MiB.
    #[arg(long, env = "RECO_PENDING_MIB", default_value_t = 64)]
    pending_mib: usize,
    /// Memory bound of the ranker's weight table, MiB (about 1.8M weights in 64 MiB; when
    /// full, zero and then the smallest weights are dropped first).
    #[arg(long, env = "RECO_MODEL_MIB", default_value_t = 64)]
    model_mib: usize,
    /// Memory bound of the accepted events kept in memory for the log's consumers, MiB (older
    /// ones are read back from the data dir).
    #[arg(long, env = "RECO_EVENT_TAIL_MIB", default_value_t = 16)]
    event_tail_mib: usize,
    /// The bearer token that Catalog.Publish and Catalog.Retract require (`authorization:
    /// Bearer <token>`), at least 16 characters; without it, catalog writes are off.
    #[arg(long, env = "RECO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Encodings answers may be compressed with when the client accepts them
    /// (`grpc-accept-encoding`): `gzip`, `zstd`, `gzip,zstd`, or `none`. Answers under 512
    /// bytes always go out plain; gzip and zstd requests are accepted regardless.
    #[arg(long, env = "RECO_COMPRESS", default_value = "gzip", value_parser = reco_server::parse_compression)]
    compress: Compression,
}

/// The parsed `--compress` list (not spelled `Vec`, so that clap takes the whole list as one value).
type Compression = Vec<tonic::codec::CompressionEncoding>;

/// The parsed `--variants` list (a newtype, so that clap takes the whole list as one value).
#[derive(Clone, Debug)]
struct Variants(Vec<Variant>);

fn parse_variants(text: &str) -> Result<Variants, String> {
    Variant::parse_list(text).map(Variants)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = config::apply(Cli::command(), &args)?;
    let cli = Cli::from_arg_matches(&command.get_matches_from(&args)).unwrap_or_else(|e| e.exit());
    // The offline tools print their own report: only warnings from the engine by default.
    let default_filter = match cli.command {
        Command::Eval(_) | Command::EvalFixture(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RECO_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Import(args) => import::import(&args),
        Command::Recommend { addr, user, channel, num, timestamp } => recommend(
            addr,
            UserRequest {
                user_id: user,
                channel_id: channel,
                article_num: num,
                time_stamp: timestamp.unwrap_or_else(reco_server::now_ms),
            },
        ),
        Command::Eval(args) => eval::eval(&args),
        Command::EvalFixture(args) => eval::write_fixture(&args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store_config = StoreConfig {
        cache_bytes: args.cache_mib.saturating_mul(1 << 20),
        max_batches: args.max_batches,
        db_cache_bytes: args.db_cache_mib.saturating_mul(1 << 20),
    };
    if let Some(token) = &args.admin_token
        && (token.trim().len() < 16 || token.trim() != token)
    {
        bail!("--admin-token must be at least 16 characters without surrounding spaces (it guards catalog writes)");
    }
    match args.store.clone() {
        None => {
            let store = RedbStore::open_with(&args.data_dir, store_config)?;
            let location = format!("redb at {}", args.data_dir.display());
            serve_on(store, location, std::time::Duration::ZERO, args)
        }
        Some(url) => {
            // A replayed param must be a duplicate for as long as the engine accepts it.
            let engine = EngineConfig::default();
            let accepted_ms = engine.param_max_age_ms.saturating_add(args.max_clock_skew_ms).max(0) as u64;
            let options = RedisOptions {
                max_batches: args.max_batches,
                dedup_window: std::time::Duration::from_millis(accepted_ms) + std::time::Duration::from_secs(86_400),
                ..RedisOptions::default()
            };
            let store = RedisStore::open(&url, options).with_context(|| format!("cannot open --store {url}"))?;
            let follow = std::time::Duration::from_millis(args.follow_ms);
            serve_on(store, without_password(&url), follow, args)
        }
    }
}

/// `url` for logs: a password in it (`redis://user:secret@host`) replaced by `***`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Serves over `store` (described as `location` in the log), following its event log every
/// `follow` when other processes write it too.
fn serve_on<S: reco_engine::store::Store>(
    store: S,
    location: String,
    follow: std::time::Duration,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let mut config = EngineConfig {
        max_article_num: args.max_article_num,
        max_clock_skew_ms: args.max_clock_skew_ms,
        max_read_ms: args.max_read_ms,
        max_article_age_ms: i64::from(args.max_article_age_days) * reco_engine::DAY_MS,
        event_tail_bytes: args.event_tail_mib.saturating_mul(1 << 20),
        ..EngineConfig::default()
    };
    config.learn.max_profile_bytes = args.profile_mib.saturating_mul(1 << 20);
    config.learn.max_pending_bytes = args.pending_mib.saturating_mul(1 << 20);
    config.learn.max_model_bytes = args.model_mib.saturating_mul(1 << 20);
    if let Some(Variants(variants)) = args.variants {
        config.variants = variants;
    }
    reco_server::seed_demo_catalog(&store, args.demo_articles)?;
    let engine = reco_server::open_engine(store, args.secret.as_deref().map(str::as_bytes), config)?;
    let engine = Arc::new(engine);
    let web_dir = args.web_dir.or_else(reco_server::default_web_dir);
    if let Some(dir) = &web_dir
        && !dir.join("index.html").is_file()
    {
        bail!("--web-dir {} has no index.html: build the page with scripts/build-web.sh", dir.display());
    }
    let config = ServerConfig {
        cors_origins: args.cors_origin,
        web_dir: web_dir.clone(),
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_secs),
        checkpoint_interval: std::time::Duration::from_secs(args.checkpoint_secs),
        follow_interval: follow,
        admin_token: args.admin_token,
        compression: args.compress,
        ..ServerConfig::default()
    };
    // Refuse a bad allow-list before opening the port.
    reco_server::cors_layer(&config.cors_origins).map(drop).map_err(anyhow::Error::msg)?;
    // One core (e.g. pinned with taskset): a current-thread runtime skips the work-stealing
    // scheduler's overhead; more cores get a worker each.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            articles = engine.catalog().len(),
            variants = %engine.config().variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(","),
            store = %location,
            page = %web_dir.as_ref().map_or("not built".into(), |d| d.display().to_string()),
            "reco listening on {} (gRPC, gRPC-Web, page at /)",
            reco_server::display_addr(addr)
        );
        reco_server::serve(listener, engine, &config, reco_server::shutdown_signal())
            .await
            .map_err(|e| anyhow::anyhow!(e))
    })
}

fn recommend(addr: String, request: UserRequest) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(addr.clone())
            .with_context(|| format!("bad --addr {addr}"))?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let ret = UserRecommendClient::new(channel)
            .user_recommend(request)
            .await
            .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        println!("ret={}", text_format::article_response(&ret));
        Ok(())
    })
}
