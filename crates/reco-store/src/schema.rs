//! The tables of the redb file, and the schema version check and upgrade at open.

use std::collections::HashMap;
use std::path::Path;

use reco_engine::model::{ArticleId, ChannelId};
use reco_engine::store::{ArticleCounters, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{at_row, codec, db_error};

/// Bumped when a stored layout changes; a file with a newer version is refused, an older one is
/// upgraded in place at open (the decoders read every older layout).
///
/// 2: the event log, and events and counters with the fields of learning (sources, position,
/// bucket; dislikes). A build that reads only version 1 would take the new values for corrupt.
///
/// 3: the [`TRIMMED`] table, the ids of batches that fell off history. A build that reads only
/// version 2 would not see them and could serve those articles again. Older files have no
/// trimmed ids; channels stored with more than `max_batches` batches trim at load, in memory,
/// and drop the extra rows at their next trim.
///
/// 4: the [`RETRACTIONS`] table. A build that reads only version 3 would serve retracted
/// articles again.
pub(crate) const SCHEMA_VERSION: u32 = 4;
pub(crate) const SCHEMA_KEY: &str = "reco_store.schema_version";

pub(crate) const ARTICLES: TableDefinition<ArticleId, &[u8]> = TableDefinition::new("articles");
/// Article id -> `codec::encode_retraction`: the articles taken out of feeds, kept in
/// [`ARTICLES`] for lookups. Publishing an id again removes its row.
pub(crate) const RETRACTIONS: TableDefinition<ArticleId, &[u8]> = TableDefinition::new("retractions");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `(user, channel, batch time)` -> `codec::encode_batch`: the kept history.
pub(crate) const BATCHES: TableDefinition<(&str, ChannelId, i64), &[u8]> = TableDefinition::new("batches");
/// `(user, channel)` -> `codec::encode_ids`: the sorted ids of the batches that fell off
/// history, rewritten at each trim.
pub(crate) const TRIMMED: TableDefinition<(&str, ChannelId), &[u8]> = TableDefinition::new("trimmed");
/// The read sets: `(user, article)`.
pub(crate) const READS: TableDefinition<(&str, ArticleId), ()> = TableDefinition::new("reads");
/// Every stored event, keyed by its `EventKey` for dedup: `codec::encode_event`.
pub(crate) const EVENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("events");
/// The event log: sequence number -> key of the event in [`EVENTS`].
///
/// Files from before schema version 2 had no log: the events they hold are in [`EVENTS`] but
/// not in the log (a scan never returns them), and the log of such a file starts at 1 with the
/// first event recorded after the upgrade.
pub(crate) const EVENT_LOG: TableDefinition<u64, &[u8; 16]> = TableDefinition::new("event_log");
pub(crate) const COUNTERS: TableDefinition<ArticleId, &[u8]> = TableDefinition::new("counters");

/// Creates the tables, and checks the schema version: writes it into a new file, upgrades an
/// older one.
pub(crate) fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(db_error)?;
    {
        txn.open_table(ARTICLES).map_err(db_error)?;
        txn.open_table(RETRACTIONS).map_err(db_error)?;
        txn.open_table(BATCHES).map_err(db_error)?;
        txn.open_table(TRIMMED).map_err(db_error)?;
        txn.open_table(READS).map_err(db_error)?;
        txn.open_table(EVENTS).map_err(db_error)?;
        txn.open_table(EVENT_LOG).map_err(db_error)?;
        txn.open_table(COUNTERS).map_err(db_error)?;
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let stored = meta.get(SCHEMA_KEY).map_err(db_error)?.map(|v| v.value().to_vec());
        match stored {
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(db_error)?;
            }
            Some(bytes) => {
                let version = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Corrupt(format!("{}: unreadable schema version", path.display())))?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::Backend(format!(
                        "{} has schema version {version}, newer than the {SCHEMA_VERSION} this build reads: \
                         use a newer reco or another data dir",
                        path.display()
                    )));
                }
                if version < SCHEMA_VERSION {
                    // Old values stay as they are (the decoders read them) and new tables were
                    // created above; recording the new version keeps older builds from opening
                    // a file they would misread.
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(db_error)?;
                    tracing::info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "store schema upgraded");
                }
            }
        }
    }
    txn.commit().map_err(db_error)
}

pub(crate) fn load_counters(db: &Database) -> Result<HashMap<ArticleId, ArticleCounters>, StoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(COUNTERS).map_err(db_error)?;
    let mut counters = HashMap::new();
    for row in table.iter().map_err(db_error)? {
        let (id, value) = row.map_err(db_error)?;
        let id = id.value();
        let c = codec::decode_counters(value.value()).map_err(|e| at_row(e, || format!("article {id}")))?;
        counters.insert(id, c);
    }
    Ok(counters)
}
