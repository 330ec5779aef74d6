//! One test suite for every [`Store`] backend: each backend's tests call [`run_all`] on a fresh
//! store. Assertions panic with a message naming the broken rule.

use std::sync::Arc;

use crate::catalog::Retraction;
use crate::model::{ALL_CHANNELS, Action, Article};
use crate::store::{
    AppendOutcome, Batch, BatchItem, CATALOG_LOG_CALLS, CatalogChanges, DEFAULT_MAX_BATCHES, EventKey, EventRecord,
    Seen, Sources, Store,
};

/// Runs every check on `store`, which must be empty and keep [`DEFAULT_MAX_BATCHES`] batches
/// per (user, channel).
pub fn run_all<S: Store>(store: &S) {
    catalog(store);
    meta(store);
    batches(store);
    seen_appends(store);
    events(store);
    concurrent_appends(store);
    trimming(store, DEFAULT_MAX_BATCHES);
}

fn article(id: i64, title: &str) -> Article {
    Article {
        id,
        channel_id: 1,
        title: title.to_owned(),
        author: "a".to_owned(),
        publish_time: 1_700_000_000_000 + id,
        keywords: vec!["k1".to_owned(), "关键词".to_owned()],
        summary: String::new(),
        cover: String::new(),
    }
}

fn batch(time: i64, ids: &[i64]) -> Batch {
    Batch {
        time,
        request_id: time as u64 * 7,
        bucket: (time % 3) as u8,
        items: ids.iter().map(|&article_id| BatchItem { article_id, sources: Sources::FRESH }).collect(),
    }
}

fn event(key: u8, user: &str, action: Action, ids: &[i64]) -> EventRecord {
    EventRecord {
        key: EventKey([key; 16]),
        user: user.to_owned(),
        channel: 1,
        action,
        article_ids: ids.to_vec(),
        time: 1_700_000_000_000,
        read_ms: if action == Action::Read { 5000 } else { 0 },
        popularity_log2: if action == Action::Exposure { f64::NEG_INFINITY } else { 1.0 },
        sources: ids.iter().map(|_| Sources::FRESH.union(Sources::SIMILAR)).collect(),
        position: (action != Action::Exposure).then_some(3),
        bucket: 1,
    }
}

pub fn catalog<S: Store>(store: &S) {
    assert!(store.load_articles().unwrap().is_empty(), "a new store has no articles");
    store.upsert_articles(&[article(2, "two"), article(1, "one")]).unwrap();
    store.upsert_articles(&[article(2, "two, edited")]).unwrap();
    let mut loaded = store.load_articles().unwrap();
    loaded.sort_by_key(|a| a.id);
    assert_eq!(loaded, vec![article(1, "one"), article(2, "two, edited")], "upsert replaces by id");

    assert!(store.load_retractions().unwrap().is_empty(), "nothing is retracted yet");
    let gone = |reason: &str| Retraction { reason: reason.to_owned(), time_ms: 7 };
    store.retract_articles(&[(1, gone("wrong")), (2, gone("withdrawn"))]).unwrap();
    store.retract_articles(&[(1, gone("illegal"))]).unwrap();
    let mut retracted = store.load_retractions().unwrap();
    retracted.sort_by_key(|r| r.0);
    assert_eq!(retracted, vec![(1, gone("illegal")), (2, gone("withdrawn"))], "a later retraction replaces");
    assert_eq!(store.load_articles().unwrap().len(), 2, "retracted articles keep their rows");
    store.upsert_articles(&[article(2, "two, back")]).unwrap();
    assert_eq!(store.load_retractions().unwrap(), vec![(1, gone("illegal"))], "publishing again clears it");
    assert_eq!(
        store.get_articles(&[2, 9, 1]).unwrap(),
        vec![Some((article(2, "two, back"), None)), None, Some((article(1, "one"), Some(gone("illegal"))))],
        "articles by id, with their retractions"
    );
}

/// The catalog change log of a backend several processes share (not run by [`run_all`]: a
/// backend one process owns keeps none). `store` must be empty.
pub fn catalog_log<S: Store>(store: &S) {
    let changes = |after| store.catalog_changes(after).unwrap();
    assert_eq!(changes(0), CatalogChanges { head: 0, changed: Some(vec![]) }, "a new store has no changes");
    store.upsert_articles(&[article(2, "two"), article(1, "one")]).unwrap();
    store.upsert_articles(&[article(3, "three"), article(2, "two, edited")]).unwrap();
    store.retract_articles(&[(1, Retraction { reason: "wrong".to_owned(), time_ms: 7 })]).unwrap();
    assert_eq!(
        changes(0),
        CatalogChanges { head: 3, changed: Some(vec![2, 1, 3]) },
        "every id once, first change first"
    );
    assert_eq!(changes(1), CatalogChanges { head: 3, changed: Some(vec![3, 2, 1]) }, "the changes after the first");
    assert_eq!(changes(3), CatalogChanges { head: 3, changed: Some(vec![]) }, "nothing after the newest");
    assert_eq!(changes(u64::MAX).head, 3, "the newest number, whatever is asked");
    // Many more calls than the log keeps: a reader at the start must reload, a recent one not.
    for i in 0..CATALOG_LOG_CALLS as i64 + 50 {
        store.upsert_articles(&[article(100 + i % 7, "again")]).unwrap();
    }
    let head = 3 + CATALOG_LOG_CALLS as u64 + 50;
    assert_eq!(changes(0), CatalogChanges { head, changed: None }, "the log no longer reaches back");
    let recent = changes(head - 2);
    assert_eq!(recent.head, head);
    let mut ids = recent.changed.expect("the log holds the latest changes");
    ids.sort_unstable();
    assert_eq!(ids.len(), 2, "two calls, one id each: {ids:?}");
}

/// Trimming the event log of a backend whose log costs memory (not run by [`run_all`]: the
/// others keep their whole log). `store` must be empty.
pub fn event_log_trimming<S: Store>(store: &S) {
    let events: Vec<EventRecord> = (1..=10).map(|k| event(k, "trim", Action::Click, &[1])).collect();
    let seqs = store.record_events(&events).unwrap();
    assert_eq!(seqs, (1..=10).map(Some).collect::<Vec<_>>());
    assert_eq!(store.event_log_trimmed().unwrap(), 0, "a whole log");
    store.trim_event_log(4).unwrap();
    store.trim_event_log(2).unwrap();
    assert_eq!(store.event_log_trimmed().unwrap(), 4, "trimmed through 4, never back");
    let mut logged = Vec::new();
    store.scan_events(0, &mut |seq, _| logged.push(seq)).unwrap();
    assert_eq!(logged, (5..=10).collect::<Vec<_>>(), "the log starts after the trimmed events");
    assert_eq!(store.record_events(&events[..2]).unwrap(), vec![None, None], "trimmed events are still duplicates");
    assert_eq!(store.counters(&[1]).unwrap()[0].clicks, 10, "and still counted");
    assert_eq!(store.record_events(&[event(11, "trim", Action::Click, &[1])]).unwrap(), vec![Some(11)]);
}

pub fn meta<S: Store>(store: &S) {
    assert_eq!(store.get_meta("conformance.k").unwrap(), None);
    store.put_meta("conformance.k", b"v1").unwrap();
    store.put_meta("conformance.k", b"v2").unwrap();
    assert_eq!(store.get_meta("conformance.k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(store.init_meta("conformance.k", b"v3").unwrap(), b"v2", "a set key keeps its value");
    // Many callers race to make one value: all of them get the winner's.
    let got: Vec<Vec<u8>> = std::thread::scope(|s| {
        let racers: Vec<_> =
            (0..8u8).map(|i| s.spawn(move || store.init_meta("conformance.once", &[i; 4]).unwrap())).collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(got.windows(2).all(|w| w[0] == w[1]), "one winner: {got:?}");
    assert_eq!(store.get_meta("conformance.once").unwrap().as_ref(), Some(&got[0]), "the winner's value is stored");
}

pub fn batches<S: Store>(store: &S) {
    let user = "conformance-batches";
    assert_eq!(store.with_user(user, |u| u.channel(3).latest_time()).unwrap(), 0, "no batch yet");
    assert_eq!(store.append_batch(user, 3, batch(100, &[1, 2])).unwrap(), AppendOutcome::Appended { previous: 0 });
    assert_eq!(store.append_batch(user, 3, batch(200, &[3])).unwrap(), AppendOutcome::Appended { previous: 100 });
    assert_eq!(
        store.append_batch(user, 3, batch(200, &[9])).unwrap(),
        AppendOutcome::Stale { latest: 200 },
        "a batch at an existing time is refused"
    );
    assert_eq!(store.append_batch(user, 3, batch(150, &[9])).unwrap(), AppendOutcome::Stale { latest: 200 });
    assert_eq!(
        store.append_batch(user, ALL_CHANNELS, batch(50, &[4])).unwrap(),
        AppendOutcome::Appended { previous: 0 }
    );
    store
        .with_user(user, |u| {
            let h = u.channel(3);
            assert_eq!(h.latest_time(), 200);
            let (b, older) = h.at_or_before(199).expect("batch at 100");
            assert_eq!((b.time, older), (100, 0));
            assert_eq!(b.as_ref(), &batch(100, &[1, 2]), "batches come back as stored");
            let (b, older) = h.at_or_before(1_000).expect("batch at 200");
            assert_eq!((b.time, older), (200, 100));
            assert!(h.at_or_before(99).is_none());
            assert!(h.was_served(1) && h.was_served(3) && !h.was_served(9) && !h.was_served(4));
            assert!(u.channel(ALL_CHANNELS).was_served(4));
            assert_eq!(u.channel(7).latest_time(), 0);
        })
        .unwrap();
    assert_eq!(store.with_user("conformance-other", |u| u.channel(3).served_count()).unwrap(), 0, "users are separate");
}

/// A refresh appends only onto the history it ranked against: a batch appended meanwhile (to
/// its channel, or to 推荐 for another channel) makes it stale.
pub fn seen_appends<S: Store>(store: &S) {
    let user = "conformance-seen";
    let seen = |channel| store.with_user(user, |u| Seen::of(u, channel)).unwrap();
    let before = seen(4);
    assert_eq!(before, Seen { channel: 0, all: Some(0) });
    assert_eq!(
        store.append_batch_seen(user, 4, batch(100, &[1]), Some(before)).unwrap(),
        AppendOutcome::Appended { previous: 0 }
    );
    assert_eq!(
        store.append_batch_seen(user, 4, batch(200, &[1]), Some(before)).unwrap(),
        AppendOutcome::Stale { latest: 100 },
        "a batch appended since the read makes a newer one stale"
    );
    let now = seen(4);
    assert_eq!(
        store.append_batch(user, ALL_CHANNELS, batch(150, &[2])).unwrap(),
        AppendOutcome::Appended { previous: 0 }
    );
    assert_eq!(
        store.append_batch_seen(user, 4, batch(200, &[2]), Some(now)).unwrap(),
        AppendOutcome::Stale { latest: 100 },
        "so does one appended to 推荐, whose articles a channel refresh excludes too"
    );
    assert_eq!(
        store.append_batch_seen(user, 4, batch(200, &[3]), Some(seen(4))).unwrap(),
        AppendOutcome::Appended { previous: 100 }
    );
    // 推荐 itself looks at its own history only.
    let all = seen(ALL_CHANNELS);
    assert_eq!(all, Seen { channel: 150, all: None });
    assert_eq!(store.append_batch(user, 4, batch(300, &[4])).unwrap(), AppendOutcome::Appended { previous: 200 });
    assert_eq!(
        store.append_batch_seen(user, ALL_CHANNELS, batch(300, &[5]), Some(all)).unwrap(),
        AppendOutcome::Appended { previous: 150 }
    );
    let kept = store.with_user(user, |u| (u.channel(4).latest_time(), u.channel(ALL_CHANNELS).latest_time())).unwrap();
    assert_eq!(kept, (300, 300), "stale appends stored nothing");
}

pub fn events<S: Store>(store: &S) {
    let user = "conformance-events";
    let evs = [
        event(1, user, Action::Exposure, &[10, 11]),
        event(2, user, Action::Click, &[10]),
        event(3, user, Action::Read, &[11]),
    ];
    assert_eq!(store.record_events(&evs).unwrap(), vec![Some(1), Some(2), Some(3)], "new events are numbered from 1");
    assert_eq!(
        store.record_events(&[evs[1].clone(), event(4, user, Action::Share, &[10])]).unwrap(),
        vec![None, Some(4)],
        "a known key is a duplicate"
    );
    let disliked = event(5, user, Action::Dislike, &[12]);
    assert_eq!(store.record_events(std::slice::from_ref(&disliked)).unwrap(), vec![Some(5)]);
    let c = store.counters(&[10, 11, 12, 13]).unwrap();
    assert_eq!((c[0].exposures, c[0].clicks, c[0].shares, c[0].reads), (1, 1, 1, 0));
    assert_eq!((c[1].exposures, c[1].reads, c[1].read_ms), (1, 1, 5000));
    assert!((c[0].popularity_log2 - 2.0).abs() < 1e-9, "two weight-2^1 events sum to 2^2: {}", c[0].popularity_log2);
    assert_eq!(c[2].dislikes, 1, "a dislike is counted");
    assert_eq!(c[3], Default::default(), "an article without events has zero counters");
    let mut all = store.all_counters().unwrap();
    all.sort_by_key(|(id, _)| *id);
    assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![10, 11, 12]);
    assert!(store.with_user(user, |u| u.has_read(11) && !u.has_read(10)).unwrap(), "read events fill the read set");
    assert!(store.with_user(user, |u| u.has_read(12)).unwrap(), "a dislike hides the article like a read");

    // Counters let go from memory stay exact, for reads and for the next event alike.
    store.forget_counters(&|id| id != 10);
    assert_eq!(store.counters(&[10]).unwrap()[0], c[0], "forgotten counters read back as they were");
    assert_eq!(store.record_events(&[event(6, user, Action::Click, &[10])]).unwrap(), vec![Some(6)]);
    assert_eq!(store.counters(&[10]).unwrap()[0].clicks, 2, "an event adds to the stored counters");

    let mut logged = Vec::new();
    store.scan_events(0, &mut |seq, e| logged.push((seq, e))).unwrap();
    let expected = [
        &evs[0],
        &evs[1],
        &evs[2],
        &event(4, user, Action::Share, &[10]),
        &disliked,
        &event(6, user, Action::Click, &[10]),
    ];
    assert_eq!(logged.len(), expected.len(), "the log holds each new event once");
    for ((seq, got), (i, want)) in logged.iter().zip(expected.iter().enumerate()) {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(got, *want, "logged events come back as stored, in order");
    }
    let mut tail = Vec::new();
    store.scan_events(3, &mut |seq, e| tail.push((seq, e.key))).unwrap();
    assert_eq!(
        tail,
        vec![(4, EventKey([4; 16])), (5, EventKey([5; 16])), (6, EventKey([6; 16]))],
        "a scan starts after the given number"
    );
    store.flush().unwrap();
}

pub fn concurrent_appends<S: Store>(store: &S) {
    // Many threads race to append at the same times: exactly one wins each time.
    let user = "conformance-race";
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let wins = &wins;
            s.spawn(move || {
                for time in 1..=50 {
                    if let AppendOutcome::Appended { .. } =
                        store.append_batch(user, 5, batch(time, &[time * 10 + t])).unwrap()
                    {
                        wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let stored = store.with_user(user, |u| u.channel(5).batches().map(Arc::clone).collect::<Vec<_>>()).unwrap();
    assert!(stored.windows(2).all(|w| w[0].time < w[1].time), "batches are kept in time order");
    assert_eq!(wins.into_inner().min(DEFAULT_MAX_BATCHES), stored.len(), "every win is stored, no loss stored");
}

/// History keeps the newest `max_batches` batches per (user, channel); the served set keeps
/// every id any batch served, trimmed or not.
pub fn trimming<S: Store>(store: &S, max_batches: usize) {
    let user = "conformance-trim";
    let n = max_batches as i64 + 3;
    // Batch t serves ids 10t and 10t + 1; the last one serves id 10 (batch 1's) again.
    let ids = |t: i64| if t == n { vec![10 * t, 10] } else { vec![10 * t, 10 * t + 1] };
    for t in 1..=n {
        assert_eq!(
            store.append_batch(user, 2, batch(t * 100, &ids(t))).unwrap(),
            AppendOutcome::Appended { previous: (t - 1) * 100 }
        );
    }
    assert_eq!(store.append_batch(user, 2, batch(100, &[1])).unwrap(), AppendOutcome::Stale { latest: n * 100 });
    let oldest_kept = n - max_batches as i64 + 1;
    store
        .with_user(user, |u| {
            let h = u.channel(2);
            let kept: Vec<i64> = h.batches().map(|b| b.time).collect();
            assert_eq!(kept, (oldest_kept..=n).map(|t| t * 100).collect::<Vec<_>>(), "the newest batches are kept");
            assert_eq!(h.latest_time(), n * 100);
            let (b, older) = h.at_or_before(oldest_kept * 100).expect("the oldest kept batch");
            assert_eq!((b.as_ref(), older), (&batch(oldest_kept * 100, &ids(oldest_kept)), 0), "it ends history");
            assert!(h.at_or_before(oldest_kept * 100 - 1).is_none(), "a trimmed time reads as history's end");
            for t in 1..=n {
                assert!(ids(t).iter().all(|&id| h.was_served(id)), "batch {t}'s ids stay served");
            }
            assert!(!h.was_served(11 * 100) && !h.was_served(1));
            assert_eq!(h.served_count(), 2 * n as usize - 1, "an id served twice counts once");
            assert_eq!(u.channel(3).served_count(), 0, "trimming is per channel");
        })
        .unwrap();
    store.flush().unwrap();
}
