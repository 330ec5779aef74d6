//! The seed contract's paging: a refresh (a new batch, ranked and stored) or a history read
//! (a stored batch, with the params first served), and the params of a batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::feed::{self, Exclusion};
use crate::model::Action;
use crate::params::TrackParam;
use crate::store::{AppendOutcome, Batch, BatchItem, Seen, Store};
use crate::text;

use super::{Engine, EngineError, FeedItem, FeedRequest, FeedResponse, WatchVerdict, WatchedEvent, invalid};

enum Plan {
    History(Option<(Arc<Batch>, i64)>),
    /// The batch, and the history it was ranked against.
    Refresh(Vec<BatchItem>, Seen),
}

impl<S: Store> Engine<S> {
    /// The seed's `user_recommend`: a refresh when `time_stamp` is newer than the user's newest
    /// batch in the channel, else a history read. A `time_stamp` later than `now_ms` plus the
    /// allowed clock skew is refused: stored, it would freeze the feed (every later request a
    /// history read) and mint params that never expire.
    pub fn recommend(&self, req: &FeedRequest, now_ms: i64) -> Result<FeedResponse, EngineError> {
        let skew = self.config.max_clock_skew_ms;
        if req.time_stamp > now_ms.saturating_add(skew) {
            return Err(invalid(format!(
                "time_stamp must be Unix milliseconds at most {skew} ms ahead of the server's clock ({now_ms}), got {} \
                 (a value in microseconds or nanoseconds is too large)",
                req.time_stamp
            )));
        }
        self.age_out_lazily(now_ms);
        // Lock order: the user's stripe, then (inside the store) the user's record. The model
        // snapshot is not a lock: the ingest side never makes a reader wait.
        let _guard = self.user_lock(&req.user_id);
        let bucket = self.bucket_of(&req.user_id);
        loop {
            let request_id = self.next_request.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            let plan = self.store.with_user(&req.user_id, |user| {
                let history = user.channel(req.channel_id);
                let latest = history.latest_time();
                if req.time_stamp <= latest {
                    let found = history.at_or_before(req.time_stamp).map(|(b, older)| (Arc::clone(b), older));
                    return Plan::History(found);
                }
                let catalog = self.catalog.load();
                let model = self.model.load();
                let input = feed::RankInput {
                    // The exploration draw is a function of the request: reproducible runs.
                    seed: text::hash_str(b'x', &req.user_id)
                        ^ text::mix(req.time_stamp as u64 ^ u64::from(req.channel_id as u32)),
                    ..self.rank_input(
                        &catalog,
                        &model,
                        &req.user_id,
                        req.channel_id,
                        req.article_num as usize,
                        now_ms,
                        bucket,
                    )
                };
                let picked = feed::rank(&input, &Exclusion::new(user, req.channel_id));
                let items = picked.iter().map(|s| BatchItem { article_id: s.id, sources: s.sources }).collect();
                Plan::Refresh(items, Seen::of(user, req.channel_id))
            })?;
            match plan {
                Plan::History(None) => {
                    return Ok(FeedResponse {
                        exposure: String::new(),
                        time_stamp: 0,
                        items: Vec::new(),
                        refreshed: false,
                    });
                }
                Plan::History(Some((batch, older))) => {
                    // History hands out the params first served, with the bucket of then.
                    let (_, items) = self.mint(req, &batch, batch.bucket, false);
                    return Ok(FeedResponse { exposure: String::new(), time_stamp: older, items, refreshed: false });
                }
                Plan::Refresh(items, seen) => {
                    let batch = Batch { time: req.time_stamp, request_id, bucket, items };
                    let (exposure, items) = self.mint(req, &batch, bucket, true);
                    // Stale when another process appended to this user's history since it was
                    // read: rank again against the new history.
                    match self.store.append_batch_seen(&req.user_id, req.channel_id, batch, Some(seen))? {
                        AppendOutcome::Appended { previous } => {
                            self.served_watchers.notify(|| WatchedEvent {
                                verdict: WatchVerdict::Served,
                                raw: exposure.clone(),
                                // The exposure param as `mint` signed it.
                                param: Some(TrackParam {
                                    action: Action::Exposure,
                                    user_id: req.user_id.clone(),
                                    article_ids: items.iter().map(|i| i.article_id).collect(),
                                    algorithm_combine: format!("{}.b{bucket}", self.config.algorithm),
                                    channel_id: req.channel_id,
                                    position: None,
                                    request_id,
                                    ts: req.time_stamp,
                                }),
                                dislike: false,
                                action_time: now_ms,
                                read_duration_ms: 0,
                                judged_ms: now_ms,
                                seq: None,
                                remote: false,
                            });
                            return Ok(FeedResponse { exposure, time_stamp: previous, items, refreshed: true });
                        }
                        // Another process refreshed this feed meanwhile: a history read now, or
                        // a refresh ranked again.
                        AppendOutcome::Stale { .. } => continue,
                    }
                }
            }
        }
    }

    fn mint(&self, req: &FeedRequest, batch: &Batch, bucket: u8, with_exposure: bool) -> (String, Vec<FeedItem>) {
        let mut head = self.config.algorithm.clone();
        head.push_str(".b");
        head.push_str(itoa::Buffer::new().format(bucket));
        let mut param = TrackParam {
            action: Action::Exposure,
            user_id: req.user_id.clone(),
            article_ids: batch.items.iter().map(|i| i.article_id).collect(),
            algorithm_combine: head.clone(),
            channel_id: req.channel_id,
            position: None,
            request_id: batch.request_id,
            ts: batch.time,
        };
        let exposure = if with_exposure { self.signer.mint(&param) } else { String::new() };
        let items = batch
            .items
            .iter()
            .enumerate()
            .map(|(pos, item)| {
                param.article_ids.clear();
                param.article_ids.push(item.article_id);
                param.position = Some(pos as u32);
                param.algorithm_combine.clear();
                param.algorithm_combine.push_str(&head);
                param.algorithm_combine.push(':');
                item.sources.write_label(&mut param.algorithm_combine);
                let track = self.signer.mint_card(&param);
                FeedItem { article_id: item.article_id, track }
            })
            .collect();
        (exposure, items)
    }
}
