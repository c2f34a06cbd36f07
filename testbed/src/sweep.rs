//! The sweep: after the hops are stopped (or after a crash), remove whatever of the lab is
//! still there — runc containers in the lab's runc root, processes of the lab, mounts under the
//! lab directory, sockets, FIFOs and temp files — and say what was found.
//!
//! A process belongs to the lab when it is one of the chain's programs (or runc) and its
//! command line or environment names one of the lab's own paths (`DIR/run`, `DIR/state`, …, or
//! `EXECLAB_LAB_DIR=DIR`); the calling process and its ancestors are never touched. Only mounts
//! under the lab's own directories are unmounted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::hop::Hop;
use crate::layout::LabLayout;
use crate::procfs::{self, ProcessInfo};
use crate::supervise::{wait_gone, LAB_DIR_ENV};

/// Programs that may belong to a lab. Not `execlab`: other `execlab` processes naming the dir
/// are `status` or `down` commands, and a live supervisor is stopped through its record.
const LAB_PROGRAMS: &[&str] = &[
    "apiserver-proxy",
    "kubelet-stream",
    "cri-streaming",
    "shim-exec",
    "runc",
];

/// What a sweep found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub runc_containers_deleted: Vec<String>,
    pub processes_killed: Vec<String>,
    pub unmounted: Vec<PathBuf>,
    /// What could not be cleaned up.
    pub problems: Vec<String>,
}

impl SweepReport {
    pub fn found_anything(&self) -> bool {
        !(self.runc_containers_deleted.is_empty()
            && self.processes_killed.is_empty()
            && self.unmounted.is_empty())
    }
}

/// Removes every trace of the lab in `layout` except its logs.
pub fn sweep(layout: &LabLayout, runc: &str) -> SweepReport {
    let mut report = SweepReport::default();
    delete_runc_containers(layout, runc, &mut report);
    kill_lab_processes(layout, &mut report);
    unmount_all(layout, &mut report);
    let containers_left = !runc_containers(layout, runc).is_empty();
    for path in layout.removable() {
        // runc's state must outlive its containers, or they can no longer be deleted.
        if containers_left && (path == layout.state_dir() || path == layout.volatile_root()) {
            continue;
        }
        if let Err(problem) = remove(&path) {
            report.problems.push(problem);
        }
    }
    report
}

/// Container ids in the lab's runc roots.
pub fn runc_containers(layout: &LabLayout, runc: &str) -> Vec<String> {
    layout
        .runc_roots()
        .iter()
        .flat_map(|root| runc_containers_in(root, runc))
        .collect()
}

fn runc_containers_in(root: &Path, runc: &str) -> Vec<String> {
    if !root.is_dir() {
        return Vec::new();
    }
    Command::new(runc)
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn delete_runc_containers(layout: &LabLayout, runc: &str, report: &mut SweepReport) {
    for root in layout.runc_roots() {
        for id in runc_containers_in(&root, runc) {
            let deleted = Command::new(runc)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .output();
            match deleted {
                Ok(out) if out.status.success() => report.runc_containers_deleted.push(id),
                // Deleted meanwhile by someone else (a dead shim's `delete` that containerd ran).
                Ok(_) if !runc_containers_in(&root, runc).contains(&id) => {
                    report.runc_containers_deleted.push(id)
                }
                Ok(out) => report.problems.push(format!(
                    "runc delete --force {id}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => report
                    .problems
                    .push(format!("runc delete --force {id}: {e}")),
            }
        }
    }
}

/// The lab's processes still alive (not counting the caller and its ancestors).
pub fn lab_processes(layout: &LabLayout) -> Vec<ProcessInfo> {
    let spared = procfs::self_and_ancestors();
    let lab_env = format!("{LAB_DIR_ENV}={}", layout.root().display());
    procfs::processes()
        .into_iter()
        .filter(|p| !spared.contains(&p.pid))
        .filter(|p| LAB_PROGRAMS.contains(&p.program()))
        .filter(|p| {
            p.cmdline.iter().any(|arg| names_lab(arg, layout))
                || procfs::environ(p.pid)
                    .iter()
                    .any(|var| *var == lab_env || names_lab(var, layout))
        })
        .collect()
}

/// Whether `text` names one of the lab's own paths. The lab root alone does not count: with
/// `--dir /tmp`, every other lab under /tmp would match it.
fn names_lab(text: &str, layout: &LabLayout) -> bool {
    lab_paths(layout)
        .iter()
        .any(|path| procfs::mentions_dir(text, path))
}

/// The lab's own paths: everything it makes under its root.
fn lab_paths(layout: &LabLayout) -> Vec<PathBuf> {
    let mut paths = layout.removable();
    paths.push(layout.logs_dir());
    paths
}

/// Pids of the lab's shim-exec processes.
pub fn shim_pids(layout: &LabLayout) -> Vec<u32> {
    lab_processes(layout)
        .into_iter()
        .filter(|p| p.program() == Hop::ShimExec.binary())
        .map(|p| p.pid)
        .collect()
}

fn kill_lab_processes(layout: &LabLayout, report: &mut SweepReport) {
    let found = lab_processes(layout);
    for process in &found {
        let _ = kill(Pid::from_raw(process.pid as i32), Signal::SIGTERM);
    }
    for process in &found {
        if !wait_gone(process.pid, Duration::from_secs(2)) {
            let _ = kill(Pid::from_raw(process.pid as i32), Signal::SIGKILL);
            if !wait_gone(process.pid, Duration::from_secs(2)) {
                report.problems.push(format!(
                    "process {} ({}) survived SIGKILL",
                    process.pid,
                    process.program()
                ));
            }
        }
        report
            .processes_killed
            .push(format!("{} {}", process.pid, process.cmdline.join(" ")));
    }
}

/// Mounts under the lab's own directories (never the root itself, which may be a mount the
/// user made), in mount order.
pub fn lab_mounts(layout: &LabLayout) -> Vec<PathBuf> {
    let paths = lab_paths(layout);
    // The kernel names mounts by their resolved path: those in the volatile dirs show under
    // the volatile root, not under DIR's symlinks.
    let mut points = procfs::mounts_under(layout.root());
    points.extend(procfs::mounts_under(&layout.volatile_root()));
    points
        .into_iter()
        .filter(|point| paths.iter().any(|p| point.starts_with(p)))
        .collect()
}

fn unmount_all(layout: &LabLayout, report: &mut SweepReport) {
    // Innermost (latest) first.
    for point in lab_mounts(layout).into_iter().rev() {
        match umount2(&point, MntFlags::MNT_DETACH) {
            Ok(()) => report.unmounted.push(point),
            // Unmounted meanwhile by someone else (a dead shim's `delete`).
            Err(_) if !lab_mounts(layout).contains(&point) => report.unmounted.push(point),
            Err(e) => report
                .problems
                .push(format!("umount {}: {e}", point.display())),
        }
    }
}

fn remove(path: &Path) -> Result<(), String> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| format!("remove {}: {e}", path.display()))
}

/// What of the lab is still there: its processes, mounts, runc containers and files in the
/// socket and runtime dirs. Empty when the lab left nothing behind.
pub fn leftovers(layout: &LabLayout, runc: &str) -> Vec<String> {
    let mut found: Vec<String> = lab_processes(layout)
        .iter()
        .map(|p| format!("process {} {}", p.pid, p.cmdline.join(" ")))
        .collect();
    found.extend(
        lab_mounts(layout)
            .iter()
            .map(|m| format!("mount {}", m.display())),
    );
    found.extend(
        runc_containers(layout, runc)
            .iter()
            .map(|id| format!("runc container {id}")),
    );
    for dir in [layout.run_dir(), layout.xdg_dir()] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            found.extend(
                entries
                    .flatten()
                    .map(|e| format!("file {}", e.path().display())),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_of_an_empty_dir_finds_nothing_and_keeps_logs() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LabLayout::new(dir.path()).unwrap();
        layout.create_dirs().unwrap();
        std::fs::write(layout.run_dir().join("stale.sock"), b"").unwrap();
        std::fs::write(layout.logs_dir().join("x.log"), b"kept").unwrap();
        let report = sweep(&layout, "runc");
        assert!(!report.found_anything(), "{report:?}");
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(!layout.run_dir().exists());
        assert!(layout.logs_dir().join("x.log").exists());
        assert!(leftovers(&layout, "runc").is_empty());
    }

    #[test]
    fn a_parent_dir_does_not_claim_another_labs_processes() {
        let parent = LabLayout::new(Path::new("/tmp")).unwrap();
        let other = LabLayout::new(Path::new("/tmp/other-lab")).unwrap();
        let arg = other.cri_endpoint();
        assert!(!names_lab(&arg, &parent));
        assert!(names_lab(&arg, &other));
        assert!(!names_lab("/tmp/other-lab", &other));
    }

    #[test]
    fn a_lab_process_is_found_by_its_command_line_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LabLayout::new(dir.path()).unwrap();
        layout.create_dirs().unwrap();
        // A process named like a hop whose environment names a lab path: a copy of sleep
        // called `runc`.
        let fake = dir.path().join("runc");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let mut child = std::process::Command::new(&fake)
            .arg("30")
            .env("EXECLAB_SHIM_SOCKET_DIR", layout.run_dir())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !lab_processes(&layout).iter().any(|p| p.pid == pid) {
            assert!(std::time::Instant::now() < deadline, "not found");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The sweep can only see it die; reaping is the parent's job, so reap in parallel.
        let reaper = std::thread::spawn(move || child.wait());
        let report = sweep(&layout, "/bin/false");
        assert_eq!(report.processes_killed.len(), 1, "{report:?}");
        assert!(reaper.join().unwrap().is_ok());
    }
}
