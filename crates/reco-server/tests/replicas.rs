//! Two real servers on one shared store, as replicas on a shared backend run: a click reported
//! to one reaches the other's counters and ranking within a second (each follows the event
//! log), and a param is one event whichever replica receives it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, SECRET, event};
use reco_engine::store::MemStore;
use reco_engine::{Engine, EngineConfig};
use reco_proto::v1::{self, Verdict};
use reco_server::ServerConfig;
use tokio::sync::oneshot;

struct Replica {
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn replica(store: &Arc<MemStore>) -> Replica {
    let engine: Engine<Arc<MemStore>> =
        reco_server::open_engine(Arc::clone(store), Some(SECRET), EngineConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let config = ServerConfig { follow_interval: Duration::from_millis(100), ..ServerConfig::default() };
    tokio::spawn(async move {
        reco_server::serve(listener, Arc::new(engine), &config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Replica { url, _stop: stop }
}

async fn client(r: &Replica) -> Client {
    let channel = tonic::transport::Channel::from_shared(r.url.clone()).unwrap().connect().await.unwrap();
    Client {
        feed: reco_proto::seed::user_recommend_client::UserRecommendClient::new(channel.clone()),
        catalog: reco_proto::v1::catalog_client::CatalogClient::new(channel.clone()),
        tracking: reco_proto::v1::tracking_client::TrackingClient::new(channel),
    }
}

/// The counts of `Tracking.Stats` over a fixed window around now.
async fn stats(c: &mut Client, now: i64) -> v1::StatsResponse {
    let req = v1::StatsRequest { from_ms: now - 3_600_000, to_ms: now + 3_600_000 };
    c.tracking.stats(req).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_one_replica_reaches_the_other_within_a_second() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let store = Arc::new(MemStore::new());
        let (a, b) = (replica(&store).await, replica(&store).await);
        let (mut ca, mut cb) = (client(&a).await, client(&b).await);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let r = ca.feed("u1", 0, 10, now).await;
        let item = &r.recommends[2];
        let clicked = item.track.as_ref().unwrap().click.clone();
        let before = cb.explain("u1", item.article_id).await.unwrap();

        let results = ca.report(vec![event(&r.exposure), event(&clicked)]).await;
        assert!(results.iter().all(|r| r.verdict() == Verdict::Accepted), "{results:?}");
        let reported = Instant::now();
        let want = stats(&mut ca, now).await;
        assert!(!want.by_bucket.is_empty());
        loop {
            if stats(&mut cb, now).await == want {
                break;
            }
            assert!(reported.elapsed() < Duration::from_secs(1), "b's stats still differ after 1 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // What b ranks with moved too: the user's contributions for the clicked article.
        assert_ne!(cb.explain("u1", item.article_id).await.unwrap(), before);

        // The click again, now to b: one event whichever replica receives it.
        let again = cb.report(vec![event(&clicked)]).await;
        assert_eq!(again[0].verdict(), Verdict::Duplicate, "{again:?}");
    })
    .await
    .expect("the replicas test hung");
}
