//! Issue 17 item 3: the pod's shim-exec killed with SIGKILL. cri-streaming must clean up as
//! containerd does after a shim dies (`cleanupAfterDeadShim`: the shim binary's `delete` for
//! every task the shim hosted): the old sandbox and app container leave `runc list`, the dead
//! shim's socket and metrics file go, CRI reads the old app container as exited 137 (`Error`),
//! the kubelet recreates the pod, and kubectl 1.32 execs again over WebSocket and SPDY.
//! `execlab status` shows a shim whose socket no one answers as dead, not ok.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::HeldSession;
use common::{dump_logs, kubectl_exec, run_bounded, start_lab, stop_lab, tokio_runtime};
use cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
use cri_api::runtime::v1::ListContainersRequest;
use cri_api::runtime::v1::{ContainerFilter, ContainerState, ContainerStatusRequest};
use execlab::fault::kubectl::Client;
use execlab::LabConfig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// From the kill to the dead shim's tasks being deleted: one `delete` run per task (each is a
/// `runc delete --force`), with slack for a loaded machine.
const CLEANUP_LIMIT: Duration = Duration::from_secs(20);
/// From the cleanup to an exec working in the recreated pod: the kubelet's resync (2 s) and
/// the new sandbox's start.
const RECOVERY_LIMIT: Duration = Duration::from_secs(40);
/// SIGKILL's exit status as containerd's runc shim reports a task it cleaned up (128 + 9).
const KILLED: i32 = 137;

fn execlab() -> &'static str {
    env!("CARGO_BIN_EXE_execlab")
}

/// Polls `check` until it gives `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `runc --root <lab runc root> list -q`, asked independently of the lab's own sweep code.
fn runc_ids(dir: &Path) -> Vec<String> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(dir.join("state/runc"))
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The socket files in `dir/run` but the CRI socket: one per shim.
fn shim_sockets(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let cri = dir.join("run/cri.sock");
    let Ok(entries) = std::fs::read_dir(dir.join("run")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| *p != cri)
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()))
        .collect()
}

fn metrics_file(dir: &Path, sandbox_id: &str) -> PathBuf {
    dir.join("addr")
        .join(format!("shim-exec.{sandbox_id}.metrics"))
}

/// The pod `web`'s containers named `app`, by id: (sandbox id, state).
fn app_containers(
    rt: &tokio::runtime::Runtime,
    cri: &mut RuntimeServiceClient<tonic::transport::Channel>,
) -> HashMap<String, (String, i32)> {
    let filter = ContainerFilter {
        label_selector: HashMap::from([
            ("io.kubernetes.pod.name".to_owned(), "web".to_owned()),
            ("io.kubernetes.container.name".to_owned(), "app".to_owned()),
        ]),
        ..Default::default()
    };
    let request = ListContainersRequest {
        filter: Some(filter),
    };
    rt.block_on(cri.list_containers(request))
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| (c.id, (c.pod_sandbox_id, c.state)))
        .collect()
}

/// `execlab status --dir DIR`: (exit code, the shim-exec line).
fn status(dir: &Path) -> (Option<i32>, String, String) {
    let out = run_bounded(
        Command::new(execlab()).arg("status").arg("--dir").arg(dir),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("shim-exec"))
        .unwrap_or_default()
        .to_owned();
    (out.status.code(), line, text)
}

#[test]
fn a_killed_shim_is_cleaned_up_and_the_pod_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let dir = lab.dir().to_path_buf();
    let rt = tokio_runtime();
    let mut cri = rt
        .block_on(execlab::bench::client::cri_client(&lab.cri_socket()))
        .expect("CRI client");

    // The pod as it runs: one shim hosting the pause and app containers.
    let mut held = HeldSession::start(Client::Ws132, &lab.kubeconfig());
    assert!(
        held.wait_ready(Instant::now() + Duration::from_secs(30)),
        "no exec session before the kill\n{}",
        dump_logs(&dir)
    );
    let shims = lab.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the one pod: {shims:?}");
    let shim = shims[0];
    let running: Vec<(String, String)> = app_containers(&rt, &mut cri)
        .into_iter()
        .filter(|(_, (_, state))| *state == ContainerState::ContainerRunning as i32)
        .map(|(id, (sandbox, _))| (id, sandbox))
        .collect();
    assert_eq!(running.len(), 1, "one running app container: {running:?}");
    let (app, sandbox) = running[0].clone();
    let old_tasks = runc_ids(&dir);
    assert!(
        old_tasks.contains(&app) && old_tasks.contains(&sandbox),
        "runc lists the pod's containers: {old_tasks:?}"
    );
    let old_sockets = shim_sockets(&dir);
    assert_eq!(old_sockets.len(), 1, "the shim's socket: {old_sockets:?}");
    let old_metrics = metrics_file(&dir, &sandbox);
    assert!(old_metrics.exists(), "{} exists", old_metrics.display());

    kill(Pid::from_raw(shim as i32), Signal::SIGKILL).expect("kill -9 the shim");
    let killed_at = Instant::now();

    // kubectl's session ends (its process's shim is gone).
    let ended = held.wait_exit(CLEANUP_LIMIT);
    assert!(
        ended.is_some(),
        "kubectl still running {CLEANUP_LIMIT:?} after the shim's kill\n{}",
        dump_logs(&dir)
    );

    // containerd's cleanup after a dead shim: the runtime's state of both tasks deleted, and the
    // shim's socket and metrics file with them.
    let cleaned = wait_for(CLEANUP_LIMIT, || {
        let ids = runc_ids(&dir);
        let left: Vec<&String> = old_tasks.iter().filter(|id| ids.contains(id)).collect();
        let socket_left = old_sockets.iter().any(|s| s.exists());
        (left.is_empty() && !socket_left && !old_metrics.exists()).then(Instant::now)
    });
    let Some(cleaned_at) = cleaned else {
        panic!(
            "{CLEANUP_LIMIT:?} after the kill: runc lists {:?} (old tasks {old_tasks:?}), \
             old socket there: {}, old metrics file there: {}\n{}",
            runc_ids(&dir),
            old_sockets.iter().any(|s| s.exists()),
            old_metrics.exists(),
            dump_logs(&dir)
        );
    };
    eprintln!(
        "dead shim cleaned up {:?} after the kill",
        cleaned_at - killed_at
    );

    // CRI reads the old app container as exited with the status `delete` reported (recorded once
    // the `delete` runs answered, just after runc forgot the tasks).
    let status_of_old = |cri: &mut RuntimeServiceClient<tonic::transport::Channel>| {
        rt.block_on(cri.container_status(ContainerStatusRequest {
            container_id: app.clone(),
            verbose: false,
        }))
        .expect("ContainerStatus of the old app container")
        .into_inner()
        .status
        .expect("a status")
    };
    let exited = wait_for(CLEANUP_LIMIT, || {
        let old = status_of_old(&mut cri);
        (old.state == ContainerState::ContainerExited as i32).then_some(old)
    });
    let old = exited.unwrap_or_else(|| status_of_old(&mut cri));
    assert_eq!(
        (old.state, old.exit_code, old.reason.as_str()),
        (ContainerState::ContainerExited as i32, KILLED, "Error"),
        "the old app container through CRI: {old:?}\n{}",
        dump_logs(&dir)
    );
    assert!(old.finished_at > 0, "{old:?}");

    // The kubelet recreates the pod: a new sandbox with a new shim, and exec works again with
    // kubectl 1.32 over WebSocket (its default) and over SPDY.
    let recreated = wait_for(RECOVERY_LIMIT, || {
        let answer = kubectl_exec(
            Client::Ws132,
            &lab.kubeconfig(),
            &["web", "-c", "app", "--", "echo", "hi"],
            Stdio::null(),
        );
        (answer == (Some(0), "hi\n".to_owned(), String::new())).then_some(answer)
    });
    assert!(
        recreated.is_some(),
        "no exec into the recreated pod within {RECOVERY_LIMIT:?}\n{}",
        dump_logs(&dir)
    );
    for client in [Client::Ws132, Client::Spdy132] {
        let mut args: Vec<&str> = "web -c app -- sh -c".split(' ').collect();
        args.push("echo out; echo err >&2; exit 3");
        let answer = kubectl_exec(client, &lab.kubeconfig(), &args, Stdio::null());
        assert_eq!(
            answer,
            (
                Some(3),
                "out\n".to_owned(),
                "err\ncommand terminated with exit code 3\n".to_owned()
            ),
            "{} into the recreated pod\n{}",
            client.label(),
            dump_logs(&dir)
        );
        let input = "line\n".repeat(1000);
        let file = tmp.path().join("stdin.txt");
        std::fs::write(&file, &input).unwrap();
        let answer = kubectl_exec(
            client,
            &lab.kubeconfig(),
            &["-i", "web", "-c", "app", "--", "wc", "-l"],
            std::fs::File::open(&file).unwrap().into(),
        );
        assert_eq!(
            (answer.0, answer.1.trim().to_owned(), answer.2.clone()),
            (Some(0), "1000".to_owned(), String::new()),
            "{}: stdin into the recreated pod\n{}",
            client.label(),
            dump_logs(&dir)
        );
    }
    let now_running: Vec<String> = app_containers(&rt, &mut cri)
        .into_iter()
        .filter(|(_, (_, state))| *state == ContainerState::ContainerRunning as i32)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(now_running.len(), 1, "{now_running:?}");
    assert_ne!(now_running[0], app, "a new app container runs");
    assert_eq!(runc_ids(&dir).len(), 2, "only the new pod's tasks in runc");

    // status: the new shim, healthy; the killed one neither listed nor counted.
    let (code, line, text) = status(&dir);
    assert_eq!(
        code,
        Some(0),
        "status healthy after the recreation:\n{text}"
    );
    assert!(line.contains(" ok "), "{text}");
    assert!(
        !line.contains(&shim.to_string()),
        "killed pid listed:\n{text}"
    );
    for socket in &old_sockets {
        assert!(!line.contains(&socket.display().to_string()), "{text}");
    }

    // A socket no shim answers on (as a killed shim leaves it until the cleanup) shows as dead.
    let stale = dir.join("run/0123456789abcdef0123456789abcdef.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a stale socket"));
    let (code, line, text) = status(&dir);
    std::fs::remove_file(&stale).expect("remove the stale socket");
    assert_eq!(
        code,
        Some(1),
        "a dead shim makes the lab unhealthy:\n{text}"
    );
    assert!(
        line.contains("FAIL")
            && line.contains("dead")
            && line.contains(&stale.display().to_string()),
        "the dead shim is shown as dead:\n{text}"
    );

    drop(cri);
    stop_lab(lab);
}
