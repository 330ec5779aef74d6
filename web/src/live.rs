//! The live catalog as the page sees it: the state of the push stream (`Catalog.Watch`), the
//! articles published in the watched channel since the feed was last refreshed, and whether
//! changes may have been missed while disconnected.

/// A change pushed by the server, in the page's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The stream is open; the server's newest sequence number.
    Subscribed {
        seq: u64,
    },
    Published {
        seq: u64,
        article_id: i64,
    },
    Updated {
        seq: u64,
        article_id: i64,
    },
    Retracted {
        seq: u64,
        article_id: i64,
    },
    /// The server no longer holds every change since the page's last one.
    Resync {
        seq: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    /// The stream failed `attempt` times in a row; the last reason.
    Down {
        message: String,
        attempt: u32,
    },
}

/// Longest wait between reconnection attempts, ms.
pub const MAX_RETRY_MS: u32 = 8_000;

/// New articles the page keeps track of at most; past it the banner says "N+".
pub const MAX_FRESH: usize = 1_000;

/// The wait before reconnection attempt `attempt` (1-based), ms: 1 s, then doubling up to
/// [`MAX_RETRY_MS`].
pub fn retry_after(attempt: u32) -> u32 {
    1_000u32.saturating_mul(1 << attempt.saturating_sub(1).min(3)).min(MAX_RETRY_MS)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    connection: Connection,
    /// The newest change applied (sent back as `since` on reconnect); 0 before any.
    last_seq: u64,
    /// Published in the watched channel since the last refresh, oldest first.
    fresh: Vec<i64>,
    /// More were published than [`MAX_FRESH`]: the banner says "N+".
    more: bool,
    /// Changes may have been missed (the server said so): the feed should be refreshed.
    stale: bool,
}

impl Default for Live {
    fn default() -> Live {
        Live { connection: Connection::Connecting, last_seq: 0, fresh: Vec::new(), more: false, stale: false }
    }
}

impl Live {
    /// Starts over for another channel: a new stream from now on.
    pub fn restart(&mut self) {
        *self = Live::default();
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// What to send as `since` when (re)connecting.
    pub fn since(&self) -> u64 {
        self.last_seq
    }

    pub fn fresh(&self) -> &[i64] {
        &self.fresh
    }

    /// Applies a change; returns the id of an article to take off the page (a retraction).
    pub fn apply(&mut self, change: Change) -> Option<i64> {
        match change {
            Change::Subscribed { seq } => {
                self.connection = Connection::Live;
                // A first stream starts from now; a reconnecting one gets its backlog next.
                if self.last_seq == 0 {
                    self.last_seq = seq;
                }
                None
            }
            Change::Resync { seq } => {
                self.last_seq = seq;
                self.stale = true;
                None
            }
            Change::Published { seq, article_id } => {
                self.last_seq = self.last_seq.max(seq);
                if self.fresh.len() >= MAX_FRESH {
                    self.more = true;
                } else if !self.fresh.contains(&article_id) {
                    self.fresh.push(article_id);
                }
                None
            }
            Change::Updated { seq, .. } => {
                self.last_seq = self.last_seq.max(seq);
                None
            }
            Change::Retracted { seq, article_id } => {
                self.last_seq = self.last_seq.max(seq);
                self.fresh.retain(|&id| id != article_id);
                Some(article_id)
            }
        }
    }

    /// The stream failed or ended: how long to wait before the next attempt, ms (1 s, then
    /// doubling up to [`MAX_RETRY_MS`]).
    pub fn fail(&mut self, message: String) -> u32 {
        let attempt = match &self.connection {
            Connection::Down { attempt, .. } => attempt + 1,
            Connection::Connecting | Connection::Live => 1,
        };
        self.connection = Connection::Down { message, attempt };
        retry_after(attempt)
    }

    /// The feed was refreshed: what was new is in it now.
    pub fn seen(&mut self) {
        self.fresh.clear();
        self.more = false;
        self.stale = false;
    }

    /// The banner over the feed, if there is news.
    pub fn banner(&self) -> Option<String> {
        match self.fresh.len() {
            0 if self.stale => Some("the catalog changed while the page was disconnected — refresh".to_owned()),
            0 => None,
            1 => Some("1 new article — refresh".to_owned()),
            n if self.more => Some(format!("{n}+ new articles — refresh")),
            n => Some(format!("{n} new articles — refresh")),
        }
    }

    /// A word on the stream, for the toolbar.
    pub fn status_text(&self) -> String {
        match &self.connection {
            Connection::Connecting => "connecting to live updates…".to_owned(),
            Connection::Live => "live".to_owned(),
            Connection::Down { message, attempt } => {
                format!("live updates disconnected ({message}); reconnecting, attempt {attempt}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_publications_is_counted_within_a_bound() {
        let mut live = Live::default();
        for id in 1..=(MAX_FRESH as i64 + 500) {
            live.apply(Change::Published { seq: id as u64, article_id: id });
        }
        assert_eq!(live.fresh().len(), MAX_FRESH);
        assert_eq!(live.banner().unwrap(), format!("{MAX_FRESH}+ new articles — refresh"));
        live.seen();
        assert_eq!(live.banner(), None);
    }

    #[test]
    fn publications_count_until_the_feed_is_refreshed() {
        let mut live = Live::default();
        assert_eq!(live.apply(Change::Subscribed { seq: 100 }), None);
        assert_eq!(live.connection(), &Connection::Live);
        assert_eq!(live.banner(), None);
        live.apply(Change::Published { seq: 101, article_id: 7 });
        assert_eq!(live.banner().unwrap(), "1 new article — refresh");
        live.apply(Change::Published { seq: 102, article_id: 8 });
        live.apply(Change::Published { seq: 103, article_id: 7 });
        live.apply(Change::Updated { seq: 104, article_id: 9 });
        assert_eq!(live.banner().unwrap(), "2 new articles — refresh");
        assert_eq!(live.since(), 104);
        live.seen();
        assert_eq!(live.banner(), None);
    }

    #[test]
    fn a_retraction_takes_the_article_off_and_out_of_the_count() {
        let mut live = Live::default();
        live.apply(Change::Subscribed { seq: 1 });
        live.apply(Change::Published { seq: 2, article_id: 7 });
        assert_eq!(live.apply(Change::Retracted { seq: 3, article_id: 7 }), Some(7));
        assert_eq!(live.fresh(), &[] as &[i64]);
        assert_eq!(live.apply(Change::Retracted { seq: 4, article_id: 5 }), Some(5));
    }

    #[test]
    fn reconnecting_backs_off_and_keeps_the_last_number() {
        let mut live = Live::default();
        live.apply(Change::Subscribed { seq: 50 });
        live.apply(Change::Published { seq: 51, article_id: 1 });
        let waits: Vec<u32> = (0..6).map(|_| live.fail("down".into())).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert!(live.status_text().contains("attempt 6"), "{}", live.status_text());
        // The server's newest number on reconnect does not skip the backlog that follows it.
        live.apply(Change::Subscribed { seq: 60 });
        assert_eq!(live.since(), 51);
        assert_eq!(live.fail("again".into()), 1_000, "a stream that was live starts over at 1 s");
    }

    #[test]
    fn a_resync_asks_for_a_refresh() {
        let mut live = Live::default();
        live.apply(Change::Subscribed { seq: 9 });
        live.apply(Change::Resync { seq: 900 });
        assert!(live.banner().unwrap().contains("disconnected"));
        assert_eq!(live.since(), 900);
        live.seen();
        assert_eq!(live.banner(), None);
        live.restart();
        assert_eq!(live.since(), 0);
        assert_eq!(live.connection(), &Connection::Connecting);
    }
}
