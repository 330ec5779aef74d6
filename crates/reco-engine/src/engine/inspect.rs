//! Read-only views for clients and debugging: article info and counters, params, `Explain`,
//! `Stats`. They read the published model snapshot and take no lock the ingest side holds.

use crate::catalog::{Catalog, Retraction};
use crate::feed::{self, Exclusion};
use crate::learn::{Context, Feature, behaviour};
use crate::model::{ALL_CHANNELS, Article, ArticleId, Channel};
use crate::params::{ParamError, TrackParam};
use crate::stats::StatKey;
use crate::store::{Sources, Store, StoredArticle};
use crate::text;

use super::{ArticleStats, Engine, EngineError, Explanation, Found, StatsReport, check_user_id};

impl<S: Store> Engine<S> {
    /// Decodes and checks params without recording anything.
    pub fn verify(&self, params: &[String]) -> Vec<Result<TrackParam, ParamError>> {
        params.iter().map(|p| self.signer.verify(p).map(|v| v.param)).collect()
    }

    /// Counters of known articles, in the order asked; unknown ids come back in the second list.
    pub fn article_stats(
        &self,
        ids: &[ArticleId],
        now_ms: i64,
    ) -> Result<Found<(ArticleId, ArticleStats)>, EngineError> {
        let known = self.lookup(ids, |c, id| c.contains(id).then_some(()), |_| ())?;
        let (known, missing): (Vec<_>, Vec<_>) = ids.iter().zip(known).partition(|(_, k)| k.is_some());
        let known: Vec<ArticleId> = known.into_iter().map(|(id, _)| *id).collect();
        let counters = self.store.counters(&known)?;
        let stats = known
            .into_iter()
            .zip(counters)
            .map(|(id, counters)| {
                let popularity = self.config.rank.popularity.value(counters.popularity_log2, now_ms);
                (id, ArticleStats { counters, popularity })
            })
            .collect();
        Ok((stats, missing.into_iter().map(|(id, _)| *id).collect()))
    }

    /// Article info for `ids` in order, each with its retraction if it was retracted; unknown
    /// ids in the second list.
    pub fn articles(&self, ids: &[ArticleId]) -> Result<Found<(Article, Option<Retraction>)>, EngineError> {
        let found = self.lookup(ids, |c, id| c.get(id).map(|a| (a.clone(), c.retraction(id).cloned())), |a| a)?;
        let missing = ids.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(id, _)| *id).collect();
        Ok((found.into_iter().flatten().collect(), missing))
    }

    /// Per id, in order, what `in_catalog` finds, else (for an article that aged out of the
    /// catalog) what `stored` makes of the store's copy; `None` for an unknown id.
    pub(super) fn lookup<T>(
        &self,
        ids: &[ArticleId],
        in_catalog: impl Fn(&Catalog, ArticleId) -> Option<T>,
        stored: impl Fn(StoredArticle) -> T,
    ) -> Result<Vec<Option<T>>, EngineError> {
        let catalog = self.catalog.load();
        let mut found: Vec<Option<T>> = ids.iter().map(|&id| in_catalog(&catalog, id)).collect();
        let absent: Vec<ArticleId> = ids.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(id, _)| *id).collect();
        if !absent.is_empty() {
            let mut from_store = self.store.get_articles(&absent)?.into_iter();
            for slot in found.iter_mut().filter(|f| f.is_none()) {
                *slot = from_store.next().flatten().map(&stored);
            }
        }
        Ok(found)
    }

    pub fn channels(&self) -> Vec<(Channel, usize)> {
        self.catalog.load().channels()
    }

    /// Why `article_id` would be picked for `user_id` now, for debug views.
    pub fn explain(&self, user_id: &str, article_id: ArticleId, now_ms: i64) -> Result<Explanation, EngineError> {
        check_user_id(user_id)?;
        let catalog = self.catalog.load();
        let article = catalog
            .get(article_id)
            .ok_or_else(|| EngineError::NotFound(format!("article {article_id} is not in the catalog")))?;
        let bucket = self.bucket_of(user_id);
        let variant = &self.config.variants[usize::from(bucket)];
        // Lock order as in a refresh: the snapshot is no lock, the store's record is the one.
        let model = self.model.load();
        let input = self.rank_input(&catalog, &model, user_id, ALL_CHANNELS, 10, now_ms, bucket);
        let (sources, served, hidden) = self.store.with_user(user_id, |user| {
            let now = feed::candidates(&input, &Exclusion::new(user, ALL_CHANNELS))
                .into_iter()
                .find(|c| c.id == article_id)
                .map_or(Sources::default(), |c| c.sources);
            let served = user
                .channels()
                .flat_map(|(_, h)| h.batches())
                .flat_map(|b| b.items.iter())
                .find(|i| i.article_id == article_id)
                .map(|i| i.sources);
            (now, served, user.has_read(article_id))
        })?;
        let learner = &model.learner;
        let who = learner.who(user_id);
        let score = feed::score_one(&input, who, article, sources);
        let world = self.world(&catalog, &model.hot);
        let ctx = Context { now_ms, position: None, sources };
        let prediction = learner.predict(&world, who, article, &ctx);
        let names = text::named_tokens(article);
        let token_text = |t| names.iter().find(|n| n.token == t).map(|n| n.text.clone());
        let mut contributions: Vec<(String, f64)> = learner
            .contributions(&world, who, article, &ctx)
            .into_iter()
            .filter(|(_, w)| *w != 0.0)
            .map(|(f, w): (Feature, f64)| (f.describe(&token_text), w))
            .collect();
        if !self.config.learn.off.has("behaviour") {
            // The logit is the behaviour ranker's: its terms on the audience's statistics, and
            // the personal ranker's features through its weight on their sum.
            let weights = learner.behaviour.weights;
            let inputs = learner.behaviour_inputs(&self.config.learn, article_id, now_ms, prediction.ranker);
            let through = if self.config.learn.off.has("ranker") { 0.0 } else { weights[behaviour::RANKER] };
            for (_, w) in &mut contributions {
                *w *= through;
            }
            contributions.retain(|(_, w)| *w != 0.0);
            let audience = (0..behaviour::INPUTS).filter(|&i| i != behaviour::RANKER);
            contributions.extend(
                audience
                    .map(|i| (format!("audience:{}", behaviour::INPUT_NAMES[i]), weights[i] * f64::from(inputs[i])))
                    .filter(|(_, w)| *w != 0.0),
            );
        }
        contributions.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        contributions.truncate(10);
        Ok(Explanation {
            bucket,
            variant: variant.name.clone(),
            ranker: variant.ranker,
            sources,
            served_sources: served,
            score,
            probability: prediction.probability,
            demotion: prediction.demotion,
            hidden,
            contributions,
        })
    }

    /// Exposures and actions per bucket, source and article channel for events with times in
    /// `[from_ms, to_ms)`.
    pub fn stats(&self, from_ms: i64, to_ms: i64) -> StatsReport {
        let window = self.model.load().learner.stats.window(from_ms, to_ms);
        let mut report = StatsReport { from_ms, to_ms, ..StatsReport::default() };
        for (key, counts) in window {
            match key {
                StatKey::Bucket(b) => {
                    let name = self.variant(b).map_or_else(|| format!("b{b}"), |v| v.name.clone());
                    report.by_bucket.push((name, counts));
                }
                StatKey::Source(s) => {
                    let name = s.and_then(|i| Sources::NAMED.get(usize::from(i))).map_or("unknown", |(_, n)| n);
                    report.by_source.push((name.to_owned(), counts));
                }
                StatKey::Channel(c) => report.by_channel.push((c.to_string(), counts)),
            }
        }
        report
    }

    /// Logged events (by any process sharing the store) the published model has not applied.
    pub fn learner_lag(&self) -> Result<u64, EngineError> {
        let last = self.store.last_event_seq()?;
        Ok(last.saturating_sub(self.model.load().learner.applied()))
    }

    /// Counts of what the learner holds, for logs.
    pub fn learner_summary(&self) -> String {
        let model = self.model.load();
        let l = &model.learner;
        let m = l.memory();
        format!(
            "events={} negatives={} users={} features={} zero_features={} pending={} applied={} \
             dropped_profiles={} dropped_features={}",
            l.events,
            l.negatives,
            l.users(),
            m.model_features,
            m.zero_features,
            m.pending,
            l.applied(),
            l.dropped_profiles,
            l.dropped_features
        )
    }
}
