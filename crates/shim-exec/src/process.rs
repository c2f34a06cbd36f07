//! What the shim knows about one process (a container's init or an exec): its stdio, pid once
//! runc has started it, its exit once reaped, its terminal, its io tasks.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::stdio::{ProcessIo, StdioPaths};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

/// The task API's view of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    Created,
    Running,
    Stopped,
}

/// Exit status recorded for an exec whose `runc exec` failed (nothing ran).
pub const FAILED_START_STATUS: u32 = 255;

pub struct Process {
    pub stdio: StdioPaths,
    /// 0 until runc reports the pid.
    pub pid: u32,
    /// Init: `runc start` done. Exec: `runc exec` launched (or attempted).
    pub started: bool,
    /// Exec only: the OCI process spec JSON for the runc-process file.
    pub spec: Vec<u8>,
    pub console: Option<Arc<AsyncFd<OwnedFd>>>,
    pub io: ProcessIo,
    /// Exec only: counts the exec as an open session (hop-kit metrics) until the process
    /// record is deleted.
    pub metered: Option<hop_kit::metrics::OpenSession>,
    exit: watch::Sender<Option<Exit>>,
}

impl Process {
    pub fn new(stdio: StdioPaths, spec: Vec<u8>) -> Process {
        Process {
            stdio,
            pid: 0,
            started: false,
            spec,
            console: None,
            io: ProcessIo::default(),
            metered: None,
            exit: watch::channel(None).0,
        }
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    pub fn status(&self) -> ProcessStatus {
        if self.exit().is_some() {
            ProcessStatus::Stopped
        } else if self.started {
            ProcessStatus::Running
        } else {
            ProcessStatus::Created
        }
    }

    /// Whether the live process with this pid is this one.
    pub fn is_live_pid(&self, pid: u32) -> bool {
        self.pid != 0 && self.pid == pid && self.exit().is_none()
    }

    /// Records the first exit; later ones are ignored.
    pub fn record_exit(&mut self, exit: Exit) {
        if self.exit().is_some() {
            return;
        }
        self.exit.send_replace(Some(exit));
        self.io.process_exited();
    }

    /// Resolves once the process has an exit recorded.
    pub fn exit_watch(&self) -> watch::Receiver<Option<Exit>> {
        self.exit.subscribe()
    }
}
