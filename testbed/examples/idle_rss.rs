//! Holds N idle sessions open through the whole chain of a running lab and prints each hop's
//! RSS growth per session, the measurement `execlab bench` makes at its idle-session levels,
//! but at any N and with the sessions kept open for a while (to inspect the hops with
//! heaptrack or /proc/PID/smaps_rollup).
//!
//! `cargo run --release -p execlab --example idle_rss -- LAB_DIR [N=1000] [HOLD_SECS=0]`
//! (start the lab first with `execlab up --dir LAB_DIR --detach`).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use execlab::bench::client::ExecCommand;
use execlab::bench::measure::rss_per_hop;
use execlab::bench::paths::{LabTarget, PathName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "lab".into()));
    let n: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    let hold: u64 = args.next().map_or(Ok(0), |s| s.parse())?;
    let target = LabTarget::open(&dir, "runc").await?;
    let fifo_dir = tempfile::tempdir()?;
    let dialer = Arc::new(
        target
            .dialer(PathName::ApiserverWs, fifo_dir.path())
            .await?,
    );
    let pids = target.hop_pids();
    let before = rss_per_hop(&pids);
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (dialer, gate) = (dialer.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut session = dialer
                .open(&ExecCommand::shell("echo r; exec cat", true))
                .await?;
            let mut buf = [0u8; 64];
            loop {
                let got =
                    tokio::time::timeout(Duration::from_secs(60), session.stdout.read(&mut buf))
                        .await??;
                anyhow::ensure!(got > 0, "stdout ended early");
                if buf[..got].contains(&b'r') {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(session)
        });
    }
    let mut sessions = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        sessions.push(joined??);
    }
    println!(
        "{n} sessions open in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = rss_per_hop(&pids);
    for (hop, kib) in &open {
        let grown = kib.saturating_sub(before.get(hop).copied().unwrap_or(0));
        println!(
            "{hop:<16} before {:>7} KiB  open {kib:>7} KiB  {:>6.1} KiB/session",
            before.get(hop).copied().unwrap_or(0),
            grown as f64 / n as f64
        );
    }
    for (hop, pid) in &pids {
        println!("{hop} pid {pid}");
    }
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let mut ends = tokio::task::JoinSet::new();
    for mut session in sessions {
        ends.spawn(async move {
            if let Some(mut stdin) = session.stdin.take() {
                let _ = stdin.shutdown().await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), async {
                let _ = tokio::io::copy(&mut session.stdout, &mut tokio::io::sink()).await;
                let _ = session.done.await;
            })
            .await;
        });
    }
    while ends.join_next().await.is_some() {}
    let after = rss_per_hop(&pids);
    for (hop, kib) in &after {
        println!("{hop:<16} after close {kib:>7} KiB");
    }
    Ok(())
}
