//! Reading the event log: [`Store::scan_events`](reco_engine::store::Store::scan_events) in
//! chunks, each from its own read transaction, and the full scan of the events table.

use reco_engine::store::{EventKey, EventRecord, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::schema::{EVENT_LOG, EVENTS};
use crate::{at_row, codec, db_error};

/// Events a scan decodes per read transaction. It bounds the scan's memory (a few hundred KiB)
/// and keeps each read transaction short: redb cannot reuse the pages that later commits free
/// while a read transaction that may still see them is open, so one transaction over a log of
/// millions would grow the file under a busy writer.
pub(crate) const SCAN_CHUNK: usize = 4096;

/// Calls `f` with every logged event numbered above `after`, up to the log's end as of the
/// call's start (as a snapshot would: a reader that keeps up with a busy writer still returns).
pub(crate) fn scan(db: &Database, after: u64, f: &mut dyn FnMut(u64, EventRecord)) -> Result<(), StoreError> {
    let end = last_logged(db)?;
    let mut after = after;
    while after < end {
        let chunk = chunk(db, after, end)?;
        let Some(&(last, _)) = chunk.last() else { break };
        // `f` runs outside any read transaction: a slow consumer pins no pages.
        for (seq, event) in chunk {
            f(seq, event);
        }
        after = last;
    }
    Ok(())
}

/// The logged events numbered `after + 1 ..= end`, at most [`SCAN_CHUNK`] of them, in order.
fn chunk(db: &Database, after: u64, end: u64) -> Result<Vec<(u64, EventRecord)>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let log = txn.open_table(EVENT_LOG).map_err(db_error)?;
    let events = txn.open_table(EVENTS).map_err(db_error)?;
    let mut chunk = Vec::with_capacity(SCAN_CHUNK.min(usize::try_from(end - after).unwrap_or(SCAN_CHUNK)));
    for row in log.range(after + 1..=end).map_err(db_error)?.take(SCAN_CHUNK) {
        let (seq, key) = row.map_err(db_error)?;
        let (seq, key) = (seq.value(), *key.value());
        let value = events
            .get(&key)
            .map_err(db_error)?
            .ok_or_else(|| StoreError::Corrupt(format!("event log entry {seq} names a missing event")))?;
        let event = codec::decode_event(EventKey(key), value.value())
            .map_err(|e| at_row(e, || format!("event log entry {seq}")))?;
        chunk.push((seq, event));
    }
    Ok(chunk)
}

/// Calls `f` with every stored event in key order, logged or not, in one read transaction.
pub(crate) fn for_each_event(db: &Database, mut f: impl FnMut(EventRecord)) -> Result<(), StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(EVENTS).map_err(db_error)?;
    for row in table.iter().map_err(db_error)? {
        let (key, value) = row.map_err(db_error)?;
        f(codec::decode_event(EventKey(*key.value()), value.value())?);
    }
    Ok(())
}

/// The newest sequence number in the event log, 0 when it is empty.
pub(crate) fn last_logged(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let log = txn.open_table(EVENT_LOG).map_err(db_error)?;
    Ok(log.last().map_err(db_error)?.map_or(0, |(seq, _)| seq.value()))
}
