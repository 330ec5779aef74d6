//! Real `redis-server` processes for the tests: one server, or a 3-master cluster, each node on
//! a free loopback port in a temp dir, killed (by the PID this harness started) and waited
//! for on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reco_redis::{RedisOptions, RedisStore};

/// How long a node may take to answer after it was started, and a cluster to be `ok`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at starting a node when its port was taken in between (by a test running beside).
const START_ATTEMPTS: usize = 5;

/// Runs `test` on its own thread and fails if it takes longer than `limit`, so that a hang
/// fails the test instead of blocking CI. What the caller owns (the servers) is dropped as the
/// failure unwinds, which also ends the hung calls.
pub fn bounded(limit: Duration, test: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().expect("the test finished"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test thread ended without reporting"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test did not finish within {limit:?}"),
    }
}

/// Fails (never skips) when the binaries are missing.
fn require(binary: &str) {
    if let Err(e) = Command::new(binary).arg("--version").stdout(Stdio::null()).output() {
        panic!("{binary} is needed by these tests but cannot run ({e}): install it (apt-get install redis-server)");
    }
}

/// A port on 127.0.0.1 nothing listened on a moment ago; for a cluster node also the bus port
/// (port + 10000), so both stay below 65536.
pub fn free_port(with_bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A unique key prefix, so stores of one test never see each other's keys.
/// Days since the Unix epoch (UTC), as the store numbers its dedup sets.
pub fn today() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400
}

pub fn prefix(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}:{test}:{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A `redis-server` on `port` keeping its files in `dir`, fsyncing every write.
fn redis_command(port: u16, dir: &std::path::Path, cluster: bool) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if cluster {
        cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"]).arg(dir.join("nodes.conf"));
    }
    cmd
}

/// One `redis-server` this harness started.
pub struct Node {
    pub port: u16,
    child: Child,
    /// The node's files (append-only file, log, nodes.conf); dropped after the process is gone.
    dir: tempfile::TempDir,
    cluster: bool,
}

impl Node {
    fn start(cluster: bool) -> Node {
        require("redis-server");
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("a temp dir for redis");
            let port = free_port(cluster);
            let child = redis_command(port, dir.path(), cluster).spawn().expect("spawn redis-server");
            let mut node = Node { port, child, dir, cluster };
            match node.wait_ready() {
                Ok(()) => return node,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// Waits until the node answers PING; fails when the process exited (its port was taken).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server on port {} exited ({status}): {log}", self.port));
            }
            if self.command(&["PING"]).is_ok_and(|reply| reply == "+PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server on port {} did not answer within {START_TIMEOUT:?}", self.port))
    }

    /// Sends one command in RESP and answers the first line of the reply, or for a bulk
    /// string its contents.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        let line = line.trim_end().to_owned();
        let Some(len) = line.strip_prefix('$') else { return Ok(line) };
        let len: usize = len.parse().map_err(|_| format!("bad reply {line:?}"))?;
        let mut body = vec![0; len + 2];
        reader.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
        body.truncate(len);
        String::from_utf8(body).map_err(|e| e.to_string())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the node (SIGKILL, as a crash) and waits for it; [`Node::restart`] brings it back.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again on its port and files (what its append-only file holds survives).
    pub fn restart(&mut self) {
        self.crash();
        self.child = redis_command(self.port, self.dir.path(), self.cluster).spawn().expect("spawn redis-server again");
        self.wait_ready().expect("the restarted node answers");
    }

    /// Sends a signal (`STOP`, `CONT`) to this node's process, by its PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.child.id());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Only the process this node started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server.
pub fn server() -> Node {
    Node::start(false)
}

/// A cluster of three masters, no replicas, every slot assigned and `cluster_state:ok` on each.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start() -> Cluster {
        require("redis-cli");
        let nodes: Vec<Node> = (0..3).map(|_| Node::start(true)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes };
        cluster.wait_ok();
        cluster
    }

    pub fn wait_ok(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info = node.command(&["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "node {} is not ok within {START_TIMEOUT:?}: {info}", node.port);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The slot Redis computes for `key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        let reply = self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]).expect("CLUSTER KEYSLOT");
        reply.strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad KEYSLOT reply {reply:?}"))
    }

    /// Whether `key` exists, asked of the node that owns its slot (the others answer MOVED).
    pub fn exists(&self, key: &str) -> bool {
        self.nodes.iter().any(|n| n.command(&["EXISTS", key]).is_ok_and(|reply| reply == ":1"))
    }
}

/// A store on `url` with a fresh prefix for `test`.
pub fn open(url: &str, test: &str, max_batches: usize) -> RedisStore {
    let options = RedisOptions { prefix: prefix(test), max_batches, ..RedisOptions::default() };
    RedisStore::open(url, options).unwrap_or_else(|e| panic!("open {url}: {e}"))
}
