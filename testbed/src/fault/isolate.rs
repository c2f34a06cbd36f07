//! Running a scenario inside a namespace: `execlab fault NAME` runs itself again under
//! `unshare -m --propagation private` (or `ip netns exec NS`), with [`INSIDE_ENV`] naming the
//! scenario so the second run knows it is the inner one.
//!
//! A whole process (the inner `execlab` and every hop it starts) lives in the namespace, rather
//! than one thread of a threaded process: setns/unshare act per thread, and tokio's worker
//! threads would stay outside.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use super::FaultError;

/// Set to the scenario's name in the inner run's environment.
pub const INSIDE_ENV: &str = "EXECLAB_FAULT_INSIDE";

/// Whether this process is the inner run of `scenario`.
pub fn is_inner_run(scenario: &str) -> bool {
    std::env::var(INSIDE_ENV).is_ok_and(|v| v == scenario)
}

/// This command again (same arguments), prefixed by `wrapper` (e.g. `unshare -m ...`), marked
/// as the inner run of `scenario`, with `env` added; waits for it.
pub fn rerun_inside(
    scenario: &str,
    wrapper: &[&str],
    env: &[(&str, String)],
) -> Result<ExitStatus, FaultError> {
    let exe = std::env::current_exe().map_err(|e| FaultError::io("current executable", e))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (program, wrapper_args) = wrapper
        .split_first()
        .ok_or_else(|| FaultError::Setup("empty namespace wrapper".into()))?;
    let mut command = Command::new(program);
    command
        .args(wrapper_args)
        .arg(&exe)
        .args(&args)
        .env(INSIDE_ENV, scenario);
    for (name, value) in env {
        command.env(name, value);
    }
    command.status().map_err(|e| {
        FaultError::io(
            format!("running {} {}", program, PathBuf::from(&exe).display()),
            e,
        )
    })
}

/// The namespace inode of `kind` (`mnt`, `net`) of `pid` (`self` for this process).
pub fn namespace_of(pid: &str, kind: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

/// `Ok` when this process's `kind` namespace differs from its parent's: the inner run must not
/// touch the host's mounts or netfilter tables by mistake.
pub fn ensure_own_namespace(kind: &str) -> Result<(), FaultError> {
    let parent = nix::unistd::getppid().to_string();
    match (namespace_of("self", kind), namespace_of(&parent, kind)) {
        (Some(mine), Some(theirs)) if mine != theirs => Ok(()),
        (mine, theirs) => Err(FaultError::Setup(format!(
            "refusing to go on: this process's {kind} namespace ({mine:?}) is its parent's ({theirs:?})"
        ))),
    }
}
