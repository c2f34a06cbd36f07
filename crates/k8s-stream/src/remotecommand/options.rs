//! Which streams an exec session wants.
//!
//! Checked against: kubelet `cri/streaming/remotecommand/httpstream.go` (`NewOptions`: tty drops
//! stderr, at least one stream required, expected stream count).
use super::version::ProtocolVersion;

/// The requested streams and terminal mode of one exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// argv of the command.
    pub command: Vec<String>,
    /// Whether stdin is attached.
    pub stdin: bool,
    /// Whether stdout is attached.
    pub stdout: bool,
    /// Whether stderr is attached (ignored with a tty).
    pub stderr: bool,
    /// Whether the process gets a terminal.
    pub tty: bool,
}

impl ExecOptions {
    /// Applies upstream's normalisation: a tty merges stderr into stdout, so stderr is dropped.
    pub fn normalized(mut self) -> Self {
        if self.tty {
            self.stderr = false;
        }
        self
    }

    /// Whether a stderr stream exists (requested and not a tty).
    pub fn has_stderr(&self) -> bool {
        self.stderr && !self.tty
    }

    /// Whether a resize stream exists for this version.
    pub fn has_resize(&self, version: ProtocolVersion) -> bool {
        self.tty && version.supports_resize()
    }

    /// The number of SPDY streams the server waits for: error + the requested ones.
    pub fn expected_spdy_streams(&self, version: ProtocolVersion) -> usize {
        1 + usize::from(self.stdin)
            + usize::from(self.stdout)
            + usize::from(self.has_stderr())
            + usize::from(self.has_resize(version))
    }
}
