//! CPU time spent while a transfer runs: each hop's, the bench client's, and the whole
//! machine's. Divided by the bytes moved it says what a throughput figure is bound by: when the
//! machine's cores are all busy, the rate is CPU-bound and the hop with the most CPU per GiB is
//! the one to make cheaper.
//!
//! A process's time is the sum of its threads' run time in `/proc/PID/task/TID/schedstat` (first
//! field, nanoseconds on a CPU; the kernel's `Documentation/scheduler/sched-stats.rst`). The
//! machine's is the non-idle time of `/proc/stat`'s `cpu` line (user, nice, system, irq,
//! softirq, steal; clock ticks). What neither the hops nor the client account for (the
//! container's process, runc, softirq work charged elsewhere) is reported as the rest.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::stats::round3;
use super::MIB;
use crate::Hop;

/// Name under which the bench's own process is reported.
pub const CLIENT: &str = "bench client";
/// Busy machine time not charged to a hop or the client.
pub const REST: &str = "rest of machine";

/// Clock ticks per second of `/proc/stat` (USER_HZ: 100 on every Linux ABI the lab runs on).
const USER_HZ: u64 = 100;

/// Nanoseconds the process's live threads have spent on a CPU.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        total += parse_schedstat(&text).unwrap_or(0);
    }
    Some(total)
}

/// First field of a `schedstat` line: time on a CPU, ns.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Busy (non-idle, non-iowait) time of all CPUs together, ns.
fn machine_busy_ns() -> Option<u64> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// From `/proc/stat`'s aggregate `cpu` line: user nice system idle iowait irq softirq steal ...
fn parse_proc_stat(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Some(busy * (1_000_000_000 / USER_HZ))
}

/// The processes whose CPU time is followed: each hop's, and the bench's own.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    parties: Vec<(String, u32)>,
}

/// CPU counters at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    per_party: BTreeMap<String, u64>,
    machine_ns: Option<u64>,
    at: Instant,
}

/// What a transfer cost in CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuUse {
    /// CPU milliseconds per GiB moved: each hop, the bench client, and the rest of the machine.
    pub ms_per_gib: BTreeMap<String, f64>,
    /// Average number of CPUs busy during the transfer (the machine's, everything included).
    pub cores_busy: f64,
}

impl CpuMeter {
    pub fn new(hops: &[(Hop, u32)]) -> Self {
        let mut parties: Vec<(String, u32)> =
            hops.iter().map(|(h, pid)| (h.to_string(), *pid)).collect();
        parties.push((CLIENT.to_string(), std::process::id()));
        Self { parties }
    }

    pub fn snapshot(&self) -> CpuSnapshot {
        let mut per_party = BTreeMap::new();
        for (name, pid) in &self.parties {
            *per_party.entry(name.clone()).or_insert(0) += process_cpu_ns(*pid).unwrap_or(0);
        }
        CpuSnapshot {
            per_party,
            machine_ns: machine_busy_ns(),
            at: Instant::now(),
        }
    }
}

impl CpuSnapshot {
    /// CPU spent from `self` to `after`, per GiB of `bytes`.
    pub fn usage_until(&self, after: &CpuSnapshot, bytes: u64) -> CpuUse {
        let gib = bytes as f64 / (1024.0 * MIB as f64);
        let per_gib = |ns: u64| {
            if gib > 0.0 {
                ns as f64 / 1e6 / gib
            } else {
                0.0
            }
        };
        let mut ms_per_gib = BTreeMap::new();
        let mut parties_ns = 0u64;
        for (name, end) in &after.per_party {
            let spent = end.saturating_sub(self.per_party.get(name).copied().unwrap_or(0));
            parties_ns += spent;
            ms_per_gib.insert(name.clone(), per_gib(spent));
        }
        let machine = self
            .machine_ns
            .zip(after.machine_ns)
            .map(|(a, b)| b.saturating_sub(a));
        if let Some(machine) = machine {
            ms_per_gib.insert(
                REST.to_string(),
                per_gib(machine.saturating_sub(parties_ns)),
            );
        }
        let wall_ns = after.at.duration_since(self.at).as_nanos() as f64;
        let cores_busy = match machine {
            Some(m) if wall_ns > 0.0 => m as f64 / wall_ns,
            _ => 0.0,
        };
        CpuUse {
            ms_per_gib,
            cores_busy,
        }
    }
}

impl CpuUse {
    /// Every figure rounded to 3 decimals (for bench.json).
    pub fn rounded(&self) -> Self {
        Self {
            ms_per_gib: self
                .ms_per_gib
                .iter()
                .map(|(name, ms)| (name.clone(), round3(*ms)))
                .collect(),
            cores_busy: round3(self.cores_busy),
        }
    }

    /// The hop (not the client or the rest) that spends the most CPU per GiB.
    pub fn costliest_hop(&self) -> Option<(&str, f64)> {
        self.ms_per_gib
            .iter()
            .filter(|(name, _)| name.as_str() != CLIENT && name.as_str() != REST)
            .map(|(name, ms)| (name.as_str(), *ms))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// All parties together, CPU ms per GiB.
    pub fn total_ms_per_gib(&self) -> f64 {
        self.ms_per_gib.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field_is_run_time() {
        assert_eq!(parse_schedstat("123456789 2000 17\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn proc_stat_busy_leaves_out_idle_and_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let text = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(
            parse_proc_stat(text),
            Some((10 + 1 + 5 + 2 + 3 + 4) * 10_000_000)
        );
    }

    #[test]
    fn usage_is_per_gib_and_the_rest_is_what_no_party_accounts_for() {
        let at = Instant::now();
        let before = CpuSnapshot {
            per_party: BTreeMap::from([("kubelet-stream".into(), 0), (CLIENT.into(), 0)]),
            machine_ns: Some(0),
            at,
        };
        let after = CpuSnapshot {
            per_party: BTreeMap::from([
                ("kubelet-stream".into(), 300_000_000),
                (CLIENT.into(), 100_000_000),
            ]),
            machine_ns: Some(1_000_000_000),
            at: at + std::time::Duration::from_millis(500),
        };
        let used = before.usage_until(&after, 512 * MIB);
        assert_eq!(used.ms_per_gib["kubelet-stream"], 600.0);
        assert_eq!(used.ms_per_gib[CLIENT], 200.0);
        assert_eq!(used.ms_per_gib[REST], 1200.0);
        assert_eq!(used.cores_busy, 2.0);
        assert_eq!(used.costliest_hop(), Some(("kubelet-stream", 600.0)));
        assert_eq!(used.total_ms_per_gib(), 2000.0);
    }

    #[test]
    fn this_process_has_run_time() {
        let meter = CpuMeter::new(&[]);
        let before = meter.snapshot();
        // Busy for a while: the kernel updates run time at ticks and context switches.
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let after = meter.snapshot();
        assert!(before.usage_until(&after, MIB).ms_per_gib[CLIENT] > 0.0);
    }
}
