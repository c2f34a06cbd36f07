//! The CRI streaming server: `GET|POST /exec/{token}` and `/attach/{token}` over HTTP/1.1.
//! A token is consumed first; an unknown, used or expired token, or one of the other kind, gets
//! Go's `http.NotFound`. Then the upgrade is negotiated (k8s-stream), answered with 101, and the
//! session runs on the upgraded connection.
//!
//! Checked against kubelet `cri/streaming/server.go` (`serveExec`/`serveAttach`: Consume, type
//! check, NotFound; routes for GET and POST) and Go `net/http` `NotFound` (404,
//! `text/plain; charset=utf-8`, `X-Content-Type-Options: nosniff`, body `404 page not found\n`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cri_api::runtime::v1::{AttachRequest, ExecRequest};
use futures_util::FutureExt;
use hop_kit::TraceParent;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_stream::exec::{ExecOutcome, ServeConfig, ServerStreams};
use k8s_stream::remotecommand::{negotiate, ExecOptions, ServerProtocols, StreamProtocol};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attach::run_attach;
use crate::connection_watch::{ClientGone, WatchedConnection};
use crate::errdefs::GoStrings;
use crate::exec::{BoxRead, BoxWrite, ExecEnd, ExecStreams, PreparedExec};
use crate::runtime::{Runtime, StreamRequest};
use crate::CriError;
use hop_kit::metrics::{Counted, Stream};

/// Go's `http.NotFound` body.
pub const NOT_FOUND_BODY: &str = "404 page not found\n";

/// Settings of streaming sessions.
#[derive(Debug, Clone)]
pub struct StreamingConfig {
    pub idle_timeout: Duration,
    /// The request head's time and size bounds, and how many connections may be open.
    pub limits: hop_kit::ConnectionLimits,
}

/// Accepts connections until `shutdown` fires; each connection is served on its own task.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    config: StreamingConfig,
    shutdown: CancellationToken,
) {
    let slots = hop_kit::ConnectionSlots::new(&config.limits);
    let config = Arc::new(config);
    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = slots.accept(&listener) => accepted,
            () = shutdown.cancelled() => break,
        };
        let (runtime, config, shutdown) = (runtime.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let limits = config.limits;
            let serve_request = move |req| {
                let (runtime, config, shutdown) =
                    (runtime.clone(), config.clone(), shutdown.clone());
                async move { handle(req, peer, runtime, config, shutdown) }
            };
            hop_kit::serve_http1(stream, &limits, serve_request, std::future::pending()).await;
        });
    }
}

/// Go's `http.NotFound`.
pub fn not_found() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(NOT_FOUND_BODY.as_bytes())));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `/exec/{token}` → (`exec`, token); anything else → `None`.
pub fn parse_route(path: &str) -> Option<(&str, &str)> {
    let (kind, token) = path.strip_prefix('/')?.split_once('/')?;
    if token.is_empty() || token.contains('/') || !matches!(kind, "exec" | "attach") {
        return None;
    }
    Some((kind, token))
}

fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    runtime: Arc<Runtime>,
    config: Arc<StreamingConfig>,
    shutdown: CancellationToken,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return not_found();
    }
    let Some((kind, token)) = parse_route(hop_kit::path_and_query(&req).0) else {
        return not_found();
    };
    // Consumed before anything else: a token is gone even if the request fails later.
    let parked = match (kind, runtime.tokens.consume(token)) {
        ("exec", Some(r @ StreamRequest::Exec { .. })) => r,
        ("attach", Some(r @ StreamRequest::Attach { .. })) => r,
        _ => return not_found(),
    };
    let parked_trace = match &parked {
        StreamRequest::Exec { trace, .. } | StreamRequest::Attach { trace, .. } => *trace,
    };
    let trace = req
        .headers()
        .get(hop_kit::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceParent>().ok())
        .or(parked_trace)
        .unwrap_or_else(TraceParent::new_root);
    let span = hop_kit::exec_session_span(&trace);
    let _entered = span.enter();
    tracing::info!(event = "token", kind, "token redeemed");

    let upgrade = match negotiate(req.headers(), &ServerProtocols::streaming_server()) {
        Ok(u) => u,
        Err(rejection) => {
            tracing::info!(%peer, error = %k8s_stream::Bounded(&rejection.message), "upgrade refused");
            let mut resp = Response::new(Full::new(Bytes::from(rejection.body.clone())));
            *resp.status_mut() = rejection.status;
            *resp.headers_mut() = rejection.headers.clone();
            return resp;
        }
    };
    tracing::info!(event = "upgrade", %peer, protocol = ?upgrade.protocol, kind, "stream upgrade");
    // Metrics: open until the session ends; setup = token redeemed → upgrade done.
    let mut metered = hop_kit::metrics::global().session_opened();
    let protocol = upgrade.protocol;
    // The shim creates an exec's process while the 101 goes out and the client opens its
    // streams (each one a round trip through every hop); it is started only once they all
    // exist, as upstream.
    let redeemed = match parked {
        StreamRequest::Exec { request, .. } => {
            let runtime = Arc::clone(&runtime);
            let spec = request.clone();
            let prepared = tokio::spawn(
                async move {
                    runtime
                        .prepare_exec(
                            &spec.container_id,
                            &spec.cmd,
                            spec.tty,
                            spec.stdin,
                            Some(&trace),
                        )
                        .await
                }
                .instrument(span.clone()),
            );
            Redeemed::Exec { request, prepared }
        }
        StreamRequest::Attach { request, .. } => Redeemed::Attach { request },
    };
    let session = async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::warn!(error = %e, "upgrade failed");
                if let Redeemed::Exec { prepared, .. } = redeemed {
                    if let Ok(Ok(prepared)) = prepared.await {
                        prepared.abandon().await;
                    }
                }
                return;
            }
        };
        metered.set_up();
        let (upgraded, client_gone) = WatchedConnection::new(upgraded, Some(config.idle_timeout));
        let serve_config = ServeConfig {
            idle_timeout: Some(config.idle_timeout),
            ..ServeConfig::default()
        };
        let session = match redeemed {
            Redeemed::Exec { request, prepared } => {
                let conn = Connection {
                    io: upgraded,
                    protocol,
                    client_gone,
                };
                run_exec(request, conn, prepared, &serve_config).boxed()
            }
            Redeemed::Attach { request } => {
                run_attach(&runtime, request, upgraded, protocol, &serve_config).boxed()
            }
        };
        tokio::select! {
            () = session => {}
            () = shutdown.cancelled() => tracing::info!("streaming session ended by shutdown"),
        }
    };
    tokio::spawn(session.instrument(span.clone()));

    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = upgrade.headers;
    resp
}

/// A redeemed token's request, an exec's process already being prepared.
enum Redeemed {
    Exec {
        request: ExecRequest,
        prepared: JoinHandle<Result<PreparedExec, CriError>>,
    },
    Attach {
        request: AttachRequest,
    },
}

fn exec_options(req: &ExecRequest) -> ExecOptions {
    ExecOptions {
        command: req.cmd.clone(),
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        tty: req.tty,
    }
}

/// One exec session: streams from the client, the process through the shim, the outcome on the
/// error stream.
/// An upgraded connection with what we know about it.
struct Connection<T> {
    io: T,
    protocol: StreamProtocol,
    client_gone: ClientGone,
}

async fn run_exec<T>(
    request: ExecRequest,
    conn: Connection<T>,
    prepared: JoinHandle<Result<PreparedExec, CriError>>,
    config: &ServeConfig,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let Connection {
        io,
        protocol,
        client_gone,
    } = conn;
    let opts = exec_options(&request);
    let (streams, prepared) = tokio::join!(
        k8s_stream::exec::serve(io, protocol, &opts, config),
        prepared
    );
    let prepared =
        prepared.unwrap_or_else(|e| Err(CriError::unknown(format!("preparing the exec: {e}"))));
    let streams = match streams {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "exec streams not set up");
            if let Ok(prepared) = prepared {
                prepared.abandon().await;
            }
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
    let exec_streams = ExecStreams {
        stdin: stdin.map(|s| counted(s, Stream::Stdin) as BoxRead),
        stdout: stdout.map(|s| counted(s, Stream::Stdout) as BoxWrite),
        stderr: stderr.map(|s| counted(s, Stream::Stderr) as BoxWrite),
        resize,
        client_gone: Some(client_gone),
    };
    let started = std::time::Instant::now();
    let result = match prepared {
        Ok(prepared) => prepared.run(exec_streams, None).await,
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(ExecEnd::Exited(0)) => ExecOutcome::Success,
        Ok(ExecEnd::Exited(code)) => ExecOutcome::Exited {
            code: i32::try_from(code).unwrap_or(i32::MAX),
            message: format!(
                "error executing command {}, exit code {code}",
                GoStrings(&request.cmd)
            ),
        },
        Ok(ExecEnd::ClientGone) => {
            tracing::info!(event = "close", elapsed = ?started.elapsed(), "exec ended: client disconnected");
            // Nobody is left to read a status; close what remains.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                status.finish(ExecOutcome::Failed("client disconnected".into())),
            )
            .await;
            return;
        }
        Err(e) => ExecOutcome::Failed(e.context("failed to exec in container").message),
    };
    tracing::info!(event = "close", elapsed = ?started.elapsed(), ?outcome, "exec ended");
    if let Err(e) = status.finish(outcome).await {
        tracing::debug!(error = %e, "writing the exec status");
    }
}

/// Counts a stream's bytes per chunk (reads for stdin, writes for stdout and stderr).
fn counted<T>(io: T, stream: Stream) -> Box<Counted<T>> {
    let counter = hop_kit::metrics::global().stream(stream);
    Box::new(Counted::new(io).count_reads(counter).count_writes(counter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/exec/Ab3_xY9-"), Some(("exec", "Ab3_xY9-")));
        assert_eq!(parse_route("/attach/tok"), Some(("attach", "tok")));
        assert_eq!(parse_route("/exec/"), None);
        assert_eq!(parse_route("/exec/a/b"), None);
        assert_eq!(parse_route("/portforward/x"), None);
        assert_eq!(parse_route("/"), None);
    }

    #[test]
    fn not_found_is_go_http_not_found() {
        let resp = not_found();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(NOT_FOUND_BODY, "404 page not found\n");
    }
}
