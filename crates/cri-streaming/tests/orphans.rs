//! An exec whose client goes away mid-session, over SPDY and WebSocket: by default its process
//! runs to its end (containerd 1.6 runs the exec under a background context and kills it only
//! on its own timeout), without SIGPIPE for what it writes after the client left, and its FIFOs,
//! runc-process file and shim exec entry (the `<exec id>.pid` file) are gone once it exited. With
//! `--kill-exec-on-disconnect` the process is killed instead (SIGKILL: status 137).
//!
//! The process's own exit status, as the shim's reaper logged it, tells which: 0 for a shell that
//! slept to its end and wrote twice after its client left, 137 for one that was killed.

mod common;

use std::time::{Duration, Instant};

use common::{dial_exec_severable, exec_request, options_of, processes_with, Lab, LabOptions};
use common::{log_lines_with, Transport};
use tokio::io::AsyncReadExt;

/// Sleeps past the client's departure, then writes twice (a FIFO whose reader left would kill
/// it with SIGPIPE at the second write), then sleeps a little more and exits 0.
const SCRIPT: &str = "echo up; sleep 2; echo a; echo b; sleep 0.5";

/// The status the shim's reaper logged for `pid` (`exec exited`), waited for (bounded).
async fn exit_status_of(lab: &Lab, pid: i32, limit: Duration) -> (i64, String) {
    let deadline = Instant::now() + limit;
    loop {
        for line in log_lines_with(lab, "shim.log", "exec exited") {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = entry.get("fields").unwrap_or(&entry);
            if fields["pid"].as_i64() == Some(i64::from(pid)) {
                let exec_id = fields["exec_id"].as_str().unwrap_or_default().to_owned();
                return (fields["status"].as_i64().expect("status"), exec_id);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no `exec exited` for pid {pid} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs SCRIPT, drops the client's connection once the process said `up`, and returns the
/// process's exit status and exec id.
async fn vanish(
    lab: &Lab,
    cri: &mut common::Cri,
    container: &str,
    transport: Transport,
    n: usize,
) -> (i64, String) {
    let marker = format!("orphan-{}-{n}", std::process::id());
    let req = exec_request(container, &["sh", "-c", SCRIPT, &marker], false, false);
    let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
    let (mut streams, connection) = dial_exec_severable(&url, transport, &options_of(&req)).await;
    let mut up = [0u8; 3];
    streams
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut up)
        .await
        .expect("up");
    // The shell, not a child it forked (which shows the same command line until it execs).
    let pids = processes_with(&marker);
    let shell = pids
        .iter()
        .copied()
        .find(|pid| !parent_of(*pid).is_some_and(|ppid| pids.contains(&ppid)))
        .unwrap_or_else(|| panic!("the exec's shell among {pids:?}"));
    connection.abort();
    drop(streams);
    let (status, exec_id) = exit_status_of(lab, shell, Duration::from_secs(15)).await;
    eventually("the exec's shell is gone", || {
        processes_with(&marker).is_empty()
    })
    .await;
    (status, exec_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_clients_process_runs_to_its_end_and_is_freed_after() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "orphan").await;
    for (n, transport) in [Transport::Spdy, Transport::WebSocketV5]
        .into_iter()
        .enumerate()
    {
        let (status, exec_id) = vanish(&lab, &mut cri, &container, transport, n).await;
        assert_eq!(
            status, 0,
            "{transport:?}: the process must run to its end (137 = killed, 141 = SIGPIPE)"
        );
        // Freed once it exited: FIFOs, the runc-process file, the shim's exec (its pid file).
        eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;
        let bundle = lab.path("state/containers").join(&container);
        eventually("the shim deleted the exec", || {
            !bundle.join(format!("{exec_id}.pid")).exists()
        })
        .await;
        let spec_files: Vec<String> = names_in(&lab.path("xdg"))
            .into_iter()
            .filter(|n| n.starts_with("runc-process"))
            .collect();
        assert!(spec_files.is_empty(), "{spec_files:?}");
        assert!(
            !log_lines_with(&lab, "cri.log", "the exec process runs to its end").is_empty(),
            "cri-streaming says why it left the process running"
        );
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_exec_on_disconnect_still_kills() {
    let lab = Lab::start(LabOptions {
        kill_exec_on_disconnect: true,
        ..Default::default()
    })
    .await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "killed").await;
    for (n, transport) in [Transport::Spdy, Transport::WebSocketV5]
        .into_iter()
        .enumerate()
    {
        let (status, _) = vanish(&lab, &mut cri, &container, transport, n).await;
        assert_eq!(status, 137, "{transport:?}: SIGKILL");
        eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}
