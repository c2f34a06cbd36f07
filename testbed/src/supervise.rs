//! Starting and stopping the hop processes.
//!
//! Each hop runs in its own process group, so a Ctrl-C at the terminal reaches only execlab,
//! which then stops the hops in order (client side first) instead of all of them at once. A
//! hop's stdout and stderr go to its log file. Stopping is SIGTERM, a bounded wait, then SIGKILL.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{log_tail, LabError};
use crate::hop::Hop;
use crate::procfs;

/// Environment variable naming the lab directory in every hop's environment (and so in the
/// shims' and runc's, which inherit it): how a sweep recognises a lab's processes whose command
/// line does not name the directory.
pub const LAB_DIR_ENV: &str = "EXECLAB_LAB_DIR";

const POLL: Duration = Duration::from_millis(10);

/// A hop process started by this lab.
#[derive(Debug)]
pub struct HopProcess {
    hop: Hop,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It had already exited before it was asked to stop.
    AlreadyExited(String),
    /// It exited after SIGTERM.
    Terminated(String),
    /// It ignored SIGTERM for the whole grace period.
    Killed,
    /// It was not found (or was no longer ours).
    Gone,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::AlreadyExited(how) => write!(f, "had already exited ({how})"),
            Ending::Terminated(how) => write!(f, "stopped ({how})"),
            Ending::Killed => f.write_str("killed with SIGKILL after the grace period"),
            Ending::Gone => f.write_str("already gone"),
        }
    }
}

impl HopProcess {
    /// Starts `program args` for `hop` with output into `log` (truncated).
    pub fn spawn(
        hop: Hop,
        program: &Path,
        args: &[OsString],
        log: &Path,
        lab_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Self, LabError> {
        let out = File::create(log).map_err(|e| LabError::io(log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io(log, e))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(lab_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // The hops read `EXECLAB_<FLAG>` variables as flag defaults: only what the lab sets
        // reaches them, not whatever the caller's shell exports.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("EXECLAB_") {
                command.env_remove(name);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        command.env(LAB_DIR_ENV, lab_dir);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command
            .spawn()
            .map_err(|source| LabError::Spawn { hop, source })?;
        tracing::debug!(%hop, pid = child.id(), "started");
        Ok(Self {
            hop,
            child,
            log: log.to_path_buf(),
            exit: None,
        })
    }

    pub fn hop(&self) -> Hop {
        self.hop
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Err(HopExited)` once the process has exited.
    pub fn check_running(&mut self) -> Result<(), LabError> {
        if let Some(status) = self.poll_exit() {
            return Err(LabError::HopExited {
                hop: self.hop,
                status: describe(status),
                log: self.log.clone(),
                tail: log_tail(&self.log, 20),
            });
        }
        Ok(())
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// SIGKILL at once (a crash: the process gets no chance to clean up); reaps the child.
    pub fn kill(&mut self) -> Ending {
        if let Some(status) = self.poll_exit() {
            return Ending::AlreadyExited(describe(status));
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        self.exit = self.child.wait().ok();
        Ending::Killed
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
    pub fn stop(&mut self, grace: Duration) -> Ending {
        if let Some(status) = self.poll_exit() {
            return Ending::AlreadyExited(describe(status));
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.poll_exit() {
                return Ending::Terminated(describe(status));
            }
            std::thread::sleep(POLL);
        }
        let _ = kill(pid, Signal::SIGKILL);
        self.exit = self.child.wait().ok();
        Ending::Killed
    }
}

/// Stops a process that is not our child (`execlab down` from another shell): SIGTERM, wait up
/// to `grace`, SIGKILL. `expect` must appear in its command line, so a recycled pid is left
/// alone.
pub fn stop_pid(pid: u32, expect: &str, grace: Duration) -> Ending {
    let ours = procfs::cmdline(pid).is_some_and(|cmd| cmd.iter().any(|arg| arg.contains(expect)));
    if !ours || !procfs::is_alive(pid) {
        return Ending::Gone;
    }
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    if wait_gone(pid, grace) {
        return Ending::Terminated("after SIGTERM".into());
    }
    let _ = kill(target, Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(2));
    Ending::Killed
}

/// Waits until `pid` is gone (or a zombie); false on timeout.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !procfs::is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Reads a hop's `--addr-file` once it exists: the address it listens on.
pub fn read_addr_file(path: &Path) -> Result<Option<SocketAddr>, LabError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_addr(text.trim())
            .map(Some)
            .ok_or_else(|| LabError::BadFile {
                path: path.to_path_buf(),
                message: format!("not a socket address: {:?}", text.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(path, e)),
    }
}

/// `127.0.0.1:80`, also spelled as a URL (`http://127.0.0.1:80`, `https://…/`).
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let bare = text
        .split_once("://")
        .map_or(text, |(_, rest)| rest)
        .trim_end_matches('/');
    bare.parse().ok()
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => Signal::try_from(signal)
            .map(|s| format!("killed by {s}"))
            .unwrap_or_else(|_| format!("killed by signal {signal}")),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_files_may_hold_a_bare_address_or_a_url() {
        let want: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(parse_addr("127.0.0.1:4000"), Some(want));
        assert_eq!(parse_addr("https://127.0.0.1:4000/"), Some(want));
        assert_eq!(parse_addr("nonsense"), None);
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let mut process = HopProcess::spawn(
            Hop::KubeletStream,
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "trap '' TERM; echo started; exec sleep 30".into(),
            ],
            &log,
            dir.path(),
            &[],
        )
        .unwrap();
        assert!(process.check_running().is_ok());
        // Let the shell install its trap before signalling it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while log_tail(&log, 1) != "started" && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let started = Instant::now();
        assert_eq!(process.stop(Duration::from_millis(200)), Ending::Killed);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            process.check_running(),
            Err(LabError::HopExited { .. })
        ));
    }

    #[test]
    fn a_process_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("y.log");
        let mut process = HopProcess::spawn(
            Hop::CriStreaming,
            Path::new("/bin/sh"),
            &["-c".into(), "echo boom >&2; exit 3".into()],
            &log,
            dir.path(),
            &[],
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = loop {
            if let Err(e) = process.check_running() {
                break e;
            }
            assert!(Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(POLL);
        };
        let text = error.to_string();
        assert!(text.contains("exit code 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert_eq!(
            process.stop(Duration::from_secs(1)),
            Ending::AlreadyExited("exit code 3".into())
        );
    }
}
