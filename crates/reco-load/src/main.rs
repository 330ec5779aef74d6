//! `reco-load`: a closed-loop gRPC load generator for `/UserRecommend/user_recommend`.
//!
//! `--concurrency` workers each keep one request in flight over connections opened up front:
//! HTTP/2 (one per worker unless `--connections` says otherwise) or, with `--proto grpc-web`,
//! HTTP/1.1 (one per worker). Unlike h2load, which repeats one request body, every request names
//! one of many users and, in refresh mode, a `time_stamp` newer than that user's last batch in the
//! channel, so the server does its real work (rank, filter, store) on every call. Every answer is verified; the run is bounded by `--requests` and/or
//! `--duration` and always ends by itself. The last line printed is stable and greppable:
//! `rps=... p50_ms=... p90_ms=... p99_ms=... max_ms=... ok=... errors=... short=... conc=...
//! article_num=... mode=...` followed by more `key=value` pairs.

mod stats;
mod wire;
mod workload;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use prost::Message as _;
use reco_proto::seed::UserRequest;
use tokio::task::JoinSet;

use crate::{
    stats::Stats,
    wire::{Client, Compress, Proto, Transport},
    workload::{Call, Checks, Mode, Outcome, Settings, Workload},
};

#[derive(Parser, Debug)]
#[command(version, about = "Closed-loop gRPC load generator for /UserRecommend/user_recommend")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:8888")]
    addr: String,
    /// Requests in flight (closed loop: each worker sends its next request when the answer came).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections shared by the workers (default: one per worker).
    #[arg(long)]
    connections: Option<usize>,
    /// Measured requests (after warm-up); the run stops at this count or at --duration, whichever
    /// comes first.
    #[arg(long)]
    requests: Option<u64>,
    /// Measured seconds (after warm-up). Default: 10 when --requests is not given.
    #[arg(long)]
    duration: Option<f64>,
    /// Unmeasured seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Hard bound on the measured phase in seconds, whatever else is asked.
    #[arg(long, default_value_t = 300.0)]
    max_seconds: f64,
    /// UserRequest.article_num.
    #[arg(long, default_value_t = 10)]
    article_num: i32,
    /// Distinct user ids (`<user-prefix>0` .. `<user-prefix>N-1`), split between the workers.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    #[arg(long, default_value = "load-")]
    user_prefix: String,
    /// What the requests are.
    #[arg(long, value_enum, default_value_t = Mode::Refresh)]
    mode: Mode,
    /// In mixed mode, the share of requests that are refreshes.
    #[arg(long, default_value_t = 0.5)]
    refresh_ratio: f64,
    /// How strictly answers are verified (`basic` for servers with fake data, like the seed's).
    #[arg(long, value_enum, default_value_t = Checks::Full)]
    checks: Checks,
    /// Seed of the users' and channels' random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runtime threads (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-request timeout in seconds (a timeout counts as an error).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Report the CPU use of this process (the server under test) over the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Proto::Grpc)]
    proto: Proto,
    /// HTTP/2 client stack (for --proto grpc).
    #[arg(long, value_enum, default_value_t = Transport::H2)]
    transport: Transport,
    /// Message compression, `--proto grpc` only: requests are sent compressed and answers
    /// accepted compressed with it (the server compresses them when it is configured to).
    #[arg(long, value_enum, default_value_t = Compress::None)]
    compress: Compress,
    /// Print answers per second and the slowest answer of each second to stderr.
    #[arg(long)]
    progress: bool,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        let conns = self.connections();
        ensure!((1..=self.concurrency).contains(&conns), "--connections must be in 1..={}", self.concurrency);
        ensure!(
            self.proto == Proto::Grpc || conns == self.concurrency,
            "--proto grpc-web runs one request at a time per HTTP/1.1 connection: --connections must equal --concurrency"
        );
        ensure!(
            self.users >= self.concurrency,
            "--users ({}) must be at least --concurrency ({}): users are split between the workers",
            self.users,
            self.concurrency
        );
        ensure!(self.article_num >= 1, "--article-num must be at least 1");
        for (name, value) in
            [("--warmup", self.warmup), ("--max-seconds", self.max_seconds), ("--timeout", self.timeout)]
        {
            ensure!(value.is_finite() && value >= 0.0, "{name} must be a number of seconds >= 0");
        }
        ensure!(self.timeout > 0.0 && self.max_seconds > 0.0, "--timeout and --max-seconds must be > 0");
        if let Some(d) = self.duration {
            ensure!(d.is_finite() && d > 0.0, "--duration must be > 0 seconds");
        }
        ensure!(self.requests != Some(0), "--requests must be at least 1");
        ensure!((0.0..=1.0).contains(&self.refresh_ratio), "--refresh-ratio must be in 0..=1");
        ensure!(self.threads >= 1, "--threads must be at least 1");
        ensure!(
            self.proto == Proto::Grpc || self.compress == Compress::None,
            "--compress is for --proto grpc: browsers' gRPC-Web clients do not compress messages"
        );
        Ok(())
    }

    fn connections(&self) -> usize {
        self.connections.unwrap_or(self.concurrency)
    }

    /// Length of the measured phase: --duration, else 10 s without --requests, capped by --max-seconds.
    fn measured_limit(&self) -> Duration {
        let secs = match (self.duration, self.requests) {
            (Some(d), _) => d,
            (None, Some(_)) => self.max_seconds,
            (None, None) => 10.0,
        };
        Duration::from_secs_f64(secs.min(self.max_seconds))
    }
}

/// Shared by the workers: when to measure, when to stop.
struct Control {
    measure_from: Instant,
    stop_at: Instant,
    limit: Option<u64>,
    issued: AtomicU64,
    timeout: Duration,
    /// Answers (any outcome) and the slowest one in microseconds, since the last progress line.
    answered: AtomicU64,
    slowest_us: AtomicU64,
}

/// Why a request counts as an error.
enum Failure {
    Status(tonic::Status),
    Timeout,
    Wrong(&'static str),
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A verified answer: whether it was short, and its encoded size.
struct Verified {
    short: bool,
    bytes: usize,
}

/// Sends one request and verifies the answer.
async fn exchange(
    client: &mut Client,
    load: &mut Workload,
    (request, call): (UserRequest, Call),
    timeout: Duration,
) -> Result<Verified, Failure> {
    match tokio::time::timeout(timeout, client.user_recommend(request)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(status)) => Err(Failure::Status(status)),
        Ok(Ok(answer)) => match load.check(&call, &answer) {
            Outcome::Wrong(why) => Err(Failure::Wrong(why)),
            outcome => Ok(Verified { short: outcome == Outcome::Short, bytes: answer.encoded_len() }),
        },
    }
}

fn record(stats: &mut Stats, result: Result<Verified, Failure>, latency: Duration, timeout: Duration) {
    match result {
        Ok(v) => stats.ok(latency, v.short, v.bytes),
        Err(Failure::Status(status)) => {
            stats.error(&format!("{:?}", status.code()), || status.message().to_owned());
        }
        Err(Failure::Timeout) => stats.error("Timeout", || format!("no answer within {timeout:?}")),
        Err(Failure::Wrong(why)) => stats.error("WrongAnswer", || why.to_owned()),
    }
}

/// One closed-loop worker; returns what it saw while measuring and when its last measured answer came.
async fn worker(mut client: Client, mut load: Workload, control: Arc<Control>) -> (Stats, Option<Instant>) {
    let mut stats = Stats::new();
    let mut last = None;
    loop {
        let start = Instant::now();
        if start >= control.stop_at {
            break;
        }
        let measured = start >= control.measure_from;
        if measured
            && let Some(limit) = control.limit
            && control.issued.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        let next = load.next(unix_ms());
        let result = exchange(&mut client, &mut load, next, control.timeout).await;
        let done = Instant::now();
        control.answered.fetch_add(1, Ordering::Relaxed);
        control.slowest_us.fetch_max((done - start).as_micros() as u64, Ordering::Relaxed);
        if measured {
            record(&mut stats, result, done - start, control.timeout);
            last = Some(done);
        }
    }
    (stats, last)
}

/// Sends one refresh per user (unmeasured) so that history reads have batches to read.
async fn prime(mut client: Client, mut load: Workload, timeout: Duration) -> (Client, Workload, Stats) {
    let mut stats = Stats::new();
    for next in load.priming_calls(unix_ms()) {
        let start = Instant::now();
        let result = exchange(&mut client, &mut load, next, timeout).await;
        record(&mut stats, result, start.elapsed(), timeout);
    }
    load.finish_priming();
    (client, load, stats)
}

fn print_errors(what: &str, stats: &Stats) {
    for (kind, (count, message)) in &stats.error_kinds {
        eprintln!("reco-load: {what}: {count} x {kind}: {message}");
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let conc = args.concurrency;
    let mut connections = Vec::with_capacity(args.connections());
    for _ in 0..args.connections() {
        connections.push(Client::connect(&args.addr, args.proto, args.transport, args.compress).await?);
    }
    // One client per worker: HTTP/2 connections are shared round-robin, HTTP/1.1 ones are not
    // (validate() made --connections equal --concurrency for them).
    let shared: Option<Vec<Client>> = (0..conc).map(|w| connections[w % connections.len()].share()).collect();
    let clients = match shared {
        Some(shared) => shared,
        None => connections,
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let loads = (0..conc).map(|w| {
        let settings = Settings {
            mode: args.mode,
            checks: args.checks,
            article_num: args.article_num,
            refresh_ratio: args.refresh_ratio,
        };
        Workload::new(w, conc, args.users, &args.user_prefix, args.seed, settings)
    });
    let mut pairs: Vec<(Client, Workload)> = clients.into_iter().zip(loads).collect();

    if args.mode != Mode::Refresh {
        let started = Instant::now();
        let mut set = JoinSet::new();
        for (client, load) in pairs.drain(..) {
            set.spawn(prime(client, load, timeout));
        }
        let mut stats = Stats::new();
        while let Some(done) = set.join_next().await {
            let (client, load, s) = done.context("priming task failed")?;
            stats.merge(s);
            pairs.push((client, load));
        }
        print_errors("priming", &stats);
        eprintln!(
            "reco-load: primed {} users in {:.1} s ({} errors)",
            stats.ok,
            started.elapsed().as_secs_f64(),
            stats.errors
        );
        if stats.ok == 0 && args.mode == Mode::History {
            bail!("priming served no batch: nothing to read back in history mode");
        }
        if args.mode == Mode::History {
            // A worker whose every priming call failed has nothing to read.
            pairs.retain(|(_, load)| load.has_history());
        }
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let control = Arc::new(Control {
        measure_from,
        stop_at: measure_from + args.measured_limit(),
        limit: args.requests,
        issued: AtomicU64::new(0),
        timeout,
        answered: AtomicU64::new(0),
        slowest_us: AtomicU64::new(0),
    });
    let progress = args.progress.then(|| {
        let control = control.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
            for second in 1.. {
                tick.tick().await;
                let answered = control.answered.swap(0, Ordering::Relaxed);
                let slowest = control.slowest_us.swap(0, Ordering::Relaxed) as f64 / 1000.0;
                eprintln!("reco-load: t={second}s answers={answered} slowest_ms={slowest:.1}");
            }
        })
    });
    let sampler = {
        let pid = args.server_pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            (stats::own_cpu(), pid.and_then(stats::process_cpu), wire_bytes())
        })
    };
    let mut set = JoinSet::new();
    for (client, load) in pairs {
        set.spawn(worker(client, load, control.clone()));
    }
    let mut total = Stats::new();
    let mut end = measure_from;
    while let Some(done) = set.join_next().await {
        let (stats, last) = done.context("worker task failed")?;
        total.merge(stats);
        end = end.max(last.unwrap_or(end));
    }
    let (own_cpu, server_cpu, wire) = (stats::own_cpu(), args.server_pid.and_then(stats::process_cpu), wire_bytes());
    if let Some(progress) = progress {
        progress.abort();
    }
    let (own_before, server_before, wire_before) = sampler.await.context("cpu sampler failed")?;

    let secs = (end - measure_from).as_secs_f64();
    let pct = |used: Duration| if secs > 0.0 { 100.0 * used.as_secs_f64() / secs } else { 0.0 };
    let server_pct = match (server_before, server_cpu) {
        (Some(a), Some(b)) => format!("{:.0}", pct(b.saturating_sub(a))),
        _ => "NA".to_owned(),
    };
    let per_call =
        |total_: f64| if total.ok > 0 { format!("{:.0}", total_ / total.ok as f64) } else { "NA".to_owned() };
    let server_cpu_us = match (server_before, server_cpu) {
        (Some(a), Some(b)) => per_call(b.saturating_sub(a).as_secs_f64() * 1e6),
        _ => "NA".to_owned(),
    };
    // tonic's Channel opens its own connections, which are not counted.
    let (wire_in, wire_out) = match args.transport {
        Transport::Channel if args.proto == Proto::Grpc => ("NA".to_owned(), "NA".to_owned()),
        _ => (
            per_call(wire.0.saturating_sub(wire_before.0) as f64),
            per_call(wire.1.saturating_sub(wire_before.1) as f64),
        ),
    };
    print_errors("errors", &total);
    println!(
        "rps={:.0} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} ok={} errors={} short={} conc={} \
         article_num={} mode={} proto={} conns={} threads={} users={} checks={} seconds={:.2} mean_ms={:.3} \
         p999_ms={:.3} answer_bytes={:.0} tool_cpu_pct={:.0} server_cpu_pct={} compress={} wire_in_bytes={} \
         wire_out_bytes={} server_cpu_us={}",
        if secs > 0.0 { total.ok as f64 / secs } else { 0.0 },
        total.quantile_ms(0.50),
        total.quantile_ms(0.90),
        total.quantile_ms(0.99),
        total.max_ms(),
        total.ok,
        total.errors,
        total.short,
        conc,
        args.article_num,
        args.mode.name(),
        match args.proto {
            Proto::Grpc => "grpc",
            Proto::GrpcWeb => "grpc-web",
        },
        args.connections(),
        args.threads,
        args.users,
        match args.checks {
            Checks::Full => "full",
            Checks::Basic => "basic",
        },
        secs,
        total.mean_ms(),
        total.quantile_ms(0.999),
        if total.ok > 0 { total.bytes as f64 / total.ok as f64 } else { 0.0 },
        pct(own_cpu.saturating_sub(own_before)),
        server_pct,
        args.compress.name(),
        wire_in,
        wire_out,
        server_cpu_us,
    );
    Ok(total.errors == 0 && total.ok > 0)
}

/// Bytes received and sent on the counted connections so far.
fn wire_bytes() -> (u64, u64) {
    (wire::WIRE_RECEIVED.load(Ordering::Relaxed), wire::WIRE_SENT.load(Ordering::Relaxed))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("reco-load: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    };
    let result = runtime.context("cannot start the tokio runtime").and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reco-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
