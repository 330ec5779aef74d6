//! Catalog changes while serving: `publish` (upsert by id) and `retract`. Each call is one
//! durable store write and then one swap of the whole catalog; a refresh that loaded the old
//! catalog finishes with it, the next one sees the change.

use std::collections::HashSet;

use crate::catalog::{self, Retraction};
use crate::model::{Article, ArticleId};
use crate::store::Store;

use super::{Engine, EngineError, invalid};

/// Most articles or ids in one `publish` or `retract`.
pub const MAX_CHANGES: usize = 1000;
/// Longest retraction reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

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
        let _one_change = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.catalog.load_full();
        let mut seen = HashSet::with_capacity(articles.len());
        let mut verdicts = Vec::with_capacity(articles.len());
        let mut accepted = Vec::with_capacity(articles.len());
        for article in articles {
            let verdict = match catalog::check_article(&article, latest) {
                Err(reason) => PublishVerdict::Rejected(reason),
                Ok(()) if !seen.insert(article.id) => {
                    PublishVerdict::Rejected(format!("id {} is repeated in this call: send each id once", article.id))
                }
                Ok(()) if current.contains(article.id) => PublishVerdict::Updated,
                Ok(()) => PublishVerdict::Created,
            };
            if !matches!(verdict, PublishVerdict::Rejected(_)) {
                accepted.push(article);
            }
            verdicts.push(verdict);
        }
        if !accepted.is_empty() {
            self.store.upsert_articles(&accepted)?;
            self.catalog.store(std::sync::Arc::new(current.with_changes(accepted, Vec::new())));
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
            self.catalog.store(std::sync::Arc::new(current.with_changes(Vec::new(), changes)));
        }
        Ok(verdicts)
    }
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
