//! The byte layouts of the stored values: compact, hand-written little-endian for the hot
//! tables (batches, counters, events), JSON for articles. Every decoder checks lengths and
//! answers [`StoreError::Corrupt`] instead of panicking.

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
    let mut out = Vec::with_capacity(8 + BATCH_ITEM_LEN * batch.items.len());
    out.extend_from_slice(&batch.request_id.to_le_bytes());
    for item in &batch.items {
        out.extend_from_slice(&item.article_id.to_le_bytes());
        out.push(item.sources.0);
    }
    out
}

pub fn decode_batch(time: i64, bytes: &[u8]) -> Result<Batch, StoreError> {
    let mut r = Reader::new(bytes, "batch");
    let request_id = r.u64()?;
    if !r.bytes.len().is_multiple_of(BATCH_ITEM_LEN) {
        return Err(r.truncated());
    }
    let mut items = Vec::with_capacity(r.bytes.len() / BATCH_ITEM_LEN);
    while !r.bytes.is_empty() {
        items.push(BatchItem { article_id: r.i64()?, sources: Sources(r.u8()?) });
    }
    Ok(Batch { time, request_id, items })
}

/// Six `u64` counts, then `popularity_log2` as `f64`.
pub fn encode_counters(c: &ArticleCounters) -> [u8; 56] {
    let mut out = [0; 56];
    let fields = [c.exposures, c.clicks, c.collects, c.shares, c.reads, c.read_ms, c.popularity_log2.to_bits()];
    for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&field.to_le_bytes());
    }
    out
}

pub fn decode_counters(bytes: &[u8]) -> Result<ArticleCounters, StoreError> {
    let mut r = Reader::new(bytes, "counters");
    let counters = ArticleCounters {
        exposures: r.u64()?,
        clicks: r.u64()?,
        collects: r.u64()?,
        shares: r.u64()?,
        reads: r.u64()?,
        read_ms: r.u64()?,
        popularity_log2: r.f64()?,
    };
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
    }
}

fn action_from_code(code: u8) -> Result<Action, StoreError> {
    Ok(match code {
        0 => Action::Exposure,
        1 => Action::Click,
        2 => Action::Collect,
        3 => Action::Share,
        4 => Action::Read,
        _ => return Err(StoreError::Corrupt(format!("event value has unknown action code {code}"))),
    })
}

/// `action u8, channel i32, time i64, read_ms u64, popularity_log2 f64`, then the user as
/// `u32` length + UTF-8 and the article ids as `u32` count + `i64`s; the key is the table key.
pub fn encode_event(e: &EventRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(37 + e.user.len() + 4 + 8 * e.article_ids.len());
    out.push(action_code(e.action));
    out.extend_from_slice(&e.channel.to_le_bytes());
    out.extend_from_slice(&e.time.to_le_bytes());
    out.extend_from_slice(&e.read_ms.to_le_bytes());
    out.extend_from_slice(&e.popularity_log2.to_le_bytes());
    // Users and batches are far below 4 GiB; the engine caps both long before.
    out.extend_from_slice(&(e.user.len() as u32).to_le_bytes());
    out.extend_from_slice(e.user.as_bytes());
    out.extend_from_slice(&(e.article_ids.len() as u32).to_le_bytes());
    for id in &e.article_ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

pub fn decode_event(key: EventKey, bytes: &[u8]) -> Result<EventRecord, StoreError> {
    let mut r = Reader::new(bytes, "event");
    let action = action_from_code(r.u8()?)?;
    let channel: ChannelId = r.i32()?;
    let time = r.i64()?;
    let read_ms = r.u64()?;
    let popularity_log2 = r.f64()?;
    let user_len = r.count(1)?;
    let user = std::str::from_utf8(r.take_slice(user_len)?)
        .map_err(|_| StoreError::Corrupt("event user is not UTF-8".to_owned()))?
        .to_owned();
    let n = r.count(8)?;
    let article_ids = (0..n).map(|_| r.i64()).collect::<Result<Vec<ArticleId>, _>>()?;
    r.finish()?;
    Ok(EventRecord { key, user, channel, action, article_ids, time, read_ms, popularity_log2 })
}

pub fn encode_article(article: &Article) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(article).map_err(|e| StoreError::Backend(format!("cannot encode article {}: {e}", article.id)))
}

pub fn decode_article(id: ArticleId, bytes: &[u8]) -> Result<Article, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("article {id}: {e}")))
}

#[cfg(test)]
mod tests {
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
        }
    }

    #[test]
    fn values_round_trip() {
        let batch = Batch {
            time: 42,
            request_id: u64::MAX - 1,
            items: vec![
                BatchItem { article_id: 5, sources: Sources::FRESH },
                BatchItem { article_id: -1, sources: Sources::FRESH.union(Sources::HOT) },
            ],
        };
        assert_eq!(decode_batch(42, &encode_batch(&batch)).unwrap(), batch);
        let empty = Batch { time: 1, request_id: 0, items: vec![] };
        assert_eq!(decode_batch(1, &encode_batch(&empty)).unwrap(), empty);

        let counters = ArticleCounters {
            exposures: 1,
            clicks: 2,
            collects: 3,
            shares: 4,
            reads: 5,
            read_ms: 6,
            popularity_log2: 7.5,
        };
        assert_eq!(decode_counters(&encode_counters(&counters)).unwrap(), counters);
        let zero = ArticleCounters::default();
        assert_eq!(decode_counters(&encode_counters(&zero)).unwrap(), zero);

        let e = event();
        assert_eq!(decode_event(e.key, &encode_event(&e)).unwrap(), e);
    }

    fn corrupt<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Corrupt(_)))
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let batch = encode_batch(&Batch {
            time: 1,
            request_id: 9,
            items: vec![BatchItem { article_id: 3, sources: Sources::HOT }],
        });
        // 8 bytes is a whole batch without items.
        for len in (0..batch.len()).filter(|&len| len != 8) {
            assert!(corrupt(decode_batch(1, &batch[..len])), "batch cut to {len} bytes");
        }
        let counters = encode_counters(&ArticleCounters::default());
        assert!(corrupt(decode_counters(&counters[..55])));
        assert!(corrupt(decode_counters(&[counters.as_slice(), &[0]].concat())));

        let e = encode_event(&event());
        for len in 0..e.len() {
            assert!(corrupt(decode_event(EventKey([0; 16]), &e[..len])), "event cut to {len} bytes");
        }
        let mut bad_action = e.clone();
        bad_action[0] = 99;
        assert!(corrupt(decode_event(EventKey([0; 16]), &bad_action)));
        // A huge user length must not allocate or read past the end.
        let mut huge = e.clone();
        huge[29..33].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(corrupt(decode_event(EventKey([0; 16]), &huge)));

        assert!(corrupt(decode_article(1, b"{not json")));
    }
}
