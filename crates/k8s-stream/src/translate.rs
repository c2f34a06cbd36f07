//! The apiserver's stream translator: a WebSocket v5 exec session in front, an SPDY exec session
//! to the kubelet behind, and the outcome mapped back onto the WebSocket error channel.
//!
//! Order of events (as upstream): the WebSocket side is already accepted (and has sent its ready
//! signal) when [`translate`] runs; then the backend is dialled. stdin, stdout and stderr are
//! pumped; the v5 CLOSE of stdin becomes the SPDY stdin FIN; resize events are re-encoded; once
//! stdout and stderr have ended the SPDY outcome is awaited and reported:
//! success → Success Status; exit code → NonZeroExitCode Status with message
//! `command terminated with non-zero exit code: command terminated with exit code N`; a
//! `StatusError` (the backend answered the upgrade with a Status) → that Status; anything else
//! (including a failed dial and `unable to upgrade connection: ...`) → InternalError
//! `Internal error occurred: <err>`, which is why [ws] texts gain that prefix.
//!
//! A client that goes away (its connection closed or reset) does not end the session, as it
//! does not upstream: its stdin pump fails and drops the SPDY stdin stream, which ends it (the
//! command reads EOF, as from upstream's WebSocket pipes once `wsstream` closes them); its
//! output pump fails and drops the SPDY output streams, whose data the session then discards
//! (client-go's `copyStdout` reads into `io.Discard`); the session ends with the command, so one
//! that never ends keeps it open at every hop, as upstream 1.32 does.
//!
//! Checked against: apiserver `util/proxy/streamtranslator.go` (`ServeHTTP`,
//! `codeExitToStatusError`, `translatorSizeQueue`), `util/proxy/websocket.go` (server streams),
//! client-go `tools/remotecommand/v4.go` (the backend outcome's error types).
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use crate::exec::{pump, ClientStreams, ExecError, ExecOutcome, ServerStreams};
use crate::remotecommand::{RemoteError, Status, UpgradeError};

/// What the translation ended with (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateReport {
    /// The Status written to the WebSocket client.
    pub status: Status,
    /// Bytes copied client → backend (stdin).
    pub stdin_bytes: u64,
    /// Bytes copied backend → client (stdout + stderr).
    pub output_bytes: u64,
}

/// Runs one translated session to its end. `front` are the WebSocket server streams (from
/// `exec::serve` with `v5.channel.k8s.io`), `backend` dials the kubelet and returns the SPDY client
/// streams (from `exec::connect`), or the error to report.
pub async fn translate<F>(front: ServerStreams, backend: F) -> Result<TranslateReport, ExecError>
where
    F: Future<Output = Result<ClientStreams, ExecError>>,
{
    let ServerStreams {
        stdin,
        stdout,
        stderr,
        resize,
        status,
        ..
    } = front;
    let back = match backend.await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "translator backend failed");
            let s = backend_error_status(&e);
            Box::pin(status.finish(ExecOutcome::Status(Box::new(s.clone())))).await?;
            return Ok(TranslateReport {
                status: s,
                stdin_bytes: 0,
                output_bytes: 0,
            });
        }
    };
    let ClientStreams {
        stdin: back_stdin,
        stdout: back_stdout,
        stderr: back_stderr,
        resize: back_resize,
        outcome,
        ..
    } = back;

    let stdin_task = match (stdin, back_stdin) {
        (Some(from), Some(to)) => Some(tokio::spawn(pump(from, to))),
        _ => None,
    };
    let resize_task = match (resize, back_resize) {
        (Some(mut events), Some(mut sender)) => Some(tokio::spawn(async move {
            while let Some(size) = events.recv().await {
                if sender.send(size).await.is_err() {
                    break;
                }
            }
        })),
        _ => None,
    };
    let out = async {
        match (back_stdout, stdout) {
            (Some(from), Some(to)) => pump(from, FirstByteEvent::new(to)).await.unwrap_or(0),
            _ => 0,
        }
    };
    let err = async {
        match (back_stderr, stderr) {
            (Some(from), Some(to)) => pump(from, to).await.unwrap_or(0),
            _ => 0,
        }
    };
    // Like client-go: the outcome is taken only after stdout and stderr are done.
    let (out_bytes, err_bytes) = tokio::join!(out, err);
    let result = outcome.await;
    let stdin_bytes = match stdin_task {
        Some(t) if t.is_finished() => t.await.ok().and_then(Result::ok).unwrap_or(0),
        Some(t) => {
            t.abort();
            0
        }
        None => 0,
    };
    if let Some(t) = resize_task {
        t.abort();
    }
    let s = outcome_status(result);
    // Boxed, as the backend future should be: an idle session's task holds only what the
    // pumps need, not the closing handshake's state as well.
    Box::pin(status.finish(ExecOutcome::Status(Box::new(s.clone())))).await?;
    Ok(TranslateReport {
        status: s,
        stdin_bytes,
        output_bytes: out_bytes + err_bytes,
    })
}

/// Logs `event = "first_byte"` when the first stdout bytes reach the client: the translator's
/// point in `execlab trace`'s timeline (the process's first output as the client sees it).
struct FirstByteEvent<W> {
    inner: W,
    seen: bool,
}

impl<W> FirstByteEvent<W> {
    fn new(inner: W) -> Self {
        Self { inner, seen: false }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for FirstByteEvent<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 && !self.seen {
                self.seen = true;
                tracing::info!(
                    event = "first_byte",
                    stream = "stdout",
                    bytes = *n,
                    "first stdout bytes to the client"
                );
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The Status reported for the backend's outcome.
pub fn outcome_status(result: Result<(), RemoteError>) -> Status {
    match result {
        Ok(()) => Status::success(),
        Err(e @ RemoteError::ExitCode { code }) => {
            Status::non_zero_exit(i32::from(code), &e.to_string())
        }
        Err(RemoteError::Status(s)) => *s,
        Err(e) => Status::internal_error(&e.to_string()),
    }
}

/// The Status reported when dialling the backend failed.
pub fn backend_error_status(err: &ExecError) -> Status {
    match err {
        ExecError::Upgrade(UpgradeError::Status(s)) => (**s).clone(),
        e => Status::internal_error(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_reencoded() {
        let s = outcome_status(Err(RemoteError::ExitCode { code: 3 }));
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }

    #[test]
    fn plain_errors_gain_internal_error_prefix() {
        let inner = "Internal error occurred: error executing command in container: boom";
        let s = outcome_status(Err(RemoteError::Failure(inner.into())));
        assert_eq!(s.message, format!("Internal error occurred: {inner}"));
        assert_eq!(s.code, 500);
        let dial = backend_error_status(&ExecError::Upgrade(UpgradeError::Spdy(
            "Unauthorized".into(),
        )));
        assert_eq!(
            dial.message,
            "Internal error occurred: unable to upgrade connection: Unauthorized"
        );
        let forbidden = Status {
            kind: "Status".into(),
            status: "Failure".into(),
            message: "nope".into(),
            code: 403,
            ..Status::default()
        };
        let passed = backend_error_status(&ExecError::Upgrade(UpgradeError::Status(Box::new(
            forbidden.clone(),
        ))));
        assert_eq!(passed, forbidden);
    }
}
