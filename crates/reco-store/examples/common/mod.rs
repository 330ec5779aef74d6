//! What the benchmark examples share.

// Not every example uses every item.
#![allow(dead_code)]

/// The allocator of `reco serve`, so that RSS here is what the service would show.
pub type Alloc = mimalloc::MiMalloc;

/// This process's resident set, MiB.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}
