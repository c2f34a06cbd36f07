//! The measurements themselves, each over any path's [`Dialer`]: setup latency (request → first
//! stdout byte of `echo`), stdout and stdin throughput, tty keystroke round trip, idle
//! concurrent sessions with each hop's RSS, and real kubectl. The floors are in `floor`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{ClientError, Dialer, ExecCommand, Session};
use super::cpu::{CpuMeter, CpuUse};
use super::stats::{mb_per_s, median_run};
use crate::Hop;

pub const MIB: u64 = 1024 * 1024;
/// Read and write size of the bench's own copies.
pub(super) const CHUNK: usize = 256 * 1024;
/// Limit for one short exec (setup, tty).
const SHORT: Duration = Duration::from_secs(30);
/// How many idle sessions are being set up at once.
const SETUP_PARALLELISM: usize = 64;

/// A measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{what} took longer than {:.0} s", .limit.as_secs_f64())]
    Timeout { what: String, limit: Duration },
    #[error("{0}")]
    Unexpected(String),
}

pub(super) async fn within<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, MeasureError>>,
) -> Result<T, MeasureError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(MeasureError::Timeout {
            what: what.to_string(),
            limit,
        })
    })
}

/// Reads until a chunk containing `byte` arrived.
async fn read_until(session: &mut Session, byte: u8) -> Result<(), MeasureError> {
    let mut buf = [0u8; 4096];
    loop {
        let n = session.stdout.read(&mut buf).await?;
        if n == 0 {
            return Err(MeasureError::Unexpected(format!(
                "stdout ended before {:?} arrived",
                byte as char
            )));
        }
        if buf[..n].contains(&byte) {
            return Ok(());
        }
    }
}

/// Reads stdout to its end and waits for the process's end.
async fn finish(mut session: Session) -> Result<u64, MeasureError> {
    let n = tokio::io::copy(&mut session.stdout, &mut tokio::io::sink()).await?;
    session.done.await?;
    Ok(n)
}

/// One `echo`: time from the request to the first stdout byte, and the session id the hops
/// logged it under.
pub async fn setup_latency(dialer: &Dialer) -> Result<(Duration, String), MeasureError> {
    within("an echo exec", SHORT, async {
        let started = Instant::now();
        let mut session = dialer.open(&ExecCommand::argv(&["echo", "hi"])).await?;
        let mut first = [0u8; 1];
        let n = session.stdout.read(&mut first).await?;
        let elapsed = started.elapsed();
        if n == 0 {
            return Err(MeasureError::Unexpected("echo printed nothing".into()));
        }
        let id = session.session.clone();
        finish(session).await?;
        Ok((elapsed, id))
    })
    .await
}

pub(super) fn transfer_limit(bytes: u64) -> Duration {
    // Generous: 5 MB/s plus set-up, so a slow debug build still finishes.
    Duration::from_secs(60 + bytes / 5_000_000)
}

/// Several transfers of one kind: the median one's rate and CPU, and every rate in order.
#[derive(Debug, Clone)]
pub struct Transfers {
    pub mb_s: f64,
    pub cpu: CpuUse,
    pub runs_mb_s: Vec<f64>,
}

/// Direction of a transfer through a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Stdout,
    Stdin,
}

/// `runs` transfers of `bytes` in `direction`, one after the other. One transfer of a GiB is
/// sometimes far off on a shared machine; the median of a few is a figure to compare.
pub async fn transfers(
    dialer: &Dialer,
    direction: Direction,
    bytes: u64,
    runs: usize,
    cpu: &CpuMeter,
) -> Result<Transfers, MeasureError> {
    let mut taken = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        taken.push(match direction {
            Direction::Stdout => stdout_throughput(dialer, bytes, cpu).await?,
            Direction::Stdin => stdin_throughput(dialer, bytes, cpu).await?,
        });
    }
    let ((mb_s, cpu), runs_mb_s) =
        median_run(taken, |t| t.0).expect("at least one transfer was taken");
    Ok(Transfers {
        mb_s,
        cpu,
        runs_mb_s,
    })
}

/// `bytes` of zeros from the process's stdout; MB/s from the first byte to EOF.
pub async fn stdout_throughput(
    dialer: &Dialer,
    bytes: u64,
    cpu: &CpuMeter,
) -> Result<(f64, CpuUse), MeasureError> {
    let script = format!(
        "dd if=/dev/zero bs=1048576 count={} 2>/dev/null",
        bytes / MIB
    );
    within("stdout throughput", transfer_limit(bytes), async {
        let mut session = dialer.open(&ExecCommand::shell(&script, false)).await?;
        let mut buf = vec![0u8; CHUNK];
        let first = session.stdout.read(&mut buf).await? as u64;
        let cpu_before = cpu.snapshot();
        let started = Instant::now();
        let mut total = first;
        loop {
            let n = session.stdout.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let elapsed = started.elapsed();
        let used = cpu_before.usage_until(&cpu.snapshot(), total - first);
        session.done.await?;
        if total != bytes {
            return Err(MeasureError::Unexpected(format!(
                "stdout carried {total} bytes, expected {bytes}"
            )));
        }
        Ok((mb_per_s(total - first, elapsed), used))
    })
    .await
}

/// `bytes` (a whole number of MiB) of zeros into the process's stdin; MB/s from the first
/// write to the process's exit (its end is the only sign every byte was read). dd reads whole
/// MiB blocks and reports how many it got, so a stdin cut short is an error, not a fast figure.
///
/// dd must not be the exec's own process (`exec dd`, or dd last in `sh -c`, which busybox ash
/// execs): under containerd 1.6's runc shim such a dd reads end of input after a few blocks,
/// while a dd forked by the shell reads everything.
pub async fn stdin_throughput(
    dialer: &Dialer,
    bytes: u64,
    cpu: &CpuMeter,
) -> Result<(f64, CpuUse), MeasureError> {
    let script = "echo r; dd of=/dev/null bs=1048576 iflag=fullblock 2>&1; exit $?";
    let expected = format!("{}+0 records in", bytes / MIB);
    within("stdin throughput", transfer_limit(bytes), async {
        let mut session = dialer.open(&ExecCommand::shell(script, true)).await?;
        read_until(&mut session, b'r').await?;
        let mut stdin = session
            .stdin
            .take()
            .ok_or_else(|| MeasureError::Unexpected("no stdin".into()))?;
        let chunk = vec![0u8; CHUNK];
        let cpu_before = cpu.snapshot();
        let started = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            stdin.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        stdin.shutdown().await?;
        drop(stdin);
        let mut report = Vec::new();
        session.stdout.read_to_end(&mut report).await?;
        session.done.await?;
        let elapsed = started.elapsed();
        let used = cpu_before.usage_until(&cpu.snapshot(), bytes);
        let report = String::from_utf8_lossy(&report);
        if !report.contains(&expected) {
            return Err(MeasureError::Unexpected(format!(
                "stdin cut short: dd reported {:?}, expected {expected:?}",
                report.trim()
            )));
        }
        Ok((mb_per_s(bytes, elapsed), used))
    })
    .await
}

/// Keystroke round trips on a tty running `cat`: one byte written, its echo read back.
pub async fn tty_round_trips(dialer: &Dialer, count: usize) -> Result<Vec<Duration>, MeasureError> {
    let limit = SHORT + Duration::from_millis(50) * count as u32;
    within("tty round trips", limit, async {
        let cmd = ExecCommand {
            argv: vec!["cat".into()],
            stdin: true,
            tty: true,
        };
        let mut session = dialer.open(&cmd).await?;
        let mut stdin = session
            .stdin
            .take()
            .ok_or_else(|| MeasureError::Unexpected("no stdin".into()))?;
        // The first echo includes setting the session up: not a sample.
        stdin.write_all(b"x").await?;
        stdin.flush().await?;
        read_until(&mut session, b'x').await?;
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            stdin.write_all(b"x").await?;
            stdin.flush().await?;
            read_until(&mut session, b'x').await?;
            samples.push(started.elapsed());
        }
        // End the line, then end of file: cat exits.
        stdin.write_all(b"\r\x04").await?;
        stdin.flush().await?;
        drop(stdin);
        finish(session).await?;
        Ok(samples)
    })
    .await
}

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sum of the RSS of each hop's processes, KiB.
pub fn rss_per_hop(pids: &[(Hop, u32)]) -> BTreeMap<Hop, u64> {
    let mut out = BTreeMap::new();
    for (hop, pid) in pids {
        *out.entry(*hop).or_insert(0) += rss_kib(*pid).unwrap_or(0);
    }
    out
}

/// What `n` concurrent idle sessions cost.
#[derive(Debug, Clone)]
pub struct IdleSessions {
    pub sessions: usize,
    /// Each session's setup (request → first byte), all being set up together.
    pub setup: Vec<Duration>,
    /// From the first request to the last session open.
    pub open_all: Duration,
    pub rss_before: BTreeMap<Hop, u64>,
    pub rss_open: BTreeMap<Hop, u64>,
}

impl IdleSessions {
    /// (RSS with the sessions open − before) / sessions, KiB, per hop.
    pub fn rss_per_session(&self) -> BTreeMap<Hop, f64> {
        self.rss_open
            .iter()
            .map(|(hop, open)| {
                let before = self.rss_before.get(hop).copied().unwrap_or(0);
                let grown = open.saturating_sub(before) as f64;
                (*hop, grown / self.sessions.max(1) as f64)
            })
            .collect()
    }
}

/// Opens `n` sessions running `cat` (each says `r` first), keeps them idle, measures each hop's
/// RSS, then ends them all (stdin EOF).
///
/// `hold` keeps them open that much longer after the measurement, to inspect the hops
/// (heaptrack, `/proc/PID/smaps_rollup`).
pub async fn idle_sessions(
    dialer: Arc<Dialer>,
    n: usize,
    pids: &[(Hop, u32)],
    hold: Duration,
) -> Result<IdleSessions, MeasureError> {
    let limit = Duration::from_secs(120) + Duration::from_millis(200) * n as u32;
    let rss_before = rss_per_hop(pids);
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(SETUP_PARALLELISM));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (dialer, gate) = (dialer.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let begun = Instant::now();
            let cmd = ExecCommand::shell("echo r; exec cat", true);
            let mut session = dialer.open(&cmd).await?;
            read_until(&mut session, b'r').await?;
            Ok::<_, MeasureError>((begun.elapsed(), session))
        });
    }
    let mut sessions = Vec::with_capacity(n);
    let mut setup = Vec::with_capacity(n);
    let mut failure = None;
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok((elapsed, session))) => {
                    setup.push(elapsed);
                    sessions.push(session);
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(MeasureError::Unexpected(e.to_string()));
                }
            }
        }
    };
    if tokio::time::timeout(limit, collect).await.is_err() {
        failure.get_or_insert(MeasureError::Timeout {
            what: format!("opening {n} sessions"),
            limit,
        });
    }
    let open_all = started.elapsed();
    // Let allocations settle before reading the RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = rss_per_hop(pids);
    tokio::time::sleep(hold).await;
    close_all(sessions).await;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(IdleSessions {
        sessions: n,
        setup,
        open_all,
        rss_before,
        rss_open,
    })
}

/// Ends idle `cat` sessions: stdin EOF, then wait for each (bounded).
async fn close_all(sessions: Vec<Session>) {
    let mut ends = tokio::task::JoinSet::new();
    for mut session in sessions {
        ends.spawn(async move {
            if let Some(mut stdin) = session.stdin.take() {
                let _ = stdin.shutdown().await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), finish(session)).await;
        });
    }
    while ends.join_next().await.is_some() {}
}

/// Real kubectl: wall time of `kubectl exec web -c app -- echo hi` (process start-up included).
pub fn kubectl_exec(
    kubectl: &Path,
    kubeconfig: &Path,
    websocket: bool,
) -> Result<Duration, MeasureError> {
    let started = Instant::now();
    let mut command = std::process::Command::new(kubectl);
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["exec", "web", "-c", "app", "--", "echo", "hi"])
        .stdin(std::process::Stdio::null());
    if !websocket {
        command.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
    }
    let out = command.output()?;
    let elapsed = started.elapsed();
    if !out.status.success() || out.stdout != b"hi\n" {
        return Err(MeasureError::Unexpected(format!(
            "kubectl exec: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(elapsed)
}
