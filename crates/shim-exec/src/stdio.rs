//! A process's stdio: the FIFO paths the caller gives (empty = none) turned into what runc
//! passes to the process, plus the copy tasks the shim must run.
//!
//! Without a terminal the stdout FIFO is handed to runc as-is (runc passes its stdio through to
//! the process with `--detach`), so the process writes straight into it and the shim copies
//! nothing. stdin goes through a pipe and one copy task instead, so CloseIO can end the
//! process's input even while the caller still holds the FIFO. stderr goes through a pipe too,
//! copied into its FIFO only once runc has started the process ([`ProcessIo::start_output_copy`]):
//! a failing runc prints its error on its stderr as well as into `--log` (runc `utils.go`
//! `fatalWithCode`), and containerd's shim, which starts its pipe copies only after
//! `runtime.Exec`/`Create` succeeded (`pkg/process/exec.go` `start`, `init.go` `Create`), never
//! passes that line on. (containerd's shim copies all three through pipes:
//! `pkg/process/io.go`.)
//!
//! With a terminal the shim owns the pty master and copies master -> stdout FIFO and stdin FIFO
//! -> master.
//!
//! FIFO rules: an output FIFO needs a reader; the shim waits up to [`READER_WAIT`] for one. An
//! input FIFO is opened non-blocking and read only after epoll reports it readable: Linux
//! suppresses the hang-up of a FIFO opened with no writer until a writer has come, so a caller
//! that connects late is not mistaken for an empty stdin (fs/pipe.c `fifo_open`/`pipe_poll`).
//!
//! The stdin FIFO stays open until the caller closes it, CloseIO or Delete, also after the
//! process is gone (what comes in then is read and dropped): a caller's stdin write must not
//! fail with EPIPE. containerd's CRI, when a stdin write of a tty exec fails, closes its read
//! end of the stdout FIFO, and the output not yet copied is lost (`pkg/cri/io/exec_io.go`
//! `Attach`); containerd's runc shim keeps its stdin FIFO open until the exec is deleted
//! (`pkg/process/exec.go` `openStdin`, `runtime/v2/runc/platform.go` `CopyConsole`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hop_kit::metrics::Stream;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long an output FIFO may stay without a reader before the exec fails.
pub const READER_WAIT: Duration = Duration::from_secs(10);
const COPY_BUF: usize = 32 * 1024;

/// The FIFO paths of one process, as given in Create/Exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What runc gets as its stdin/stdout/stderr.
pub struct RuncStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// The shim's side of a process's io: copy tasks and the CloseIO handle.
#[derive(Default)]
pub struct ProcessIo {
    stdin_task: Option<JoinHandle<()>>,
    output_task: Option<JoinHandle<()>>,
    close_stdin: Option<Arc<Notify>>,
    /// Tells the stdin task the process is gone: stop forwarding, keep the FIFO open.
    stdin_orphaned: Option<Arc<Notify>>,
    /// The read end of runc's stderr pipe and the stderr FIFO, not copied until runc succeeded.
    pending_stderr: Option<(pipe::Receiver, pipe::Sender)>,
}

impl ProcessIo {
    /// CloseIO: the process sees end of input once pending input is flushed.
    pub fn close_stdin(&self) {
        if let Some(n) = &self.close_stdin {
            n.notify_one();
        }
    }

    /// runc has started the process: from now on its stderr pipe is copied into the stderr
    /// FIFO. Before, the pipe could only hold runc's own error line; a failed runc drops this
    /// `ProcessIo` and with it that line.
    pub fn start_output_copy(&mut self) {
        if let Some((from, to)) = self.pending_stderr.take() {
            self.output_task = Some(tokio::spawn(copy_stderr(from, to)));
        }
    }

    /// The process is gone: stop feeding it input, but keep the stdin FIFO open (and drained)
    /// until Delete. Output copying drains on its own.
    pub fn process_exited(&self) {
        if let Some(n) = &self.stdin_orphaned {
            n.notify_one();
        }
    }

    /// Deleting an exited process: give the output copy up to `limit` to pass on what the
    /// process wrote last (a terminal's final bytes can still sit in the pty when the exit is
    /// reaped), then stop everything. containerd's runc shim waits the same way, 2 s, for its
    /// copiers before it deletes an exec.
    pub async fn drain_then_abort(&mut self, limit: std::time::Duration) {
        self.process_exited();
        if let Some(task) = self.output_task.as_mut() {
            let _ = tokio::time::timeout(limit, task).await;
        }
        self.abort();
    }

    /// The process is deleted: stop everything, closing the FIFOs.
    pub fn abort(&mut self) {
        for task in [self.stdin_task.take(), self.output_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }

    /// Starts the copy from a stdin FIFO into `sink`.
    fn spawn_stdin_copy(&mut self, fifo: AsyncFd<OwnedFd>, sink: StdinSink) {
        let close = Arc::new(Notify::new());
        let orphaned = Arc::new(Notify::new());
        self.close_stdin = Some(close.clone());
        self.stdin_orphaned = Some(orphaned.clone());
        self.stdin_task = Some(tokio::spawn(copy_stdin(fifo, sink, close, orphaned)));
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Opens an output FIFO for writing, waiting (bounded) for a reader; the fd is blocking.
pub async fn open_fifo_writer(path: &Path) -> io::Result<OwnedFd> {
    let deadline = Instant::now() + READER_WAIT;
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => {
                let fd = OwnedFd::from(f);
                set_nonblocking(fd.as_raw_fd(), false)?;
                return Ok(fd);
            }
            // ENXIO: no reader yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn open_fifo_reader(path: &Path) -> io::Result<AsyncFd<OwnedFd>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    register(OwnedFd::from(f))
}

/// Registers an owned descriptor with the reactor.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and refers to the same file until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller keeps open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

async fn read_ready(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| raw_read(inner.as_raw_fd(), buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all_ready(fd: &AsyncFd<OwnedFd>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| raw_write(inner.as_raw_fd(), buf)) {
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

fn raw_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn raw_write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn devnull_write() -> io::Result<Stdio> {
    Ok(Stdio::from(
        OpenOptions::new().write(true).open("/dev/null")?,
    ))
}

/// Sets up a process without a terminal: stdout/stderr FIFOs straight to runc, stdin through a
/// pipe fed by a copy task. Must run inside the runtime.
pub async fn pipe_io(paths: &StdioPaths) -> io::Result<(RuncStdio, ProcessIo)> {
    let mut io_state = ProcessIo::default();
    let stdin = if paths.stdin.is_empty() {
        Stdio::null()
    } else {
        let fifo = open_fifo_reader(Path::new(&paths.stdin))?;
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let sender = pipe::Sender::from_owned_fd(write_end)?;
        io_state.spawn_stdin_copy(fifo, StdinSink::Pipe(sender));
        Stdio::from(read_end)
    };
    let stdout = match paths.stdout.as_str() {
        "" => devnull_write()?,
        p => Stdio::from(open_fifo_writer(Path::new(p)).await?),
    };
    let stderr = match paths.stderr.as_str() {
        "" => devnull_write()?,
        p => {
            let fifo = pipe::Sender::from_owned_fd(open_fifo_writer(Path::new(p)).await?)?;
            let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            io_state.pending_stderr = Some((pipe::Receiver::from_owned_fd(read_end)?, fifo));
            Stdio::from(write_end)
        }
    };
    Ok((
        RuncStdio {
            stdin,
            stdout,
            stderr,
        },
        io_state,
    ))
}

/// The stdin counter of this shim's metrics (the shim sees stdin, stderr, and the output of a
/// terminal; without one, stdout goes from the process straight into the caller's FIFO).
fn stdin_bytes() -> &'static hop_kit::metrics::ByteCounter {
    hop_kit::metrics::global().stream(Stream::Stdin)
}

/// Where a process's input goes: the pipe runc gave the process as stdin, or the pty master.
enum StdinSink {
    Pipe(pipe::Sender),
    Terminal(Arc<AsyncFd<OwnedFd>>),
}

impl StdinSink {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            StdinSink::Pipe(p) => p.write_all(buf).await,
            StdinSink::Terminal(master) => write_all_ready(master, buf).await,
        }
    }
}

/// Why forwarding stdin stopped.
enum StdinEnd {
    /// The caller closed the FIFO, or CloseIO: the process has its end of input.
    Closed,
    /// The process takes no more input (it exited, or its input end is gone).
    Orphaned,
}

/// Copies a stdin FIFO into the process until the caller closes it or CloseIO; once the
/// process takes no more input, drains the FIFO until the caller closes it (see the module
/// comment). Dropping the sink is the process's end of input.
async fn copy_stdin(
    fifo: AsyncFd<OwnedFd>,
    sink: StdinSink,
    close: Arc<Notify>,
    orphaned: Arc<Notify>,
) {
    let mut buf = vec![0u8; COPY_BUF];
    let end = tokio::select! {
        end = forward_stdin(&fifo, sink, &close, &mut buf) => end,
        _ = orphaned.notified() => StdinEnd::Orphaned,
    };
    if let StdinEnd::Orphaned = end {
        while let Ok(n) = read_ready(&fifo, &mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

async fn forward_stdin(
    fifo: &AsyncFd<OwnedFd>,
    mut sink: StdinSink,
    close: &Notify,
    buf: &mut [u8],
) -> StdinEnd {
    loop {
        tokio::select! {
            r = read_ready(fifo, buf) => match r {
                Ok(0) => return StdinEnd::Closed,
                Ok(n) => {
                    stdin_bytes().add(n as u64);
                    if sink.write_all(&buf[..n]).await.is_err() {
                        return StdinEnd::Orphaned;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "stdin fifo read");
                    return StdinEnd::Closed;
                }
            },
            _ = close.notified() => {
                // CloseIO follows the caller's last write: what is still in the FIFO belongs
                // to the process before its end of input.
                while let Some(n) = read_pending(fifo, buf) {
                    stdin_bytes().add(n as u64);
                    if sink.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                return StdinEnd::Closed;
            }
        }
    }
}

/// Reads what a FIFO holds right now, without waiting: `None` at end of input, when it is
/// empty, or on error.
fn read_pending(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> Option<usize> {
    match raw_read(fd.as_raw_fd(), buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Copies a process's stderr pipe into its FIFO until every writer of the pipe is gone. A
/// caller that closed its end of the FIFO no longer gets anything, but the pipe is still
/// drained, so the process never blocks on it.
async fn copy_stderr(mut from: pipe::Receiver, to: pipe::Sender) {
    use tokio::io::AsyncReadExt;
    let mut to = Some(to);
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                hop_kit::metrics::global()
                    .stream(Stream::Stderr)
                    .add(n as u64);
                if let Some(o) = to.as_mut() {
                    if o.write_all(&buf[..n]).await.is_err() {
                        to = None;
                    }
                }
            }
        }
    }
}

/// Starts the copy tasks between a pty master and the FIFOs of a terminal process.
pub async fn console_io(
    master: Arc<AsyncFd<OwnedFd>>,
    paths: &StdioPaths,
) -> io::Result<ProcessIo> {
    let mut io_state = ProcessIo::default();
    let stdout = match paths.stdout.as_str() {
        "" => None,
        p => Some(File::from(open_fifo_writer(Path::new(p)).await?)),
    };
    io_state.output_task = Some(tokio::spawn(copy_master_to_stdout(master.clone(), stdout)));
    if !paths.stdin.is_empty() {
        let fifo = open_fifo_reader(Path::new(&paths.stdin))?;
        io_state.spawn_stdin_copy(fifo, StdinSink::Terminal(master));
    }
    Ok(io_state)
}

async fn copy_master_to_stdout(master: Arc<AsyncFd<OwnedFd>>, stdout: Option<File>) {
    let mut out = match stdout.map(pipe::Sender::from_file).transpose() {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "stdout fifo");
            None
        }
    };
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        match read_ready(&master, &mut buf).await {
            // EIO: every slave end is closed, the terminal's process is gone.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                hop_kit::metrics::global()
                    .stream(Stream::Stdout)
                    .add(n as u64);
                if let Some(o) = out.as_mut() {
                    if o.write_all(&buf[..n]).await.is_err() {
                        // Reader gone: keep draining so the process never blocks on the pty.
                        out = None;
                    }
                }
            }
        }
    }
}
