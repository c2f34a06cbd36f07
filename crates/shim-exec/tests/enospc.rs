//! Failure #2 of docs: the runc-process temp file cannot be created (inodes exhausted: `open`
//! form) or written (blocks exhausted: `write` form). The shim's `XDG_RUNTIME_DIR` is a tiny
//! tmpfs mounted in a private mount namespace (the shim runs under `unshare -m`), so the host
//! never sees the mount; it vanishes with the shim.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use containerd_shim_protos::api::StartRequest;

const OPEN_FULL: &str = r#"mount -t tmpfs -o size=64k,nr_inodes=1 tmpfs "$XDG""#;
const WRITE_FULL: &str =
    r#"mount -t tmpfs -o size=4k tmpfs "$XDG"; head -c 4096 /dev/zero > "$XDG/fill""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_on_open_fails_exec_with_go_wording() {
    enospc_case("pod-open", OPEN_FULL, "open", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_on_write_fails_exec_and_removes_file() {
    enospc_case("pod-write", WRITE_FULL, "write", &["fill"]).await;
}

async fn enospc_case(pod: &str, mount: &str, op: &str, expected_files: &[&str]) {
    let lab = Lab::new();
    let mut shim = lab.start_shim(pod, Some(mount)).await;
    let ctr = format!("{pod}-ctr");
    let init = shim.run_sleeper(&lab, &ctr).await;
    // The shim's view of its runtime dir, through its own mount namespace.
    let shim_xdg = Path::new(&format!("/proc/{}/root", shim.pid))
        .join(lab.xdg.strip_prefix("/").expect("absolute xdg"));
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !host_mounts.contains(&lab.xdg.display().to_string()),
        "the tmpfs must not be visible on the host"
    );
    let shim_mounts =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", shim.pid)).expect("mountinfo");
    assert!(shim_mounts.contains(&lab.xdg.display().to_string()));
    let fds_before = fd_count(shim.pid);

    for n in 0..3 {
        let exec_id = format!("full{n}");
        let (inp, out, err) = (
            lab.fifo(&format!("{exec_id}.in")),
            lab.fifo(&format!("{exec_id}.out")),
            lab.fifo(&format!("{exec_id}.err")),
        );
        let (out_r, err_r) = (read_fifo(&out), read_fifo(&err));
        let req = Shim::exec_request(
            &ctr,
            &exec_id,
            &["echo", "never"],
            false,
            [&inp, &out, &err],
        );
        shim.task.exec(ctx(), &req).await.expect("Exec");
        let failure = shim
            .task
            .start(
                ctx(),
                &StartRequest {
                    id: ctr.clone(),
                    exec_id: exec_id.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect_err("exec must fail with ENOSPC");
        let (code, message) = status_of(failure);
        eprintln!("{op}: {message}");
        assert_eq!(code, ttrpc::Code::UNKNOWN);
        let prefix = format!(
            "OCI runtime exec failed: {op} {}/runc-process",
            lab.xdg.display()
        );
        let suffix = ": no space left on device";
        let digits = message
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .unwrap_or_else(|| panic!("unexpected message {message:?}"));
        assert!(
            !digits.is_empty() && digits.parse::<u32>().is_ok(),
            "random part must be a decimal u32: {message:?}"
        );
        // The shim closed its ends of the output FIFOs: readers see EOF, nothing written.
        assert_eq!(out_r.join().expect("out"), b"");
        assert_eq!(err_r.join().expect("err"), b"");
        shim.delete_exec(&ctr, &exec_id).await;
    }

    // No temp file left behind, in the namespace where it was made.
    let mut left: Vec<String> = std::fs::read_dir(&shim_xdg)
        .expect("shim's runtime dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, expected_files, "runtime dir after failed execs");
    // runc never ran and nothing else is left: only the container's init under the shim.
    let children = children_of(shim.pid);
    assert_eq!(
        children.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![init],
        "{children:?}"
    );
    // No descriptor leaked (copy tasks end asynchronously: allow a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = fd_count(shim.pid);
        if now == fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shim fds: {fds_before} before, {now} after"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shim.teardown().await;
}
