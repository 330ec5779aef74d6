//! Three `reco serve` processes on one real 3-master Redis Cluster, clients spread over them:
//! one tracking secret, the paging rules and never-repeat across replicas under concurrent
//! refreshes of the same users, an event counted once whichever replicas receive it, the same
//! `Stats` from every replica within a second, a `Publish` or `Retract` through one replica
//! served, listed and watched on the others within a second, no acknowledged event lost to a
//! kill -9, and a Redis node crashed and restarted under the replicas.

#[allow(dead_code)]
#[path = "../../reco-redis/tests/harness/mod.rs"]
mod harness;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reco_proto::seed::user_recommend_client::UserRecommendClient;
use reco_proto::seed::{ArticleResponse, UserRequest};
use reco_proto::v1::catalog_client::CatalogClient;
use reco_proto::v1::tracking_client::TrackingClient;
use reco_proto::v1::{self, ChangeKind, TrackEvent, Verdict};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_reco");
const ADMIN_TOKEN: &str = "replicas-admin-token-0123456789";

/// A `reco serve` this test started, killed (by its PID) when dropped.
struct Replica {
    port: u16,
    child: Child,
}

impl Replica {
    fn start(store: &str) -> Replica {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(BIN)
            .args(["serve", "--store", store, "--addr", &format!("127.0.0.1:{port}"), "--follow-ms", "100"])
            .args(["--demo-articles", "600", "--checkpoint-secs", "0", "--admin-token", ADMIN_TOKEN])
            .env("RECO_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start reco serve");
        Replica { port, child }
    }

    async fn connect(&mut self) -> Clients {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(channel) =
                Channel::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap().connect().await
            {
                return Clients {
                    feed: UserRecommendClient::new(channel.clone()),
                    tracking: TrackingClient::new(channel.clone()),
                    catalog: CatalogClient::new(channel),
                };
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("reco serve on port {} exited before listening: {status}", self.port);
            }
            assert!(Instant::now() < deadline, "reco serve on port {} is not listening after 60 s", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill_9();
    }
}

#[derive(Clone)]
struct Clients {
    feed: UserRecommendClient<Channel>,
    tracking: TrackingClient<Channel>,
    catalog: CatalogClient<Channel>,
}

impl Clients {
    async fn feed(&mut self, user: &str, time_stamp: i64) -> ArticleResponse {
        let req = UserRequest { user_id: user.into(), channel_id: 0, article_num: 10, time_stamp };
        self.feed.user_recommend(req).await.expect("user_recommend").into_inner()
    }

    async fn report(&mut self, params: &[&str]) -> Vec<Verdict> {
        let events = params
            .iter()
            .map(|p| TrackEvent { param: (*p).into(), action_time: 0, read_duration_ms: 0, dislike: false })
            .collect();
        let got = self.tracking.report(v1::ReportRequest { events }).await.expect("report").into_inner();
        got.results.iter().map(|r| r.verdict()).collect()
    }

    async fn feed_channel(&mut self, user: &str, channel_id: i32, time_stamp: i64) -> Vec<i64> {
        let req = UserRequest { user_id: user.into(), channel_id, article_num: 10, time_stamp };
        let answer = self.feed.user_recommend(req).await.expect("user_recommend").into_inner();
        answer.recommends.iter().map(|r| r.article_id).collect()
    }

    async fn article(&mut self, id: i64) -> Option<v1::ArticleInfo> {
        let req = v1::ArticlesRequest { article_ids: vec![id] };
        self.catalog.articles(req).await.expect("articles").into_inner().articles.pop()
    }

    fn admin<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
        request
    }

    async fn stats(&mut self, around: i64) -> v1::StatsResponse {
        let req = v1::StatsRequest { from_ms: around - 3_600_000, to_ms: around + 3_600_000 };
        self.tracking.stats(req).await.expect("stats").into_inner()
    }
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn three_replicas_on_a_redis_cluster_act_as_one_service() {
    harness::bounded(Duration::from_secs(240), || {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(scenario());
    });
}

async fn scenario() {
    let cluster = harness::Cluster::start();
    let mut replicas: Vec<Replica> = (0..3).map(|_| Replica::start(&cluster.url())).collect();
    let mut clients = Vec::new();
    for r in &mut replicas {
        clients.push(r.connect().await);
    }
    let start = now_ms();

    // Concurrent refreshes of the same users, each sent to a replica picked by the request, in
    // four waves of three: within a wave the requests race (an older time_stamp that loses to
    // a newer one is a history read), and the newest of each wave always refreshes.
    let users: [&'static str; 3] = ["ann", "bo", "cy"];
    const WAVES: i64 = 4;
    let mut answers: BTreeMap<&str, Vec<(i64, ArticleResponse)>> = BTreeMap::new();
    for wave in 0..WAVES {
        let mut tasks = Vec::new();
        for (u, user) in users.into_iter().enumerate() {
            for k in 3 * wave..3 * wave + 3 {
                let mut c = clients[(u + k as usize * 7) % 3].clone();
                let time = start + k;
                tasks.push(tokio::spawn(async move { (user, time, c.feed(user, time).await) }));
            }
        }
        for t in tasks {
            let (user, time, answer) = t.await.unwrap();
            answers.entry(user).or_default().push((time, answer));
        }
    }
    for (user, mut got) in answers {
        got.sort_by_key(|(t, _)| *t);
        for wave in 0..WAVES {
            let newest = &got[(3 * wave + 2) as usize];
            assert!(!newest.1.exposure.is_empty(), "{user}: the newest request of wave {wave} refreshes");
        }
        let refreshed: Vec<&(i64, ArticleResponse)> = got.iter().filter(|(_, a)| !a.exposure.is_empty()).collect();
        let mut seen = HashSet::new();
        for (t, a) in &refreshed {
            assert_eq!(a.recommends.len(), 10, "{user} at {t}");
            for card in &a.recommends {
                assert!(seen.insert(card.article_id), "{user}: article {} served twice", card.article_id);
            }
        }
        // History from every replica: exactly the refreshed batches, newest first, each
        // answer's time_stamp pointing at the one before.
        for c in &mut clients {
            let mut at = refreshed.last().unwrap().0;
            let mut walked = Vec::new();
            while at != 0 {
                let page = c.feed(user, at).await;
                assert!(page.exposure.is_empty(), "{user}: a read at or before the newest batch is history");
                walked.push(page.recommends.iter().map(|r| r.article_id).collect::<Vec<_>>());
                at = page.time_stamp;
            }
            let want: Vec<Vec<i64>> =
                refreshed.iter().rev().map(|(_, a)| a.recommends.iter().map(|r| r.article_id).collect()).collect();
            assert_eq!(walked, want, "{user}: history read through every replica");
        }
    }

    // One param, sent to all three replicas at once: one event.
    let r = clients[0].feed("dee", start + 5).await;
    let click = r.recommends[1].track.as_ref().unwrap().click.clone();
    let mut sends = Vec::new();
    for c in &clients {
        let (mut c, click) = (c.clone(), click.clone());
        sends.push(tokio::spawn(async move { c.report(&[&click]).await[0] }));
    }
    let mut verdicts = Vec::new();
    for s in sends {
        verdicts.push(s.await.unwrap());
    }
    verdicts.sort_by_key(|v| *v as i32);
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Duplicate, Verdict::Duplicate], "one event across replicas");
    // The params one replica minted are verified by the others: one secret.
    assert_eq!(clients[2].report(&[&r.exposure]).await, [Verdict::Accepted]);

    // Every replica counts the same events within a second.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let a = clients[0].stats(start).await;
        let (b, c) = (clients[1].stats(start).await, clients[2].stats(start).await);
        if !a.by_bucket.is_empty() && a == b && b == c {
            break;
        }
        assert!(Instant::now() < deadline, "replicas' Stats differ after 1 s:\n{a:?}\n{b:?}\n{c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    catalog_changes_reach_every_replica(&mut clients, start).await;
    events_reach_every_replicas_inspector(&mut clients, start).await;

    // kill -9 of a replica while it acknowledges events: each acknowledged one is stored
    // (another replica then answers DUPLICATE for it).
    let mut acknowledged = Vec::new();
    let mut victim = clients[2].clone();
    for k in 0..6 {
        let r = victim.feed(&format!("eve{k}"), start + 10).await;
        let params: Vec<String> = std::iter::once(r.exposure.clone())
            .chain(r.recommends.iter().map(|c| c.track.as_ref().unwrap().click.clone()))
            .collect();
        if k == 5 {
            // The last report races the kill: what it acknowledged counts, what failed does not.
            let report = tokio::spawn(async move {
                let refs: Vec<&str> = params.iter().map(String::as_str).collect();
                (victim.report(&refs).await, params)
            });
            replicas[2].kill_9();
            if let Ok((verdicts, params)) = report.await {
                acknowledged.extend(params.into_iter().zip(verdicts).filter(|(_, v)| *v == Verdict::Accepted));
            }
            break;
        }
        let refs: Vec<&str> = params.iter().map(String::as_str).collect();
        let verdicts = victim.report(&refs).await;
        assert!(verdicts.iter().all(|v| *v == Verdict::Accepted), "{verdicts:?}");
        acknowledged.extend(params.into_iter().zip(verdicts));
    }
    assert!(acknowledged.len() >= 5 * 11, "{} acknowledged", acknowledged.len());
    let replayed: Vec<&str> = acknowledged.iter().map(|(p, _)| p.as_str()).collect();
    for chunk in replayed.chunks(100) {
        let verdicts = clients[0].report(chunk).await;
        assert!(verdicts.iter().all(|v| *v == Verdict::Duplicate), "an acknowledged event was lost: {verdicts:?}");
    }

    // A Redis node crashes under the two replicas left and comes back on its files: both
    // serve again by themselves, with every acknowledged event still there.
    let mut cluster = cluster;
    cluster.nodes[1].crash();
    cluster.nodes[1].restart();
    cluster.wait_ok();
    for (i, c) in clients.iter_mut().take(2).enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let req = UserRequest {
                user_id: format!("node-restart-{i}"),
                channel_id: 0,
                article_num: 10,
                time_stamp: now_ms(),
            };
            match c.feed.user_recommend(req).await {
                Ok(answer) if !answer.get_ref().exposure.is_empty() => break,
                Ok(answer) => panic!("a new user's first request is a refresh: {:?}", answer.into_inner()),
                Err(status) => {
                    assert!(
                        Instant::now() < deadline,
                        "replica {i} not serving 30 s after the node came back: {status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    for chunk in replayed.chunks(100) {
        let verdicts = clients[1].report(chunk).await;
        assert!(verdicts.iter().all(|v| *v == Verdict::Duplicate), "lost to the node's restart: {verdicts:?}");
    }
    drop(cluster);
}

/// A click reported to replica 0 shows in the event stream of replica 2 within a second, as
/// accepted by another replica.
async fn events_reach_every_replicas_inspector(clients: &mut [Clients], start: i64) {
    let only_gus = v1::EventWatchRequest { user_id: "gus".into(), ..Default::default() };
    let mut watch = clients[2].tracking.watch(only_gus).await.expect("watch").into_inner();
    let r = clients[0].feed("gus", start + 30).await;
    let click = r.recommends[4].track.as_ref().unwrap().click.clone();
    assert_eq!(clients[0].report(&[&click]).await, [Verdict::Accepted]);
    let seen = tokio::time::timeout(Duration::from_secs(1), watch.message()).await;
    let seen = seen.expect("an event within 1 s").unwrap().expect("an event");
    assert_eq!((seen.verdict(), seen.action.as_str(), seen.remote), (Verdict::Accepted, "click", true));
    assert_eq!((seen.article_ids, seen.position), (vec![r.recommends[4].article_id], 4));
}

/// A publish through replica 0 is listed, watched and served by the others within a second;
/// a retract through replica 1 takes it out of replica 0's and 2's refreshes as fast.
async fn catalog_changes_reach_every_replica(clients: &mut [Clients], start: i64) {
    let mut watch = clients[2]
        .catalog
        .watch(v1::WatchRequest { channel_ids: vec![7], since: 0 })
        .await
        .expect("watch")
        .into_inner();
    let subscribed = watch.message().await.unwrap().expect("the first message");
    assert_eq!(subscribed.kind(), ChangeKind::Subscribed);

    let id = 9_000_001;
    let article = v1::ArticleInfo {
        article_id: id,
        channel_id: 7,
        title: "Replicas agree on the news".into(),
        author: "desk".into(),
        publish_time: now_ms(),
        keywords: vec!["replicas".into()],
        ..Default::default()
    };
    let published = clients[0].catalog.publish(Clients::admin(v1::PublishRequest { articles: vec![article] })).await;
    assert_eq!(published.expect("publish").into_inner().created, 1);

    // The newest article of its channel: within a second every replica serves it to a new
    // reader of that channel (a replica lists it at once: Catalog.Articles falls back to the
    // store, so the refresh is what tells whether its catalog has it).
    let deadline = Instant::now() + Duration::from_secs(1);
    for (i, c) in clients.iter_mut().enumerate() {
        for attempt in 0.. {
            let served = c.feed_channel(&format!("reader-{i}-{attempt}"), 7, start + 20).await;
            if served.contains(&id) {
                break;
            }
            assert!(Instant::now() < deadline, "replica {i} does not serve article {id} 1 s after the publish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(c.article(id).await.map(|a| a.title), Some("Replicas agree on the news".to_owned()));
    }
    let change = tokio::time::timeout(Duration::from_secs(1), watch.message()).await;
    let change = change.expect("a change within 1 s").unwrap().expect("a change");
    assert_eq!((change.kind(), change.article.map(|a| a.article_id)), (ChangeKind::Published, Some(id)));

    let retracted = clients[1]
        .catalog
        .retract(Clients::admin(v1::RetractRequest { article_ids: vec![id], reason: "unverified".into() }))
        .await;
    assert_eq!(retracted.expect("retract").into_inner().results.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(1);
    for (i, c) in clients.iter_mut().enumerate() {
        while !c.article(id).await.is_some_and(|a| a.retracted) {
            assert!(Instant::now() < deadline, "replica {i} still lists {id} as live 1 s after the retract");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let served = c.feed_channel(&format!("late-reader-{i}"), 7, start + 21).await;
        assert!(!served.contains(&id), "replica {i} serves a retracted article: {served:?}");
    }
    let change = tokio::time::timeout(Duration::from_secs(1), watch.message()).await;
    let change = change.expect("a change within 1 s").unwrap().expect("a change");
    assert_eq!((change.kind(), change.article.map(|a| a.retracted)), (ChangeKind::Retracted, Some(true)));
}

#[test]
fn a_replica_that_loses_redis_answers_unavailable_and_recovers_by_itself() {
    harness::bounded(Duration::from_secs(180), || {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(redis_goes_away());
    });
}

async fn redis_goes_away() {
    let mut redis = harness::server();
    let mut replica = Replica::start(&redis.url());
    let mut c = replica.connect().await;
    let start = now_ms();
    let r = c.feed("fay", start).await;
    let click = r.recommends[0].track.as_ref().unwrap().click.clone();
    assert_eq!(c.report(&[&click]).await, [Verdict::Accepted]);

    redis.crash();
    let req = UserRequest { user_id: "fay".into(), channel_id: 0, article_num: 10, time_stamp: start + 1 };
    let status = c.feed.user_recommend(req).await.expect_err("no store, no refresh");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("redis"), "the message says what is missing: {}", status.message());
    assert!(replica.child.try_wait().unwrap().is_none(), "the replica keeps running without its store");
    let port = replica.port;
    let (status, answer) = tokio::task::spawn_blocking(move || http_get(port, "/healthz")).await.unwrap();
    assert_eq!(status, 503, "/healthz says the store is gone: {answer}");
    assert!(answer.contains("the store"), "and names it: {answer}");

    // Back on its files: the replica recovers by itself, with what was acknowledged before.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = UserRequest { user_id: "fay".into(), channel_id: 0, article_num: 10, time_stamp: start + 2 };
        match c.feed.user_recommend(req).await {
            Ok(answer) => {
                assert!(!answer.into_inner().exposure.is_empty(), "a refresh again");
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "no recovery 30 s after Redis came back: {status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(c.report(&[&click]).await, [Verdict::Duplicate], "the acknowledged click survived the crash");
    let (status, answer) = tokio::task::spawn_blocking(move || http_get(port, "/healthz")).await.unwrap();
    assert_eq!(status, 200, "healthy again: {answer}");
    let history = c.feed("fay", start).await;
    assert_eq!(history.recommends, r.recommends, "and so did the batch");
}
