//! The streaming server's side of an exec session (what the CRI streaming server runs after
//! the 101): wait for the client's streams, hand them out typed, write the final status.
//!
//! Checked against: kubelet `cri/streaming/remotecommand/httpstream.go` (expected stream count,
//! 30 s creation timeout, unknown stream types replied but not counted, v1 resets its error stream
//! and half-closes stdin as soon as the streams are there, v1–v3 write `status.Error()` text only
//! on failure, v4/v5 always write JSON), `websocket.go` (channels 0–4, "ready" empty message on the
//! lowest writable channel), `exec.go` (`ServeExec`: exit error → NonZeroExitCode Status, other
//! errors → `error executing command in container: ` + InternalError).
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{BoxRead, BoxWrite, ExecError};
use crate::remotecommand::{
    ExecOptions, ProtocolVersion, Status, StreamProtocol, StreamType, TerminalSize,
    TerminalSizeDecoder, WsProtocol, STREAM_TYPE_HEADER,
};
use crate::spdy::{self, RstStatus, Session, SessionConfig, StreamWriter};
use crate::ws::{self, WsRole, WsSession, WsSessionConfig};

/// Server-side timers.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How long the SPDY client has to create every stream (upstream: 30 s).
    pub stream_creation_timeout: Duration,
    /// Idle timeout of a WebSocket session (upstream: 4 h).
    pub idle_timeout: Option<Duration>,
    /// How long `finish` waits for the client to acknowledge the close.
    pub close_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            stream_creation_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(4 * 3600)),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// How the command ended, as the streaming server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Exit code 0.
    Success,
    /// Non-zero exit; `message` is the runtime's description (containerd:
    /// `error executing command [sh -c exit 3], exit code 3`).
    Exited {
        /// The exit code.
        code: i32,
        /// The runtime's error text.
        message: String,
    },
    /// The runtime failed to run the command; like `ServeExec`, this becomes an InternalError
    /// Status with message `Internal error occurred: error executing command in container: <err>`.
    Failed(String),
    /// A ready-made Status, sent as is (the translator's case).
    Status(Box<Status>),
}

impl ExecOutcome {
    /// The Status this outcome is reported as.
    pub fn to_status(&self) -> Status {
        match self {
            Self::Success => Status::success(),
            Self::Exited { code, message } => Status::non_zero_exit(*code, message),
            Self::Failed(err) => {
                Status::internal_error(&format!("error executing command in container: {err}"))
            }
            Self::Status(s) => (**s).clone(),
        }
    }
}

/// The typed streams of an accepted exec session.
pub struct ServerStreams {
    /// The client's stdin (EOF on SPDY FIN or WebSocket v5 CLOSE).
    pub stdin: Option<BoxRead>,
    /// The process's stdout; shut it down when the process's stdout ends.
    pub stdout: Option<BoxWrite>,
    /// The process's stderr (never with a tty).
    pub stderr: Option<BoxWrite>,
    /// Terminal size changes (tty with a resize-capable protocol).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Where the final status goes; call [`StatusSink::finish`] once.
    pub status: StatusSink,
    /// The negotiated protocol.
    pub protocol: StreamProtocol,
}

/// Writes the final status in the negotiated version's format, then closes the connection.
pub struct StatusSink {
    inner: SinkInner,
}

enum SinkInner {
    Spdy {
        session: Session,
        version: ProtocolVersion,
        /// `None` on v1, whose error stream is already reset.
        error: Option<StreamWriter>,
        stdin_writer: Option<StreamWriter>,
        /// Our half of the resize stream, kept so that finishing can reset it.
        resize_writer: Option<StreamWriter>,
        close_timeout: Duration,
    },
    Ws {
        session: WsSession,
        protocol: WsProtocol,
    },
}

/// The bytes the error stream carries for `status` in `version`: JSON from v4, text (the message)
/// on failure before, nothing on success before v4.
pub fn error_stream_payload(version: ProtocolVersion, status: &Status) -> Vec<u8> {
    if version.status_is_json() {
        status.to_json()
    } else if status.is_success() {
        Vec::new()
    } else {
        status.message.clone().into_bytes()
    }
}

impl StatusSink {
    /// Reports `outcome` and closes the session (SPDY: FIN of the error stream and GOAWAY;
    /// WebSocket: the status message then close 1000). Shut stdout/stderr down before calling this
    /// so that the client has seen all output.
    pub async fn finish(self, outcome: ExecOutcome) -> Result<(), ExecError> {
        let status = outcome.to_status();
        match self.inner {
            SinkInner::Spdy {
                session,
                version,
                error,
                stdin_writer,
                resize_writer,
                close_timeout,
            } => {
                let payload = error_stream_payload(version, &status);
                let mut result = Ok(());
                if let Some(mut w) = error {
                    if !payload.is_empty() {
                        result = w.write_all(&payload).await;
                    }
                    let _ = w.shutdown().await;
                }
                // Like upstream's connection close: the client's streams are reset, so a client
                // that still holds stdin or resize open does not keep the connection alive.
                for w in [stdin_writer, resize_writer].into_iter().flatten() {
                    w.reset(RstStatus::Cancel);
                }
                let _ = session.goaway().await;
                let _ = tokio::time::timeout(close_timeout, session.closed()).await;
                result.map_err(ExecError::from)
            }
            SinkInner::Ws { session, protocol } => {
                let payload = error_stream_payload(protocol.version(), &status);
                let result = if payload.is_empty() {
                    Ok(())
                } else {
                    session.send(StreamType::Error.channel(), &payload).await
                };
                session.close(1000, "").await;
                result.map_err(ExecError::from)
            }
        }
    }
}

/// Accepts an exec session on an upgraded connection: waits for the client's SPDY streams (or
/// sets up the WebSocket channels and sends the ready signal) and returns them typed.
pub async fn serve<T>(
    io: T,
    protocol: StreamProtocol,
    opts: &ExecOptions,
    cfg: &ServeConfig,
) -> Result<ServerStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let opts = opts.clone().normalized();
    match protocol {
        StreamProtocol::Spdy(version) => serve_spdy(io, version, &opts, cfg).await,
        StreamProtocol::WebSocket(ws_protocol) => serve_ws(io, ws_protocol, &opts, cfg).await,
    }
}

async fn serve_spdy<T>(
    io: T,
    version: ProtocolVersion,
    opts: &ExecOptions,
    cfg: &ServeConfig,
) -> Result<ServerStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (session, mut incoming) =
        spdy::Session::new(io, spdy::Role::Server, SessionConfig::default());
    let expected = opts.expected_spdy_streams(version);
    let mut streams: [Option<spdy::Stream>; 5] = Default::default();
    let deadline = tokio::time::sleep(cfg.stream_creation_timeout);
    tokio::pin!(deadline);
    let mut received = 0;
    while received < expected {
        let next = tokio::select! {
            next = incoming.next() => next,
            _ = &mut deadline => {
                let _ = session.goaway().await;
                return Err(ExecError::StreamCreationTimeout);
            }
        };
        let Some(pending) = next else {
            return Err(ExecError::ClosedBeforeStreams);
        };
        let kind = spdy::header(pending.headers(), STREAM_TYPE_HEADER)
            .and_then(StreamType::parse)
            .filter(|t| *t != StreamType::Resize || version.supports_resize());
        // Upstream replies to every stream, but only known types count.
        let stream = pending.accept().await?;
        match kind {
            Some(t) => {
                streams[usize::from(t.channel())] = Some(stream);
                received += 1;
            }
            None => tracing::warn!(
                stream_type = ?crate::Bounded(spdy::header(stream.headers(), STREAM_TYPE_HEADER)),
                "unexpected stream type"
            ),
        }
    }
    // Still accept (and ignore) late streams so the client's CreateStream does not hang.
    tokio::spawn(async move {
        while let Some(pending) = incoming.next().await {
            pending.reset();
        }
    });

    let [stdin, stdout, stderr, error, resize] = streams;
    let mut stdin_writer = None;
    let stdin = match stdin {
        Some(s) => {
            let (r, w) = s.into_split();
            stdin_writer = Some(w);
            Some(Box::new(r) as BoxRead)
        }
        None => None,
    };
    let error = match error {
        Some(s) if version == ProtocolVersion::V1 => {
            // v1 servers reset the error stream once the streams are set up (a historical
            // accident upstream keeps), and half-close stdin.
            s.reset(RstStatus::Cancel);
            if let Some(mut w) = stdin_writer.take() {
                let _ = w.shutdown().await;
            }
            None
        }
        Some(s) => {
            let (_r, w) = s.into_split();
            Some(w)
        }
        None => None,
    };
    let stdout = stdout.map(|s| Box::new(s.into_split().1) as BoxWrite);
    let stderr = stderr.map(|s| Box::new(s.into_split().1) as BoxWrite);
    let (resize, resize_writer) = match resize {
        Some(s) => {
            let (r, w) = s.into_split();
            (Some(spawn_resize_decoder(r)), Some(w))
        }
        None => (None, None),
    };
    Ok(ServerStreams {
        stdin,
        stdout,
        stderr,
        resize,
        status: StatusSink {
            inner: SinkInner::Spdy {
                session,
                version,
                error,
                stdin_writer,
                resize_writer,
                close_timeout: cfg.close_timeout,
            },
        },
        protocol: StreamProtocol::Spdy(version),
    })
}

async fn serve_ws<T>(
    io: T,
    protocol: WsProtocol,
    opts: &ExecOptions,
    cfg: &ServeConfig,
) -> Result<ServerStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut read = Vec::new();
    if opts.stdin {
        read.push(StreamType::Stdin.channel());
    }
    if opts.tty {
        read.push(StreamType::Resize.channel());
    }
    let ws_cfg = WsSessionConfig {
        idle_timeout: cfg.idle_timeout,
        close_timeout: cfg.close_timeout,
        ..WsSessionConfig::server()
    };
    let (session, mut readers) = ws::start(io, WsRole::Server, protocol, ws_cfg, &read).await;
    // "Connection established": an empty message on the lowest writable channel.
    let ready = if opts.stdout {
        StreamType::Stdout
    } else if opts.stderr {
        StreamType::Stderr
    } else {
        StreamType::Error
    };
    session.send(ready.channel(), &[]).await?;
    let stdin = readers
        .take(StreamType::Stdin.channel())
        .map(|r| Box::new(r) as BoxRead);
    let stdout = opts
        .stdout
        .then(|| Box::new(session.writer(StreamType::Stdout.channel(), false)) as BoxWrite);
    let stderr = opts
        .stderr
        .then(|| Box::new(session.writer(StreamType::Stderr.channel(), false)) as BoxWrite);
    let resize = readers
        .take(StreamType::Resize.channel())
        .map(spawn_resize_decoder);
    Ok(ServerStreams {
        stdin,
        stdout,
        stderr,
        resize,
        status: StatusSink {
            inner: SinkInner::Ws { session, protocol },
        },
        protocol: StreamProtocol::WebSocket(protocol),
    })
}

/// Decodes resize events from `stream` into a small queue; ends at EOF or the first bad value.
fn spawn_resize_decoder<R>(mut stream: R) -> mpsc::Receiver<TerminalSize>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut decoder = TerminalSizeDecoder::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let sizes = match decoder.feed(&buf[..n]) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "resize stream ended");
                    break;
                }
            };
            for size in sizes {
                if tx.send(size).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}
