//! Which Redis a URL names, and the one connection a store multiplexes all its calls on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use reco_engine::store::StoreError;

/// What [`parse`] accepts, for error messages.
pub(crate) const ACCEPTED: &str =
    "expected redis://host:port/db (one server) or redis+cluster://host1:port1,host2:port2,... (Redis Cluster seeds)";

/// A URL's Redis: one server, or the seed nodes of a cluster.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A `redis://` URL, as redis-rs reads it.
    Server(String),
    /// One `redis://host:port` URL per seed.
    Cluster(Vec<String>),
}

pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let bad = |why: &str| StoreError::Backend(format!("bad redis url {:?}: {why}; {ACCEPTED}", redact(url)));
    if let Some(seeds) = url.strip_prefix("redis+cluster://") {
        let seeds = seeds
            .split(',')
            .map(|seed| match seed.trim() {
                "" => Err(bad("an empty seed")),
                // A cluster has only database 0, and a seed is a node, not a path.
                seed if seed.contains(['/', '?', '#']) => Err(bad("a seed is host:port")),
                seed => Ok(format!("redis://{seed}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target::Cluster(seeds))
    } else if url.starts_with("redis://") {
        redis::Client::open(url).map_err(|e| bad(&e.to_string()))?;
        Ok(Target::Server(url.to_owned()))
    } else {
        Err(bad("unknown scheme"))
    }
}

/// The URL with any `user:password@` replaced by `***@`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let hosts: Vec<String> = rest
        .split(',')
        .map(|seed| {
            let authority_end = seed.find('/').unwrap_or(seed.len());
            match seed[..authority_end].rfind('@') {
                Some(at) => format!("***{}", &seed[at..]),
                None => seed.to_owned(),
            }
        })
        .collect();
    format!("{scheme}://{}", hosts.join(","))
}

/// One multiplexed connection: commands from every caller share it (cloning is cheap), and each
/// reconnects by itself after a failure (the call that saw it fails). It counts the requests
/// sent on it, each a command or a pipeline (a `MULTI` transaction is one) whose answer is
/// waited for: the round trips (on a cluster, a pipeline whose keys live on several nodes goes
/// to each of them at once, and counts once).
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    requests: Arc<AtomicU64>,
}

#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects, each attempt bounded by `connect_timeout` and each reply by `response_timeout`.
    pub(crate) async fn open(
        target: &Target,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let link = match target {
            Target::Server(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1);
                Link::Server(redis::Client::open(url.as_str())?.get_connection_manager_with_config(config).await?)
            }
            Target::Cluster(seeds) => Link::Cluster(
                ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .retries(2)
                    .build()?
                    .get_async_connection()
                    .await?,
            ),
        };
        let mut conn = Conn { link, requests: Arc::default() };
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    }

    /// Requests sent so far (see [`Conn`]).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match &mut self.link {
            Link::Server(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match &mut self.link {
            Link::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Server(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_server_or_cluster_seeds() {
        assert_eq!(parse("redis://127.0.0.1:6379/2").unwrap(), Target::Server("redis://127.0.0.1:6379/2".to_owned()));
        assert_eq!(
            parse("redis+cluster://a:1, b:2").unwrap(),
            Target::Cluster(vec!["redis://a:1".to_owned(), "redis://b:2".to_owned()])
        );
        for bad in ["", "http://a:1", "redis+cluster://", "redis+cluster://a:1,,b:2", "redis+cluster://a:1/0"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("redis://host:port/db") && err.contains("redis+cluster://"), "{bad:?}: {err}");
        }
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis+cluster://:pw@a:1,b:2"), "redis+cluster://***@a:1,b:2");
        assert!(!parse("redis+cluster://:pw@a:1/x").unwrap_err().to_string().contains("pw"));
    }
}
