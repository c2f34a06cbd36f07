//! Helpers shared by the end-to-end tests: real kubectl, bounded waits, and an independent
//! check that a stopped lab left nothing behind.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use execlab::procfs;

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

/// Runs a command with a time limit; kills it when the limit passes.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
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
