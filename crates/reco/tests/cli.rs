//! The `reco` binary as a user runs it: serve, restart, crash, import, the seed's clients.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reco_proto::seed::user_recommend_client::UserRecommendClient;
use reco_proto::seed::{ArticleResponse, UserRequest};
use reco_proto::v1::catalog_client::CatalogClient;
use reco_proto::v1::tracking_client::TrackingClient;
use reco_proto::v1::{self, TrackEvent, Verdict};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_reco");

/// A `reco serve` child process, killed (by PID) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    fn start_with(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(data_dir, args, &[])
    }

    fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(BIN)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .env("RECO_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "reco serve did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.unwrap()
    }

    fn signal(&mut self, signal: &str) {
        let ok = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {signal} failed");
    }

    /// SIGTERM, and the exit status of the graceful shutdown.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.child.wait().unwrap()
    }

    fn kill_9(mut self) {
        self.signal("-KILL");
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn req(user: &str, channel: i32, num: i32, t: i64) -> UserRequest {
    UserRequest { user_id: user.into(), channel_id: channel, article_num: num, time_stamp: t }
}

fn ids(r: &ArticleResponse) -> Vec<i64> {
    r.recommends.iter().map(|a| a.article_id).collect()
}

fn ev(param: &str, read_ms: i64) -> TrackEvent {
    TrackEvent { param: param.into(), action_time: 0, read_duration_ms: read_ms, dislike: false }
}

async fn report(server: &Server, events: Vec<TrackEvent>) -> Vec<Verdict> {
    let mut t = TrackingClient::new(server.channel().await);
    t.report(v1::ReportRequest { events }).await.unwrap().into_inner().results.iter().map(|r| r.verdict()).collect()
}

async fn stats(server: &Server, ids: Vec<i64>) -> Vec<v1::ArticleStats> {
    let mut t = TrackingClient::new(server.channel().await);
    t.article_stats(v1::ArticleStatsRequest { article_ids: ids }).await.unwrap().into_inner().stats
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[tokio::test]
async fn restart_keeps_history_read_sets_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut feed = UserRecommendClient::new(server.channel().await);
    let t = now_ms();
    let first = feed.user_recommend(req("r", 18, 10, t)).await.unwrap().into_inner();
    let second = feed.user_recommend(req("r", 18, 10, t + 1)).await.unwrap().into_inner();
    let read = first.recommends[0].clone();
    let click = second.recommends[3].clone();
    let verdicts = report(
        &server,
        vec![ev(&read.track.as_ref().unwrap().read, 30_000), ev(&click.track.as_ref().unwrap().click, 0)],
    )
    .await;
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Accepted]);
    let before = stats(&server, vec![read.article_id, click.article_id]).await;
    assert!(server.terminate().success(), "graceful shutdown exits 0");

    let server = Server::start(dir.path());
    let mut feed = UserRecommendClient::new(server.channel().await);
    let again = feed.user_recommend(req("r", 18, 10, t + 1)).await.unwrap().into_inner();
    assert_eq!(again.recommends, second.recommends, "history survives a restart, params included");
    assert_eq!(again.time_stamp, t);
    let older = feed.user_recommend(req("r", 18, 10, again.time_stamp)).await.unwrap().into_inner();
    assert_eq!(older.recommends, first.recommends);
    let after = stats(&server, vec![read.article_id, click.article_id]).await;
    for (b, a) in before.iter().zip(&after) {
        // Popularity decays with time (6 h half-life): only a few seconds passed.
        assert!(a.popularity <= b.popularity && a.popularity > 0.99 * b.popularity, "{b:?} -> {a:?}");
        let without_popularity = |s: &v1::ArticleStats| v1::ArticleStats { popularity: 0.0, ..*s };
        assert_eq!(without_popularity(b), without_popularity(a), "counters survive a restart");
    }
    assert_eq!(report(&server, vec![ev(&click.track.unwrap().click, 0)]).await, [Verdict::Duplicate]);
    // Never repeat across the restart, and the read article stays out of 推荐 too.
    let next = feed.user_recommend(req("r", 18, 50, t + 2)).await.unwrap().into_inner();
    assert!(ids(&next).iter().all(|id| !ids(&first).contains(id) && !ids(&second).contains(id)));
    let all = feed.user_recommend(req("r", 0, 100, t + 3)).await.unwrap().into_inner();
    assert!(!ids(&all).contains(&read.article_id), "a read article never comes back");
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut feed = UserRecommendClient::new(server.channel().await);
    let batch = feed.user_recommend(req("k", 0, 20, now_ms())).await.unwrap().into_inner();
    let clicks: Vec<String> = batch.recommends.iter().map(|a| a.track.as_ref().unwrap().click.clone()).collect();
    for click in &clicks {
        assert_eq!(report(&server, vec![ev(click, 0)]).await, [Verdict::Accepted]);
    }
    server.kill_9();

    let server = Server::start(dir.path());
    let counted = stats(&server, ids(&batch)).await;
    assert!(counted.iter().all(|s| s.clicks == 1), "{counted:?}");
    let replays = report(&server, clicks.iter().map(|c| ev(c, 0)).collect()).await;
    assert!(replays.iter().all(|v| *v == Verdict::Duplicate), "{replays:?}");
}

#[tokio::test]
async fn variants_and_checkpoints_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), &["--variants", "a:ranker=on;b:ranker=off,explore=0", "--checkpoint-secs", "1"]);
    let mut feed = UserRecommendClient::new(server.channel().await);
    let mut buckets = std::collections::BTreeSet::new();
    for user in 0..20 {
        let batch = feed.user_recommend(req(&format!("v{user}"), 0, 3, now_ms())).await.unwrap().into_inner();
        let payload: serde_json::Value = serde_json::from_str(&batch.exposure).unwrap();
        buckets.insert(payload["algorithmCombine"].as_str().unwrap().to_owned());
        assert_eq!(report(&server, vec![ev(&batch.exposure, 0)]).await, [Verdict::Accepted]);
    }
    assert_eq!(buckets.into_iter().collect::<Vec<_>>(), ["v2.b0", "v2.b1"], "two variants, two buckets");
    drop(feed);
    assert!(server.terminate().success(), "the shutdown checkpoint and flush succeed");

    // Bad variants are refused at start-up, before the data dir is touched.
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    for (flag, env, needle) in [
        (Some("main:ranker=maybe"), None, "unknown option \"ranker=maybe\""),
        (Some("x:explore=2"), None, "explore must be a number in 0..=1"),
        (None, Some("a;a"), "variant a is listed twice"),
        (Some(""), None, "no variant given"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"]).arg(&data).env("RECO_LOG", "warn");
        if let Some(flag) = flag {
            cmd.args(["--variants", flag]);
        }
        if let Some(env) = env {
            cmd.env("RECO_VARIANTS", env);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag:?} {env:?}");
        assert!(stderr.contains("--variants") && stderr.contains(needle), "{flag:?} {env:?}: {stderr}");
    }
    assert!(!data.exists(), "nothing was opened");
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN).args(args).arg("--data-dir").arg(dir).env("RECO_LOG", "warn").output().unwrap()
}

#[tokio::test]
async fn import_loads_good_lines_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("articles.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, r#"{{"id":101,"channel_id":18,"title":"Python 3.14 新特性","author":"张伟","publish_time":1763900000000,"keywords":["python"]}}"#).unwrap();
    writeln!(f, r#"{{"id":102,"channel_id":18,"title":"missing author"}}"#).unwrap();
    writeln!(f, r#"{{"id":103,"channel_id":77,"title":"t","author":"a","publish_time":1}}"#).unwrap();
    writeln!(
        f,
        r#"{{"id":104,"channel_id":19,"title":"JVM 调优","author":"李娜","publish_time":1763900000001,"keywords":[]}}"#
    )
    .unwrap();
    drop(f);
    let data = dir.path().join("data");
    let out = run(&["import", file.to_str().unwrap()], &data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a rejected line fails the import: {stderr}");
    assert!(stdout.contains("imported 2 articles, rejected 2 lines"), "{stdout}");
    assert!(stderr.contains("2 lines of"), "{stderr}");
    assert!(stderr.contains("articles.jsonl:2: rejected: missing field `author`"), "{stderr}");
    assert!(stderr.contains("articles.jsonl:3: rejected: unknown channel_id 77"), "{stderr}");

    let server = Server::start(&data);
    let mut catalog = CatalogClient::new(server.channel().await);
    let got = catalog.articles(v1::ArticlesRequest { article_ids: vec![101, 104, 1] }).await.unwrap().into_inner();
    assert_eq!(got.articles.iter().map(|a| a.title.as_str()).collect::<Vec<_>>(), ["Python 3.14 新特性", "JVM 调优"]);
    assert_eq!(got.missing_ids, vec![1], "an imported catalog replaces the demo one");

    // While the server holds the data dir, import refuses it with a clear message.
    let busy = run(&["import", file.to_str().unwrap()], &data);
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    drop(server);

    let missing = run(&["import", "/nonexistent/file.jsonl"], &data);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open /nonexistent/file.jsonl"));
}

#[tokio::test]
async fn import_into_a_running_server_publishes_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = "import-test-token-0123456789";
    let server = Server::start_with(&data, &["--admin-token", token]);
    let file = dir.path().join("news.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    let now = now_ms();
    for i in 0..2_500 {
        let channel = 1 + i % 25;
        match i {
            7 => writeln!(f, "{{not json").unwrap(),
            8 => writeln!(f).unwrap(),
            1_203 => writeln!(f, r#"{{"id":{},"channel_id":18,"title":"t","author":"a","publish_time":{}}}"#, 700_000 + i, now + 86_400_000).unwrap(),
            _ => writeln!(
                f,
                r#"{{"id":{},"channel_id":{channel},"title":"快讯 {i}","author":"编辑","publish_time":{now},"keywords":["快讯"]}}"#,
                700_000 + i
            )
            .unwrap(),
        }
    }
    drop(f);
    let import =
        |args: &[&str]| Command::new(BIN).arg("import").arg(&file).args(args).env("RECO_LOG", "warn").output().unwrap();
    let out = import(&["--addr", &server.url(), "--token", token, "--batch", "1000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "two rejected lines fail the import: {stdout} {stderr}");
    assert!(stderr.contains("news.jsonl:8: rejected: key must be a string"), "{stderr}");
    assert!(stderr.contains("news.jsonl:1204: rejected: publish_time"), "{stderr}");
    assert!(stderr.contains("articles/s"), "progress lines: {stderr}");
    assert!(stdout.contains("published 2497 articles (created 2497, updated 0), rejected 2 lines"), "{stdout}");

    // Acknowledged means durable: kill -9 right away, and everything is there after a restart.
    server.kill_9();
    let server = Server::start_with(&data, &["--admin-token", token]);
    let mut catalog = CatalogClient::new(server.channel().await);
    let (mut found, mut missing) = (0, Vec::new());
    for from in (700_000..702_500).step_by(1000) {
        let asked: Vec<i64> = (from..(from + 1000).min(702_500)).collect();
        let got = catalog.articles(v1::ArticlesRequest { article_ids: asked }).await.unwrap().into_inner();
        found += got.articles.len();
        missing.extend(got.missing_ids);
    }
    assert_eq!(found, 2_497);
    assert_eq!(missing, [700_007, 700_008, 701_203]);

    // Publishing again updates; a wrong token fails before anything is sent.
    let again = import(&["--addr", &server.url(), "--token", token]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("created 0, updated 2497"));
    let wrong = import(&["--addr", &server.url(), "--token", "not-the-token-0123456789"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("PermissionDenied"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

#[tokio::test]
async fn recommend_prints_like_the_seed_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = Command::new(BIN)
        .args(["recommend", "--addr", &server.url(), "--user", "1", "--channel", "1", "--num", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(stdout.starts_with("ret=exposure: \"{\\\"action\\\":\\\"exposure\\\""), "{stdout}");
    assert_eq!(stdout.matches("recommends {").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("    click: ").count(), 3);
    let bad = Command::new(BIN).args(["recommend", "--addr", &server.url(), "--num", "0"]).output().unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("InvalidArgument") && stderr.contains("article_num must be in 1..=100, got 0"), "{stderr}");
}

/// The seed tutorial's grpcio client, generated from `proto/reco.proto` by grpcio-tools and
/// unchanged but for the address, talks to reco.
#[tokio::test]
async fn seed_python_grpcio_client_works_unchanged() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let stubs = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(workspace_root().join("proto"))
        .arg(format!("--python_out={}", dir.path().display()))
        .arg(format!("--grpc_python_out={}", dir.path().display()))
        .arg("reco.proto")
        .output()
        .unwrap();
    assert!(stubs.status.success(), "{}", String::from_utf8_lossy(&stubs.stderr));

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let client = SEED_CLIENT.replace("127.0.0.1:8888", &format!("127.0.0.1:{}", server.port));
    std::fs::write(dir.path().join("client.py"), client).unwrap();
    let out = Command::new(&python).arg("client.py").current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ret=exposure: "), "{stdout}");
    assert_eq!(stdout.matches("recommends {").count(), 10, "{stdout}");
    assert!(
        stdout.contains("article_id: ") && stdout.contains("click: \"{\\\"action\\\": ")
            || stdout.contains("click: \"{\\\"action\\\":\\\"click\\\""),
        "{stdout}"
    );
}

/// The Python with grpcio, grpcio-tools, grpcio-reflection and grpcio-status: `RECO_TEST_PYTHON`,
/// else `target/py-venv` (which scripts/test.sh makes). Missing, it fails the test.
fn python() -> PathBuf {
    let python = std::env::var("RECO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/py-venv/bin/python"));
    let probe = Command::new(&python).args(["-c", "import grpc, grpc_tools, grpc_reflection, grpc_status"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} lacks grpcio, grpcio-tools, grpcio-reflection or grpcio-status: run scripts/test.sh (it makes \
         target/py-venv) or set RECO_TEST_PYTHON",
        python.display()
    );
    python
}

/// Python's grpcio, as third-party clients use it: requests compressed with gzip; reflection
/// v1alpha (grpcio-reflection's client) listing and describing the services, then a call
/// built from the descriptors alone; an unknown service; and the `google.rpc.BadRequest` of
/// an INVALID_ARGUMENT, decoded by grpcio-status with the public googleapis protos only.
#[tokio::test]
async fn python_grpcio_clients_compress_reflect_and_read_error_details() {
    let python = python();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = Command::new(&python)
        .args(["-c", PYTHON_CLIENTS, &format!("127.0.0.1:{}", server.port)])
        .current_dir(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = |key: &str| {
        stdout.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key:?} in {stdout}")).trim()
    };
    assert_eq!(
        line("services:"),
        "UserRecommend grpc.reflection.v1alpha.ServerReflection reco.v1.Catalog reco.v1.Tracking"
    );
    assert_eq!(line("method:"), "UserRecommend.user_recommend UserRequest ArticleResponse");
    assert_eq!(line("gzip:"), "10 articles, 10 tracked");
    assert_eq!(line("plain:"), "5 articles");
    assert!(line("unknown:").starts_with("StatusCode.UNIMPLEMENTED no service here serves /Foo/bar"), "{stdout}");
    assert_eq!(line("bad_request:"), "StatusCode.INVALID_ARGUMENT article_num: article_num must be in 1..=100, got 0");
}

/// Drives reco with nothing but grpcio, grpcio-reflection, grpcio-status and the public
/// googleapis protos: no code generated from reco's protos.
const PYTHON_CLIENTS: &str = r#"
import sys, time
import grpc
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

addr = sys.argv[1]
with grpc.insecure_channel(addr, compression=grpc.Compression.Gzip) as channel:
    reflection = ProtoReflectionDescriptorDatabase(channel)
    print('services:', ' '.join(sorted(reflection.get_services())))
    pool = descriptor_pool.DescriptorPool(reflection)
    method = pool.FindServiceByName('UserRecommend').FindMethodByName('user_recommend')
    print('method:', method.full_name, method.input_type.name, method.output_type.name)
    Request = message_factory.GetMessageClass(method.input_type)
    Response = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary('/UserRecommend/user_recommend', request_serializer=Request.SerializeToString,
                               response_deserializer=Response.FromString)
    now = round(time.time() * 1000)
    ret = call(Request(user_id='py', channel_id=0, article_num=10, time_stamp=now))
    print('gzip:', len(ret.recommends), 'articles,', sum(1 for a in ret.recommends if a.track.click), 'tracked')
    ret = call(Request(user_id='py', channel_id=1, article_num=5, time_stamp=now + 1), compression=grpc.Compression.NoCompression)
    print('plain:', len(ret.recommends), 'articles')
    try:
        channel.unary_unary('/Foo/bar')(b'')
        print('unknown: answered')
    except grpc.RpcError as e:
        print('unknown:', e.code(), e.details())
    try:
        call(Request(user_id='py', channel_id=0, article_num=0, time_stamp=now + 2))
        print('bad_request: answered')
    except grpc.RpcError as e:
        status = rpc_status.from_call(e)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for v in bad.field_violations:
                    print('bad_request:', e.code(), v.field + ':', v.description)
"#;

/// The seed tutorial's client.py, verbatim.
const SEED_CLIENT: &str = r#"import grpc
import reco_pb2
import reco_pb2_grpc
import time


def feed_articles(stub):
    # 构建rpc调用的调用参数
    user_request = reco_pb2.UserRequest()
    user_request.user_id = '1'
    user_request.channel_id = 1
    user_request.article_num = 10
    user_request.time_stamp = round(time.time()*1000)

    # 通过stub进行方法调用,并接收调用返回值
    ret = stub.user_recommend(user_request)
    print('ret={}'.format(ret))

def run():
    """
    rpc客户端调用的方法
    """
    # 使用with语句连接rpc服务器
    with grpc.insecure_channel('127.0.0.1:8888') as channel:
        # 创建调用rpc远端服务的辅助对象stub
        stub = reco_pb2_grpc.UserRecommendStub(channel)
        # 通过stub进行rpc调用
        feed_articles(stub)

if __name__ == '__main__':
    run()
"#;

/// The largest article_num the server at `server` accepts, read from its INVALID_ARGUMENT.
async fn max_article_num(server: &Server) -> String {
    let mut feed = UserRecommendClient::new(server.channel().await);
    let status = feed.user_recommend(req("layers", 0, 1000, now_ms())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let message = status.message().to_owned();
    let range = message.split("1..=").nth(1).unwrap_or_else(|| panic!("a range in {message:?}"));
    range.split(|c: char| !c.is_ascii_digit()).next().unwrap().to_owned()
}

#[tokio::test]
async fn config_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reco.toml");
    std::fs::write(&file, "max-article-num = 7\ndemo_articles = 300\ncors-origin = [\"http://localhost:*\"]\n")
        .unwrap();
    let config = file.to_str().unwrap();
    let data = dir.path().join("data");

    let from_file = Server::start_with(&data, &["--config", config]);
    assert_eq!(max_article_num(&from_file).await, "7", "the file's value over the default (100)");
    drop(from_file);

    let from_env = Server::start_with_env(&data, &[], &[("RECO_CONFIG", config), ("RECO_MAX_ARTICLE_NUM", "9")]);
    assert_eq!(max_article_num(&from_env).await, "9", "the environment over the file (RECO_CONFIG names it)");
    drop(from_env);

    let from_flag = Server::start_with(&data, &["--config", config, "--max-article-num", "11"]);
    assert_eq!(max_article_num(&from_flag).await, "11", "a flag over both");
    drop(from_flag);

    // Refused at start, naming the key and the file.
    for (text, needles) in [
        ("max-article-nums = 7\n", vec!["unknown key `max-article-nums`", "reco.toml"]),
        ("[serve]\naddr = \"x\"\n", vec!["`serve` is a section"]),
        ("max-article-num = \"many\"\n", vec!["--max-article-num", "many"]),
        ("follow-ms = 5\n", vec!["--follow-ms", "5"]),
        ("max-article-num = 7\nmax-article-num = 8\n", vec!["reco.toml is not valid TOML"]),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--config", config, "--data-dir"])
            .arg(dir.path().join("never"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} is refused");
        for needle in needles {
            assert!(stderr.contains(needle), "{text:?}: {needle:?} in {stderr}");
        }
    }
    assert!(!dir.path().join("never").exists(), "nothing was opened");
}
