//! A container's own stdio: its stdout/stderr FIFOs are read into the CRI log file (when kubelet
//! gave a log path) and broadcast to attach sessions; its stdin FIFO stays open for attach.
//!
//! Checked against containerd `internal/cri/io/container_io.go` (output goes to the log and to
//! every attached writer; without a log path it is discarded).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::broadcast;

use crate::container_log::{CriLogEncoder, LogStream};
use crate::store::OutputChunk;

/// Read size of output pumps: big reads, no per-byte work.
pub const IO_BUFFER: usize = 128 * 1024;
/// Chunks an attach session may lag behind before it loses output.
const ATTACH_BACKLOG: usize = 256;

/// Copies one output FIFO into the log file and to attach subscribers until the shim closes it.
pub async fn pump_output(
    mut fifo: pipe::Receiver,
    stream: LogStream,
    log: Option<tokio::fs::File>,
    attach: broadcast::Sender<OutputChunk>,
) {
    let mut encoder = CriLogEncoder::new(stream);
    let mut log = log;
    let mut buf = vec![0u8; IO_BUFFER];
    let mut lines = Vec::with_capacity(IO_BUFFER);
    loop {
        let n = match fifo.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "reading container output");
                break;
            }
        };
        // No receivers is the normal case (nobody attached).
        let _ = attach.send(OutputChunk {
            stderr: stream == LogStream::Stderr,
            bytes: Bytes::copy_from_slice(&buf[..n]),
        });
        if let Some(file) = log.as_mut() {
            lines.clear();
            encoder.feed(&buf[..n], SystemTime::now(), &mut lines);
            if let Err(e) = file.write_all(&lines).await {
                tracing::warn!(error = %e, "writing container log; further output is not logged");
                log = None;
            }
        }
    }
    if let Some(file) = log.as_mut() {
        lines.clear();
        encoder.finish(SystemTime::now(), &mut lines);
        let _ = file.write_all(&lines).await;
        let _ = file.flush().await;
    }
}

/// Opens (appending, creating parent directories) the CRI log file.
pub async fn open_log(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

/// The CRI log path: the sandbox's log directory joined with the container's log path.
pub fn log_path(log_directory: &str, container_log_path: &str) -> Option<PathBuf> {
    if log_directory.is_empty() || container_log_path.is_empty() {
        return None;
    }
    Some(Path::new(log_directory).join(container_log_path))
}

pub fn attach_channel() -> broadcast::Sender<OutputChunk> {
    broadcast::channel(ATTACH_BACKLOG).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_path_needs_both_parts() {
        assert_eq!(
            log_path("/var/log/pods/x", "app/0.log"),
            Some(PathBuf::from("/var/log/pods/x/app/0.log"))
        );
        assert_eq!(log_path("", "app/0.log"), None);
        assert_eq!(log_path("/var/log/pods/x", ""), None);
    }
}
