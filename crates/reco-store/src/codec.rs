//! The byte layouts of the stored values: compact, hand-written little-endian for the hot
//! tables (batches, counters, events), JSON for articles. Every decoder checks lengths and
//! answers [`StoreError::Corrupt`] instead of panicking.

use reco_engine::catalog::Retraction;
use reco_engine::model::{Action, Article, ArticleId, ChannelId};
use reco_engine::store::{ArticleCounters, Batch, BatchItem, EventKey, EventRecord, Sources, StoreError};

/// Reads fixed-size fields off the front of a value, naming the value in errors.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let (head, rest) = self.bytes.split_first_chunk::<N>().ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        Ok(*head)
    }

    fn take_slice(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        let (head, rest) = self.bytes.split_at_checked(len).ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        self.take().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Result<i32, StoreError> {
        self.take().map(i32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        self.take().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        self.take().map(i64::from_le_bytes)
    }

    fn f64(&mut self) -> Result<f64, StoreError> {
        self.take().map(f64::from_le_bytes)
    }

    /// A `u32` count of items of at least `item_size` bytes each, checked against what is left.
    fn count(&mut self, item_size: usize) -> Result<usize, StoreError> {
        let n = usize::try_from(self.u32()?).map_err(|_| self.truncated())?;
        if n.checked_mul(item_size).is_none_or(|len| len > self.bytes.len()) {
            return Err(self.truncated());
        }
        Ok(n)
    }

    fn finish(self) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("{} value has {} trailing bytes", self.what, self.bytes.len())))
        }
    }

    fn truncated(&self) -> StoreError {
        StoreError::Corrupt(format!("{} value is truncated", self.what))
    }
}

const BATCH_ITEM_LEN: usize = 9;

/// `request_id u64`, then per item `article_id i64, sources u8`; the time is in the key.
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + BATCH_ITEM_LEN * batch.items.len());
    out.extend_from_slice(&batch.request_id.to_le_bytes());
    out.push(batch.bucket);
    for item in &batch.items {
        out.extend_from_slice(&item.article_id.to_le_bytes());
        out.push(item.sources.0);
    }
    out
}

pub fn decode_batch(time: i64, bytes: &[u8]) -> Result<Batch, StoreError> {
    let mut r = Reader::new(bytes, "batch");
    let request_id = r.u64()?;
    // Batches written before buckets existed have no bucket byte: their length is 8 + 9k, a
    // bucketed one's 9 + 9k.
    let bucket = if r.bytes.len().is_multiple_of(BATCH_ITEM_LEN) { 0 } else { r.u8()? };
    if !r.bytes.len().is_multiple_of(BATCH_ITEM_LEN) {
        return Err(r.truncated());
    }
    let mut items = Vec::with_capacity(r.bytes.len() / BATCH_ITEM_LEN);
    while !r.bytes.is_empty() {
        items.push(BatchItem { article_id: r.i64()?, sources: Sources(r.u8()?) });
    }
    Ok(Batch { time, request_id, bucket, items })
}

const COUNTERS_LEN: usize = 64;

/// Six `u64` counts, `popularity_log2` as `f64`, then `dislikes` as `u64`. Values written before
/// dislikes existed end after `popularity_log2` (56 bytes) and decode with no dislikes; the
/// next update of the article rewrites them in this layout.
pub fn encode_counters(c: &ArticleCounters) -> [u8; COUNTERS_LEN] {
    let mut out = [0; COUNTERS_LEN];
    let fields =
        [c.exposures, c.clicks, c.collects, c.shares, c.reads, c.read_ms, c.popularity_log2.to_bits(), c.dislikes];
    for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&field.to_le_bytes());
    }
    out
}

pub fn decode_counters(bytes: &[u8]) -> Result<ArticleCounters, StoreError> {
    let mut r = Reader::new(bytes, "counters");
    let mut counters = ArticleCounters {
        exposures: r.u64()?,
        clicks: r.u64()?,
        collects: r.u64()?,
        shares: r.u64()?,
        reads: r.u64()?,
        read_ms: r.u64()?,
        popularity_log2: r.f64()?,
        dislikes: 0,
    };
    if !r.bytes.is_empty() {
        counters.dislikes = r.u64()?;
    }
    r.finish()?;
    Ok(counters)
}

fn action_code(action: Action) -> u8 {
    match action {
        Action::Exposure => 0,
        Action::Click => 1,
        Action::Collect => 2,
        Action::Share => 3,
        Action::Read => 4,
        Action::Dislike => 5,
    }
}

fn action_from_code(code: u8) -> Result<Action, StoreError> {
    Ok(match code {
        0 => Action::Exposure,
        1 => Action::Click,
        2 => Action::Collect,
        3 => Action::Share,
        4 => Action::Read,
        5 => Action::Dislike,
        _ => return Err(StoreError::Corrupt(format!("event value has unknown action code {code}"))),
    })
}

/// The first byte of an event value in the current layout. The first layout had no version
/// byte and began with the action code, which is far below `0x80`: a first byte with the high
/// bit set names a layout version, anything else is a value of the first layout.
const EVENT_V1: u8 = 0x81;
const VERSIONED: u8 = 0x80;

/// [`EVENT_V1`], `action u8, channel i32, time i64, read_ms u64, popularity_log2 f64,
/// bucket u8`, the position as a `u8` tag (0 none, 1 some) and, when some, a `u32`; then the
/// user as `u32` length + UTF-8, the article ids as `u32` count + `i64`s and the sources as
/// `u32` count + `u8`s. The key is the table key.
///
/// Values written before the version byte lack it, the bucket, the position and the sources;
/// they decode with bucket 0, no position and no sources.
pub fn encode_event(e: &EventRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(36 + 4 + e.user.len() + 4 + 8 * e.article_ids.len() + 4 + e.sources.len());
    out.push(EVENT_V1);
    out.push(action_code(e.action));
    out.extend_from_slice(&e.channel.to_le_bytes());
    out.extend_from_slice(&e.time.to_le_bytes());
    out.extend_from_slice(&e.read_ms.to_le_bytes());
    out.extend_from_slice(&e.popularity_log2.to_le_bytes());
    out.push(e.bucket);
    match e.position {
        None => out.push(0),
        Some(position) => {
            out.push(1);
            out.extend_from_slice(&position.to_le_bytes());
        }
    }
    // Users and batches are far below 4 GiB; the engine caps both long before.
    out.extend_from_slice(&(e.user.len() as u32).to_le_bytes());
    out.extend_from_slice(e.user.as_bytes());
    out.extend_from_slice(&(e.article_ids.len() as u32).to_le_bytes());
    for id in &e.article_ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&(e.sources.len() as u32).to_le_bytes());
    out.extend(e.sources.iter().map(|s| s.0));
    out
}

pub fn decode_event(key: EventKey, bytes: &[u8]) -> Result<EventRecord, StoreError> {
    let mut r = Reader::new(bytes, "event");
    let first = r.u8()?;
    let versioned = first & VERSIONED != 0;
    if versioned && first != EVENT_V1 {
        return Err(StoreError::Corrupt(format!("event value has unknown layout version {first:#04x}")));
    }
    let action = action_from_code(if versioned { r.u8()? } else { first })?;
    let channel: ChannelId = r.i32()?;
    let time = r.i64()?;
    let read_ms = r.u64()?;
    let popularity_log2 = r.f64()?;
    let (bucket, position) = if versioned {
        let bucket = r.u8()?;
        let position = match r.u8()? {
            0 => None,
            1 => Some(r.u32()?),
            tag => return Err(StoreError::Corrupt(format!("event value has unknown position tag {tag}"))),
        };
        (bucket, position)
    } else {
        (0, None)
    };
    let user_len = r.count(1)?;
    let user = std::str::from_utf8(r.take_slice(user_len)?)
        .map_err(|_| StoreError::Corrupt("event user is not UTF-8".to_owned()))?
        .to_owned();
    let n = r.count(8)?;
    let article_ids = (0..n).map(|_| r.i64()).collect::<Result<Vec<ArticleId>, _>>()?;
    let sources = if versioned {
        let n = r.count(1)?;
        r.take_slice(n)?.iter().map(|&bits| Sources(bits)).collect()
    } else {
        Vec::new()
    };
    r.finish()?;
    Ok(EventRecord {
        key,
        user,
        channel,
        action,
        article_ids,
        time,
        read_ms,
        popularity_log2,
        sources,
        position,
        bucket,
    })
}

/// Sorted, distinct ids (a channel's trimmed ids): the first as `i64`, then each one's gap to
/// the one before as an LEB128 varint (article ids grow over time, so gaps are mostly 1-3
/// bytes). Empty for no ids.
pub fn encode_ids(ids: &[ArticleId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 2 * ids.len());
    let Some((&first, rest)) = ids.split_first() else { return out };
    out.extend_from_slice(&first.to_le_bytes());
    let mut previous = first;
    for &id in rest {
        debug_assert!(id > previous, "ids to encode are sorted and distinct");
        let mut gap = id.wrapping_sub(previous) as u64;
        previous = id;
        loop {
            let low = (gap & 0x7f) as u8;
            gap >>= 7;
            if gap == 0 {
                out.push(low);
                break;
            }
            out.push(low | 0x80);
        }
    }
    out
}

pub fn decode_ids(bytes: &[u8]) -> Result<Vec<ArticleId>, StoreError> {
    let mut r = Reader::new(bytes, "trimmed ids");
    let mut ids = Vec::new();
    if r.bytes.is_empty() {
        return Ok(ids);
    }
    let mut previous = r.i64()?;
    ids.push(previous);
    while !r.bytes.is_empty() {
        let mut gap = 0u64;
        for shift in (0..).step_by(7) {
            let byte = r.u8()?;
            if shift > 63 || (shift == 63 && byte > 1) {
                return Err(StoreError::Corrupt("trimmed ids value has an oversized gap".to_owned()));
            }
            gap |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        previous = Some(gap)
            .filter(|&gap| gap > 0)
            .and_then(|gap| previous.checked_add_unsigned(gap))
            .ok_or_else(|| StoreError::Corrupt("trimmed ids value is not sorted".to_owned()))?;
        ids.push(previous);
    }
    Ok(ids)
}

pub fn encode_article(article: &Article) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(article).map_err(|e| StoreError::Backend(format!("cannot encode article {}: {e}", article.id)))
}

pub fn decode_article(id: ArticleId, bytes: &[u8]) -> Result<Article, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("article {id}: {e}")))
}

pub fn encode_retraction(r: &Retraction) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Backend(format!("cannot encode a retraction: {e}")))
}

pub fn decode_retraction(id: ArticleId, bytes: &[u8]) -> Result<Retraction, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("retraction of article {id}: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn event() -> EventRecord {
        EventRecord {
            key: EventKey([7; 16]),
            user: "用户-1".to_owned(),
            channel: -3,
            action: Action::Read,
            article_ids: vec![1, -2, i64::MAX],
            time: 1_700_000_000_123,
            read_ms: 4_500,
            popularity_log2: f64::NEG_INFINITY,
            sources: vec![Sources::FRESH, Sources::SIMILAR.union(Sources::EXPLORE), Sources(0xff)],
            position: Some(u32::MAX),
            bucket: 255,
        }
    }

    /// The event layout before the version byte: `action u8, channel i32, time i64, read_ms u64,
    /// popularity_log2 f64`, the user, the article ids. Written out by hand so that the test pins
    /// what existing data dirs hold, whatever the encoder does now.
    pub(crate) fn encode_event_v0(e: &EventRecord) -> Vec<u8> {
        let mut out = vec![action_code(e.action)];
        out.extend_from_slice(&e.channel.to_le_bytes());
        out.extend_from_slice(&e.time.to_le_bytes());
        out.extend_from_slice(&e.read_ms.to_le_bytes());
        out.extend_from_slice(&e.popularity_log2.to_le_bytes());
        out.extend_from_slice(&(e.user.len() as u32).to_le_bytes());
        out.extend_from_slice(e.user.as_bytes());
        out.extend_from_slice(&(e.article_ids.len() as u32).to_le_bytes());
        for id in &e.article_ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// The counters layout before dislikes: six `u64` counts, then `popularity_log2`.
    pub(crate) fn encode_counters_v0(c: &ArticleCounters) -> Vec<u8> {
        [c.exposures, c.clicks, c.collects, c.shares, c.reads, c.read_ms, c.popularity_log2.to_bits()]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect()
    }

    #[test]
    fn values_round_trip() {
        let batch = Batch {
            time: 42,
            request_id: u64::MAX - 1,
            bucket: 7,
            items: vec![
                BatchItem { article_id: 5, sources: Sources::FRESH },
                BatchItem { article_id: -1, sources: Sources::FRESH.union(Sources::HOT) },
            ],
        };
        assert_eq!(decode_batch(42, &encode_batch(&batch)).unwrap(), batch);
        let empty = Batch { time: 1, request_id: 0, bucket: 2, items: vec![] };
        assert_eq!(decode_batch(1, &encode_batch(&empty)).unwrap(), empty);
        // The layout before buckets: request id, then items; it decodes as bucket 0.
        let mut old = 9u64.to_le_bytes().to_vec();
        old.extend_from_slice(&5i64.to_le_bytes());
        old.push(Sources::HOT.0);
        let items = vec![BatchItem { article_id: 5, sources: Sources::HOT }];
        assert_eq!(decode_batch(3, &old).unwrap(), Batch { time: 3, request_id: 9, bucket: 0, items });

        let counters = ArticleCounters {
            exposures: 1,
            clicks: 2,
            collects: 3,
            shares: 4,
            reads: 5,
            read_ms: 6,
            dislikes: 8,
            popularity_log2: 7.5,
        };
        assert_eq!(decode_counters(&encode_counters(&counters)).unwrap(), counters);
        let zero = ArticleCounters::default();
        assert_eq!(decode_counters(&encode_counters(&zero)).unwrap(), zero);

        let e = event();
        assert_eq!(decode_event(e.key, &encode_event(&e)).unwrap(), e);
        let exposure = EventRecord {
            action: Action::Exposure,
            sources: vec![],
            position: None,
            bucket: 0,
            popularity_log2: 0.25,
            ..event()
        };
        assert_eq!(decode_event(exposure.key, &encode_event(&exposure)).unwrap(), exposure);
        let dislike = EventRecord { action: Action::Dislike, article_ids: vec![], position: Some(0), ..event() };
        assert_eq!(decode_event(dislike.key, &encode_event(&dislike)).unwrap(), dislike);
    }

    #[test]
    fn values_of_the_first_layouts_decode_with_defaults() {
        for action in [Action::Exposure, Action::Click, Action::Collect, Action::Share, Action::Read] {
            let e = EventRecord { action, ..event() };
            let old = encode_event_v0(&e);
            assert_eq!(
                decode_event(e.key, &old).unwrap(),
                EventRecord { sources: vec![], position: None, bucket: 0, ..e },
                "{action} event of the first layout"
            );
        }
        // The exact bytes of a click by "u" on article 9, as the first layout stored it.
        let mut old = vec![1];
        old.extend_from_slice(&2i32.to_le_bytes());
        old.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        old.extend_from_slice(&0u64.to_le_bytes());
        old.extend_from_slice(&1.5f64.to_le_bytes());
        old.extend_from_slice(&[1, 0, 0, 0, b'u', 1, 0, 0, 0]);
        old.extend_from_slice(&9i64.to_le_bytes());
        assert_eq!(
            decode_event(EventKey([1; 16]), &old).unwrap(),
            EventRecord {
                key: EventKey([1; 16]),
                user: "u".to_owned(),
                channel: 2,
                action: Action::Click,
                article_ids: vec![9],
                time: 1_700_000_000_000,
                read_ms: 0,
                popularity_log2: 1.5,
                sources: vec![],
                position: None,
                bucket: 0,
            }
        );

        let counters = ArticleCounters {
            exposures: 10,
            clicks: 9,
            collects: 8,
            shares: 7,
            reads: 6,
            read_ms: 5,
            dislikes: 0,
            popularity_log2: -1.25,
        };
        let old = encode_counters_v0(&counters);
        assert_eq!(old.len(), 56);
        assert_eq!(decode_counters(&old).unwrap(), counters, "counters of the first layout have no dislikes");
    }

    #[test]
    fn ids_round_trip_compactly() {
        for ids in [
            vec![],
            vec![0],
            vec![i64::MIN],
            vec![i64::MIN, i64::MAX],
            vec![-5, -1, 0, 1, 127, 128, 16_511, 1 << 40],
            (1_000..2_000).collect(),
        ] {
            assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        }
        let run: Vec<ArticleId> = (1_000..2_000).collect();
        assert_eq!(encode_ids(&run).len(), 8 + 999, "consecutive ids take a byte each");
    }

    #[test]
    fn corrupt_ids_are_errors_not_panics() {
        let ids = encode_ids(&[1, 200, 70_000]);
        for len in (1..ids.len()).filter(|&len| len != 8 && len != 10) {
            assert!(corrupt(decode_ids(&ids[..len])), "ids cut to {len} bytes");
        }
        let with_gap = |gap: &[u8]| [&5i64.to_le_bytes()[..], gap].concat();
        assert!(corrupt(decode_ids(&with_gap(&[0]))), "a zero gap is a duplicate");
        assert!(corrupt(decode_ids(&with_gap(&[0xff; 10]))), "a gap beyond u64");
        assert!(corrupt(decode_ids(&with_gap(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))));
        assert!(corrupt(decode_ids(&[&i64::MAX.to_le_bytes()[..], &[1]].concat())), "a gap past i64::MAX");
        assert!(corrupt(decode_ids(&with_gap(&[0x80; 20]))), "an endless varint");
    }

    fn corrupt<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Corrupt(_)))
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let batch = encode_batch(&Batch {
            time: 1,
            request_id: 9,
            bucket: 1,
            items: vec![BatchItem { article_id: 3, sources: Sources::HOT }],
        });
        // Lengths 8 + 9k and 9 + 9k are well-formed (the old layout and the bucketed one).
        let well_formed =
            |len: usize| (len >= 8 && (len - 8).is_multiple_of(9)) || (len >= 9 && (len - 9).is_multiple_of(9));
        for len in (0..batch.len()).filter(|&len| !well_formed(len)) {
            assert!(corrupt(decode_batch(1, &batch[..len])), "batch cut to {len} bytes");
        }
        let counters = encode_counters(&ArticleCounters::default());
        // 56 bytes is a whole value of the first layout.
        for len in (0..counters.len()).filter(|&len| len != 56) {
            assert!(corrupt(decode_counters(&counters[..len])), "counters cut to {len} bytes");
        }
        assert!(corrupt(decode_counters(&[counters.as_slice(), &[0]].concat())));

        // The version byte makes every cut of a current value detectable, even one that ends
        // where a value of the first layout would.
        let e = encode_event(&event());
        for len in 0..e.len() {
            assert!(corrupt(decode_event(EventKey([0; 16]), &e[..len])), "event cut to {len} bytes");
        }
        assert!(corrupt(decode_event(EventKey([0; 16]), &[e.as_slice(), &[0]].concat())));
        let old = encode_event_v0(&event());
        for len in 0..old.len() {
            assert!(corrupt(decode_event(EventKey([0; 16]), &old[..len])), "old event cut to {len} bytes");
        }
        let mut bad_action = e.clone();
        bad_action[1] = 99;
        assert!(corrupt(decode_event(EventKey([0; 16]), &bad_action)));
        let mut bad_old_action = old.clone();
        bad_old_action[0] = 99;
        assert!(corrupt(decode_event(EventKey([0; 16]), &bad_old_action)));
        let mut bad_version = e.clone();
        bad_version[0] = 0x82;
        assert!(corrupt(decode_event(EventKey([0; 16]), &bad_version)));
        let mut bad_position = e.clone();
        bad_position[31] = 2;
        assert!(corrupt(decode_event(EventKey([0; 16]), &bad_position)));
        // A huge user length must not allocate or read past the end.
        let mut huge = e.clone();
        huge[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(corrupt(decode_event(EventKey([0; 16]), &huge)));
        let mut huge_sources = e.clone();
        let at = huge_sources.len() - 3 - 4;
        huge_sources[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(corrupt(decode_event(EventKey([0; 16]), &huge_sources)));

        assert!(corrupt(decode_article(1, b"{not json")));
    }
}
