//! The same-bytes baseline: a do-nothing server of the seed contract that answers every
//! `user_recommend` with a real reco answer recorded once, so that what the RPC itself costs
//! (tonic, prost, hyper, h2, the kernel's loopback) is measured beside what reco costs, in the
//! same run, by the same load generator.
//!
//! Recording: `--from http://127.0.0.1:8888` asks a running `reco serve`, once per entry of
//! `--article-nums` (default 10 and 100), for a refresh of a new user in 推荐, then for the same
//! batch again (a history read: the params first served, no exposure). `--save FILE` writes the
//! recorded answers (length-prefixed protobuf); `--load FILE` reads them instead of `--from`.
//! Without `--addr` it records (and saves) only.
//!
//! Serving (`--addr`): each call is answered with a clone of the recorded answer of the
//! request's `article_num` (the nearest recorded one when there is none of that size), which
//! tonic encodes afresh, as it encodes reco's; `--history` answers with the history reads
//! instead of the refreshes. Same allocator (mimalloc) and same runtime choice as `reco serve`
//! (one thread when the process may use one core). Answers are the same bytes whoever asks, so
//! run `reco-load --checks basic` against it.
//!
//! ```sh
//! cargo build --release -p reco-load --example same_bytes
//! target/release/examples/same_bytes --from http://127.0.0.1:8888 --save answers.bin
//! taskset -c 0 target/release/examples/same_bytes --load answers.bin --addr 127.0.0.1:8899
//! ```

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use reco_proto::seed::{
    ArticleResponse, UserRequest,
    user_recommend_client::UserRecommendClient,
    user_recommend_server::{UserRecommend, UserRecommendServer},
};
use tonic::{Request, Response, Status, transport::Server};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One recorded pair: a refresh answer and the history read of the same batch.
#[derive(Clone, PartialEq, Message)]
struct Recorded {
    #[prost(int32, tag = "1")]
    article_num: i32,
    #[prost(message, optional, tag = "2")]
    refresh: Option<ArticleResponse>,
    #[prost(message, optional, tag = "3")]
    history: Option<ArticleResponse>,
}

#[derive(Clone, PartialEq, Message)]
struct Recording {
    #[prost(message, repeated, tag = "1")]
    answers: Vec<Recorded>,
}

struct Replay {
    /// By `article_num`, ascending.
    answers: Vec<(i32, ArticleResponse)>,
}

#[tonic::async_trait]
impl UserRecommend for Replay {
    async fn user_recommend(&self, request: Request<UserRequest>) -> Result<Response<ArticleResponse>, Status> {
        let n = request.get_ref().article_num;
        let (_, answer) = self
            .answers
            .iter()
            .min_by_key(|(k, _)| (k - n).abs())
            .ok_or_else(|| Status::internal("nothing recorded"))?;
        Ok(Response::new(answer.clone()))
    }
}

struct Args {
    from: Option<String>,
    load: Option<PathBuf>,
    save: Option<PathBuf>,
    addr: Option<std::net::SocketAddr>,
    article_nums: Vec<i32>,
    history: bool,
}

fn args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut a = Args { from: None, load: None, save: None, addr: None, article_nums: vec![10, 100], history: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--from" => a.from = Some(value()?),
            "--load" => a.load = Some(value()?.into()),
            "--save" => a.save = Some(value()?.into()),
            "--addr" => a.addr = Some(value()?.parse()?),
            "--article-nums" => {
                a.article_nums = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--history" => a.history = true,
            _ => {
                return Err(format!(
                    "unknown argument {flag:?}; usage: same_bytes (--from URL | --load FILE) [--save FILE] \
                     [--article-nums 10,100] [--addr HOST:PORT [--history]]"
                )
                .into());
            }
        }
    }
    if a.from.is_some() == a.load.is_some() {
        return Err("give one of --from URL and --load FILE".into());
    }
    Ok(a)
}

async fn record(from: String, nums: &[i32]) -> Result<Recording, Box<dyn std::error::Error>> {
    let channel = tonic::transport::Endpoint::from_shared(from)?.connect().await?;
    let mut client = UserRecommendClient::new(channel);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut answers = Vec::new();
    for &n in nums {
        // As long as the ids scripts/bench.sh gives reco-load (`r1-c16-a10-12345`): the user id
        // is in every param, so its length is part of the answer's size.
        let user_id = format!("sb-c16-a{n}-{:05}", now % 100_000);
        let req = UserRequest { user_id, channel_id: 0, article_num: n, time_stamp: now };
        let refresh = client.user_recommend(req.clone()).await?.into_inner();
        let history = client.user_recommend(req).await?.into_inner();
        if refresh.recommends.len() != n as usize || history.recommends.len() != n as usize {
            return Err(format!(
                "asked for {n} articles, got {} (refresh) and {} (history read)",
                refresh.recommends.len(),
                history.recommends.len()
            )
            .into());
        }
        answers.push(Recorded { article_num: n, refresh: Some(refresh), history: Some(history) });
    }
    Ok(Recording { answers })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?
    };
    runtime.block_on(async move {
        let recording = match (&args.from, &args.load) {
            (Some(from), _) => record(from.clone(), &args.article_nums).await?,
            (None, Some(path)) => Recording::decode(std::fs::read(path)?.as_slice())?,
            (None, None) => unreachable!("checked by args()"),
        };
        if let Some(path) = &args.save {
            std::fs::write(path, recording.encode_to_vec())?;
        }
        let mut answers = Vec::new();
        for r in recording.answers {
            let answer = if args.history { r.history } else { r.refresh };
            let answer = answer.ok_or("a recorded answer is missing")?;
            eprintln!(
                "same_bytes: article_num {} -> {} B ({})",
                r.article_num,
                answer.encoded_len(),
                if args.history { "history read" } else { "refresh" }
            );
            answers.push((r.article_num, answer));
        }
        answers.sort_by_key(|(k, _)| *k);
        if let Some(addr) = args.addr {
            Server::builder().add_service(UserRecommendServer::new(Replay { answers })).serve(addr).await?;
        }
        Ok(())
    })
}
