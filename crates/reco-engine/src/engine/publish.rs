//! Catalog changes while serving: `publish` (upsert by id) and `retract`. Each call is one
//! durable store write and then one swap of the whole catalog; a refresh that loaded the old
//! catalog finishes with it, the next one sees the change.
//!
//! Every change gets a sequence number and goes to the change feed: a bounded ring of the
//! latest changes (for watchers that reconnect with the last number they saw) and the
//! notifier (the server's push). Numbers start at the start time in microseconds, so they grow
//! across restarts; the ring starts empty at each start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::catalog::{self, Catalog, Retraction};
use crate::model::{Article, ArticleId};
use crate::store::{Store, StoredArticle};

use super::{AGE_STEP_MS, Engine, EngineError, invalid};

/// Most articles or ids in one `publish` or `retract`.
pub const MAX_CHANGES: usize = 1000;
/// Longest retraction reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Changes kept for watchers that reconnect.
pub const CHANGE_RING: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Published,
    Updated,
    Retracted,
}

/// One catalog change, as watchers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogChange {
    pub seq: u64,
    pub kind: ChangeKind,
    /// The article as it is after the change.
    pub article: Arc<Article>,
    pub retraction: Option<Retraction>,
}

/// Receives each call's changes, in sequence order, under the engine's publishing lock: it must
/// not block (the server's hands them to a broadcast channel).
pub type ChangeNotifier = Box<dyn Fn(&[Arc<CatalogChange>]) + Send + Sync>;

/// The change feed: the latest changes with the next number, and the notifiers.
pub(super) struct ChangeFeed {
    ring: Mutex<Ring>,
    notifiers: Mutex<Vec<ChangeNotifier>>,
}

struct Ring {
    changes: VecDeque<Arc<CatalogChange>>,
    next: u64,
}

impl ChangeFeed {
    pub(super) fn new(first_seq: u64) -> Self {
        Self { ring: Mutex::new(Ring { changes: VecDeque::new(), next: first_seq }), notifiers: Mutex::default() }
    }

    fn push(&self, changes: Vec<(ChangeKind, Arc<Article>, Option<Retraction>)>) {
        let changes: Vec<Arc<CatalogChange>> = {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            let changes: Vec<Arc<CatalogChange>> = changes
                .into_iter()
                .map(|(kind, article, retraction)| {
                    let seq = ring.next;
                    ring.next += 1;
                    Arc::new(CatalogChange { seq, kind, article, retraction })
                })
                .collect();
            ring.changes.extend(changes.iter().cloned());
            let extra = ring.changes.len().saturating_sub(CHANGE_RING);
            ring.changes.drain(..extra);
            changes
        };
        for notify in self.notifiers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            notify(&changes);
        }
    }
}

/// The changes after a given number, if the ring still holds all of them.
#[derive(Debug, PartialEq)]
pub enum Since {
    /// Every change after the number asked, oldest first, and the newest number now.
    Changes(Vec<Arc<CatalogChange>>, u64),
    /// Some changes after the number asked are gone (a restart, or more than
    /// [`CHANGE_RING`] since): the watcher must reload what it shows. The newest number now.
    Gone(u64),
}

/// What `publish` did with one article.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishVerdict {
    Created,
    /// The id was in the catalog (retracted or not): its content is replaced and it is live.
    Updated,
    Rejected(String),
}

/// What `retract` did with one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetractVerdict {
    Retracted,
    /// Retracted before: the first retraction (reason, time) stays.
    AlreadyRetracted,
    Unknown,
}

impl<S: Store> Engine<S> {
    /// Upserts `articles` and makes them candidates of the next refresh: durable when it
    /// returns. Each article gets a verdict, in order; a rejected one changes nothing.
    pub fn publish(&self, articles: Vec<Article>, now_ms: i64) -> Result<Vec<PublishVerdict>, EngineError> {
        check_count("articles", articles.len())?;
        let latest = now_ms.saturating_add(self.config.max_clock_skew_ms);
        let max_age = self.config.max_article_age_ms;
        let oldest = now_ms.saturating_sub(max_age);
        let _one_change = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        self.age_out_locked(now_ms);
        let current = self.catalog.load_full();
        let mut seen = HashSet::with_capacity(articles.len());
        let mut verdicts = Vec::with_capacity(articles.len());
        // Accepted articles with what each is to watchers.
        let mut accepted: Vec<(ChangeKind, Article)> = Vec::with_capacity(articles.len());
        for article in articles {
            let verdict = match catalog::check_article(&article, latest) {
                Err(reason) => PublishVerdict::Rejected(reason),
                Ok(()) if article.publish_time < oldest => PublishVerdict::Rejected(format!(
                    "publish_time {} is older than the maximum article age ({}, so at least {oldest}): it would \
                     never be served",
                    article.publish_time,
                    age_text(max_age)
                )),
                Ok(()) if !seen.insert(article.id) => {
                    PublishVerdict::Rejected(format!("id {} is repeated in this call: send each id once", article.id))
                }
                Ok(()) if current.contains(article.id) => PublishVerdict::Updated,
                Ok(()) => PublishVerdict::Created,
            };
            match verdict {
                PublishVerdict::Created => accepted.push((ChangeKind::Published, article)),
                PublishVerdict::Updated => accepted.push((ChangeKind::Updated, article)),
                PublishVerdict::Rejected(_) => {}
            }
            verdicts.push(verdict);
        }
        if !accepted.is_empty() {
            let (kinds, accepted): (Vec<ChangeKind>, Vec<Article>) = accepted.into_iter().unzip();
            self.store.upsert_articles(&accepted)?;
            // One allocation per article, shared by the catalog and the change feed.
            let accepted: Vec<Arc<Article>> = accepted.into_iter().map(Arc::new).collect();
            let changes = kinds.into_iter().zip(&accepted).map(|(kind, a)| (kind, Arc::clone(a), None)).collect();
            let mut next = Catalog::clone(&current);
            for a in &accepted {
                next.upsert(Arc::clone(a));
            }
            self.catalog.store(Arc::new(next));
            self.changes.push(changes);
        }
        Ok(verdicts)
    }

    /// Takes `ids` out of every later refresh (history keeps them), durable when it returns.
    pub fn retract(&self, ids: &[ArticleId], reason: &str, now_ms: i64) -> Result<Vec<RetractVerdict>, EngineError> {
        check_count("article_ids", ids.len())?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(invalid("reason is empty: say why the articles come down (it is shown to clients)"));
        }
        let chars = reason.chars().count();
        if chars > MAX_REASON_CHARS {
            return Err(invalid(format!("reason is {chars} characters, at most {MAX_REASON_CHARS} are allowed")));
        }
        let _one_change = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        self.age_out_locked(now_ms);
        let current = self.catalog.load_full();
        let mut seen = HashSet::with_capacity(ids.len());
        let mut changes = Vec::new();
        let verdicts = ids
            .iter()
            .map(|&id| {
                if !current.contains(id) {
                    RetractVerdict::Unknown
                } else if current.retraction(id).is_some() || !seen.insert(id) {
                    RetractVerdict::AlreadyRetracted
                } else {
                    changes.push((id, Retraction { reason: reason.to_owned(), time_ms: now_ms }));
                    RetractVerdict::Retracted
                }
            })
            .collect();
        if !changes.is_empty() {
            self.store.retract_articles(&changes)?;
            let feed = changes
                .iter()
                .filter_map(|(id, r)| Some((ChangeKind::Retracted, current.shared(*id)?, Some(r.clone()))))
                .collect();
            let mut next = Catalog::clone(&current);
            for (id, r) in changes {
                next.retract(id, r);
            }
            self.catalog.store(Arc::new(next));
            self.changes.push(feed);
        }
        Ok(verdicts)
    }

    /// Brings the catalog up to date with the changes other processes sharing the store made
    /// (replicas' `Publish` and `Retract`, read from [`Store::catalog_changes`]): each changed
    /// article goes into the catalog as the store holds it now, and to the change feed as if
    /// published or retracted here. An article the catalog already holds as stored (this
    /// engine's own changes) is skipped, so applying a change twice is harmless. A follower
    /// further behind than the store's log reloads the whole catalog the same way. Returns how
    /// many changes reached the feed.
    pub fn follow_catalog(&self, now_ms: i64) -> Result<usize, EngineError> {
        let mut position = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let changes = self.store.catalog_changes(*position)?;
        if changes.head == *position {
            return Ok(0);
        }
        let stored: Vec<StoredArticle> = match changes.changed {
            Some(ids) => {
                let mut stored = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(MAX_CHANGES) {
                    stored.extend(self.store.get_articles(chunk)?.into_iter().flatten());
                }
                stored
            }
            None => {
                tracing::info!(
                    from = *position,
                    to = changes.head,
                    "the store's catalog change log no longer reaches back to this replica's position: reloading \
                     the catalog"
                );
                let mut retractions: HashMap<ArticleId, Retraction> =
                    self.store.load_retractions()?.into_iter().collect();
                let articles = self.store.load_articles()?;
                articles.into_iter().map(|a| (retractions.remove(&a.id), a)).map(|(r, a)| (a, r)).collect()
            }
        };
        self.age_out_locked(now_ms);
        let oldest = now_ms.saturating_sub(self.config.max_article_age_ms);
        let current = self.catalog.load_full();
        let mut next: Option<Catalog> = None;
        let mut feed = Vec::new();
        for (article, retraction) in stored {
            let id = article.id;
            let held = current.get(id);
            let was_retracted = current.retraction(id).is_some();
            let same_article = held == Some(&article);
            if same_article && was_retracted == retraction.is_some() {
                continue;
            }
            if held.is_none() && article.publish_time < oldest {
                // Past the maximum age here: the store keeps it, the catalog does not.
                continue;
            }
            let next = next.get_or_insert_with(|| Catalog::clone(&current));
            let article = Arc::new(article);
            if !same_article || retraction.is_none() {
                // New, changed, or live again: `upsert` makes it live.
                next.upsert(Arc::clone(&article));
                if retraction.is_none() {
                    let kind = if held.is_some() { ChangeKind::Updated } else { ChangeKind::Published };
                    feed.push((kind, Arc::clone(&article), None));
                }
            }
            if let Some(r) = retraction
                && next.retract(id, r.clone())
                && !was_retracted
            {
                feed.push((ChangeKind::Retracted, article, Some(r)));
            }
        }
        *position = changes.head;
        if let Some(next) = next {
            self.catalog.store(Arc::new(next));
        }
        let changed = feed.len();
        if changed > 0 {
            tracing::debug!(changed, position = changes.head, "catalog changes of other replicas applied");
            self.changes.push(feed);
        }
        Ok(changed)
    }

    /// Takes the articles older than the maximum age out of the catalog: they leave every
    /// candidate source (the store keeps them). Returns how many left.
    pub fn age_out(&self, now_ms: i64) -> usize {
        let _one_change = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        self.age_out_locked(now_ms)
    }

    /// [`Engine::age_out`] from a refresh: only when the clock moved on enough since the last
    /// time, and never waiting (a publish in progress ages the catalog itself).
    pub(super) fn age_out_lazily(&self, now_ms: i64) {
        let before = now_ms.saturating_sub(self.config.max_article_age_ms);
        if self.catalog.load().oldest_ms() <= before.saturating_sub(AGE_STEP_MS)
            && let Ok(_one_change) = self.publishing.try_lock()
        {
            self.age_out_locked(now_ms);
        }
    }

    fn age_out_locked(&self, now_ms: i64) -> usize {
        let before = now_ms.saturating_sub(self.config.max_article_age_ms);
        let current = self.catalog.load_full();
        if current.oldest_ms() >= before {
            return 0;
        }
        let mut next = Catalog::clone(&current);
        let gone = next.age_out(before);
        self.catalog.store(Arc::new(next));
        if !gone.is_empty() {
            tracing::debug!(articles = gone.len(), before, "articles aged out of the catalog");
        }
        gone.len()
    }

    /// Adds a receiver of every later change (the server's push).
    pub fn on_catalog_change(&self, notifier: ChangeNotifier) {
        self.changes.notifiers.lock().unwrap_or_else(|e| e.into_inner()).push(notifier);
    }

    /// The changes after `seq` (see [`Since`]); with `seq` 0, none: only the newest number.
    pub fn catalog_changes_since(&self, seq: u64) -> Since {
        let ring = self.changes.ring.lock().unwrap_or_else(|e| e.into_inner());
        let newest = ring.next - 1;
        if seq == 0 || seq >= newest {
            return Since::Changes(Vec::new(), newest);
        }
        match ring.changes.front() {
            Some(first) if first.seq <= seq + 1 => {
                Since::Changes(ring.changes.iter().filter(|c| c.seq > seq).cloned().collect(), newest)
            }
            _ => Since::Gone(newest),
        }
    }
}

/// A maximum age in days when it is whole days, else in hours.
fn age_text(ms: i64) -> String {
    if ms % super::DAY_MS == 0 { format!("{} days", ms / super::DAY_MS) } else { format!("{} h", ms / 3_600_000) }
}

fn check_count(field: &str, n: usize) -> Result<(), EngineError> {
    match n {
        0 => Err(invalid(format!("{field} is empty: send 1..={MAX_CHANGES}"))),
        n if n > MAX_CHANGES => {
            Err(EngineError::TooMany(format!("{field} has {n} entries, at most {MAX_CHANGES} per call are allowed")))
        }
        _ => Ok(()),
    }
}
