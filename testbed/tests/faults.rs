//! Every fault scenario, run as a user runs it (`execlab fault NAME`, the built binary): it must
//! report REPRODUCED and exit 0, and leave nothing behind (no lab dir, process, mount or
//! network namespace). `enospc` also runs under each `--runtime` it names (the containerd ones
//! skip where containerd is not installed).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use execlab::fault::kubectl::run_bounded;
use execlab::procfs;

fn execlab() -> &'static str {
    env!("CARGO_BIN_EXE_execlab")
}

/// One `[i/n]` block of a report: its observed text and verdict.
fn blocks(report: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut observed = String::new();
    for line in report.lines() {
        if let Some(text) = line.strip_prefix("  observed: ") {
            observed = text.to_owned();
        } else if let Some(verdict) = line.strip_prefix("  verdict:  ") {
            out.push((std::mem::take(&mut observed), verdict.to_owned()));
        }
    }
    out
}

fn run_fault(name: &str) -> String {
    run_fault_with(name, &[])
}

/// Runs `execlab fault NAME --dir D EXTRA...`, asserts it reproduced and left nothing; returns
/// the report.
fn run_fault_with(name: &str, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    let out = run_bounded(
        Command::new(execlab())
            .args(["fault", name, "--dir"])
            .arg(&dir)
            .args(extra),
        Duration::from_secs(170),
    )
    .expect("execlab fault runs");
    let report = out.stdout.clone();
    assert!(
        !out.timed_out,
        "{name} timed out:\n{report}\n{}",
        out.stderr
    );
    assert!(
        report.contains(&format!("execlab fault {name}")),
        "{report}\n{}",
        out.stderr
    );
    let failed: Vec<(String, String)> = blocks(&report)
        .into_iter()
        .filter(|(_, verdict)| verdict == "NOT REPRODUCED")
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: checks not reproduced: {failed:?}\n{report}\n{}",
        out.stderr
    );
    assert_eq!(out.exit_code, Some(0), "{report}\n{}", out.stderr);
    assert!(report.contains("\nverdict: REPRODUCED"), "{report}");
    assert_nothing_left(&dir, &report);
    report
}

/// Only the labs' logs stay in a given --dir; nothing runs, is mounted or is netns'ed there.
fn assert_nothing_left(dir: &Path, report: &str) {
    let processes: Vec<String> = procfs::processes()
        .into_iter()
        .filter(|p| procfs::cmdline_mentions(p, dir))
        .filter(|p| !procfs::self_and_ancestors().contains(&p.pid))
        .map(|p| format!("{} {}", p.pid, p.cmdline.join(" ")))
        .collect();
    assert!(
        processes.is_empty(),
        "left running: {processes:?}\n{report}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "left mounted under {}",
        dir.display()
    );
    for lab in std::fs::read_dir(dir).unwrap().flatten() {
        assert!(lab.path().is_dir(), "stray file {}", lab.path().display());
        let names: Vec<String> = std::fs::read_dir(lab.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["logs"],
            "{} keeps only its logs",
            lab.path().display()
        );
    }
}

#[test]
fn fault_list_names_every_scenario() {
    let out = Command::new(execlab())
        .args(["fault", "--list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "unauthorized",
        "enospc",
        "nodeport-collision",
        "kubelet-restart",
        "forbidden",
        "not-found",
        "runtime-down",
        "command-not-found",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(
        text.contains("--runtime execlab|containerd|containerd-shim-exec"),
        "enospc's runtimes missing from:\n{text}"
    );
    let unknown = Command::new(execlab())
        .args(["fault", "no-such-fault"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

#[test]
fn unauthorized() {
    run_fault("unauthorized");
}

#[test]
fn enospc() {
    run_fault("enospc");
}

/// enospc under containerd 1.6: its runc shim (go-runc) makes the runc-process file in the
/// XDG_RUNTIME_DIR the lab gives containerd, and the text kubectl prints is the one expected of
/// cri-streaming + shim-exec.
#[test]
fn enospc_containerd() {
    if common::containerd_missing() {
        return;
    }
    let report = run_fault_with("enospc", &["--runtime", "containerd"]);
    assert!(report.contains("Runtime: containerd."), "{report}");
    // containerd's own shim made (and failed to make) the files.
    assert!(
        report.contains(" containerd-shim-runc-v2: XDG_RUNTIME_DIR="),
        "{report}"
    );
    // Both forms, from every client available, in the lab's xdg dir.
    for op in ["open", "write"] {
        assert!(
            report.contains(&format!("OCI runtime exec failed: {op} /")),
            "{op}:\n{report}"
        );
    }
    assert!(report.contains("/lab/xdg/runc-process"), "{report}");
}

/// enospc with containerd driving shim-exec.
#[test]
fn enospc_containerd_shim_exec() {
    if common::containerd_missing() {
        return;
    }
    let report = run_fault_with("enospc", &["--runtime", "containerd-shim-exec"]);
    assert!(
        report.contains("Runtime: containerd-shim-exec."),
        "{report}"
    );
}

/// A fault that does not name a runtime refuses it, before starting anything.
#[test]
fn fault_refuses_a_runtime_it_does_not_run_with() {
    let out = Command::new(execlab())
        .args(["fault", "forbidden", "--runtime", "containerd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fault forbidden does not run with --runtime containerd"),
        "{stderr}"
    );
    let help = Command::new(execlab())
        .args(["fault", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--runtime <RUNTIME>"), "{help}");
    assert!(help.contains("containerd-shim-exec"), "{help}");
}

#[test]
fn nodeport_collision() {
    let before = Command::new("ip").args(["netns", "list"]).output().unwrap();
    run_fault("nodeport-collision");
    let after = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&after.stdout)
            .lines()
            .filter(|l| l.starts_with("execlab-"))
            .count(),
        String::from_utf8_lossy(&before.stdout)
            .lines()
            .filter(|l| l.starts_with("execlab-"))
            .count(),
        "network namespaces left behind"
    );
}

#[test]
fn kubelet_restart() {
    run_fault("kubelet-restart");
}

#[test]
fn forbidden() {
    run_fault("forbidden");
}

#[test]
fn not_found() {
    run_fault("not-found");
}

#[test]
fn runtime_down() {
    run_fault("runtime-down");
}

#[test]
fn command_not_found() {
    run_fault("command-not-found");
}

/// The same expected texts, printed by containerd 1.6 with its own runc shim: production's.
#[test]
fn command_not_found_containerd() {
    if common::containerd_missing() {
        return;
    }
    let report = run_fault_with("command-not-found", &["--runtime", "containerd"]);
    assert!(report.contains("Runtime: containerd."), "{report}");
}
