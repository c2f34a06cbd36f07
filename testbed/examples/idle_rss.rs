//! Holds N idle sessions open through the whole chain of a running lab and prints each hop's
//! RSS growth per session: the measurement `execlab bench` makes at its idle-session levels,
//! but at any N and with the sessions kept open for a while (to inspect the hops with
//! heaptrack or /proc/PID/smaps_rollup).
//!
//! `cargo run --release -p execlab --example idle_rss -- LAB_DIR [N=1000] [HOLD_SECS=0]`
//! (start the lab first with `execlab up --dir LAB_DIR --detach`).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use execlab::bench::measure::idle_sessions;
use execlab::bench::paths::{LabTarget, PathName};

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
    for (hop, pid) in &pids {
        println!("{hop} pid {pid}");
    }
    if hold > 0 {
        println!("sessions stay open {hold} s after the measurement");
    }
    let idle = idle_sessions(dialer, n, &pids, Duration::from_secs(hold)).await?;
    println!("{n} sessions open in {:.2} s", idle.open_all.as_secs_f64());
    for (hop, per_session) in idle.rss_per_session() {
        println!(
            "{:<16} before {:>7} KiB  open {:>7} KiB  {per_session:>6.1} KiB/session",
            hop.to_string(),
            idle.rss_before.get(&hop).copied().unwrap_or(0),
            idle.rss_open.get(&hop).copied().unwrap_or(0),
        );
    }
    Ok(())
}
