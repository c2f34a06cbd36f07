//! Seed 000: `OCI runtime exec failed: open /tmp/runc-process…: no space left on device`.
//!
//! The shim (go-runc in containerd's, shim-exec here) writes each exec's process spec to a temp
//! file `runc-process<random>` in `$XDG_RUNTIME_DIR` (the temp dir when unset: the seed's
//! `/tmp`) and hands it to `runc exec --process`. The lab's shims have `DIR/xdg` as that dir;
//! the scenario mounts a tiny tmpfs over it, in the private mount namespace it runs in: with no
//! free inode the file cannot be created (`open` form), with no free block it cannot be written
//! (`write` form). Then it proves nothing leaked: no temp file, no runc process, no new
//! descriptor in the shim.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::fault::expect::literal;
use crate::fault::isolate::ensure_own_namespace;
use crate::fault::kubectl::Client;
use crate::fault::{kubectl_checks, Check, Expected, FaultError, FaultReport, FaultRun};
use crate::lab::{Lab, LabRuntime};
use crate::procfs;

/// The two ways the file can fail: the tmpfs options and the Go operation named in the error.
const FORMS: [(&str, &str, &str, bool); 2] = [
    (
        "open",
        "size=64k,nr_inodes=1",
        "inodes exhausted: the runc-process file cannot be created",
        false,
    ),
    (
        "write",
        "size=4k",
        "blocks exhausted (a 4 KiB file fills the tmpfs): the file is created, writing fails",
        true,
    ),
];

pub fn run(run: &FaultRun) -> Result<FaultReport, FaultError> {
    ensure_own_namespace("mnt")?;
    let mut report = FaultReport::new("enospc", "000");
    let lab = run.start_lab(run.lab_config("lab"))?;
    let result = forms(&lab, run.runtime(), &mut report);
    let _ = umount2(&lab.layout().xdg_dir(), MntFlags::MNT_DETACH);
    result?;
    let log = match run.runtime() {
        LabRuntime::Execlab => "cri-streaming.log for the shim's failed Start",
        LabRuntime::Containerd | LabRuntime::ContainerdShimExec => {
            "containerd.log for the failed exec"
        }
    };
    report.notes.push(format!(
        "Runtime: {}. The tmpfs was mounted on {} in a private mount namespace (`unshare\n\
         --mount --propagation private`), so the host never saw it. Look at DIR/lab/logs/{log}.\n\
         Fix: free space (or inodes) where the shim's XDG_RUNTIME_DIR (or TMPDIR) points;\n\
         containerd's shim writes there for every exec.",
        run.runtime().name(),
        lab.layout().xdg_dir().display()
    ));
    run.stop_lab(lab)?;
    Ok(report)
}

/// One shim's children and descriptor count, to compare before and after the failed execs.
#[derive(Debug, PartialEq, Eq)]
struct ShimSnapshot {
    pid: u32,
    children: Vec<u32>,
    fds: usize,
}

impl ShimSnapshot {
    fn of(pid: u32) -> Self {
        Self {
            pid,
            children: children_of(pid),
            fds: fd_count(pid),
        }
    }
}

fn forms(lab: &Lab, runtime: LabRuntime, report: &mut FaultReport) -> Result<(), FaultError> {
    let xdg = lab.layout().xdg_dir();
    let shims = lab.shim_pids();
    if shims.is_empty() {
        return Err(FaultError::Setup(format!(
            "the lab (--runtime {}) has no shim process",
            runtime.name()
        )));
    }
    shims_runtime_dir_check(&shims, &xdg, report);
    let before: Vec<ShimSnapshot> = shims.iter().map(|&pid| ShimSnapshot::of(pid)).collect();
    for (op, options, what, fill) in FORMS {
        mount(
            Some("tmpfs"),
            &xdg,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        )
        .map_err(|e| FaultError::Setup(format!("mount tmpfs on {}: {e}", xdg.display())))?;
        if fill {
            std::fs::write(xdg.join("fill"), vec![0u8; 4096])
                .map_err(|e| FaultError::io("filling the tmpfs", e))?;
        }
        let tail = format!(
            "error executing command in container: failed to exec in container: failed to start exec \"{{hex64}}\": OCI runtime exec failed: {op} {}/runc-process{{n}}: no space left on device: unknown",
            literal(&xdg.display().to_string())
        );
        let spdy = Expected::new(
            format!("error: Internal error occurred: {tail}"),
            1,
            format!("failures.md row 2 / §2 [spdy] (siderolabs/talos#9007 shows `write`; seed 000 shows `open`); the temp dir is the shims' XDG_RUNTIME_DIR {}", xdg.display()),
        );
        let ws = Expected::new(
            format!("error: Internal error occurred: Internal error occurred: {tail}"),
            1,
            "failures.md §2 [ws]: streamtranslator.go wraps the plain error again (doubled prefix, seen in user reports)",
        );
        let expected = [
            (Client::Ws132, ws),
            (Client::Spdy132, spdy.clone()),
            (Client::Spdy120, spdy),
        ];
        let title = format!("{op} form — {what}");
        kubectl_checks(
            report,
            lab,
            &title,
            &["exec", "web", "-c", "app", "--", "echo", "never"],
            &expected,
        )?;

        let mut left: Vec<String> = std::fs::read_dir(&xdg)
            .map_err(|e| FaultError::io(format!("reading {}", xdg.display()), e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let want: Vec<String> = if fill { vec!["fill".into()] } else { vec![] };
        report.checks.push(Check::fact(
            &format!("{op} form — no runc-process file left behind"),
            &format!("ls {}", xdg.display()),
            &format!("{want:?}"),
            "go-runc removes the temp file when writing it fails (shim-exec does the same)",
            &format!("{left:?}"),
            left == want,
        ));
        umount2(&xdg, MntFlags::MNT_DETACH)
            .map_err(|e| FaultError::Setup(format!("umount {}: {e}", xdg.display())))?;
    }

    let runc: Vec<String> = crate::sweep::lab_processes(lab.layout())
        .into_iter()
        .filter(|p| p.program() == "runc")
        .map(|p| format!("{} {}", p.pid, p.cmdline.join(" ")))
        .collect();
    // Copy tasks end asynchronously: give the counts a moment to settle.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after: Vec<ShimSnapshot> = shims.iter().map(|&pid| ShimSnapshot::of(pid)).collect();
    while after != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = shims.iter().map(|&pid| ShimSnapshot::of(pid)).collect();
    }
    let children = |snapshots: &[ShimSnapshot]| -> Vec<(u32, Vec<u32>)> {
        snapshots
            .iter()
            .map(|s| (s.pid, s.children.clone()))
            .collect()
    };
    let fds = |snapshots: &[ShimSnapshot]| -> Vec<(u32, usize)> {
        snapshots.iter().map(|s| (s.pid, s.fds)).collect()
    };
    report.checks.push(Check::fact(
        "no runc or exec process left",
        &format!("ps --ppid <shim>; pgrep runc  (shims {shims:?})"),
        &format!("(shim, children) {:?}, no runc", children(&before)),
        "runc never ran: the failure is before `runc exec`",
        &format!("(shim, children) {:?}, runc {runc:?}", children(&after)),
        runc.is_empty() && children(&after) == children(&before),
    ));
    report.checks.push(Check::fact(
        "the shims' descriptor counts are unchanged",
        &format!("ls /proc/<shim>/fd | wc -l  (shims {shims:?})"),
        &format!("(shim, fds) {:?}", fds(&before)),
        "no FIFO or file descriptor leaks per failed exec",
        &format!("(shim, fds) {:?}", fds(&after)),
        fds(&after) == fds(&before),
    ));
    Ok(())
}

/// Each shim (by pid and program) and its `XDG_RUNTIME_DIR`: the fault only bites where the
/// shims make their runc-process files in the dir the scenario fills.
fn shims_runtime_dir_check(shims: &[u32], xdg: &Path, report: &mut FaultReport) {
    let programs: Vec<(u32, String)> = procfs::processes()
        .into_iter()
        .filter(|p| shims.contains(&p.pid))
        .map(|p| (p.pid, p.program().to_owned()))
        .collect();
    let want = format!("XDG_RUNTIME_DIR={}", xdg.display());
    let observed: Vec<String> = programs
        .iter()
        .map(|(pid, program)| {
            let dir = procfs::environ(*pid)
                .into_iter()
                .find(|var| var.starts_with("XDG_RUNTIME_DIR="))
                .unwrap_or_else(|| "XDG_RUNTIME_DIR unset".into());
            format!("{pid} {program}: {dir}")
        })
        .collect();
    let all_in_xdg = !observed.is_empty() && observed.iter().all(|o| o.ends_with(&want));
    report.checks.push(Check::fact(
        "the shims make runc-process files in the lab's xdg dir",
        "tr '\\0' '\\n' < /proc/<shim>/environ | grep XDG_RUNTIME_DIR",
        &format!("every shim: {want}"),
        "go-runc (containerd's runc shim) and shim-exec make the file in $XDG_RUNTIME_DIR; containerd's shims inherit containerd's environment, which the lab sets",
        &format!("{observed:?}"),
        all_in_xdg,
    ));
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut children: Vec<u32> = procfs::processes()
        .into_iter()
        .filter(|p| procfs::parent_pid(p.pid) == Some(pid))
        .map(|p| p.pid)
        .collect();
    children.sort_unstable();
    children
}
