//! A user's profile: what their positives and dislikes taught, bounded in size.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::mem;
use crate::model::{Article, ArticleId, ChannelId};
use crate::text::{Token, hash_str, keyword_token};

use super::{LearnConfig, Learner, World};

/// What a user's positives and dislikes taught so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Articles liked, oldest first.
    pub recent: VecDeque<ArticleId>,
    /// Token affinities (keywords and title tokens), decayed, largest kept; sorted by token.
    pub tokens: Vec<(Token, f32)>,
    /// The sum of the token weights.
    pub token_mass: f32,
    pub channels: Vec<(ChannelId, f32)>,
    /// Disliked topics: keyword tokens and channel tokens.
    pub dislikes: Vec<(Token, f32)>,
    pub positives: u32,
    /// The time of the user's latest positive or dislike: the least recently active users'
    /// profiles are the first dropped when profiles exceed their memory bound.
    pub last_ms: i64,
}

impl Profile {
    /// The share of the user's token mass that `tokens` (distinct) cover, in 0..=1.
    pub fn similarity(&self, tokens: &[Token]) -> f32 {
        if self.token_mass <= 0.0 {
            return 0.0;
        }
        let hit: f32 = tokens
            .iter()
            .filter_map(|t| self.tokens.binary_search_by_key(t, |(k, _)| *k).ok())
            .map(|i| self.tokens[i].1)
            .sum();
        (hit / self.token_mass).min(1.0)
    }

    /// The share of the user's channel mass in `channel`, in 0..=1.
    pub fn channel_share(&self, channel: ChannelId) -> f32 {
        let mass: f32 = self.channels.iter().map(|(_, w)| w).sum();
        if mass <= 0.0 {
            return 0.0;
        }
        self.channels.iter().find(|(c, _)| *c == channel).map_or(0.0, |(_, w)| w / mass)
    }

    /// Multiplier for an article from the user's disliked topics: halves per disliked keyword,
    /// 0.7 per dislike in its channel, at least 0.05.
    pub fn demotion(&self, article: &Article) -> f64 {
        if self.dislikes.is_empty() {
            return 1.0;
        }
        let channel = channel_token(article.channel_id);
        let mut factor = 1.0f64;
        for (t, w) in &self.dislikes {
            if *t == channel {
                factor *= 0.7f64.powf(f64::from(*w));
            } else if article.keywords.iter().any(|k| keyword_token(k) == *t) {
                factor *= 0.5f64.powf(f64::from(*w));
            }
        }
        factor.max(0.05)
    }

    /// Keyword tokens by affinity, largest first.
    pub fn top_tokens(&self, n: usize) -> Vec<(Token, f32)> {
        let mut t = self.tokens.clone();
        t.sort_by(|a, b| b.1.total_cmp(&a.1));
        t.truncate(n);
        t
    }

    /// Channels by affinity, largest first.
    pub fn top_channels(&self, n: usize) -> Vec<(ChannelId, f32)> {
        let mut c = self.channels.clone();
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        c.truncate(n);
        c
    }
}

/// The token a channel's dislikes are kept under.
pub fn channel_token(channel: ChannelId) -> Token {
    hash_str(b'c', &channel.to_string())
}

fn bump<K: PartialEq + Copy>(list: &mut Vec<(K, f32)>, key: K, by: f32, cap: usize) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, w)) => *w += by,
        None => {
            list.push((key, by));
            if list.len() > cap {
                let min = list.iter().enumerate().min_by(|a, b| a.1.1.total_cmp(&b.1.1)).map(|(i, _)| i);
                if let Some(i) = min {
                    list.swap_remove(i);
                }
            }
        }
    }
}

/// Estimated heap bytes of `user`'s profile beside its map entry: the id and the lists, each at
/// the allocator's size class. The map's buckets are counted for the map (`Learner::profile_total`).
pub(super) fn cost(user: &str, p: &Profile) -> usize {
    mem::string_bytes(user.len())
        + mem::vec_bytes::<ArticleId>(p.recent.capacity())
        + mem::vec_bytes::<(Token, f32)>(p.tokens.capacity())
        + mem::vec_bytes::<(ChannelId, f32)>(p.channels.capacity())
        + mem::vec_bytes::<(Token, f32)>(p.dislikes.capacity())
}

impl Learner {
    /// A positive: the profile's affinities and recent list, and co-engagement with the
    /// user's recent positives.
    pub(super) fn like(&mut self, cfg: &LearnConfig, world: &World<'_>, user: &str, article: &Article, now_ms: i64) {
        let recent = self.with_profile(cfg, user, now_ms, |profile| {
            if profile.recent.contains(&article.id) {
                return None;
            }
            profile.positives += 1;
            for (_, w) in &mut profile.tokens {
                *w *= cfg.profile_decay;
            }
            for (_, w) in &mut profile.channels {
                *w *= cfg.profile_decay;
            }
            let tokens = world.text.tokens(article.id);
            for &t in tokens {
                bump(&mut profile.tokens, t, world.text.idf(t).max(0.1), cfg.profile_tokens);
            }
            profile.tokens.sort_unstable_by_key(|(t, _)| *t);
            profile.token_mass = profile.tokens.iter().map(|(_, w)| w).sum();
            bump(&mut profile.channels, article.channel_id, 1.0, 32);
            let recent: Vec<ArticleId> = profile.recent.iter().rev().take(10).copied().collect();
            profile.recent.push_back(article.id);
            if profile.recent.len() > cfg.recent {
                profile.recent.pop_front();
            }
            Some(recent)
        });
        for other in recent.into_iter().flatten() {
            for (a, b) in [(other, article.id), (article.id, other)] {
                bump(self.coengaged.entry(a).or_default(), b, 1.0, cfg.coengaged_per_article);
            }
        }
    }

    /// A dislike: demotes the article's keywords and channel, forgets it as a positive.
    pub(super) fn dislike(&mut self, cfg: &LearnConfig, user: &str, article: &Article, now_ms: i64) {
        self.with_profile(cfg, user, now_ms, |profile| {
            for k in &article.keywords {
                bump(&mut profile.dislikes, keyword_token(k), 1.0, 64);
            }
            bump(&mut profile.dislikes, channel_token(article.channel_id), 0.5, 64);
            profile.recent.retain(|a| *a != article.id);
        });
    }
}
