//! Exec: CRI `Exec`/`Attach` hand out streaming URLs; an exec session runs a process in a
//! container through the pod's shim with FIFOs between us and the shim; `ExecSync` runs one with
//! a timeout and returns its output.
//!
//! Checked against kubelet `cri/streaming/server.go` (`GetExec`/`GetAttach` validation texts and
//! order) and containerd `internal/cri/server/{container_exec.go,container_execsync.go,
//! streaming.go}`: the container must be running (`container is in <STATE> state`), an exec id is
//! 64 hex characters, `failed to create exec "<id>": ` / `failed to start exec "<id>": ` /
//! `failed while waiting for exec "<id>": ` wrap shim errors, a resize below 1×1 is ignored,
//! stdin EOF closes the process's stdin (CloseIO), output is drained before the exec process is
//! deleted, ExecSync keeps at most 16 MiB per stream and its timeout text is
//! `timeout <d> exceeded: context deadline exceeded`.
//!
//! A client that goes away mid-session (its connection reaches EOF or fails, an output write
//! fails, or the connection idles past `--stream-idle-timeout`, see `connection_watch`): as
//! under containerd 1.6 (`pkg/cri/server/streaming.go` runs the exec under a background
//! context; `container_execsync.go` `execInternal` kills only on its own timeout), the process
//! runs on to its end. Its stdin is closed (non-tty: `pkg/cri/io/exec_io.go` `Attach`,
//! `StdinOnce`); its output is no longer read, but our FIFO read ends stay open, so a chatty
//! process blocks on a full FIFO rather than dying of SIGPIPE (containerd's shim holds a read
//! end of its own, `pkg/process/io.go` `copyPipes`). The session's FIFOs and shim exec entry are
//! freed once it exits. With `--kill-exec-on-disconnect` (execlab's earlier default) the
//! process is killed with SIGKILL at once and everything freed (children it forked inside the
//! container are not killed, as with containerd's exec kill).
//!
//! A shim that dies mid-session: Wait fails with `ttrpc: closed: unknown`, the exec'd
//! process (no longer reachable through the shim) is killed by the pid the shim reported at
//! Start, and the session reports `failed while waiting for exec "<id>": ...` on the error stream.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cri_api::runtime::v1::{
    AttachRequest, ContainerState, ExecRequest, ExecSyncRequest, ExecSyncResponse,
};
use hop_kit::TraceParent;
use k8s_stream::exec::PumpBuffer;
use k8s_stream::remotecommand::TerminalSize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::container::state_name;
use crate::container_io::IO_BUFFER;
use crate::errdefs::{ErrorClass, GoDuration};
use crate::fifo::FifoSet;
use crate::runtime::{CriError, Runtime, StreamRequest};
use crate::sandbox::{KILL_WAIT, SIGKILL};
use crate::shim::{ProcessIo, Shim, ShimError};
use crate::store::generate_id;
use oci_bundle::exec_process_spec;

/// containerd's cap on each ExecSync output stream.
pub const EXEC_SYNC_MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// A boxed byte source / sink for exec streams.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The client side of an exec's stdio.
#[derive(Default)]
pub struct ExecStreams {
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Cancelled when the client's connection is gone (the process then runs on, or is killed
    /// with `--kill-exec-on-disconnect`).
    pub client_gone: Option<CancellationToken>,
}

/// What ended an exec.
#[derive(Debug)]
pub enum ExecEnd {
    Exited(u32),
    /// The client went away; the process ran to its end (or was killed with
    /// `--kill-exec-on-disconnect`).
    ClientGone,
}

/// Kubelet's `GetExec` validation (in its order).
pub fn validate_exec(req: &ExecRequest) -> Result<(), CriError> {
    if req.container_id.is_empty() {
        return Err(CriError::invalid("missing required container_id"));
    }
    if req.tty && req.stderr {
        return Err(CriError::invalid("tty and stderr cannot both be true"));
    }
    if !req.stdin && !req.stdout && !req.stderr {
        return Err(CriError::invalid(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

/// Kubelet's `GetAttach` validation.
pub fn validate_attach(req: &AttachRequest) -> Result<(), CriError> {
    if req.container_id.is_empty() {
        return Err(CriError::invalid("missing required container_id"));
    }
    if req.tty && req.stderr {
        return Err(CriError::invalid("tty and stderr cannot both be true"));
    }
    if !req.stdin && !req.stdout && !req.stderr {
        return Err(CriError::invalid(
            "one of stdin, stdout, and stderr must be set",
        ));
    }
    Ok(())
}

/// What an exec needs from the container record.
struct ExecTarget {
    id: String,
    shim: Shim,
    process: serde_json::Value,
}

impl Runtime {
    /// CRI `Exec`: validates, checks the container runs, parks the request, returns its URL.
    pub fn exec_url(
        &self,
        req: ExecRequest,
        trace: Option<TraceParent>,
    ) -> Result<String, CriError> {
        validate_exec(&req)?;
        self.running_container(&req.container_id)?;
        let token = self
            .tokens
            .insert(StreamRequest::Exec {
                request: req,
                trace,
            })
            .map_err(|e| CriError::new(ErrorClass::ResourceExhausted, e.to_string()))?;
        self.stream_url("exec", &token)
    }

    /// CRI `Attach`.
    pub fn attach_url(
        &self,
        req: AttachRequest,
        trace: Option<TraceParent>,
    ) -> Result<String, CriError> {
        validate_attach(&req)?;
        self.running_container(&req.container_id)?;
        let token = self
            .tokens
            .insert(StreamRequest::Attach {
                request: req,
                trace,
            })
            .map_err(|e| CriError::new(ErrorClass::ResourceExhausted, e.to_string()))?;
        self.stream_url("attach", &token)
    }

    fn running_container(&self, id: &str) -> Result<String, CriError> {
        let store = self.store();
        let full = store.container_id(id).ok_or_else(|| {
            CriError::new(
                ErrorClass::NotFound,
                format!("failed to find container {id:?} in store: not found"),
            )
        })?;
        let state = store.containers[&full].state;
        if state != ContainerState::ContainerRunning {
            return Err(CriError::unknown(format!(
                "container is in {} state",
                state_name(state)
            )));
        }
        Ok(full)
    }

    fn exec_target(&self, id: &str) -> Result<ExecTarget, CriError> {
        let full = self.running_container(id)?;
        let store = self.store();
        let c = &store.containers[&full];
        let shim = store
            .sandboxes
            .get(&c.sandbox_id)
            .and_then(|s| s.shim.clone())
            .ok_or_else(|| {
                CriError::unknown(format!(
                    "failed to load task: sandbox {:?} has no shim: not found",
                    c.sandbox_id
                ))
            })?;
        Ok(ExecTarget {
            id: full.clone(),
            shim,
            process: c.process.clone(),
        })
    }

    /// Runs `cmd` in the container with the client's streams; returns how it ended. Errors are
    /// worded as containerd's `execInContainer` returns them (callers add
    /// `failed to exec in container: `).
    pub async fn exec_in_container(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        streams: ExecStreams,
        timeout: Option<Duration>,
        trace: Option<&TraceParent>,
    ) -> Result<ExecEnd, CriError> {
        let prepared = self
            .prepare_exec(container_id, cmd, tty, streams.stdin.is_some(), trace)
            .await?;
        prepared.run(streams, timeout).await
    }

    /// The part of an exec that needs no client stream: the process spec, the FIFOs and the
    /// shim's `Exec` (created, not started). The streaming server runs it while the client is
    /// still opening its streams; [`PreparedExec::run`] starts the process once they exist.
    pub async fn prepare_exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
        trace: Option<&TraceParent>,
    ) -> Result<PreparedExec, CriError> {
        let target = self.exec_target(container_id)?;
        let spec = exec_process_spec(&target.process, cmd, tty)
            .map_err(|e| CriError::unknown(format!("failed to get container spec: {e}")))?;
        let exec_id = generate_id();
        tracing::debug!(container = %target.id, %exec_id, cmd = ?k8s_stream::Bounded(&cmd), tty, "exec");

        let fifos = FifoSet::create(self.exec_dir().join(&exec_id), stdin, tty)
            .map_err(|e| CriError::io(format!("failed to create exec \"{exec_id}\""), &e))?;
        let opened = open_exec_fifos(&fifos)
            .map_err(|e| CriError::io(format!("failed to create exec \"{exec_id}\""), &e))?;
        let io = ProcessIo {
            terminal: tty,
            stdin: FifoSet::path_arg(fifos.stdin.as_ref()),
            stdout: FifoSet::path_arg(Some(&fifos.stdout)),
            stderr: FifoSet::path_arg(fifos.stderr.as_ref()),
        };
        tracing::info!(event = "shim_exec", %exec_id, "asking the shim to exec");
        target
            .shim
            .exec(&target.id, &exec_id, &io, spec, trace)
            .await
            .map_err(|e| CriError::shim(format!("failed to create exec \"{exec_id}\""), &e))?;
        Ok(PreparedExec {
            shim: target.shim,
            id: target.id,
            exec_id,
            fifos,
            opened,
            trace: trace.copied(),
            kill_on_disconnect: self.config.kill_exec_on_disconnect,
        })
    }

    /// CRI `ExecSync`.
    pub async fn exec_sync(
        &self,
        req: ExecSyncRequest,
        trace: Option<&TraceParent>,
    ) -> Result<ExecSyncResponse, CriError> {
        let stdout = CappedBuffer::new(EXEC_SYNC_MAX_OUTPUT);
        let stderr = CappedBuffer::new(EXEC_SYNC_MAX_OUTPUT);
        let streams = ExecStreams {
            stdout: Some(Box::new(stdout.clone())),
            stderr: Some(Box::new(stderr.clone())),
            ..Default::default()
        };
        let timeout = u64::try_from(req.timeout)
            .ok()
            .filter(|t| *t > 0)
            .map(Duration::from_secs);
        let end = self
            .exec_in_container(&req.container_id, &req.cmd, false, streams, timeout, trace)
            .await
            .map_err(|e| e.context("failed to exec in container"))?;
        let code = match end {
            ExecEnd::Exited(code) => code,
            ExecEnd::ClientGone => {
                return Err(CriError::unknown(
                    "failed to exec in container: output closed",
                ))
            }
        };
        Ok(ExecSyncResponse {
            stdout: stdout.take(),
            stderr: stderr.take(),
            exit_code: i32::try_from(code).unwrap_or(i32::MAX),
        })
    }
}

async fn delete_exec(shim: &Shim, id: &str, exec_id: &str, trace: Option<&TraceParent>) {
    if let Err(e) = shim.delete(id, exec_id, trace).await {
        if !e.is_not_found() && !e.is_transport() {
            tracing::warn!(%exec_id, error = %e, "deleting exec process");
        }
    }
}

/// An exec the shim has created but not started (see [`Runtime::prepare_exec`]).
pub struct PreparedExec {
    shim: Shim,
    id: String,
    exec_id: String,
    fifos: FifoSet,
    opened: OpenedFifos,
    trace: Option<TraceParent>,
    kill_on_disconnect: bool,
}

impl PreparedExec {
    /// Starts the process and drives it to its end with the client's streams. A stdin FIFO
    /// without a client stdin is closed at once (the process reads EOF).
    pub async fn run(
        self,
        mut streams: ExecStreams,
        timeout: Option<Duration>,
    ) -> Result<ExecEnd, CriError> {
        let PreparedExec {
            shim,
            id,
            exec_id,
            fifos,
            opened,
            trace,
            kill_on_disconnect,
        } = self;
        // Output is copied from before Start: the process writes as soon as runc has started
        // it, before Start's answer is back (containerd's CRI attaches the IO before starting
        // too), so its first bytes reach the client one shim round trip sooner.
        let client_gone = streams.client_gone.clone().unwrap_or_default();
        let mut outputs = vec![tokio::spawn(
            copy_output(opened.stdout, streams.stdout.take(), client_gone.clone())
                .in_current_span(),
        )];
        if let Some(stderr) = opened.stderr {
            outputs.push(tokio::spawn(
                copy_output(stderr, streams.stderr.take(), client_gone.clone()).in_current_span(),
            ));
        }
        let pid = match shim.start(&id, &exec_id, trace.as_ref()).await {
            Ok(pid) => {
                tracing::info!(
                    event = "process_started",
                    pid,
                    "the shim started the process"
                );
                pid
            }
            Err(e) => {
                outputs.iter().for_each(JoinHandle::abort);
                delete_exec(&shim, &id, &exec_id, trace.as_ref()).await;
                return Err(CriError::shim(
                    format!("failed to start exec \"{exec_id}\""),
                    &e,
                ));
            }
        };
        let session = ExecSession {
            shim: shim.clone(),
            id: id.clone(),
            exec_id: exec_id.clone(),
            pid,
            trace,
            kill_on_disconnect,
        };
        let result = session
            .run(opened.stdin, outputs, streams, client_gone, timeout)
            .await;
        delete_exec(&shim, &id, &exec_id, trace.as_ref()).await;
        drop(fifos);
        result
    }

    /// Removes the never started process from the shim (the client's streams did not come).
    pub async fn abandon(self) {
        delete_exec(&self.shim, &self.id, &self.exec_id, self.trace.as_ref()).await;
    }
}

/// Our ends of an exec's FIFOs.
struct OpenedFifos {
    stdin: Option<pipe::Sender>,
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
}

fn open_exec_fifos(fifos: &FifoSet) -> std::io::Result<OpenedFifos> {
    Ok(OpenedFifos {
        stdin: fifos
            .stdin
            .as_deref()
            .map(FifoSet::open_writer)
            .transpose()?,
        stdout: FifoSet::open_reader(&fifos.stdout)?,
        stderr: fifos
            .stderr
            .as_deref()
            .map(FifoSet::open_reader)
            .transpose()?,
    })
}

/// A started exec process and what it takes to drive it to its end.
struct ExecSession {
    shim: Shim,
    id: String,
    exec_id: String,
    pid: u32,
    trace: Option<TraceParent>,
    kill_on_disconnect: bool,
}

impl ExecSession {
    /// Drives the started process to its end: `outputs` are the output copies already
    /// running, `stdin_fifo` the process's stdin.
    async fn run(
        &self,
        stdin_fifo: Option<pipe::Sender>,
        mut outputs: Vec<JoinHandle<()>>,
        streams: ExecStreams,
        client_gone: CancellationToken,
        timeout: Option<Duration>,
    ) -> Result<ExecEnd, CriError> {
        let stdin_task = match (streams.stdin, stdin_fifo) {
            (Some(from), Some(to)) => {
                let (shim, id, exec_id, trace) = (
                    self.shim.clone(),
                    self.id.clone(),
                    self.exec_id.clone(),
                    self.trace,
                );
                let gone = client_gone.clone();
                Some(tokio::spawn(
                    async move {
                        copy_input(from, to, gone).await;
                        if let Err(e) = shim.close_stdin(&id, &exec_id, trace.as_ref()).await {
                            tracing::debug!(error = %e, "closing exec stdin");
                        }
                    }
                    .in_current_span(),
                ))
            }
            _ => None,
        };
        let resize_task = streams.resize.map(|mut sizes| {
            let (shim, id, exec_id, trace) = (
                self.shim.clone(),
                self.id.clone(),
                self.exec_id.clone(),
                self.trace,
            );
            tokio::spawn(
                async move {
                    while let Some(size) = sizes.recv().await {
                        if size.width < 1 || size.height < 1 {
                            continue;
                        }
                        let (w, h) = (u32::from(size.width), u32::from(size.height));
                        if let Err(e) = shim.resize_pty(&id, &exec_id, w, h, trace.as_ref()).await {
                            tracing::warn!(error = %e, "resizing exec console");
                        }
                    }
                }
                .in_current_span(),
            )
        });

        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let wait = self.shim.wait(&self.id, &self.exec_id, self.trace.as_ref());
        tokio::pin!(wait);
        let ended = tokio::select! {
            r = &mut wait => Ended::Exited(r),
            () = client_gone.cancelled() => Ended::ClientGone,
            () = &mut deadline => Ended::TimedOut,
        };
        // containerd's default: the client's departure is no reason to stop the process.
        let ended = match ended {
            Ended::ClientGone if !self.kill_on_disconnect => {
                tracing::info!(exec_id = %self.exec_id, "client went away; the exec process runs to its end");
                tokio::select! {
                    r = &mut wait => Ended::ExitedWithoutClient(r),
                    () = &mut deadline => Ended::TimedOut,
                }
            }
            other => other,
        };
        let result = match ended {
            Ended::Exited(Ok(code)) => {
                tracing::info!(event = "exit", code, "the process exited");
                // Drain: the shim closes the FIFOs once the process's output is copied.
                let drain = futures_util::future::join_all(outputs.iter_mut());
                tokio::select! {
                    _ = drain => {}
                    () = client_gone.cancelled() => {}
                }
                Ok(ExecEnd::Exited(code))
            }
            Ended::Exited(Err(e)) => {
                if e.is_transport() {
                    self.kill_orphan();
                }
                Err(CriError::shim(
                    format!("failed while waiting for exec \"{}\"", self.exec_id),
                    &e,
                ))
            }
            Ended::ClientGone => {
                tracing::info!(exec_id = %self.exec_id, "client went away; killing the exec process");
                self.kill_and_wait().await;
                Ok(ExecEnd::ClientGone)
            }
            // Nobody reads what is left in the FIFOs: they go with the session.
            Ended::ExitedWithoutClient(r) => {
                match r {
                    Ok(code) => tracing::info!(
                        event = "exit",
                        code,
                        "the process exited; its client had gone"
                    ),
                    Err(e) => {
                        if e.is_transport() {
                            self.kill_orphan();
                        }
                        tracing::info!(error = %e, "waiting for the exec process whose client had gone");
                    }
                }
                Ok(ExecEnd::ClientGone)
            }
            Ended::TimedOut => {
                self.kill_and_wait().await;
                let t = timeout.unwrap_or_default();
                Err(CriError::new(
                    ErrorClass::DeadlineExceeded,
                    format!(
                        "timeout {} exceeded: context deadline exceeded",
                        GoDuration(t)
                    ),
                ))
            }
        };
        for task in outputs {
            task.abort();
        }
        if let Some(t) = stdin_task {
            t.abort();
        }
        if let Some(t) = resize_task {
            t.abort();
        }
        result
    }

    async fn kill_and_wait(&self) {
        match self
            .shim
            .kill(&self.id, &self.exec_id, SIGKILL, self.trace.as_ref())
            .await
        {
            Ok(()) => {
                let _ = tokio::time::timeout(
                    KILL_WAIT,
                    self.shim.wait(&self.id, &self.exec_id, self.trace.as_ref()),
                )
                .await;
            }
            Err(e) if e.is_transport() => self.kill_orphan(),
            Err(e) => tracing::debug!(error = %e, "killing exec process"),
        }
    }

    /// The shim is gone: kill the process by the pid it reported, so it does not linger.
    fn kill_orphan(&self) {
        let Ok(pid) = i32::try_from(self.pid) else {
            return;
        };
        if pid <= 1 {
            return;
        }
        match nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        ) {
            Ok(()) => tracing::info!(pid, "killed the exec process of a dead shim"),
            Err(e) => tracing::debug!(pid, error = %e, "exec process of a dead shim"),
        }
    }
}

enum Ended {
    Exited(Result<u32, ShimError>),
    ClientGone,
    /// The process ended after its client had gone (not killed for it).
    ExitedWithoutClient(Result<u32, ShimError>),
    TimedOut,
}

/// Process output FIFO → client stream (or nowhere). A failed client write means the client
/// went away: from then on the FIFO is held open but no longer read (containerd's CRI stops
/// copying, its shim keeps the FIFO open), until the session aborts this task. Shuts the client
/// stream down at EOF.
async fn copy_output(
    mut fifo: pipe::Receiver,
    mut to: Option<BoxWrite>,
    client_gone: CancellationToken,
) {
    // Grows with the traffic: an idle session holds a few KiB, not IO_BUFFER.
    let mut buf = PumpBuffer::new(IO_BUFFER);
    let mut first = true;
    loop {
        let chunk = match buf.read_from(&mut fifo).await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::warn!(error = %e, "reading exec output");
                break;
            }
        };
        if std::mem::take(&mut first) {
            tracing::info!(
                event = "first_byte",
                bytes = chunk.len(),
                "first output of the process"
            );
        }
        if let Some(w) = to.as_mut() {
            if let Err(e) = w.write_all(chunk).await {
                tracing::info!(error = %e, "client stopped receiving output");
                client_gone.cancel();
                // Holding `fifo` open: a writer blocks on a full FIFO, never gets SIGPIPE.
                std::future::pending::<()>().await;
                return;
            }
        }
    }
    if let Some(mut w) = to {
        if w.flush().await.is_err() || w.shutdown().await.is_err() {
            client_gone.cancel();
        }
    }
}

/// Client stdin → process stdin FIFO. EOF ends it (the caller then closes the process's
/// stdin); a read error means the client went away.
async fn copy_input(mut from: BoxRead, mut to: pipe::Sender, client_gone: CancellationToken) {
    let mut buf = PumpBuffer::new(IO_BUFFER);
    loop {
        let chunk = match buf.read_from(&mut from).await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::info!(error = %e, "client stdin broke");
                client_gone.cancel();
                break;
            }
        };
        if let Err(e) = to.write_all(chunk).await {
            tracing::debug!(error = %e, "writing exec stdin");
            break;
        }
    }
    // Dropping our end (the only writer) is the process's stdin EOF.
    drop(to);
}

/// An in-memory sink that keeps the first `cap` bytes and swallows the rest (containerd's
/// `cappedWriter`).
#[derive(Clone)]
pub struct CappedBuffer {
    inner: Arc<Mutex<Vec<u8>>>,
    cap: usize,
}

impl CappedBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Vec::new())),
            cap,
        }
    }

    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl AsyncWrite for CappedBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(inner.len());
        inner.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> ExecRequest {
        ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty,
            stdin,
            stdout,
            stderr,
        }
    }

    #[test]
    fn exec_validation_uses_upstream_texts() {
        let mut missing = exec(false, false, true, false);
        missing.container_id.clear();
        let cases = [
            (missing, "missing required container_id"),
            (
                exec(true, false, true, true),
                "tty and stderr cannot both be true",
            ),
            (
                exec(false, false, false, false),
                "one of stdin, stdout, or stderr must be set",
            ),
        ];
        for (req, text) in cases {
            let err = validate_exec(&req).expect_err(text);
            assert_eq!(err.class, ErrorClass::InvalidArgument);
            assert_eq!(err.message, text);
            assert_eq!(
                tonic::Status::from(err).code(),
                tonic::Code::InvalidArgument
            );
        }
        assert!(validate_exec(&exec(true, true, true, false)).is_ok());
    }

    #[tokio::test]
    async fn capped_buffer_keeps_the_first_bytes() {
        let mut b = CappedBuffer::new(4);
        b.write_all(b"abcdef").await.expect("write");
        b.write_all(b"gh").await.expect("write");
        assert_eq!(b.take(), b"abcd");
    }
}
