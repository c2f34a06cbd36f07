//! Helpers shared by the end-to-end tests: real kubectl, bounded waits, and an independent
//! check that a stopped lab left nothing behind.
#![allow(dead_code)]

pub mod hop_metrics;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use execlab::fault::kubectl::Client;
use execlab::{procfs, Lab, LabConfig};

/// The kubectl the tests drive: `EXECLAB_KUBECTL`, else /usr/bin/kubectl (1.32, WebSocket v5),
/// else kubectl on PATH, else the kubectl 1.20 that scripts/setup.sh extracts.
pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("EXECLAB_KUBECTL") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/kubectl", "/usr/local/bin/kubectl"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from(execlab::cli::KUBECTL_120)
}

/// `true`, with a SKIPPED message, where containerd is not installed: the `--runtime
/// containerd` tests skip there. Under `CI=true` a missing containerd fails the test instead:
/// scripts/setup.sh installs it, so its absence is a broken set-up, not a reason to pass.
pub fn containerd_missing() -> bool {
    if execlab::containerd::installed() {
        return false;
    }
    let why = "containerd/ctr not on PATH; scripts/setup.sh installs Debian's containerd";
    assert!(std::env::var_os("CI").is_none_or(|v| v != "true"), "{why}");
    eprintln!("SKIPPED: {why}");
    true
}

/// Runs a command with a time limit; kills it when the limit passes.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    run_bounded_with_input(command, Stdio::null(), limit)
}

/// [`run_bounded`] with `stdin` as the command's standard input (a file, say).
pub fn run_bounded_with_input(command: &mut Command, stdin: Stdio, limit: Duration) -> Output {
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            eprintln!("command timed out after {limit:?}: {command:?}");
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// `kubectl --kubeconfig K ARGS` with a 60 s limit.
pub fn kubectl_run(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(kubectl());
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    run_bounded(&mut command, Duration::from_secs(60))
}

/// Every hop's log, for a failing test's output.
pub fn dump_logs(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("logs")) {
        for entry in entries.flatten() {
            let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            text.push_str(&format!(
                "---- {} (last {} lines)\n{}\n",
                entry.path().display(),
                tail.len(),
                tail.join("\n")
            ));
        }
    }
    text
}

/// What a lab left running or mounted: checked without the library's own sweep logic, so a
/// bug there cannot hide a leak.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Traces {
    pub processes: Vec<String>,
    pub mounts: Vec<String>,
    pub listening: Vec<u16>,
    pub runc_containers: Vec<String>,
    pub files: Vec<String>,
}

impl Traces {
    pub fn is_empty(&self) -> bool {
        *self == Traces::default()
    }
}

/// Processes (any program but this test and its ancestors) whose command line names `dir`,
/// mounts under `dir`, which of `ports` still listen, runc containers in the lab's runc root,
/// and files left in `dir/run` and `dir/xdg`.
pub fn traces(dir: &Path, ports: &[u16]) -> Traces {
    let spared = procfs::self_and_ancestors();
    let processes = procfs::processes()
        .into_iter()
        .filter(|p| !spared.contains(&p.pid))
        .filter(|p| procfs::cmdline_mentions(p, dir))
        .map(|p| format!("{} {}", p.pid, p.cmdline.join(" ")))
        .collect();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir_text = dir.display().to_string();
    let mounts = mountinfo
        .lines()
        .filter(|line| line.contains(&dir_text))
        .map(str::to_owned)
        .collect();
    let open = procfs::listening_tcp_ports();
    let listening = ports
        .iter()
        .copied()
        .filter(|port| open.contains(port))
        .collect();
    let runc_root = dir.join("state/runc");
    let runc_containers = if runc_root.exists() {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let mut files = Vec::new();
    for sub in ["run", "xdg"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            files.extend(entries.flatten().map(|e| e.path().display().to_string()));
        }
    }
    Traces {
        processes,
        mounts,
        listening,
        runc_containers,
        files,
    }
}

/// Waits (bounded) until the lab's traces are gone: processes take a moment to be reaped.
pub fn assert_no_traces(dir: &Path, ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = traces(dir, ports);
        if found.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("the lab left traces behind: {found:#?}\n{}", dump_logs(dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host state a lab must not change: iptables rules and network namespaces.
pub fn host_network_state() -> (String, String) {
    let iptables = Command::new("iptables-save")
        .output()
        .map(|o| {
            // Counters and the generation comment change on their own.
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with(':'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (iptables, netns)
}

/// Starts a lab; a lab that does not start fails the test with every hop's log.
pub fn start_lab(config: LabConfig) -> Lab {
    let dir = config.dir.clone();
    Lab::start_blocking(config)
        .unwrap_or_else(|e| panic!("lab did not start: {e}\n{}", dump_logs(&dir)))
}

/// A lab in `dir` with the default runtime; its kubelet redirects when `redirect`.
pub fn start_lab_mode(dir: &Path, redirect: bool) -> Lab {
    let mut config = LabConfig::new(dir);
    config.redirect_container_streaming = redirect;
    start_lab(config)
}

/// Stops a lab; anything it leaves behind fails the test.
pub fn stop_lab(lab: Lab) {
    let dir = lab.dir().to_path_buf();
    if let Err(e) = lab.stop() {
        // Again after the logs: a long failure output is often shown by its head and tail only.
        panic!("stop: {e}\n{}\nstop: {e}", dump_logs(&dir));
    }
}

/// A multi-threaded tokio runtime for tests that drive execlab's own exec client.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The argv running `client` against `kubeconfig` through `env`, so that only the lab's
/// kubeconfig and the client's protocol choice count (and tmux can run it as it is).
pub fn client_argv(client: Client, kubeconfig: &Path) -> Vec<OsString> {
    let websockets = client != Client::Spdy132;
    vec![
        "env".into(),
        "-u".into(),
        "KUBECONFIG".into(),
        format!("KUBECTL_REMOTE_COMMAND_WEBSOCKETS={websockets}").into(),
        client.binary().into(),
        "--kubeconfig".into(),
        kubeconfig.into(),
    ]
}

/// [`client_argv`] as a command; the caller adds kubectl's arguments.
pub fn client_command(client: Client, kubeconfig: &Path) -> Command {
    let argv = client_argv(client, kubeconfig);
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    command
}

/// What [`HeldSession`] runs in the container: says `ready`, then echoes stdin until EOF.
pub const HELD_SCRIPT: &str = "echo ready; exec cat";

/// A `kubectl exec -i web -c app -- sh -c HELD_SCRIPT` whose stdin stays open (an idle
/// session) until [`HeldSession::finish`]. Killed if dropped while running.
pub struct HeldSession {
    child: Child,
    stdin: Option<ChildStdin>,
    ready: mpsc::Receiver<()>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl HeldSession {
    pub fn start(client: Client, kubeconfig: &Path) -> Self {
        Self::start_script(client, kubeconfig, HELD_SCRIPT)
    }

    /// The same with another script, which must say `ready` first.
    pub fn start_script(client: Client, kubeconfig: &Path, script: &str) -> Self {
        let mut command = client_command(client, kubeconfig);
        let exec = "exec -i web -c app -- sh -c".split(' ');
        command.args(exec.chain([script]));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        let (ready_tx, ready) = mpsc::channel();
        let mut out = child.stdout.take().expect("piped");
        let stdout = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let was_ready = seen.starts_with(b"ready\n");
                seen.extend_from_slice(&chunk[..n]);
                if !was_ready && seen.starts_with(b"ready\n") {
                    let _ = ready_tx.send(());
                }
            }
            seen
        });
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        Self {
            stdin: child.stdin.take(),
            child,
            ready,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Whether the command said `ready` before `deadline`.
    pub fn wait_ready(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        self.ready.recv_timeout(left).is_ok()
    }

    /// Sends a line to the command's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).expect("write to kubectl");
    }

    /// Waits (bounded) for kubectl to exit on its own, stdin still open; when it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Instant)> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some((status, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    /// Closes stdin (the command's EOF), waits up to `limit` (then kills), returns the output.
    pub fn finish(mut self, limit: Duration) -> Output {
        drop(self.stdin.take());
        let status = match self.wait_exit(limit) {
            Some((status, _)) => status,
            None => {
                let _ = self.child.kill();
                self.child.wait().expect("wait")
            }
        };
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// (exit code, stdout, stderr) of one kubectl run.
pub type Answer = (Option<i32>, String, String);

/// `kubectl exec ARGS` run by `client`, with `stdin` as its input.
pub fn kubectl_exec(client: Client, kubeconfig: &Path, args: &[&str], stdin: Stdio) -> Answer {
    let mut command = client_command(client, kubeconfig);
    command.arg("exec").args(args);
    let out = run_bounded_with_input(&mut command, stdin, Duration::from_secs(60));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // client-go's WebSocket reader may log the server's ready signal as an unknown stream
    // (a client race production shows too): not part of the answer.
    let stderr = execlab::fault::expect::without_client_races(&text(&out.stderr)).into_owned();
    (out.status.code(), text(&out.stdout), stderr)
}

/// Bytes that are not all alike (xorshift from `seed`), so a lost or reordered chunk changes
/// their digest.
pub fn varied_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// 20 MiB of stdin for `kubectl exec -i … -- sha256sum`, in a file, and the line sha256sum
/// prints for it.
pub struct StdinCase {
    pub file: PathBuf,
    pub sha256sum_line: String,
}

impl StdinCase {
    pub fn write(dir: &Path) -> Self {
        use sha2::Digest;
        let payload = varied_bytes(20 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
        let file = dir.join("stdin-20MiB.bin");
        std::fs::write(&file, &payload).expect("write the stdin file");
        let digest = hex::encode(sha2::Sha256::digest(&payload));
        Self {
            file,
            sha256sum_line: format!("{digest}  -\n"),
        }
    }
}

/// Issue #6's exec checks for one client against the lab's pod `web`, container `app`:
/// `echo hi`; stdout, stderr and exit code 3 with kubectl's `command terminated` line; 20 MiB
/// of stdin into `sha256sum`. `label` names the client and lab in failures; `dir` is the lab's.
pub fn assert_exec_matrix(
    client: Client,
    kubeconfig: &Path,
    stdin: &StdinCase,
    label: &str,
    dir: &Path,
) {
    assert!(
        client.available(),
        "{} missing: run scripts/setup.sh",
        client.binary().display()
    );
    let exec = |args: &str, input: Stdio| {
        let args: Vec<&str> = args.split(' ').collect();
        kubectl_exec(client, kubeconfig, &args, input)
    };
    let hi = exec("web -c app -- echo hi", Stdio::null());
    assert_eq!(
        hi,
        (Some(0), "hi\n".into(), String::new()),
        "{label}\n{}",
        dump_logs(dir)
    );

    let mut args: Vec<&str> = "web -c app -- sh -c".split(' ').collect();
    args.push("echo out; echo err >&2; exit 3");
    let three = kubectl_exec(client, kubeconfig, &args, Stdio::null());
    let stderr = "err\ncommand terminated with exit code 3\n";
    assert_eq!(
        three,
        (Some(3), "out\n".into(), stderr.into()),
        "{label}\n{}",
        dump_logs(dir)
    );

    let input = std::fs::File::open(&stdin.file).expect("the stdin file");
    let summed = exec("-i web -c app -- sha256sum", input.into());
    assert_eq!(
        summed,
        (Some(0), stdin.sha256sum_line.clone(), String::new()),
        "{label}: 20 MiB through stdin\n{}",
        dump_logs(dir)
    );
}
