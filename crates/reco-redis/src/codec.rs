//! The byte layouts of stored values. Two are read by the Lua scripts and so are fixed,
//! little-endian and hand-written: a batch member (whose article ids `append_batch.lua` copies
//! into the trimmed set) and the counters (which `record_events.lua` updates). Events are
//! postcard (only Rust reads them), articles and retractions JSON. Decoders answer
//! [`StoreError::Corrupt`] instead of panicking.

use reco_engine::catalog::Retraction;
use reco_engine::model::{Article, ArticleId, ChannelId};
use reco_engine::store::{ArticleCounters, Batch, BatchItem, EventRecord, Sources, StoreError};

use crate::keys::{channel_bytes, channel_from_bytes, time_bytes, time_from_bytes};

/// Where a batch member's items start: channel 4, time 8, request id 8, bucket 1.
pub(crate) const MEMBER_HEADER: usize = 21;
const ITEM_LEN: usize = 9;

/// `channel (4) | time (8)` in order-preserving big-endian (the sort key), then `request_id
/// u64, bucket u8`, then per item `article_id i64, sources u8`, little-endian.
pub(crate) fn encode_member(channel: ChannelId, batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(MEMBER_HEADER + ITEM_LEN * batch.items.len());
    out.extend_from_slice(&channel_bytes(channel));
    out.extend_from_slice(&time_bytes(batch.time));
    out.extend_from_slice(&batch.request_id.to_le_bytes());
    out.push(batch.bucket);
    for item in &batch.items {
        out.extend_from_slice(&item.article_id.to_le_bytes());
        out.push(item.sources.0);
    }
    out
}

pub(crate) fn decode_member(bytes: &[u8]) -> Result<(ChannelId, Batch), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("a stored batch has a bad length ({} bytes)", bytes.len()));
    let (header, items) = bytes.split_at_checked(MEMBER_HEADER).ok_or_else(corrupt)?;
    if !items.len().is_multiple_of(ITEM_LEN) {
        return Err(corrupt());
    }
    let channel = channel_from_bytes(array(&header[..4]));
    let batch = Batch {
        time: time_from_bytes(array(&header[4..12])),
        request_id: u64::from_le_bytes(array(&header[12..20])),
        bucket: header[20],
        items: items
            .chunks_exact(ITEM_LEN)
            .map(|item| BatchItem { article_id: i64::from_le_bytes(array(&item[..8])), sources: Sources(item[8]) })
            .collect(),
    };
    Ok((channel, batch))
}

/// A trimmed set member: `channel (4) | article id (8, little-endian)`, the id bytes exactly as
/// a batch member holds them (the script copies them).
pub(crate) fn decode_trimmed(bytes: &[u8]) -> Result<(ChannelId, ArticleId), StoreError> {
    if bytes.len() != 12 {
        return Err(StoreError::Corrupt(format!("a trimmed id has {} bytes, not 12", bytes.len())));
    }
    Ok((channel_from_bytes(array(&bytes[..4])), i64::from_le_bytes(array(&bytes[4..]))))
}

/// A read-set member: the article id, 8 bytes little-endian.
pub(crate) fn id_bytes(id: ArticleId) -> [u8; 8] {
    id.to_le_bytes()
}

pub(crate) fn decode_id(bytes: &[u8]) -> Result<ArticleId, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_le_bytes)
        .map_err(|_| StoreError::Corrupt(format!("a read id has {} bytes, not 8", bytes.len())))
}

const COUNTERS_LEN: usize = 64;

/// Decodes what `record_events.lua` packs: six `u64` counts (exposures, clicks, collects,
/// shares, reads, read_ms), `popularity_log2` as `f64`, then dislikes as `u64`, little-endian
/// (the script packs each `u64` as two `u32` halves, low first, which is the same bytes).
pub(crate) fn decode_counters(bytes: &[u8]) -> Result<ArticleCounters, StoreError> {
    let bytes: &[u8; COUNTERS_LEN] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("counters have {} bytes, not {COUNTERS_LEN}", bytes.len())))?;
    let field = |i: usize| u64::from_le_bytes(array(&bytes[8 * i..8 * i + 8]));
    Ok(ArticleCounters {
        exposures: field(0),
        clicks: field(1),
        collects: field(2),
        shares: field(3),
        reads: field(4),
        read_ms: field(5),
        popularity_log2: f64::from_bits(field(6)),
        dislikes: field(7),
    })
}

/// A log entry: the event in postcard (its key included).
pub(crate) fn encode_event(event: &EventRecord) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(event).map_err(|e| StoreError::Backend(format!("cannot encode an event: {e}")))
}

pub(crate) fn decode_event(seq: u64, bytes: &[u8]) -> Result<EventRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("logged event {seq}: {e}")))
}

pub(crate) fn encode_article(article: &Article) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(article).map_err(|e| StoreError::Backend(format!("cannot encode article {}: {e}", article.id)))
}

pub(crate) fn decode_article(id: ArticleId, bytes: &[u8]) -> Result<Article, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("article {id}: {e}")))
}

pub(crate) fn encode_retraction(r: &Retraction) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Backend(format!("cannot encode a retraction: {e}")))
}

pub(crate) fn decode_retraction(id: ArticleId, bytes: &[u8]) -> Result<Retraction, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("retraction of article {id}: {e}")))
}

/// A hash field naming an article: its decimal id.
pub(crate) fn parse_id_field(field: &[u8]) -> Result<ArticleId, StoreError> {
    std::str::from_utf8(field).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
        StoreError::Corrupt(format!("a hash field is not an article id: {:?}", String::from_utf8_lossy(field)))
    })
}

/// The first `N` bytes of a slice whose length the caller checked.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use reco_engine::model::Action;
    use reco_engine::store::EventKey;

    use super::*;

    #[test]
    fn values_round_trip_and_bad_lengths_are_corrupt() {
        let batch = Batch {
            time: -5,
            request_id: u64::MAX,
            bucket: 3,
            items: vec![
                BatchItem { article_id: i64::MIN, sources: Sources::HOT },
                BatchItem { article_id: 7, sources: Sources(0xff) },
            ],
        };
        let member = encode_member(-2, &batch);
        assert_eq!(member.len(), MEMBER_HEADER + 2 * ITEM_LEN);
        assert_eq!(decode_member(&member).unwrap(), (-2, batch));
        for len in [0, MEMBER_HEADER - 1, MEMBER_HEADER + 1, member.len() - 1] {
            assert!(matches!(decode_member(&member[..len]), Err(StoreError::Corrupt(_))), "{len} bytes");
        }
        let mut trimmed = channel_bytes(9).to_vec();
        trimmed.extend_from_slice(&id_bytes(-3));
        assert_eq!(decode_trimmed(&trimmed).unwrap(), (9, -3));
        assert!(decode_trimmed(&trimmed[1..]).is_err() && decode_id(&trimmed).is_err());
        assert!(decode_counters(&[0; 56]).is_err());

        let event = EventRecord {
            key: EventKey([9; 16]),
            user: "用户}".to_owned(),
            channel: 3,
            action: Action::Read,
            article_ids: vec![1, i64::MAX],
            time: 1_700_000_000_000,
            read_ms: u64::MAX,
            popularity_log2: f64::NEG_INFINITY,
            sources: vec![Sources::FRESH, Sources::HOT],
            position: Some(2),
            bucket: 1,
        };
        let bytes = encode_event(&event).unwrap();
        assert_eq!(decode_event(1, &bytes).unwrap(), event);
        assert!(matches!(decode_event(1, &bytes[..20]), Err(StoreError::Corrupt(_))));
    }
}
