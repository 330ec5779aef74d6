//! Counting: per-worker latency histograms and outcome counters, merged at the end; CPU time of
//! this process and, optionally, of the server under test.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, 3 significant digits, up to a minute.
const MAX_MICROS: u64 = 60_000_000;

/// What one worker saw during the measured window.
pub struct Stats {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub short: u64,
    /// Encoded size of the verified answers, in bytes.
    pub bytes: u64,
    pub errors: u64,
    /// Error kind -> (count, first message).
    pub error_kinds: BTreeMap<String, (u64, String)>,
}

impl Stats {
    pub fn new() -> Self {
        let latency = Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds");
        Self { latency, ok: 0, short: 0, bytes: 0, errors: 0, error_kinds: BTreeMap::new() }
    }

    /// A verified answer (`short`: fewer articles than asked for) of `bytes` encoded bytes.
    pub fn ok(&mut self, latency: Duration, short: bool, bytes: usize) {
        self.bytes += bytes as u64;
        self.latency.saturating_record(latency.as_micros().clamp(1, MAX_MICROS as u128) as u64);
        self.ok += 1;
        self.short += u64::from(short);
    }

    pub fn error(&mut self, kind: &str, message: impl FnOnce() -> String) {
        self.errors += 1;
        match self.error_kinds.get_mut(kind) {
            Some(entry) => entry.0 += 1,
            None => {
                self.error_kinds.insert(kind.to_owned(), (1, message()));
            }
        }
    }

    pub fn merge(&mut self, other: Stats) {
        self.latency.add(&other.latency).expect("histograms with the same bounds");
        self.ok += other.ok;
        self.short += other.short;
        self.bytes += other.bytes;
        self.errors += other.errors;
        for (kind, (count, message)) in other.error_kinds {
            self.error_kinds.entry(kind).or_insert((0, message)).0 += count;
        }
    }

    /// Latency quantile in milliseconds (0 when nothing was recorded).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() { 0.0 } else { self.latency.value_at_quantile(q) as f64 / 1000.0 }
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        self.latency.mean() / 1000.0
    }
}

/// CPU time (user + system) used so far by this process.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass; a zeroed rusage is a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user + system) used so far by process `pid`, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime are
    // fields 14 and 15, in clock ticks.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_ascii_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up() {
        let mut a = Stats::new();
        a.ok(Duration::from_micros(500), false, 10);
        a.error("Unavailable", || "down".into());
        let mut b = Stats::new();
        b.ok(Duration::from_millis(3), true, 30);
        b.error("Unavailable", || "later".into());
        b.error("timeout", || "10s".into());
        a.merge(b);
        assert_eq!((a.ok, a.short, a.bytes, a.errors), (2, 1, 40, 3));
        assert_eq!(a.error_kinds["Unavailable"], (2, "down".to_owned()));
        assert!((a.quantile_ms(0.5) - 0.5).abs() < 0.01);
        assert!((a.max_ms() - 3.0).abs() < 0.01);
    }

    #[test]
    fn cpu_time_of_this_process_is_readable_both_ways() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        assert!(own_cpu() > Duration::ZERO);
        assert!(process_cpu(std::process::id()).is_some());
        assert_eq!(process_cpu(u32::MAX), None);
    }
}
