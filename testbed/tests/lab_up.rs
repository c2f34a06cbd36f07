//! End to end: a whole lab (apiserver-proxy → kubelet-stream → cri-streaming → shim-exec → runc)
//! started by the library and by `execlab up`, real kubectl through it, then a stop that must
//! leave no process, mount, port, runc container, socket or temp file behind.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{assert_no_traces, dump_logs, host_network_state, kubectl_run, run_bounded};
use execlab::{Hop, Lab, LabConfig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `execlab up` must be ready within this (the budget; EXECLAB_READY_BUDGET_MS
/// overrides it on a slow machine).
fn ready_budget() -> Duration {
    let ms = std::env::var("EXECLAB_READY_BUDGET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    Duration::from_millis(ms)
}

fn lab_ports(dir: &Path) -> Vec<u16> {
    let mut ports = Vec::new();
    for hop in ["apiserver-proxy", "kubelet-stream", "cri-streaming"] {
        if let Ok(text) = std::fs::read_to_string(dir.join("addr").join(hop)) {
            if let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok()) {
                ports.push(port);
            }
        }
    }
    ports
}

#[test]
fn kubectl_exec_runs_through_every_hop_and_stop_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let before = host_network_state();
    let lab = match Lab::start_blocking(LabConfig::new(&dir)) {
        Ok(lab) => lab,
        Err(e) => panic!("lab did not start: {e}\n{}", dump_logs(&dir)),
    };
    let dir = lab.dir().to_path_buf();
    let ports = lab_ports(&dir);
    assert_eq!(ports.len(), 3, "every hop wrote its address file");
    assert!(lab.kubeconfig().exists());
    for hop in [Hop::ApiserverProxy, Hop::KubeletStream, Hop::CriStreaming] {
        assert!(lab.pid(hop).is_some(), "{hop} has a pid");
    }
    assert!(!lab.shim_pids().is_empty(), "cri-streaming started a shim");

    let out = kubectl_run(
        &lab.kubeconfig(),
        &["exec", "web", "-c", "app", "--", "echo", "hi"],
    );
    assert!(
        out.status.success() && out.stdout == b"hi\n",
        "kubectl exec: {:?}\nstdout: {}\nstderr: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        dump_logs(&dir)
    );

    // The policy file works with the real API server: viewer reads pods, may not exec.
    let pods = kubectl_run(
        &lab.kubeconfig(),
        &["--context", "execlab-viewer", "get", "pods", "-o", "name"],
    );
    assert_eq!(
        String::from_utf8_lossy(&pods.stdout).trim(),
        "pod/web",
        "{}",
        String::from_utf8_lossy(&pods.stderr)
    );
    let denied = kubectl_run(
        &lab.kubeconfig(),
        &["--context", "execlab-viewer", "exec", "web", "--", "true"],
    );
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    if let Err(e) = lab.stop() {
        panic!("stop: {e}\n{}", dump_logs(&dir));
    }
    assert_no_traces(&dir, &ports);
    assert!(!dir.join("kubeconfig").exists());
    assert_eq!(host_network_state(), before, "iptables or netns changed");
}

/// A foreground `execlab up`, stopped as Ctrl-C would if the test fails before it does.
struct StopOnDrop(std::process::Child);

impl std::ops::Deref for StopOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for StopOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(40);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `execlab up --dir DIR` in the foreground and waits (60 s at most) for its ready
/// line. Returns the process, its output lines as they come (stderr's prefixed `stderr: `) and
/// those read so far.
fn up_foreground(dir: &Path) -> (StopOnDrop, mpsc::Receiver<String>, Vec<String>) {
    let mut up = StopOnDrop(
        Command::new(env!("CARGO_BIN_EXE_execlab"))
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = up.stdout.take().unwrap();
    let stderr = up.stderr.take().unwrap();
    let err_tx = lines_tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(format!("stderr: {line}"));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = Vec::new();
    loop {
        while let Ok(line) = lines.try_recv() {
            output.push(line);
        }
        if output.iter().any(|l| l.contains("lab ready in")) {
            return (up, lines, output);
        }
        if let Ok(Some(status)) = up.try_wait() {
            panic!(
                "execlab up exited ({status}) before ready:\n{}\n{}",
                output.join("\n"),
                dump_logs(dir)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "execlab up not ready in 60 s:\n{}\n{}",
                output.join("\n"),
                dump_logs(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `up` to exit, at most `limit`; returns its status.
fn wait_exit(up: &mut StopOnDrop, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = up.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "execlab up still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `execlab up` in the foreground: ready under the budget, `status` shows every hop healthy.
/// Two hops then die: each is reported once as having exited while the lab ran, and neither
/// is left a zombie. Ctrl-C (SIGINT) stops the rest and exits 0 with nothing left behind.
#[test]
fn execlab_up_reports_dead_hops_then_ctrl_c_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let before = host_network_state();
    let (mut up, lines, mut output) = up_foreground(&dir);
    let kubeconfig = dir.join("kubeconfig");
    let ready_line = output
        .iter()
        .find(|l| l.contains("lab ready in"))
        .cloned()
        .unwrap_or_default();
    assert!(kubeconfig.exists(), "ready means the kubeconfig exists");
    let seconds: f64 = ready_line
        .split("lab ready in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(
        seconds < ready_budget().as_secs_f64(),
        "ready in {seconds} s, budget {:?}:\n{}",
        ready_budget(),
        output.join("\n")
    );
    let ports = lab_ports(&dir);

    let status = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_execlab"))
            .arg("status")
            .arg("--dir")
            .arg(&dir),
        Duration::from_secs(20),
    );
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "status: {status_text}");
    for hop in Hop::CHAIN {
        assert!(status_text.contains(hop.name()), "{status_text}");
    }

    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    let pid_of = |hop: Hop| {
        record["hops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["hop"] == hop.name())
            .and_then(|h| h["pid"].as_i64())
            .unwrap_or_else(|| panic!("no pid for {hop} in {record}")) as i32
    };
    let dead = [Hop::KubeletStream, Hop::ApiserverProxy];
    for hop in dead {
        kill(Pid::from_raw(pid_of(hop)), Signal::SIGKILL).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let reported = |output: &[String], hop: Hop| {
        let said =
            format!("stderr: execlab: {hop} exited (killed by SIGKILL) while the lab was running");
        output.iter().filter(|l| l.starts_with(&said)).count()
    };
    while dead.iter().any(|hop| reported(&output, *hop) == 0) {
        assert!(
            Instant::now() < deadline,
            "both deaths reported within 10 s:\n{}",
            output.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
        while let Ok(line) = lines.try_recv() {
            output.push(line);
        }
    }
    // Reported once each, in the words of a hop that was running, and reaped.
    std::thread::sleep(Duration::from_millis(1200));
    while let Ok(line) = lines.try_recv() {
        output.push(line);
    }
    for hop in dead {
        assert_eq!(reported(&output, hop), 1, "{}", output.join("\n"));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid_of(hop)));
        assert!(
            stat.is_err(),
            "{hop} was not reaped: {}",
            stat.unwrap_or_default()
        );
    }

    kill(Pid::from_raw(up.id() as i32), Signal::SIGINT).unwrap();
    let exit = wait_exit(&mut up, Duration::from_secs(40));
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        output.push(line);
    }
    assert!(exit.success(), "exit {exit}:\n{}", output.join("\n"));
    assert_no_traces(&dir, &ports);
    assert_eq!(host_network_state(), before, "iptables or netns changed");
}

/// `rm -rf DIR` under a running lab: its sockets and runc's root go with DIR, so the lab can no
/// longer work, and `down` can no longer find it. The supervisor notices, says why, stops the
/// hops, deletes the containers from runc's state on the tmpfs, and exits 1. Nothing is left:
/// no hop, no container process, no tmpfs directory.
#[test]
fn removing_the_lab_dir_stops_the_lab_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let before = host_network_state();
    let (mut up, lines, mut output) = up_foreground(&dir);
    let ports = lab_ports(&dir);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    let mut pids: Vec<i64> = record["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["pid"].as_i64())
        .collect();
    assert_eq!(pids.len(), Hop::STARTED.len(), "{record}");
    let containers = Command::new("runc")
        .arg("--root")
        .arg(dir.join("state/runc"))
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let containers: serde_json::Value = serde_json::from_slice(&containers.stdout).unwrap();
    let container_pids: Vec<i64> = containers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["pid"].as_i64())
        .collect();
    assert!(!container_pids.is_empty(), "the pod's containers run");
    pids.extend(&container_pids);
    pids.extend(
        execlab::sweep::shim_pids(&execlab::LabLayout::new(&dir).unwrap())
            .iter()
            .map(|p| i64::from(*p)),
    );
    let volatile = std::fs::read_link(dir.join("state"))
        .ok()
        .and_then(|state| state.parent().map(Path::to_path_buf));

    // As `rm -rf` would; a file a hop makes meanwhile can fail one pass.
    let mut removed = std::fs::remove_dir_all(&dir);
    for _ in 0..3 {
        if removed.is_ok() || !dir.exists() {
            break;
        }
        removed = std::fs::remove_dir_all(&dir);
    }
    assert!(!dir.exists(), "removing {}: {removed:?}", dir.display());
    let exit = wait_exit(&mut up, Duration::from_secs(60));
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        output.push(line);
    }
    let text = output.join("\n");
    assert_eq!(exit.code(), Some(1), "{text}");
    assert!(
        text.contains("no longer names this lab") && text.contains("stopping the lab"),
        "{text}"
    );
    for pid in pids {
        assert!(
            !execlab::procfs::is_alive(pid as u32),
            "process {pid} outlived its lab: {:?}\n{text}",
            execlab::procfs::cmdline(pid as u32)
        );
    }
    if let Some(volatile) = volatile {
        assert!(!volatile.exists(), "{} is left\n{text}", volatile.display());
    }
    assert_no_traces(&dir, &ports);
    assert_eq!(host_network_state(), before, "iptables or netns changed");
}

/// `up --detach` returns once ready; `status` and `down` work from other processes.
#[test]
fn detach_status_and_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let execlab = |args: &[&str]| {
        run_bounded(
            Command::new(env!("CARGO_BIN_EXE_execlab"))
                .args(args)
                .arg("--dir")
                .arg(&dir),
            Duration::from_secs(90),
        )
    };
    let up = execlab(&["up", "--detach"]);
    assert!(
        up.status.success(),
        "up --detach: {}\n{}",
        String::from_utf8_lossy(&up.stderr),
        dump_logs(&dir)
    );
    assert!(dir.join("kubeconfig").exists());
    assert!(String::from_utf8_lossy(&up.stdout).contains("execlab down --dir"));
    let ports = lab_ports(&dir);

    // A second lab in the same dir is refused while the first runs.
    let again = execlab(&["up", "--detach"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let status = execlab(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    let down = execlab(&["down"]);
    assert!(
        down.status.success(),
        "down: {}{}",
        String::from_utf8_lossy(&down.stdout),
        String::from_utf8_lossy(&down.stderr)
    );
    assert_no_traces(&dir, &ports);
    let after = execlab(&["status"]);
    assert_eq!(after.status.code(), Some(3), "no lab after down");
}

/// `--redirect-container-streaming` reaches the kubelet, and exec works over SPDY too: kubectl
/// 1.32 forced to SPDY, and kubectl 1.20 when scripts/setup.sh has extracted it.
#[test]
fn redirect_mode_serves_websocket_and_spdy_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = LabConfig::new(tmp.path().join("lab"));
    config.redirect_container_streaming = true;
    let dir = config.dir.clone();
    let lab = match Lab::start_blocking(config) {
        Ok(lab) => lab,
        Err(e) => panic!("lab did not start: {e}\n{}", dump_logs(&dir)),
    };
    let dir = lab.dir().to_path_buf();
    let kubelet_cmd = execlab::procfs::cmdline(lab.pid(Hop::KubeletStream).unwrap()).unwrap();
    assert!(kubelet_cmd.contains(&"--redirect-container-streaming".to_owned()));

    let kubeconfig = lab.kubeconfig();
    let mut clients: Vec<(String, Command)> = Vec::new();
    let mut websocket = Command::new(common::kubectl());
    websocket.arg("--kubeconfig").arg(&kubeconfig);
    clients.push(("kubectl (default protocol)".into(), websocket));
    let mut spdy = Command::new(common::kubectl());
    spdy.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .arg("--kubeconfig")
        .arg(&kubeconfig);
    clients.push(("kubectl forced to SPDY".into(), spdy));
    if Path::new(execlab::cli::KUBECTL_120).is_file() {
        let mut old = Command::new(execlab::cli::KUBECTL_120);
        old.arg("--kubeconfig").arg(&kubeconfig);
        clients.push(("kubectl 1.20".into(), old));
    }
    for (name, mut command) in clients {
        command.args([
            "exec",
            "web",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ]);
        let out = run_bounded(&mut command, Duration::from_secs(60));
        assert_eq!(
            (
                out.status.code(),
                out.stdout.as_slice(),
                out.stderr.starts_with(b"err\n")
            ),
            (Some(3), b"out\n".as_slice(), true),
            "{name}: stderr {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            dump_logs(&dir)
        );
    }
    let ports = lab_ports(&dir);
    if let Err(e) = lab.stop() {
        panic!("stop: {e}\n{}", dump_logs(&dir));
    }
    assert_no_traces(&dir, &ports);
}
