//! The client's side of an exec session (what the apiserver's translator, tests and the bench
//! run after a validated 101): create the streams, hand them out typed, and decode the outcome.
//!
//! Checked against: client-go `tools/remotecommand/{v1,v2,v3,v4,v5}.go` (stream creation order
//! error, stdin, stdout, stderr, resize; stdin closed at local EOF; the server's stdin side read
//! and discarded; error stream read to EOF then decoded per version), `spdy.go` and
//! `transport/spdy/spdy.go` (5 s pings), `websocket.go` (v5 CLOSE for stdin EOF, error stream
//! ends with the connection).
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{BoxRead, BoxWrite, ExecError};
use crate::remotecommand::{
    decode_error_stream, ExecOptions, ProtocolVersion, RemoteError, StreamProtocol, StreamType,
    TerminalSize, WsProtocol, STREAM_TYPE_HEADER,
};
use crate::spdy::{self, Session, SessionConfig};
use crate::ws::{self, WsRole, WsSession, WsSessionConfig};

/// The most error-stream bytes kept (a Status is a few hundred bytes; bounds a hostile server).
const MAX_ERROR_STREAM: u64 = 1024 * 1024;

/// Client-side settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Keep-alive ping period (client-go: 5 s, SPDY and WebSocket alike).
    pub ping_period: Option<Duration>,
    /// How long to wait for each SPDY stream's SYN_REPLY (client-go: 30 s).
    pub reply_timeout: Duration,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            ping_period: Some(Duration::from_secs(5)),
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// The typed streams of a client exec session.
pub struct ClientStreams {
    /// Write the command's stdin here; `shutdown()` is stdin EOF (SPDY FIN, WebSocket v5 CLOSE;
    /// older WebSocket subprotocols cannot signal it).
    pub stdin: Option<BoxWrite>,
    /// The command's stdout, until the server ends it.
    pub stdout: Option<BoxRead>,
    /// The command's stderr (never with a tty).
    pub stderr: Option<BoxRead>,
    /// Terminal size changes (tty with a resize-capable protocol).
    pub resize: Option<ResizeSender>,
    /// Resolves once the error stream ended: `Ok(())` or client-go's error.
    pub outcome: OutcomeFuture,
    /// The negotiated protocol.
    pub protocol: StreamProtocol,
}

/// Sends terminal sizes as JSON lines on the resize stream/channel.
pub struct ResizeSender {
    writer: BoxWrite,
}

impl ResizeSender {
    /// Sends one size change.
    pub async fn send(&mut self, size: TerminalSize) -> std::io::Result<()> {
        self.writer.write_all(&size.encode()).await?;
        self.writer.flush().await
    }
}

/// The outcome of the remote command; keeps the session alive while pending.
pub struct OutcomeFuture {
    rx: oneshot::Receiver<Result<(), RemoteError>>,
    version: ProtocolVersion,
    _session: SessionHandle,
}

#[allow(dead_code)] // held only to keep the session alive
enum SessionHandle {
    Spdy(Session),
    Ws(WsSession),
}

impl Future for OutcomeFuture {
    type Output = Result<(), RemoteError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let version = self.version;
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(RemoteError::read_failure(
                    version,
                    "error stream reader stopped",
                ))
            })
        })
    }
}

/// Opens an exec session on an upgraded connection as a client.
pub async fn connect<T>(
    io: T,
    protocol: StreamProtocol,
    opts: &ExecOptions,
) -> Result<ClientStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    connect_with(io, protocol, opts, &ConnectConfig::default()).await
}

/// [`connect`] with explicit settings.
pub async fn connect_with<T>(
    io: T,
    protocol: StreamProtocol,
    opts: &ExecOptions,
    cfg: &ConnectConfig,
) -> Result<ClientStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let opts = opts.clone().normalized();
    match protocol {
        StreamProtocol::Spdy(version) => connect_spdy(io, version, &opts, cfg).await,
        StreamProtocol::WebSocket(p) => connect_ws(io, p, &opts, cfg).await,
    }
}

fn stream_headers(t: StreamType) -> spdy::Headers {
    vec![(
        STREAM_TYPE_HEADER.to_ascii_lowercase(),
        t.as_str().to_string(),
    )]
}

async fn connect_spdy<T>(
    io: T,
    version: ProtocolVersion,
    opts: &ExecOptions,
    cfg: &ConnectConfig,
) -> Result<ClientStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let spdy_cfg = SessionConfig {
        ping_period: cfg.ping_period,
        reply_timeout: cfg.reply_timeout,
        ..SessionConfig::default()
    };
    let (session, mut incoming) = Session::new(io, spdy::Role::Client, spdy_cfg);
    // Exec servers never open streams towards the client.
    tokio::spawn(async move {
        while let Some(pending) = incoming.next().await {
            pending.reset();
        }
    });
    // All streams first, then data (issue 16373: the server starts copying only once every
    // stream exists). The SYN_STREAMs go out back to back, in client-go's order, and the replies
    // are awaited together: one round trip instead of one per stream (client-go waits for each;
    // the server cannot tell the difference).
    let open = |wanted: bool, t: StreamType| {
        let session = &session;
        async move {
            match wanted {
                true => session.open_stream(stream_headers(t)).await.map(Some),
                false => Ok(None),
            }
        }
    };
    let (error, stdin, stdout, stderr, resize) = tokio::try_join!(
        open(true, StreamType::Error),
        open(opts.stdin, StreamType::Stdin),
        open(opts.stdout, StreamType::Stdout),
        open(opts.has_stderr(), StreamType::Stderr),
        open(opts.has_resize(version), StreamType::Resize),
    )?;
    let error = error.expect("the error stream is always opened");

    let (error_reader, mut error_writer) = error.into_split();
    // We never write on the server's streams: half-close them right away.
    let _ = error_writer.shutdown().await;
    let outcome = spawn_error_reader(error_reader, version, true);
    let stdin = stdin.map(|s| {
        let (mut server_side, writer) = s.into_split();
        // Read and discard until the server closes its side of stdin. Servers send nothing
        // there, so a few bytes of buffer do: `io::copy`'s 8 KiB would be kept by every idle
        // session.
        tokio::spawn(async move {
            let mut scrap = [0u8; 64];
            while matches!(server_side.read(&mut scrap).await, Ok(n) if n > 0) {}
        });
        Box::new(writer) as BoxWrite
    });
    let mut readers = Vec::new();
    for s in [stdout, stderr] {
        readers.push(match s {
            Some(s) => {
                let (r, mut w) = s.into_split();
                let _ = w.shutdown().await;
                Some(Box::new(r) as BoxRead)
            }
            None => None,
        });
    }
    let stderr = readers.pop().flatten();
    let stdout = readers.pop().flatten();
    let resize = resize.map(|s| ResizeSender {
        writer: Box::new(s.into_split().1),
    });
    Ok(ClientStreams {
        stdin,
        stdout,
        stderr,
        resize,
        outcome: OutcomeFuture {
            rx: outcome,
            version,
            _session: SessionHandle::Spdy(session),
        },
        protocol: StreamProtocol::Spdy(version),
    })
}

async fn connect_ws<T>(
    io: T,
    protocol: WsProtocol,
    opts: &ExecOptions,
    cfg: &ConnectConfig,
) -> Result<ClientStreams, ExecError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut read = vec![StreamType::Error.channel()];
    if opts.stdout {
        read.push(StreamType::Stdout.channel());
    }
    if opts.has_stderr() {
        read.push(StreamType::Stderr.channel());
    }
    let ws_cfg = WsSessionConfig {
        ping_period: cfg.ping_period,
        ..WsSessionConfig::client()
    };
    let (session, mut readers) = ws::start(io, WsRole::Client, protocol, ws_cfg, &read).await;
    let version = protocol.version();
    let error = readers
        .take(StreamType::Error.channel())
        .ok_or_else(|| ExecError::Other("error channel reader missing".into()))?;
    let outcome = spawn_error_reader(error, version, false);
    let stdin = opts.stdin.then(|| {
        Box::new(session.writer(StreamType::Stdin.channel(), protocol.supports_close())) as BoxWrite
    });
    let stdout = readers
        .take(StreamType::Stdout.channel())
        .map(|r| Box::new(r) as BoxRead);
    let stderr = readers
        .take(StreamType::Stderr.channel())
        .map(|r| Box::new(r) as BoxRead);
    let resize = opts.tty.then(|| ResizeSender {
        writer: Box::new(session.writer(StreamType::Resize.channel(), false)),
    });
    Ok(ClientStreams {
        stdin,
        stdout,
        stderr,
        resize,
        outcome: OutcomeFuture {
            rx: outcome,
            version,
            _session: SessionHandle::Ws(session),
        },
        protocol: StreamProtocol::WebSocket(protocol),
    })
}

/// Reads the error stream to EOF and decodes it as `version` says. With `reset_is_eof` (SPDY),
/// a stream reset ends the stream like EOF, as spdystream's reader reports it (this is how a
/// v1 server's early reset of the error stream loses the exit status).
fn spawn_error_reader<R>(
    reader: R,
    version: ProtocolVersion,
    reset_is_eof: bool,
) -> oneshot::Receiver<Result<(), RemoteError>>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut message = Vec::new();
        let result = match reader
            .take(MAX_ERROR_STREAM)
            .read_to_end(&mut message)
            .await
        {
            Ok(_) => decode_error_stream(version, &message),
            Err(e) if reset_is_eof && e.kind() == std::io::ErrorKind::ConnectionReset => {
                decode_error_stream(version, &message)
            }
            Err(e) => Err(RemoteError::read_failure(version, e)),
        };
        let _ = tx.send(result);
    });
    rx
}
