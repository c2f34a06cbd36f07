//! Attach: a streaming session on a running container's own stdio — its live output (from the
//! moment of attaching), its stdin (if the container was created with stdin), tty resizes — until
//! the container exits.
//!
//! Checked against kubelet `cri/streaming/remotecommand/attach.go` (`ServeAttach`: success status
//! at the end, `error attaching to container: ` + InternalError on failure) and containerd
//! `internal/cri/server/container_attach.go` (`container is in <STATE> state` unless running;
//! stdin only if the container has stdin; `stdin_once` closes the container's stdin at the
//! client's EOF).

use std::sync::Arc;

use cri_api::runtime::v1::{AttachRequest, ContainerState};
use k8s_stream::exec::{ExecOutcome, ServeConfig, ServerStreams};
use k8s_stream::remotecommand::{ExecOptions, Status, StreamProtocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, Mutex as AsyncMutex};

use crate::container::state_name;
use crate::container_io::IO_BUFFER;
use crate::exec::{BoxRead, BoxWrite};
use crate::runtime::{CriError, Runtime};
use crate::shim::Shim;
use crate::store::OutputChunk;

type SharedStdin = Arc<AsyncMutex<Option<pipe::Sender>>>;

struct AttachTarget {
    id: String,
    shim: Shim,
    output: broadcast::Receiver<OutputChunk>,
    stdin: Option<SharedStdin>,
    stdin_once: bool,
}

impl Runtime {
    fn attach_target(&self, id: &str) -> Result<AttachTarget, CriError> {
        let store = self.store();
        let full = store.container_id(id).ok_or_else(|| {
            CriError::new(
                crate::errdefs::ErrorClass::NotFound,
                format!("failed to find container {id:?} in store: not found"),
            )
        })?;
        let c = &store.containers[&full];
        let output = match (&c.output, c.state) {
            (Some(o), ContainerState::ContainerRunning) => o.subscribe(),
            _ => {
                return Err(CriError::unknown(format!(
                    "container is in {} state",
                    state_name(c.state)
                )))
            }
        };
        let shim = store
            .sandboxes
            .get(&c.sandbox_id)
            .and_then(|s| s.shim.clone())
            .ok_or_else(|| CriError::unknown("failed to load task: not found"))?;
        Ok(AttachTarget {
            id: full.clone(),
            shim,
            output,
            stdin: c.stdin_writer.clone(),
            stdin_once: c.stdin_once,
        })
    }
}

pub(crate) async fn run_attach<T>(
    runtime: &Runtime,
    request: AttachRequest,
    io: T,
    protocol: StreamProtocol,
    config: &ServeConfig,
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let opts = ExecOptions {
        command: Vec::new(),
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
        tty: request.tty,
    };
    let streams = match k8s_stream::exec::serve(io, protocol, &opts, config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "attach streams not set up");
            return;
        }
    };
    let ServerStreams {
        stdin,
        stdout,
        stderr,
        resize,
        status,
        ..
    } = streams;
    let outcome = match runtime.attach_target(&request.container_id) {
        Ok(target) => {
            let AttachTarget {
                id,
                shim,
                output,
                stdin: container_stdin,
                stdin_once,
            } = target;
            let stdin_task = match (stdin, container_stdin) {
                (Some(from), Some(to)) => Some(tokio::spawn(forward_stdin(from, to, stdin_once))),
                _ => None,
            };
            let resize_task = resize.map(|mut sizes| {
                let (shim, id) = (shim.clone(), id.clone());
                tokio::spawn(async move {
                    while let Some(size) = sizes.recv().await {
                        if size.width < 1 || size.height < 1 {
                            continue;
                        }
                        let (w, h) = (u32::from(size.width), u32::from(size.height));
                        if let Err(e) = shim.resize_pty(&id, "", w, h, None).await {
                            tracing::warn!(error = %e, "resizing container console");
                        }
                    }
                })
            });
            forward_output(output, stdout, stderr).await;
            for t in [stdin_task, resize_task].into_iter().flatten() {
                t.abort();
            }
            ExecOutcome::Success
        }
        Err(e) => ExecOutcome::Status(Box::new(Status::internal_error(&format!(
            "error attaching to container: {e}"
        )))),
    };
    if let Err(e) = status.finish(outcome).await {
        tracing::debug!(error = %e, "writing the attach status");
    }
}

/// Container output → client until the container's output ends (or the client goes away).
async fn forward_output(
    mut output: broadcast::Receiver<OutputChunk>,
    mut stdout: Option<BoxWrite>,
    mut stderr: Option<BoxWrite>,
) {
    loop {
        let chunk = match output.recv().await {
            Ok(c) => c,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(chunks = n, "attach client too slow; output dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let sink = if chunk.stderr {
            stderr.as_mut()
        } else {
            stdout.as_mut()
        };
        if let Some(w) = sink {
            if w.write_all(&chunk.bytes).await.is_err() {
                return;
            }
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}

/// Client stdin → the container's stdin FIFO; with `stdin_once` the container's stdin is closed
/// at the client's EOF.
async fn forward_stdin(mut from: BoxRead, to: SharedStdin, stdin_once: bool) {
    let mut buf = vec![0u8; IO_BUFFER];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut guard = to.lock().await;
        let Some(writer) = guard.as_mut() else { return };
        if writer.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    if stdin_once {
        to.lock().await.take();
    }
}
