//! The errors of the lab library: each says what failed and where to look.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hop::Hop;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("lab dir {dir} is too long: the CRI socket {socket} would not fit a unix socket address (107 bytes); choose a shorter --dir")]
    DirTooLong { dir: PathBuf, socket: PathBuf },

    #[error("making the lab PKI: {0}")]
    Pki(#[from] rcgen::Error),

    #[error("preparing the busybox rootfs in {rootfs}: {message}")]
    Rootfs { rootfs: PathBuf, message: String },

    #[error("{binary} not found in {searched}; build the hops first (`cargo build --release --workspace`) or set EXECLAB_BIN_DIR")]
    BinaryNotFound { binary: String, searched: String },

    #[error("a lab is already running in {dir} (execlab pid {pid}); stop it with `execlab down --dir {dir}`", dir = .dir.display())]
    AlreadyRunning { dir: PathBuf, pid: u32 },

    #[error("starting {hop}: {source}")]
    Spawn {
        hop: Hop,
        #[source]
        source: std::io::Error,
    },

    #[error("{hop} exited ({status}) before it was ready; its log {log}:\n{tail}", log = .log.display())]
    HopExited {
        hop: Hop,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{what} was not ready after {:.1} s; last error: {last}; see {log}", .waited.as_secs_f64(), log = .log.display())]
    NotReady {
        what: String,
        waited: Duration,
        last: String,
        log: PathBuf,
    },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("lab record {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not make the tokio runtime for the health checks: {0}")]
    Runtime(std::io::Error),

    #[error("could not install the signal handlers: {0}")]
    Signals(std::io::Error),

    #[error("cleaning up {dir} left things behind: {}", .leftovers.join("; "), dir = .dir.display())]
    Leftovers {
        dir: PathBuf,
        leftovers: Vec<String>,
    },

    /// `--runtime containerd`.
    #[error(transparent)]
    Containerd(#[from] crate::containerd::ContainerdError),

    #[error("the detached lab supervisor exited ({status}) before the lab was ready; its log {log}:\n{tail}", log = .log.display())]
    SupervisorExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
}

impl LabError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// The last `lines` lines of a log file, for error messages (empty when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
