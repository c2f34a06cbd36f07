//! `execlab bench`: per-hop cost of `kubectl exec`, measured with execlab's own exec client (no
//! client start-up in the figures) on seven paths from raw `runc exec` (the floor) up to the
//! whole chain, against a plain loopback TCP copy measured in the same run; real kubectl is
//! reported apart. Writes `OUT/bench.json`, SVG plots and prints a table with each path's ratio
//! to the floor.
//!
//! A lab's kubelet either proxies or redirects, so the bench uses two labs: the main one (its
//! own, or `--dir` of a running one) for every path its kubelet mode serves, and a second one of
//! its own for the other kubelet path. Labs the bench starts log the shim into `logs/`, and their
//! logs are kept under `OUT/lab-*/logs` for `execlab trace`.

pub mod breakdown;
pub mod cli;
pub mod client;
pub mod cpu;
pub mod floor;
pub mod measure;
pub mod paths;
pub mod plot;
pub mod report;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::LabError;
use crate::lab::{Lab, LabConfig, LabRuntime};
use crate::Hop;

use client::{ClientError, Dialer};
use cpu::CpuMeter;
use measure::{Direction, MeasureError, MIB};
use paths::{LabTarget, PathName};
use report::{BenchReport, ConcurrencyReport, PathFigures, RunShape};
use stats::{median_run, Percentiles};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Lab(String),
    #[error("{path}: {what}: {source}")]
    Measure {
        path: String,
        what: &'static str,
        source: MeasureError,
    },
    #[error("{path}: {source}")]
    Client { path: String, source: ClientError },
    #[error("writing results: {0}")]
    Output(String),
}

impl From<LabError> for BenchError {
    fn from(e: LabError) -> Self {
        BenchError::Lab(e.to_string())
    }
}

impl From<ClientError> for BenchError {
    fn from(e: ClientError) -> Self {
        BenchError::Client {
            path: "lab".into(),
            source: e,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub out: PathBuf,
    /// A running lab to measure instead of starting one.
    pub dir: Option<PathBuf>,
    pub quick: bool,
    pub runc: String,
    /// Hop binaries for the labs the bench starts (next to the executable when `None`).
    pub bin_dir: Option<PathBuf>,
    /// Real kubectl to time as well (skipped when `None`).
    pub kubectl: Option<PathBuf>,
    /// The paths to measure besides the floor; empty: every path.
    pub paths: BTreeSet<PathName>,
}

impl BenchConfig {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            dir: None,
            quick: false,
            runc: "runc".into(),
            bin_dir: None,
            kubectl: None,
            paths: BTreeSet::new(),
        }
    }

    /// Whether `path` is measured: every path by default, the floor always.
    fn wants(&self, path: PathName) -> bool {
        self.paths.is_empty() || path == PathName::Runc || self.paths.contains(&path)
    }

    fn setup_samples(&self) -> usize {
        if self.quick {
            20
        } else {
            200
        }
    }
    fn transfer_bytes(&self) -> u64 {
        if self.quick {
            64 * MIB
        } else {
            1024 * MIB
        }
    }
    /// Transfers per path and direction (and per floor); the median is reported.
    fn transfers(&self) -> usize {
        3
    }
    fn levels(&self) -> &'static [usize] {
        if self.quick {
            &[1, 10, 100]
        } else {
            &[1, 10, 100, 1000]
        }
    }
    fn tty_samples(&self) -> usize {
        if self.quick {
            20
        } else {
            200
        }
    }
    fn kubectl_runs(&self) -> usize {
        if self.quick {
            5
        } else {
            20
        }
    }
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(steps: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(steps);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    fn step(&self, msg: String) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(msg);
            }
            None => eprintln!("execlab bench: {msg}"),
        }
    }

    fn note(&self, msg: String) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("execlab bench: {msg}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Everything measured so far.
#[derive(Default)]
struct Results {
    figures: BTreeMap<PathName, PathFigures>,
    breakdowns: BTreeMap<PathName, breakdown::SetupBreakdown>,
    concurrency: Vec<ConcurrencyReport>,
    kubectl: BTreeMap<String, Percentiles>,
}

/// Runs the bench; writes `bench.json` and the plots into `config.out`.
pub async fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    std::fs::create_dir_all(&config.out)
        .map_err(|e| BenchError::Output(format!("{}: {e}", config.out.display())))?;
    raise_open_files_limit();
    let steps = 5 + 2 * PathName::EVERY.len() as u64 + config.levels().len() as u64;
    let progress = Progress::new(steps);
    // On a tmpfs, as the lab's own FIFOs (crate::layout): the shim path's client plays
    // containerd, whose FIFOs live under /run.
    let fifo_dir = tempfile::Builder::new()
        .prefix("execlab-bench-fifos-")
        .tempdir_in(crate::layout::volatile_base().unwrap_or(&std::env::temp_dir()))
        .map_err(|e| BenchError::Output(format!("FIFO dir: {e}")))?;

    progress.step("floors: loopback TCP copy, chain copy".into());
    let bytes = config.transfer_bytes();
    let floor_failed = |what: &'static str| {
        move |source| BenchError::Measure {
            path: "floor".into(),
            what,
            source,
        }
    };
    let (mut loopbacks, mut chain_copies) = (Vec::new(), Vec::new());
    for _ in 0..config.transfers() {
        loopbacks.push(
            floor::loopback_tcp(bytes)
                .await
                .map_err(floor_failed("loopback copy"))?,
        );
        chain_copies.push(
            floor::chain_copy(bytes)
                .await
                .map_err(floor_failed("chain copy"))?,
        );
    }
    let loopback = median_run(loopbacks, |r| *r).expect("a loopback copy was taken");
    let chain_copy = median_run(chain_copies, |r| r.mb_s).expect("a chain copy was taken");
    progress.note(format!(
        "loopback TCP copy: {:.0} MB/s; chain copy: {:.0} MB/s",
        loopback.0, chain_copy.0.mb_s
    ));

    let mut results = Results::default();
    // The main lab: --dir, or one of ours in proxy mode.
    let (main_lab, main_dir) = match &config.dir {
        Some(dir) => (None, dir.clone()),
        None => {
            progress.step("starting a lab (kubelet proxies)".into());
            let (lab, tmp) = start_lab(config, false).await?;
            let dir = lab.dir().to_path_buf();
            (Some((lab, tmp)), dir)
        }
    };
    let outcome = measure_lab(
        config,
        &main_dir,
        &progress,
        fifo_dir.path(),
        true,
        &mut results,
    )
    .await;
    let main_redirects = LabTarget::open(&main_dir, &config.runc)
        .await
        .map(|t| t.redirects())
        .unwrap_or(false);
    if let Some((lab, tmp)) = main_lab {
        keep_logs(&lab, &config.out, main_redirects);
        stop_lab(lab).await;
        drop(tmp);
    }
    outcome?;

    // The other kubelet mode, in a lab of our own.
    let other_mode = match main_redirects {
        true => PathName::KubeletProxy,
        false => PathName::KubeletRedirect,
    };
    if config.wants(other_mode) {
        progress.step(format!(
            "starting a lab (kubelet {})",
            if main_redirects {
                "proxies"
            } else {
                "redirects"
            }
        ));
        measure_own_lab(
            config,
            &progress,
            fifo_dir.path(),
            &mut results,
            (!main_redirects, LabRuntime::Execlab),
        )
        .await?;
    }

    // containerd's counterparts, in the same run.
    let containerd_wanted = PathName::CONTAINERD.into_iter().any(|p| config.wants(p));
    if containerd_wanted && crate::containerd::installed() {
        progress.step("starting a lab (--runtime containerd)".into());
        measure_own_lab(
            config,
            &progress,
            fifo_dir.path(),
            &mut results,
            (false, LabRuntime::Containerd),
        )
        .await?;
    } else if containerd_wanted {
        progress.note("containerd not installed: no containerd-cri/containerd-chain".into());
    }

    progress.step("writing bench.json and plots".into());
    let build = build_kind(config);
    let report = report::assemble(
        &results.figures,
        &results.breakdowns,
        (loopback, chain_copy),
        results.concurrency,
        results.kubectl,
        RunShape {
            quick: config.quick,
            build,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            setup_samples: config.setup_samples(),
            transfer_bytes: bytes,
            transfers: config.transfers(),
        },
    );
    report.write_json(&config.out.join("bench.json"))?;
    plot::write_all(&report, &config.out)?;
    progress.finish();
    Ok(report)
}

/// Measures every path `dir`'s lab serves and that is not measured yet; with `everything`, also
/// concurrency and kubectl.
/// Starts a lab of the bench's own (kubelet redirect mode, runtime), measures the paths it
/// serves, keeps its logs in the output dir (ours only), and stops it.
async fn measure_own_lab(
    config: &BenchConfig,
    progress: &Progress,
    fifo_dir: &Path,
    results: &mut Results,
    (redirect, runtime): (bool, LabRuntime),
) -> Result<(), BenchError> {
    let (lab, tmp) = start_lab_with(config, redirect, runtime).await?;
    let dir = lab.dir().to_path_buf();
    let outcome = measure_lab(config, &dir, progress, fifo_dir, false, results).await;
    if runtime == LabRuntime::Execlab {
        keep_logs(&lab, &config.out, redirect);
    }
    stop_lab(lab).await;
    drop(tmp);
    outcome
}

async fn measure_lab(
    config: &BenchConfig,
    dir: &Path,
    progress: &Progress,
    fifo_dir: &Path,
    everything: bool,
    results: &mut Results,
) -> Result<(), BenchError> {
    let target = LabTarget::open(dir, &config.runc).await?;
    let mut dialers: Vec<(PathName, Dialer)> = Vec::new();
    for path in PathName::EVERY {
        if target.serves(path) && config.wants(path) && !results.figures.contains_key(&path) {
            let dialer = target
                .dialer(path, fifo_dir)
                .await
                .map_err(|e| with_path(path, e))?;
            dialers.push((path, dialer));
        }
    }

    // Setup latency, paths interleaved so drift hits them alike; two warm-up rounds first.
    let samples = config.setup_samples();
    // Each path's samples: setup time and the session id the hops logged it under.
    let mut setup: BTreeMap<PathName, Vec<(Duration, String)>> = BTreeMap::new();
    progress.step(format!(
        "setup latency, {samples} × {}",
        names(dialers.iter().map(|d| d.0))
    ));
    for round in 0..samples + 2 {
        for (path, dialer) in &dialers {
            let (elapsed, session) =
                measure::setup_latency(dialer)
                    .await
                    .map_err(|source| BenchError::Measure {
                        path: path.name().into(),
                        what: "setup",
                        source,
                    })?;
            if round >= 2 {
                setup.entry(*path).or_default().push((elapsed, session));
            }
        }
    }
    // Each sample's runc part, from the hops' logs (the bench's own runc path has none).
    let logged = crate::trace::events::group_by_session(crate::trace::load_events(dir));
    for (path, samples) in &setup {
        if let Some(split) = breakdown::split(&logged, samples) {
            results.breakdowns.insert(*path, split);
        }
    }

    let bytes = config.transfer_bytes();
    let cpu = CpuMeter::new(&target.hop_pids());
    for (path, dialer) in &dialers {
        progress.step(format!("{path}: stdout/stdin throughput, tty"));
        let fail = |what: &'static str| {
            move |source| BenchError::Measure {
                path: path.name().into(),
                what,
                source,
            }
        };
        let runs = config.transfers();
        let stdout = measure::transfers(dialer, Direction::Stdout, bytes, runs, &cpu)
            .await
            .map_err(fail("stdout"))?;
        let stdin = measure::transfers(dialer, Direction::Stdin, bytes, runs, &cpu)
            .await
            .map_err(fail("stdin"))?;
        let (stdout_mb_s, stdin_mb_s) = (stdout.mb_s, stdin.mb_s);
        let tty_rtt_ms = match path.has_tty() {
            true => Percentiles::of(
                &measure::tty_round_trips(dialer, config.tty_samples())
                    .await
                    .map_err(fail("tty"))?,
            ),
            false => None,
        };
        let times: Vec<Duration> = setup.get(path).into_iter().flatten().map(|s| s.0).collect();
        let setup_ms = Percentiles::of(&times)
            .ok_or_else(|| BenchError::Lab(format!("{path}: no setup samples")))?;
        let spread = |runs: &[f64]| {
            let (lo, hi) = runs
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            format!("{lo:.0}–{hi:.0}")
        };
        progress.note(format!(
            "{path:<17} setup p50 {:>7.2} ms  stdout {stdout_mb_s:>7.0} MB/s ({})  stdin {stdin_mb_s:>7.0} MB/s ({})",
            setup_ms.p50,
            spread(&stdout.runs_mb_s),
            spread(&stdin.runs_mb_s)
        ));
        results.figures.insert(
            *path,
            PathFigures {
                setup_ms,
                stdout_mb_s,
                stdin_mb_s,
                tty_rtt_ms,
                stdout_cpu: stdout.cpu,
                stdin_cpu: stdin.cpu,
                stdout_runs_mb_s: stdout.runs_mb_s,
                stdin_runs_mb_s: stdin.runs_mb_s,
            },
        );
    }
    if !everything || !config.wants(PathName::ApiserverWs) {
        return Ok(());
    }

    // Idle sessions through the whole chain.
    let chain = PathName::ApiserverWs;
    let dialer = Arc::new(
        target
            .dialer(chain, fifo_dir)
            .await
            .map_err(|e| with_path(chain, e))?,
    );
    for &n in config.levels() {
        progress.step(format!("{n} concurrent idle sessions ({chain})"));
        let pids = target.hop_pids();
        let idle = measure::idle_sessions(dialer.clone(), n, &pids, Duration::ZERO)
            .await
            .map_err(|source| BenchError::Measure {
                path: chain.name().into(),
                what: "concurrent sessions",
                source,
            })?;
        let per_session = idle.rss_per_session();
        progress.note(format!(
            "{n:>5} idle sessions: all open in {:.2} s; RSS KiB/session: {}",
            idle.open_all.as_secs_f64(),
            per_session
                .iter()
                .map(|(h, k)| format!("{h} {k:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        results.concurrency.push(ConcurrencyReport {
            sessions: n,
            path: chain.name().into(),
            setup_ms: Percentiles::of(&idle.setup).unwrap_or(Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
            }),
            open_all_s: stats::round3(idle.open_all.as_secs_f64()),
            rss_kib_per_session: hop_map(
                per_session.into_iter().map(|(h, k)| (h, stats::round3(k))),
            ),
            rss_kib_before: hop_map(idle.rss_before.into_iter()),
            rss_kib_open: hop_map(idle.rss_open.into_iter()),
        });
        // Let the hops reap what the sessions left before the next level's baseline.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    if let Some(kubectl) = &config.kubectl {
        progress.step("real kubectl exec".into());
        let kubeconfig = target.layout.kubeconfig();
        for (how, websocket) in [("websocket", true), ("spdy", false)] {
            let runs = config.kubectl_runs();
            let (kubectl, kubeconfig) = (kubectl.clone(), kubeconfig.clone());
            let samples = tokio::task::spawn_blocking(move || {
                (0..runs)
                    .map(|_| measure::kubectl_exec(&kubectl, &kubeconfig, websocket))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| BenchError::Lab(format!("kubectl: {e}")))?
            .map_err(|source| BenchError::Measure {
                path: format!("kubectl ({how})"),
                what: "exec",
                source,
            })?;
            if let Some(p) = Percentiles::of(&samples) {
                results.kubectl.insert(how.into(), p);
            }
        }
    }
    Ok(())
}

fn with_path(path: PathName, e: BenchError) -> BenchError {
    match e {
        BenchError::Client { source, .. } => BenchError::Client {
            path: path.name().into(),
            source,
        },
        other => other,
    }
}

fn names(paths: impl Iterator<Item = PathName>) -> String {
    paths.map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

fn hop_map<V>(it: impl Iterator<Item = (Hop, V)>) -> BTreeMap<String, V> {
    it.map(|(h, v)| (h.name().to_string(), v)).collect()
}

/// Starts a lab of the bench's own in a short temp dir (unix socket paths stay short).
async fn start_lab(
    config: &BenchConfig,
    redirect: bool,
) -> Result<(Lab, tempfile::TempDir), BenchError> {
    start_lab_with(config, redirect, LabRuntime::Execlab).await
}

/// [`start_lab`] with the runtime under kubelet-stream.
async fn start_lab_with(
    config: &BenchConfig,
    redirect: bool,
    runtime: LabRuntime,
) -> Result<(Lab, tempfile::TempDir), BenchError> {
    let tmp = tempfile::Builder::new()
        .prefix("execlab-bench-")
        .tempdir_in("/tmp")
        .map_err(|e| BenchError::Lab(format!("temp dir: {e}")))?;
    let dir = tmp.path().join("lab");
    let mut lab_config = LabConfig::new(&dir);
    lab_config.redirect_container_streaming = redirect;
    lab_config.runtime = runtime;
    lab_config.bin_dir = config.bin_dir.clone();
    lab_config.runc = config.runc.clone();
    // The shim's log next to the other hops' logs, where it outlives the lab.
    lab_config.hop_env.push((
        "EXECLAB_SHIM_LOG".into(),
        dir.join("logs").join("shim-exec.log").display().to_string(),
    ));
    let lab = Lab::start(lab_config).await?;
    Ok((lab, tmp))
}

/// Stops a lab the bench started. The stop blocks (the lab waits for its hops) on a thread of
/// its own: the bench's runtime has one thread, which must go on closing the sessions the hops
/// wait for before they exit.
async fn stop_lab(lab: Lab) {
    let stopped = tokio::task::spawn_blocking(move || lab.stop()).await;
    match stopped {
        Ok(Ok(_report)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "stopping the bench lab"),
        Err(e) => tracing::warn!(error = %e, "stopping the bench lab"),
    }
}

/// Copies a bench lab's logs to `OUT/lab-proxy/logs` or `OUT/lab-redirect/logs`.
fn keep_logs(lab: &Lab, out: &Path, redirect: bool) {
    let from = lab.layout().logs_dir();
    let to = out
        .join(if redirect {
            "lab-redirect"
        } else {
            "lab-proxy"
        })
        .join("logs");
    if std::fs::create_dir_all(&to).is_err() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(&from) {
        for entry in entries.flatten() {
            let _ = std::fs::copy(entry.path(), to.join(entry.file_name()));
        }
    }
}

/// `release` or `debug`, from where the hop binaries are.
fn build_kind(config: &BenchConfig) -> String {
    let dir = config
        .bin_dir
        .clone()
        .or_else(|| crate::bins::locate_bin_dir().ok())
        .unwrap_or_default();
    if dir.components().any(|c| c.as_os_str() == "release") {
        "release".into()
    } else {
        "debug".into()
    }
}

/// 1000 sessions need more descriptors than the usual soft limit of 1024; the hops started
/// from here inherit the raised limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65536);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_by_default_else_the_named_ones_and_the_floor() {
        let mut config = BenchConfig::new("out");
        assert!(PathName::EVERY.iter().all(|p| config.wants(*p)));
        config.paths = BTreeSet::from([PathName::ApiserverWs]);
        let wanted: Vec<PathName> = PathName::EVERY
            .into_iter()
            .filter(|p| config.wants(*p))
            .collect();
        assert_eq!(wanted, [PathName::Runc, PathName::ApiserverWs]);
    }
}
