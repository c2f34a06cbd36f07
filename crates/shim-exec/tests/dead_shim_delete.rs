//! `delete` after the daemon was killed (as containerd runs it from `cleanupAfterDeadShim`): a
//! killed daemon removed neither its socket nor its metrics address file, and `delete` for the
//! shim's id takes both away, as nothing answers there any more.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{process_alive, Lab};

/// Polls `done` until it holds, at most 10 s.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_a_killed_shims_socket_and_metrics_file() {
    let lab = Lab::new();
    let metrics_dir = tempfile::tempdir().expect("tempdir");
    let env: [(&str, &Path); 1] = [("EXECLAB_SHIM_METRICS_DIR", metrics_dir.path())];
    let shim = lab.start_shim_with("pod-killed", None, &env).await;
    let socket = shim.address.trim_start_matches("unix://").to_owned();
    let metrics = metrics_dir.path().join("shim-exec.pod-killed.metrics");
    assert!(
        wait_until(|| metrics.exists()),
        "the daemon wrote {}",
        metrics.display()
    );

    // SAFETY: plain syscall.
    unsafe { libc::kill(shim.pid as i32, libc::SIGKILL) };
    assert!(wait_until(|| !process_alive(shim.pid)), "the shim died");
    assert!(
        Path::new(&socket).exists() && metrics.exists(),
        "left behind"
    );

    let out = lab
        .shim_command("pod-killed", "delete", None)
        .env("EXECLAB_SHIM_METRICS_DIR", metrics_dir.path())
        .output()
        .expect("shim delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(&socket).exists(), "socket {socket} removed");
    assert!(!metrics.exists(), "{} removed", metrics.display());
}

/// A live shim's files stay: `delete` of a task in a running shim only cleans up that task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_a_live_shims_socket_and_metrics_file() {
    let lab = Lab::new();
    let metrics_dir = tempfile::tempdir().expect("tempdir");
    let env: [(&str, &Path); 1] = [("EXECLAB_SHIM_METRICS_DIR", metrics_dir.path())];
    let shim = lab.start_shim_with("pod-alive", None, &env).await;
    let socket = shim.address.trim_start_matches("unix://").to_owned();
    let metrics = metrics_dir.path().join("shim-exec.pod-alive.metrics");
    assert!(wait_until(|| metrics.exists()), "the daemon wrote its file");

    let out = lab
        .shim_command("pod-alive", "delete", None)
        .env("EXECLAB_SHIM_METRICS_DIR", metrics_dir.path())
        .output()
        .expect("shim delete");
    assert!(out.status.success());
    assert!(Path::new(&socket).exists(), "a live shim's socket stays");
    assert!(metrics.exists(), "a live shim's metrics file stays");
    shim.teardown().await;
}
