//! Named pipes between cri-streaming and the shim: one directory per process with `stdin`,
//! `stdout`, `stderr` FIFOs, removed when the set is dropped.
//!
//! Which FIFOs exist follows containerd's `cio.NewFIFOSetInDir` / CRI `NewFifoExecIO`: stdin
//! only when requested, stdout always, stderr only without a terminal. Our ends are opened
//! before the shim is asked to use them: readers non-blocking (`O_RDONLY|O_NONBLOCK` succeeds
//! without a writer), the stdin writer read-write so opening never fails for lack of a reader.

use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

/// Pipe capacity of an output FIFO. The default 64 KiB made a bulk writer (`dd bs=1M`) and our
/// reader take turns every 64 KiB, and those wake-ups were the largest cost of this hop in
/// profiles; 1 MiB is the most an unprivileged process may ask for (`/proc/sys/fs/pipe-max-size`
/// default). Pages are only held while output waits unread.
pub const OUTPUT_PIPE_BYTES: usize = 1024 * 1024;

/// A directory of FIFOs for one process.
#[derive(Debug)]
pub struct FifoSet {
    dir: PathBuf,
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    pub stderr: Option<PathBuf>,
}

fn mkfifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).map_err(io::Error::from)
}

impl FifoSet {
    /// Creates `dir` (which must not exist) and the FIFOs in it.
    pub fn create(dir: PathBuf, stdin: bool, terminal: bool) -> io::Result<Self> {
        std::fs::create_dir(&dir)?;
        let set = Self {
            stdin: stdin.then(|| dir.join("stdin")),
            stdout: dir.join("stdout"),
            stderr: (!terminal).then(|| dir.join("stderr")),
            dir,
        };
        // From here on, Drop removes the directory whatever fails next.
        for path in [set.stdin.as_ref(), Some(&set.stdout), set.stderr.as_ref()]
            .into_iter()
            .flatten()
        {
            mkfifo(path)?;
        }
        Ok(set)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path as the shim gets it (empty = no such stream).
    pub fn path_arg(path: Option<&PathBuf>) -> String {
        path.map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Our reading end of `stdout` / `stderr`, its pipe enlarged to [`OUTPUT_PIPE_BYTES`].
    pub fn open_reader(path: &Path) -> io::Result<pipe::Receiver> {
        let reader = pipe::OpenOptions::new().open_receiver(path)?;
        // Best effort: an unprivileged user past its pipe quota keeps the default size.
        if let Err(e) = fcntl(&reader, FcntlArg::F_SETPIPE_SZ(OUTPUT_PIPE_BYTES as i32)) {
            tracing::debug!(path = %path.display(), error = %e, "pipe size of an output FIFO");
        }
        Ok(reader)
    }

    /// Our writing end of `stdin`; dropping it is the process's stdin EOF.
    pub fn open_writer(path: &Path) -> io::Result<pipe::Sender> {
        pipe::OpenOptions::new().read_write(true).open_sender(path)
    }
}

impl Drop for FifoSet {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "removing FIFOs");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn fifos_carry_bytes_and_vanish_on_drop() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("exec1");
        let set = FifoSet::create(dir.clone(), true, false).expect("create");
        let stdin = set.stdin.clone().expect("stdin");
        assert!(set.stderr.is_some());

        // Our reader opens before any writer exists and waits for data, not EOF.
        let mut reader = FifoSet::open_reader(&set.stdout).expect("reader");
        let stdout = set.stdout.clone();
        let writer = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(stdout)?;
            f.write_all(b"hello")
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.expect("read");
        writer.await.expect("join").expect("write");
        assert_eq!(got, b"hello");

        // The stdin writer opens without a reader; dropping it is EOF for the reader.
        let mut w = FifoSet::open_writer(&stdin).expect("writer");
        let mut r = FifoSet::open_reader(&stdin).expect("reader");
        w.write_all(b"in").await.expect("write");
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"in");

        drop(set);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn output_fifos_get_a_big_pipe() {
        let base = tempfile::tempdir().expect("tempdir");
        let set = FifoSet::create(base.path().join("big"), false, false).expect("create");
        let reader = FifoSet::open_reader(&set.stdout).expect("reader");
        let size = fcntl(&reader, FcntlArg::F_GETPIPE_SZ).expect("F_GETPIPE_SZ") as usize;
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(OUTPUT_PIPE_BYTES);
        assert!(size >= OUTPUT_PIPE_BYTES.min(max), "pipe size {size}");
    }

    #[test]
    fn terminal_sets_have_no_stderr() {
        let base = tempfile::tempdir().expect("tempdir");
        let set = FifoSet::create(base.path().join("t"), false, true).expect("create");
        assert!(set.stdin.is_none() && set.stderr.is_none());
        assert_eq!(FifoSet::path_arg(None), "");
        assert!(FifoSet::path_arg(Some(&set.stdout)).ends_with("/t/stdout"));
    }
}
