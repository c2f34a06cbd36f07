//! `bench.json` and the printed table: each path's figures, its ratio to the floor (raw
//! `runc exec`), what the hop it adds costs, and the three targets, met or missed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::breakdown::SetupBreakdown;
use super::cpu::{CpuUse, CLIENT, REST};
use super::floor::ChainCopy;
use super::paths::PathName;
use super::stats::{round3, Percentiles};
use super::BenchError;

/// The whole chain may add this much to raw runc exec (p50).
pub const TARGET_CHAIN_ADDED_MS: f64 = 3.0;
/// stdout through every hop at least this fast (decimal MB/s).
pub const TARGET_STDOUT_MB_S: f64 = 1000.0;
/// An idle session may cost each hop at most this much RSS.
pub const TARGET_IDLE_KIB: f64 = 64.0;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    #[serde(flatten)]
    pub shape: RunShape,
    pub loopback_mb_s: f64,
    pub loopback_runs_mb_s: Vec<f64>,
    /// Every crossing stdout makes through the whole chain, with no protocol work (`floor`).
    pub chain_copy: ChainCopyReport,
    pub paths: BTreeMap<String, PathReport>,
    /// Each path's setup split into runc's part and the rest, from the hops' logs.
    pub setup_without_runc: BTreeMap<String, SetupBreakdown>,
    /// Real kubectl (its process start-up included), reported apart from the paths.
    pub kubectl: BTreeMap<String, Percentiles>,
    pub concurrency: Vec<ConcurrencyReport>,
    pub targets: Targets,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    pub setup_ms: Percentiles,
    pub stdout_mb_s: f64,
    pub stdin_mb_s: f64,
    /// Every transfer's rate, in the order taken (the figures above are their median).
    pub stdout_runs_mb_s: Vec<f64>,
    pub stdin_runs_mb_s: Vec<f64>,
    /// Keystroke echo round trip (paths with a tty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty_rtt_ms: Option<Percentiles>,
    /// setup p50 / the floor's setup p50.
    pub setup_ratio_to_floor: f64,
    /// setup p50 − the path one hop below's p50: that hop's cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_added_ms: Option<f64>,
    /// The hop this path adds over `below`.
    pub hop_added: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below: Option<String>,
    /// stdout MB/s / loopback MB/s.
    pub stdout_ratio_to_loopback: f64,
    /// CPU per GiB of stdout, per hop, the bench client and the rest of the machine.
    pub stdout_cpu: CpuUse,
    pub stdin_cpu: CpuUse,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainCopyReport {
    pub mb_s: f64,
    pub runs_mb_s: Vec<f64>,
    /// The whole machine's CPU per GiB moved, and how many CPUs were busy.
    pub cpu_ms_per_gib: f64,
    pub cpus_busy: f64,
}

impl ChainCopyReport {
    fn from_floor((floor, runs): &(ChainCopy, Vec<f64>)) -> Self {
        ChainCopyReport {
            mb_s: round3(floor.mb_s),
            runs_mb_s: rounded(runs),
            cpu_ms_per_gib: floor.cpu.total_ms_per_gib().round(),
            cpus_busy: round3(floor.cpu.cores_busy),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConcurrencyReport {
    pub sessions: usize,
    pub path: String,
    pub setup_ms: Percentiles,
    pub open_all_s: f64,
    /// RSS growth per idle session, KiB, per hop.
    pub rss_kib_per_session: BTreeMap<String, f64>,
    pub rss_kib_before: BTreeMap<String, u64>,
    pub rss_kib_open: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub measured: f64,
    pub limit: f64,
    pub met: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_added_p50_ms: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_all_hops_mb_s: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_rss_kib_per_session_per_hop: Option<Target>,
}

/// Raw per-path results before the cross-path figures are derived.
#[derive(Debug, Clone)]
pub struct PathFigures {
    pub setup_ms: Percentiles,
    pub stdout_mb_s: f64,
    pub stdin_mb_s: f64,
    pub tty_rtt_ms: Option<Percentiles>,
    /// CPU spent moving the stdout / stdin bytes.
    pub stdout_cpu: CpuUse,
    pub stdin_cpu: CpuUse,
    pub stdout_runs_mb_s: Vec<f64>,
    pub stdin_runs_mb_s: Vec<f64>,
}

/// How the run was made.
#[derive(Debug, Clone, Serialize)]
pub struct RunShape {
    pub quick: bool,
    /// `release` or `debug`: which hop binaries were measured.
    pub build: String,
    pub cpus: usize,
    pub setup_samples: usize,
    pub transfer_bytes: u64,
    /// Transfers per path and direction, and per floor: each rate is their median.
    pub transfers: usize,
}

fn rounded(rates: &[f64]) -> Vec<f64> {
    rates.iter().copied().map(round3).collect()
}

/// Derives ratios, hop costs and targets.
pub fn assemble(
    figures: &BTreeMap<PathName, PathFigures>,
    breakdowns: &BTreeMap<PathName, SetupBreakdown>,
    (loopback, chain_copy): ((f64, Vec<f64>), (ChainCopy, Vec<f64>)),
    concurrency: Vec<ConcurrencyReport>,
    kubectl: BTreeMap<String, Percentiles>,
    shape: RunShape,
) -> BenchReport {
    let loopback_mb_s = loopback.0;
    let floor = figures.get(&PathName::Runc).map(|f| f.setup_ms.p50);
    let mut paths = BTreeMap::new();
    for (path, f) in figures {
        let below = path.below();
        let added = below
            .and_then(|b| figures.get(&b))
            .map(|b| round3(f.setup_ms.p50 - b.setup_ms.p50));
        paths.insert(
            path.name().to_string(),
            PathReport {
                setup_ms: f.setup_ms.rounded(),
                stdout_mb_s: round3(f.stdout_mb_s),
                stdin_mb_s: round3(f.stdin_mb_s),
                stdout_runs_mb_s: rounded(&f.stdout_runs_mb_s),
                stdin_runs_mb_s: rounded(&f.stdin_runs_mb_s),
                tty_rtt_ms: f.tty_rtt_ms.map(Percentiles::rounded),
                setup_ratio_to_floor: floor
                    .filter(|f| *f > 0.0)
                    .map_or(0.0, |fl| round3(f.setup_ms.p50 / fl)),
                setup_added_ms: added,
                hop_added: path.hop_added().to_string(),
                below: below.map(|b| b.name().to_string()),
                stdout_ratio_to_loopback: if loopback_mb_s > 0.0 {
                    round3(f.stdout_mb_s / loopback_mb_s)
                } else {
                    0.0
                },
                stdout_cpu: f.stdout_cpu.rounded(),
                stdin_cpu: f.stdin_cpu.rounded(),
            },
        );
    }
    let chain_copy = ChainCopyReport::from_floor(&chain_copy);
    let targets = targets(figures, breakdowns, &concurrency, &chain_copy);
    BenchReport {
        shape,
        loopback_mb_s: round3(loopback_mb_s),
        loopback_runs_mb_s: rounded(&loopback.1),
        chain_copy,
        paths,
        setup_without_runc: breakdowns
            .iter()
            .map(|(p, b)| (p.name().to_string(), b.clone()))
            .collect(),
        kubectl,
        concurrency,
        targets,
    }
}

fn targets(
    figures: &BTreeMap<PathName, PathFigures>,
    breakdowns: &BTreeMap<PathName, SetupBreakdown>,
    concurrency: &[ConcurrencyReport],
    chain_copy: &ChainCopyReport,
) -> Targets {
    let floor = figures.get(&PathName::Runc);
    let chain = figures.get(&PathName::ApiserverWs);
    let chain_added_p50_ms = floor.zip(chain).map(|(floor, chain)| {
        let added = round3(chain.setup_ms.p50 - floor.setup_ms.p50);
        // Which hop spends the most of it: the largest neighbour difference on the WS path.
        let steps = [
            (PathName::Shim, PathName::Runc),
            (PathName::Cri, PathName::Shim),
            (PathName::KubeletProxy, PathName::Cri),
            (PathName::ApiserverWs, PathName::KubeletProxy),
        ];
        let worst = steps
            .iter()
            .filter_map(|(upper, lower)| {
                let d = figures.get(upper)?.setup_ms.p50 - figures.get(lower)?.setup_ms.p50;
                Some((upper.hop_added(), d))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut detail = match worst {
            Some((hop, d)) => {
                format!("apiserver-ws p50 − runc p50; largest step: {hop} +{d:.2} ms")
            }
            None => "apiserver-ws p50 − runc p50".into(),
        };
        if let Some(b) = breakdowns.get(&PathName::ApiserverWs) {
            let _ = write!(
                detail,
                "; exec by exec without runc's own time: p50 {:.2} ms, costliest steps: {}",
                b.without_runc_ms.p50,
                b.costliest(2)
            );
        }
        Target {
            measured: added,
            limit: TARGET_CHAIN_ADDED_MS,
            met: added <= TARGET_CHAIN_ADDED_MS,
            detail,
        }
    });
    let stdout_all_hops_mb_s = chain.map(|c| {
        // The slowest hop: the first path down the chain whose rate drops most.
        let order = [
            PathName::Runc,
            PathName::Shim,
            PathName::Cri,
            PathName::KubeletProxy,
            PathName::ApiserverWs,
        ];
        let mut worst: Option<(&str, f64)> = None;
        for pair in order.windows(2) {
            if let (Some(lo), Some(hi)) = (figures.get(&pair[0]), figures.get(&pair[1])) {
                let drop = lo.stdout_mb_s - hi.stdout_mb_s;
                if worst.is_none_or(|(_, d)| drop > d) {
                    worst = Some((pair[1].hop_added(), drop));
                }
            }
        }
        let mut detail = match worst {
            Some((hop, d)) => format!("apiserver-ws stdout; largest drop: {hop} −{d:.0} MB/s"),
            None => "apiserver-ws stdout".into(),
        };
        let cpu = &c.stdout_cpu;
        if let Some((hop, ms)) = cpu.costliest_hop() {
            let _ = write!(
                detail,
                "; {:.2} CPUs busy, {:.0} CPU ms/GiB in all, most in one hop: {hop} {ms:.0}",
                cpu.cores_busy,
                cpu.total_ms_per_gib()
            );
        }
        if chain_copy.mb_s > 0.0 {
            let _ = write!(
                detail,
                "; {:.2} of the chain copy floor ({:.0} MB/s, {:.0} CPU ms/GiB)",
                c.stdout_mb_s / chain_copy.mb_s,
                chain_copy.mb_s,
                chain_copy.cpu_ms_per_gib
            );
        }
        Target {
            measured: round3(c.stdout_mb_s),
            limit: TARGET_STDOUT_MB_S,
            met: c.stdout_mb_s >= TARGET_STDOUT_MB_S,
            detail,
        }
    });
    let idle_rss_kib_per_session_per_hop =
        concurrency.iter().max_by_key(|c| c.sessions).and_then(|c| {
            let (hop, kib) = c
                .rss_kib_per_session
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1))?;
            Some(Target {
                measured: round3(*kib),
                limit: TARGET_IDLE_KIB,
                met: *kib <= TARGET_IDLE_KIB,
                detail: format!("{} idle sessions; largest: {hop}", c.sessions),
            })
        });
    Targets {
        chain_added_p50_ms,
        stdout_all_hops_mb_s,
        idle_rss_kib_per_session_per_hop,
    }
}

impl BenchReport {
    /// Setup split exec by exec (from the hops' logs): runc's part, the rest, and the
    /// costliest steps of the rest.
    pub fn without_runc_table(&self) -> String {
        let mut t = String::new();
        if self.setup_without_runc.is_empty() {
            return t;
        }
        let _ = writeln!(
            t,
            "setup without runc (per exec: setup − shim-exec's runc exec until the process's first output)\n{:<17} {:>5} {:>9} {:>9} {:>9}  costliest steps (median ms before the event)",
            "path", "n", "runc p50", "rest p50", "rest p90"
        );
        for path in PathName::EVERY {
            let Some(b) = self.setup_without_runc.get(path.name()) else {
                continue;
            };
            let _ = writeln!(
                t,
                "{:<17} {:>5} {:>9.2} {:>9.2} {:>9.2}  {}",
                path.name(),
                b.samples,
                b.runc_ms.p50,
                b.without_runc_ms.p50,
                b.without_runc_ms.p90,
                b.costliest(3)
            );
        }
        t
    }

    /// CPU ms per GiB moved, per path and direction, one column per party.
    pub fn cpu_table(&self) -> String {
        let mut columns: Vec<String> = crate::Hop::CHAIN.iter().map(|h| h.to_string()).collect();
        columns.extend([CLIENT.to_string(), REST.to_string()]);
        let mut t = String::new();
        let _ = write!(t, "CPU ms per GiB moved {:<14}", "");
        for c in &columns {
            let _ = write!(t, " {c:>15}");
        }
        let _ = writeln!(t, " {:>8} {:>10}", "total", "CPUs busy");
        for path in PathName::EVERY {
            let Some(p) = self.paths.get(path.name()) else {
                continue;
            };
            for (dir, used) in [("stdout", &p.stdout_cpu), ("stdin", &p.stdin_cpu)] {
                let _ = write!(t, "{:<17} {dir:<17}", path.name());
                for c in &columns {
                    match used.ms_per_gib.get(c) {
                        Some(ms) => {
                            let _ = write!(t, " {ms:>15.0}");
                        }
                        None => {
                            let _ = write!(t, " {:>15}", "-");
                        }
                    }
                }
                let _ = writeln!(
                    t,
                    " {:>8.0} {:>10.2}",
                    used.total_ms_per_gib(),
                    used.cores_busy
                );
            }
        }
        t
    }

    /// One line per containerd path: ours/containerd for setup p50 and p90 (below 1: ours is
    /// faster) and stdout (above 1: ours streams faster).
    pub fn vs_containerd(&self) -> String {
        let mut t = String::new();
        for theirs in PathName::CONTAINERD {
            let Some(ours) = theirs.ours() else { continue };
            let (Some(o), Some(c)) = (self.paths.get(ours.name()), self.paths.get(theirs.name()))
            else {
                continue;
            };
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            let _ = writeln!(
                t,
                "ours/containerd {} vs {}: setup p50 {:.2}/{:.2} ms = {:.2}, p90 {:.2}/{:.2} ms = {:.2}; stdout {:.0}/{:.0} MB/s = {:.2}",
                ours.name(),
                theirs.name(),
                o.setup_ms.p50,
                c.setup_ms.p50,
                ratio(o.setup_ms.p50, c.setup_ms.p50),
                o.setup_ms.p90,
                c.setup_ms.p90,
                ratio(o.setup_ms.p90, c.setup_ms.p90),
                o.stdout_mb_s,
                c.stdout_mb_s,
                ratio(o.stdout_mb_s, c.stdout_mb_s),
            );
        }
        t
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| BenchError::Output(format!("bench.json: {e}")))?;
        std::fs::write(path, text)
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "execlab bench ({}, {} build, {} CPUs, {} setup samples/path, {} × {} MiB transfers per path and direction: rates are their median)",
            if self.shape.quick { "quick" } else { "full" },
            self.shape.build,
            self.shape.cpus,
            self.shape.setup_samples,
            self.shape.transfers,
            self.shape.transfer_bytes / (1024 * 1024)
        );
        let _ = writeln!(
            t,
            "{:<17} {:>8} {:>8} {:>8} {:>7} {:>9}  {:>9} {:>9} {:>8}  hop added",
            "path", "p50 ms", "p90 ms", "p99 ms", "×floor", "+ms", "out MB/s", "in MB/s", "tty ms"
        );
        for path in PathName::EVERY {
            let Some(p) = self.paths.get(path.name()) else {
                continue;
            };
            let added = p
                .setup_added_ms
                .map_or("-".to_string(), |a| format!("{a:+.2}"));
            let tty = p
                .tty_rtt_ms
                .map_or("-".to_string(), |r| format!("{:.2}", r.p50));
            let _ = writeln!(
                t,
                "{:<17} {:>8.2} {:>8.2} {:>8.2} {:>7.2} {:>9}  {:>9.0} {:>9.0} {:>8}  {}",
                path.name(),
                p.setup_ms.p50,
                p.setup_ms.p90,
                p.setup_ms.p99,
                p.setup_ratio_to_floor,
                added,
                p.stdout_mb_s,
                p.stdin_mb_s,
                tty,
                p.hop_added
            );
        }
        let _ = writeln!(t, "loopback TCP copy: {:.0} MB/s", self.loopback_mb_s);
        let floor = &self.chain_copy;
        let _ = writeln!(
            t,
            "chain copy (stdout's crossings through every hop, no protocol work): {:.0} MB/s, {:.0} CPU ms/GiB, {:.2} CPUs busy",
            floor.mb_s, floor.cpu_ms_per_gib, floor.cpus_busy
        );
        t.push_str(&self.without_runc_table());
        t.push_str(&self.cpu_table());
        t.push_str(&self.vs_containerd());
        for (how, p) in &self.kubectl {
            let _ = writeln!(
                t,
                "kubectl exec ({how}, process start-up included): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms",
                p.p50, p.p90, p.p99
            );
        }
        for c in &self.concurrency {
            let per_hop: Vec<String> = c
                .rss_kib_per_session
                .iter()
                .map(|(hop, kib)| format!("{hop} {kib:.1}"))
                .collect();
            let _ = writeln!(
                t,
                "{:>5} idle sessions ({}): setup p50 {:.1} ms p99 {:.1} ms, all open in {:.2} s; RSS KiB/session: {}",
                c.sessions,
                c.path,
                c.setup_ms.p50,
                c.setup_ms.p99,
                c.open_all_s,
                per_hop.join(", ")
            );
        }
        let verdict = |t: &Option<Target>, name: &str, unit: &str, cmp: &str| match t {
            Some(t) => format!(
                "{name}: {:.2} {unit} ({cmp} {} {unit}) {} — {}\n",
                t.measured,
                t.limit,
                if t.met { "MET" } else { "MISSED" },
                t.detail
            ),
            None => format!("{name}: not measured\n"),
        };
        t.push_str(&verdict(
            &self.targets.chain_added_p50_ms,
            "target chain adds",
            "ms",
            "≤",
        ));
        t.push_str(&verdict(
            &self.targets.stdout_all_hops_mb_s,
            "target stdout all hops",
            "MB/s",
            "≥",
        ));
        t.push_str(&verdict(
            &self.targets.idle_rss_kib_per_session_per_hop,
            "target idle RSS",
            "KiB/session/hop",
            "≤",
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::Percentiles;
    use super::*;

    fn figures(p50: f64, stdout: f64) -> PathFigures {
        PathFigures {
            setup_ms: Percentiles {
                p50,
                p90: p50 * 2.0,
                p99: p50 * 3.0,
            },
            stdout_mb_s: stdout,
            stdin_mb_s: stdout,
            tty_rtt_ms: None,
            stdout_cpu: cpu(2.0),
            stdin_cpu: cpu(1.0),
            stdout_runs_mb_s: vec![stdout],
            stdin_runs_mb_s: vec![stdout],
        }
    }

    fn cpu(cores_busy: f64) -> CpuUse {
        CpuUse {
            ms_per_gib: BTreeMap::from([
                ("apiserver-proxy".into(), 300.0),
                ("kubelet-stream".into(), 200.0),
                (CLIENT.into(), 100.0),
                (REST.into(), 400.0),
            ]),
            cores_busy,
        }
    }

    /// A quick report of `map` alone (no split, sessions or kubectl), loopback at `loopback`,
    /// the chain copy floor at 875 MB/s.
    fn assembled(map: &BTreeMap<PathName, PathFigures>, loopback: f64) -> BenchReport {
        let chain_copy = ChainCopy {
            mb_s: 875.0,
            cpu: cpu(1.8),
        };
        assemble(
            map,
            &BTreeMap::new(),
            ((loopback, vec![loopback]), (chain_copy, vec![875.0])),
            Vec::new(),
            BTreeMap::new(),
            RunShape {
                quick: true,
                build: "test".into(),
                cpus: 2,
                setup_samples: 5,
                transfer_bytes: 1,
                transfers: 1,
            },
        )
    }

    #[test]
    fn containerd_paths_get_a_row_and_an_ours_over_theirs_line() {
        let map = BTreeMap::from([
            (PathName::Cri, figures(10.0, 400.0)),
            (PathName::ContainerdCri, figures(20.0, 200.0)),
        ]);
        let report = assembled(&map, 1000.0);
        let table = report.table();
        assert!(table.contains("containerd-cri"), "{table}");
        assert!(
            table.contains("ours/containerd cri vs containerd-cri: setup p50 10.00/20.00 ms = 0.50, p90 20.00/40.00 ms = 0.50; stdout 400/200 MB/s = 2.00"),
            "{table}"
        );
        // No chain figures: no chain line.
        assert!(!table.contains("containerd-chain"), "{table}");
    }

    #[test]
    fn cpu_per_gib_gets_a_row_per_path_and_direction_and_names_the_costliest_hop() {
        let map = BTreeMap::from([
            (PathName::Runc, figures(10.0, 2000.0)),
            (PathName::ApiserverWs, figures(12.0, 700.0)),
        ]);
        let report = assembled(&map, 3000.0);
        let table = report.table();
        let row = table
            .lines()
            .find(|l| l.starts_with("apiserver-ws") && l.contains("stdout  "))
            .unwrap_or_else(|| panic!("no CPU row: {table}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        // path, direction, 4 hops, client, rest, total, CPUs busy
        assert_eq!(
            fields,
            [
                "apiserver-ws",
                "stdout",
                "300",
                "200",
                "-",
                "-",
                "100",
                "400",
                "1000",
                "2.00"
            ],
            "{table}"
        );
        let target = report
            .targets
            .stdout_all_hops_mb_s
            .as_ref()
            .expect("stdout target");
        assert!(
            target.detail.contains(
                "2.00 CPUs busy, 1000 CPU ms/GiB in all, most in one hop: apiserver-proxy 300"
            ),
            "{}",
            target.detail
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(
            json["paths"]["apiserver-ws"]["stdout_cpu"]["ms_per_gib"]["kubelet-stream"],
            200.0
        );
    }

    #[test]
    fn the_stdout_target_says_how_far_below_the_chain_copy_floor_the_chain_is() {
        let map = BTreeMap::from([(PathName::ApiserverWs, figures(12.0, 700.0))]);
        let report = assembled(&map, 3000.0);
        let detail = &report.targets.stdout_all_hops_mb_s.as_ref().unwrap().detail;
        assert!(
            detail.ends_with("; 0.80 of the chain copy floor (875 MB/s, 1000 CPU ms/GiB)"),
            "{detail}"
        );
        let table = report.table();
        assert!(
            table.contains("chain copy (stdout's crossings through every hop, no protocol work): 875 MB/s, 1000 CPU ms/GiB, 1.80 CPUs busy"),
            "{table}"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["chain_copy"]["mb_s"], 875.0);
        assert_eq!(json["chain_copy"]["cpus_busy"], 1.8);
        assert_eq!(json["chain_copy"]["runs_mb_s"], serde_json::json!([875.0]));
        assert_eq!(
            json["paths"]["apiserver-ws"]["stdout_runs_mb_s"],
            serde_json::json!([700.0])
        );
    }
}
