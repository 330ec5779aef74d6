//! The learning loop through the real server: events change the next feed, dislikes and reads
//! hide articles, new users get a diverse feed, A/B buckets are stable, and what was learned
//! is checkpointed and survives a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Client, TWO_VARIANTS, TestServer, card_combines, checkpointed, combine, dislike, engine_config, event, ids, now_ms,
    parse_combine, read_event,
};
use reco_engine::catalog::Retraction;
use reco_engine::model::Article;
use reco_engine::store::{
    AppendOutcome, ArticleCounters, Batch, EventRecord, MemStore, Seen, Store, StoreError, UserRecord,
};
use reco_proto::v1::{ArticleInfo, Verdict};
use reco_server::ServerConfig;

fn shares_keyword(a: &ArticleInfo, b: &ArticleInfo) -> bool {
    a.keywords.iter().any(|k| b.keywords.contains(k))
}

/// Clicks and reads (long) the first card of a 推荐 batch; returns its info.
async fn engage_first_card(client: &mut Client, user: &str, t: i64) -> ArticleInfo {
    let batch = client.feed(user, 0, 10, t).await;
    let card = batch.recommends[0].clone();
    let track = card.track.unwrap();
    let results =
        client.report(vec![event(&batch.exposure), event(&track.click), read_event(&track.read, 90_000)]).await;
    assert!(results.iter().all(|r| r.verdict() == Verdict::Accepted), "{results:?}");
    client.articles(vec![card.article_id]).await.remove(0)
}

#[tokio::test]
async fn an_event_changes_the_very_next_feed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms();
    let user = "learns-fast";
    let clicked = engage_first_card(&mut client, user, t).await;

    let next = client.feed(user, 0, 10, t + 1).await;
    let infos = client.articles(ids(&next)).await;
    let personal: Vec<(&ArticleInfo, Vec<String>)> = infos
        .iter()
        .zip(card_combines(&next))
        .filter(|(_, (_, sources))| sources.iter().any(|s| s == "similar" || s == "affinity"))
        .map(|(info, (_, sources))| (info, sources))
        .collect();
    assert!(
        personal.iter().any(|(info, _)| shares_keyword(info, &clicked)),
        "no similar/affinity card shares a keyword with the clicked {:?}: {personal:?}",
        clicked.keywords
    );
    // A topic keyword (not only the channel's name, which every article of it carries).
    let topics = &clicked.keywords[..2];
    assert!(
        personal.iter().any(|(info, _)| info.keywords.iter().any(|k| topics.contains(k))),
        "no similar/affinity card on the topics {topics:?}: {personal:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn disliked_and_read_articles_never_come_back() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let user = "picky";
    let t = now_ms();
    // Served in one channel, so that only the dislike / read keeps them out of 推荐.
    let batch = client.feed(user, 7, 10, t).await;
    let disliked = batch.recommends[0].clone();
    let read = batch.recommends[1].clone();
    let (dtrack, rtrack) = (disliked.track.unwrap(), read.track.unwrap());

    let results = client
        .report(vec![
            dislike(&dtrack.click),
            dislike(&dtrack.click),
            dislike(&batch.exposure),
            read_event(&rtrack.read, 20_000),
        ])
        .await;
    let verdicts: Vec<Verdict> = results.iter().map(|r| r.verdict()).collect();
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Duplicate, Verdict::Rejected, Verdict::Accepted]);
    assert_eq!((results[0].action.as_str(), results[1].action.as_str()), ("dislike", "dislike"));
    assert_eq!(results[0].article_ids, vec![disliked.article_id]);
    assert!(results[2].reason.contains("exposure"), "{}", results[2].reason);
    // Any of the card's params carries the dislike, and it is the same event.
    assert_eq!(client.report(vec![dislike(&dtrack.share)]).await[0].verdict(), Verdict::Duplicate);

    for (id, what) in [(disliked.article_id, "disliked"), (read.article_id, "read")] {
        assert!(client.explain(user, id).await.unwrap().hidden, "the {what} article is hidden");
    }
    let mut served = BTreeSet::new();
    for i in 1..=10 {
        served.extend(ids(&client.feed(user, 0, 100, t + i).await));
    }
    assert!(served.len() >= 900, "10 refreshes of 100 served {}", served.len());
    assert!(!served.contains(&disliked.article_id), "the disliked article came back");
    assert!(!served.contains(&read.article_id), "the read article came back");
    server.stop().await;
}

#[tokio::test]
async fn a_new_users_first_feed_spans_channels_without_neighbours_from_one() {
    // Exploration slots are filled without the diversity rule (the engine's `feed::pick`), so
    // the neighbour rule is checked on a variant without exploration; the default variant
    // (explore=0.1) still has to span channels.
    for (variants, neighbours_differ) in [("main", false), ("main:ranker=on,explore=0", true)] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_in(dir.path(), ServerConfig::default(), engine_config(variants)).await;
        let mut client = server.client().await;
        let t = now_ms();
        for i in 0..10 {
            let user = format!("new-{i}");
            let batch = client.feed(&user, 0, 10, t).await;
            assert_eq!(batch.recommends.len(), 10);
            let channels: Vec<i32> = client.articles(ids(&batch)).await.iter().map(|a| a.channel_id).collect();
            let distinct: BTreeSet<i32> = channels.iter().copied().collect();
            assert!(distinct.len() >= 4, "{variants} {user}: channels {channels:?}");
            assert!(
                !neighbours_differ || channels.windows(2).all(|w| w[0] != w[1]),
                "{variants} {user}: neighbours share a channel: {channels:?}, sources {:?}",
                card_combines(&batch)
            );
        }
        drop(client);
        server.stop().await;
    }
}

/// The bucket of every param of a batch, which must agree.
fn batch_bucket(batch: &reco_proto::seed::ArticleResponse) -> u32 {
    let (bucket, _) = parse_combine(&combine(&batch.exposure));
    assert!(card_combines(batch).iter().all(|(b, _)| *b == bucket), "{batch:?}");
    bucket
}

#[tokio::test]
async fn buckets_are_stable_per_user_across_refreshes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let start = || TestServer::start_in(dir.path(), ServerConfig::default(), engine_config(TWO_VARIANTS));
    let server = start().await;
    let mut client = server.client().await;
    let t = now_ms();
    let users: Vec<String> = (0..50).map(|i| format!("ab-{i}")).collect();
    let mut buckets = BTreeMap::new();
    for user in &users {
        let first = batch_bucket(&client.feed(user, 0, 5, t).await);
        let second = batch_bucket(&client.feed(user, 3, 5, t + 1).await);
        let third = batch_bucket(&client.feed(user, 0, 5, t + 2).await);
        assert_eq!((first, second), (third, third), "{user}");
        buckets.insert(user.clone(), first);
    }
    let counts = buckets.values().fold([0; 2], |mut c, b| {
        c[*b as usize] += 1;
        c
    });
    assert!(counts[0] > 0 && counts[1] > 0, "both buckets occur: {counts:?}");
    let explained = client.explain(&users[0], 1).await.unwrap();
    assert_eq!(explained.bucket, buckets[&users[0]]);
    assert_eq!(explained.variant, ["main", "base"][explained.bucket as usize]);
    assert_eq!(explained.ranker, explained.bucket == 0);
    drop(client);
    server.stop().await;

    let server = start().await;
    let mut client = server.client().await;
    for user in &users {
        assert_eq!(batch_bucket(&client.feed(user, 0, 5, t + 3).await), buckets[user], "{user} after a restart");
    }
    drop(client);
    server.stop().await;
}

/// The user-specific contributions of an explanation (the others depend on the clock).
fn user_contributions(e: &reco_proto::v1::ExplainResponse) -> Vec<(String, f64)> {
    e.contributions.iter().filter(|c| c.feature.starts_with("user×")).map(|c| (c.feature.clone(), c.weight)).collect()
}

#[tokio::test]
async fn learning_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic checkpoint: the one at shutdown, or none, is what the restarts see.
    let config = ServerConfig { checkpoint_interval: Duration::ZERO, ..ServerConfig::default() };
    let checkpoint_in_dir = || checkpointed(&reco_store::RedbStore::open(dir.path()).unwrap());
    let start = || TestServer::start_in(dir.path(), config.clone(), engine_config("main"));
    let user = "remembers";
    let t = now_ms();

    let server = start().await;
    let mut client = server.client().await;
    let clicked = engage_first_card(&mut client, user, t).await;
    let before = client.explain(user, clicked.article_id).await.unwrap();
    let learned = user_contributions(&before);
    assert!(!learned.is_empty() && learned.iter().all(|(_, w)| *w > 0.0), "{before:?}");
    drop(client);
    server.stop().await;
    assert_eq!(checkpoint_in_dir(), Some(3), "the shutdown checkpointed the exposure, click and read");

    // Restored from the checkpoint written at shutdown.
    let server = start().await;
    let mut client = server.client().await;
    let after = client.explain(user, clicked.article_id).await.unwrap();
    assert_eq!(user_contributions(&after), learned, "after a graceful restart");
    let next = client.feed(user, 0, 10, t + 1).await;
    assert!(
        card_combines(&next).iter().any(|(_, s)| s.iter().any(|s| s == "similar" || s == "affinity")),
        "the restarted server still knows what the user likes: {:?}",
        card_combines(&next)
    );
    // One more click, then a stop without the last checkpoint: the restart replays it.
    let other = engage_first_card(&mut client, user, t + 2).await;
    let before = client.explain(user, other.article_id).await.unwrap();
    drop(client);
    server.abort().await;
    assert_eq!(checkpoint_in_dir(), Some(3), "no checkpoint of the last three events");

    let server = start().await;
    let mut client = server.client().await;
    let after = client.explain(user, other.article_id).await.unwrap();
    let (b, a) = (user_contributions(&before), user_contributions(&after));
    assert!(!b.is_empty(), "{before:?}");
    assert_eq!(a, b, "after a restart that replayed the events since the checkpoint");
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn the_learner_is_checkpointed_while_serving() {
    let config = ServerConfig { checkpoint_interval: Duration::from_millis(20), ..ServerConfig::default() };
    let server = TestServer::start_with(config).await;
    let mut client = server.client().await;
    let batch = client.feed("periodic", 0, 5, now_ms()).await;
    let track = batch.recommends[0].track.clone().unwrap();
    let results = client.report(vec![event(&batch.exposure), event(&track.click)]).await;
    assert!(results.iter().all(|r| r.verdict() == Verdict::Accepted), "{results:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.checkpointed() != Some(2) {
        assert!(Instant::now() < deadline, "no checkpoint of both events: {:?}", server.checkpointed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(client);
    server.stop().await;
}

/// A store whose learner checkpoints fail (counting the attempts), and nothing else.
struct FailingCheckpoints {
    inner: MemStore,
    attempts: Arc<AtomicUsize>,
}

impl Store for FailingCheckpoints {
    fn load_articles(&self) -> Result<Vec<Article>, StoreError> {
        self.inner.load_articles()
    }
    fn upsert_articles(&self, articles: &[Article]) -> Result<(), StoreError> {
        self.inner.upsert_articles(articles)
    }
    fn retract_articles(&self, retractions: &[(i64, Retraction)]) -> Result<(), StoreError> {
        self.inner.retract_articles(retractions)
    }
    fn load_retractions(&self) -> Result<Vec<(i64, Retraction)>, StoreError> {
        self.inner.load_retractions()
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }
    fn init_meta(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.inner.init_meta(key, value)
    }
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if key.starts_with("learner") {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Backend("no space left on device".into()));
        }
        self.inner.put_meta(key, value)
    }
    fn with_user<R>(&self, user: &str, f: impl FnOnce(&UserRecord) -> R) -> Result<R, StoreError> {
        self.inner.with_user(user, f)
    }
    fn append_batch_seen(
        &self,
        user: &str,
        channel: i32,
        batch: Batch,
        seen: Option<Seen>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append_batch_seen(user, channel, batch, seen)
    }
    fn record_events(&self, events: &[EventRecord]) -> Result<Vec<Option<u64>>, StoreError> {
        self.inner.record_events(events)
    }
    fn scan_events(&self, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError> {
        self.inner.scan_events(after, f)
    }
    fn counters(&self, ids: &[i64]) -> Result<Vec<ArticleCounters>, StoreError> {
        self.inner.counters(ids)
    }
    fn all_counters(&self) -> Result<Vec<(i64, ArticleCounters)>, StoreError> {
        self.inner.all_counters()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn a_failing_checkpoint_does_not_stop_the_server() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let store = FailingCheckpoints { inner: MemStore::new(), attempts: Arc::clone(&attempts) };
    let engine = Arc::new(reco_server::open_engine(store, Some(common::SECRET), engine_config("main")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig { checkpoint_interval: Duration::from_millis(10), ..ServerConfig::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        reco_server::serve(listener, engine, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while attempts.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no checkpoint was attempted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut feed = reco_proto::seed::user_recommend_client::UserRecommendClient::new(channel);
    let req =
        reco_proto::seed::UserRequest { user_id: "u".into(), channel_id: 0, article_num: 3, time_stamp: now_ms() };
    assert_eq!(feed.user_recommend(req).await.unwrap().into_inner().recommends.len(), 3, "still serving");
    drop(feed);
    let before_shutdown = attempts.load(Ordering::SeqCst);
    stop.send(()).unwrap();
    server.await.unwrap().expect("the shutdown succeeds though its checkpoint fails");
    assert!(attempts.load(Ordering::SeqCst) > before_shutdown, "the shutdown tried a last checkpoint");
}
