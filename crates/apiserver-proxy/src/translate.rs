//! WebSocket v5 → SPDY: the apiserver's stream translator, glued to this server.
//!
//! As kube-apiserver 1.32 does for a WebSocket request offering `v5.channel.k8s.io`
//! (`staging/src/k8s.io/apiserver/pkg/util/proxy/streamtranslator.go`), we accept the client's
//! WebSocket FIRST (101 + the ready signal), then dial the kubelet as an SPDY exec client (POST,
//! offering v5..v1, `traceparent` forwarded) and let `k8s_stream::translate` pump the streams and
//! map the outcome onto the WebSocket error channel. Consequences a user sees:
//! - kubelet refusals arrive after the 101, so kubectl does not fall back to SPDY; a plain-text
//!   refusal becomes `Internal error occurred: unable to upgrade connection: <body>` (e.g.
//!   `error: Internal error occurred: unable to upgrade connection: Unauthorized`);
//! - a dial failure is reported as client-go's SPDY dialer words it (`spdy.Negotiate`:
//!   `error sending request: <url.Error>`, and Go's url.Error reads `Post "<url>": <err>`), so
//!   `error: Internal error occurred: error sending request: Post "https://HOST:PORT/exec/...": dial tcp HOST:PORT: connect: connection refused`
//!   (derived from client-go `transport/spdy/spdy.go` and Go `net/url`; not observed against a
//!   real cluster).
//!
//! Metrics: the session counts as open from the accepted WebSocket to the translation's end;
//! setup = request → SPDY session to the kubelet established; the WebSocket connection's bytes
//! are counted per direction as they pass, and stdin's payload bytes once the session ends (the
//! translator reports stdout and stderr together, so they are not split by stream here).
//!
//! One deliberate difference: upstream's translator refuses redirects from the kubelet; for the
//! lab's redirect mode (`kubelet-stream --redirect-container-streaming`) we follow one `302` to
//! the streaming server (plain http, no client certificate), as the SPDY passthrough does.
use std::sync::Arc;

use bytes::Bytes;
use hop_kit::metrics::{self, Counted, Direction, Stream};
use http::{HeaderMap, Method, Response};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use k8s_stream::exec::{self, ClientStreams, ExecError, ExecOptions, ServeConfig};
use k8s_stream::go_quote;
use k8s_stream::remotecommand::{
    negotiate, spdy_request_headers, validate_spdy_response, ProtocolVersion, ServerProtocols,
    StreamProtocol,
};
use rustls::ClientConfig;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use url::Url;

use crate::exec::StreamOptions;
use crate::handler::ApiResponse;

/// The remote command options the kubelet session is opened with.
pub fn exec_options(opts: &StreamOptions) -> ExecOptions {
    ExecOptions {
        command: opts.command.clone(),
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
        tty: opts.tty,
    }
}

/// Accepts the WebSocket (or answers the negotiation failure) and runs the translation in a
/// spawned task, in the current tracing span.
pub async fn serve(
    headers: &HeaderMap,
    client_upgrade: OnUpgrade,
    kubelet_url: Url,
    tls: Arc<ClientConfig>,
    traceparent: &hop_kit::TraceParent,
    opts: &StreamOptions,
) -> ApiResponse {
    let upgrade = match negotiate(headers, &ServerProtocols::translator()) {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            tracing::info!(status = %rejection.status, reason = %k8s_stream::Bounded(&rejection.message), "WebSocket upgrade refused");
            let mut resp = Response::new(Full::new(Bytes::from(rejection.body.clone())));
            *resp.status_mut() = rejection.status;
            *resp.headers_mut() = rejection.headers.clone();
            return resp;
        }
    };
    let exec_opts = exec_options(opts);
    // The kubelet is dialled and upgraded now, while the client's 101 goes out and its
    // WebSocket is set up (upstream does one after the other): the slower of the two sets the
    // session's start. The exec's streams are opened only once the client's side is up, so a
    // client that fails its upgrade never gets a process started (dropping the handle cuts the
    // dial). In a task of its own, the dial's TLS and HTTP handshakes take memory only while
    // they run.
    let backend = AbortOnDropHandle::new(tokio::spawn(
        dial_kubelet(kubelet_url, tls, traceparent.child()).in_current_span(),
    ));
    let session = translated_session(
        client_upgrade,
        upgrade.protocol,
        exec_opts,
        backend,
        metrics::global().session_opened(),
    );
    tokio::spawn(session.in_current_span());
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = upgrade.headers;
    resp
}

/// One translated session, from the client's upgrade to its end: the task each open session
/// keeps for its whole life.
async fn translated_session(
    client_upgrade: OnUpgrade,
    protocol: StreamProtocol,
    exec_opts: ExecOptions,
    backend: AbortOnDropHandle<Result<KubeletConnection, ExecError>>,
    mut session: metrics::OpenSession,
) {
    let io = match client_upgrade.await {
        Ok(upgraded) => Counted::new(TokioIo::new(upgraded))
            .count_reads(metrics::global().direction(Direction::ToBackend))
            .count_writes(metrics::global().direction(Direction::ToClient)),
        Err(err) => {
            tracing::warn!(error = %err, "client upgrade failed");
            return;
        }
    };
    // The WebSocket start is boxed: inline it would size this task, which every idle session
    // keeps for its whole life, at several KiB (the kubelet dial runs in a task of its own).
    let serve_config = ServeConfig::default();
    let front = match Box::pin(exec::serve(io, protocol, &exec_opts, &serve_config)).await {
        Ok(front) => front,
        Err(err) => {
            tracing::warn!(error = %err, "WebSocket session setup failed");
            return;
        }
    };
    let backend = Box::pin(async {
        let dialled = match backend.await {
            Ok(Ok(kubelet)) => kubelet.open_streams(&exec_opts).await,
            Ok(Err(err)) => Err(err),
            Err(join) => Err(ExecError::Other(join.to_string())),
        };
        if dialled.is_ok() {
            session.set_up();
        }
        dialled
    });
    match k8s_stream::translate::translate(front, backend).await {
        Ok(report) => {
            metrics::global().add_bytes(Stream::Stdin, report.stdin_bytes);
            tracing::info!(
                event = "close",
                status = %report.status.status,
                message = %k8s_stream::Bounded(&report.status.message),
                stdin_bytes = report.stdin_bytes,
                output_bytes = report.output_bytes,
                "translated session ended"
            )
        }
        Err(err) => {
            tracing::info!(event = "close", error = %err, "translated session failed")
        }
    }
}

/// The kubelet's connection once it switched to SPDY, before any stream is opened (opening
/// them lets the runtime start the process).
pub struct KubeletConnection {
    io: hop_kit::UpgradedIo,
    version: ProtocolVersion,
}

impl KubeletConnection {
    /// Opens the exec's streams, as client-go's SPDY executor does once upgraded.
    pub async fn open_streams(self, opts: &ExecOptions) -> Result<ClientStreams, ExecError> {
        exec::connect(self.io, StreamProtocol::Spdy(self.version), opts).await
    }
}

/// Dials the kubelet and upgrades to SPDY (following one redirect), as client-go's SPDY
/// executor would.
pub async fn dial_kubelet(
    url: Url,
    tls: Arc<ClientConfig>,
    traceparent: hop_kit::TraceParent,
) -> Result<KubeletConnection, ExecError> {
    let mut headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    headers.insert(hop_kit::TRACEPARENT, traceparent.header_value());
    let request =
        hop_kit::UpgradeRequest::new(url.clone(), Method::POST, headers).with_tls(Some(tls));
    tracing::info!(event = "dial", url = %k8s_stream::Bounded(&url), "dialing the kubelet");
    let outcome = request.send_following_redirect().await.map_err(|err| {
        ExecError::Other(format!(
            "error sending request: {}",
            go_url_error("POST", &url, &err)
        ))
    })?;
    match outcome {
        hop_kit::UpgradeOutcome::Switched { response, io } => {
            let version = validate_spdy_response(response.status, &response.headers, b"")?;
            tracing::info!(event = "upgrade", %version, "kubelet switched protocols");
            Ok(KubeletConnection { io, version })
        }
        hop_kit::UpgradeOutcome::Refused { response, body } => {
            tracing::info!(status = %response.status, body = %k8s_stream::Bounded(String::from_utf8_lossy(&body).trim()), "kubelet refused the upgrade");
            match validate_spdy_response(response.status, &response.headers, &body) {
                Err(err) => Err(err.into()),
                // A refusal always fails validation; keep a typed error should that change.
                Ok(_) => Err(ExecError::Other(format!(
                    "unable to upgrade connection: {}",
                    String::from_utf8_lossy(&body).trim()
                ))),
            }
        }
    }
}

/// Go's `*url.Error` text: `Post "https://...": <err>`.
pub fn go_url_error(method: &str, url: &Url, err: &impl std::fmt::Display) -> String {
    let mut op = String::new();
    let mut chars = method.chars();
    if let Some(first) = chars.next() {
        op.push(first.to_ascii_uppercase());
        op.extend(chars.map(|c| c.to_ascii_lowercase()));
    }
    format!("{op} {}: {err}", go_quote(url.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open session keeps its task for its whole life; with the setup futures inline
    /// (the kubelet dial's TLS and HTTP handshakes) it measured over 8 KiB.
    #[tokio::test]
    async fn an_open_session_task_stays_small() {
        let mut request = http::Request::new(());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let url = Url::parse("https://127.0.0.1:10250/exec/ns/pod/c").expect("url");
        let dial = dial_kubelet(url, Arc::new(tls), hop_kit::TraceParent::new_root());
        let session = translated_session(
            hyper::upgrade::on(&mut request),
            StreamProtocol::WebSocket(k8s_stream::remotecommand::WsProtocol::V5Channel),
            ExecOptions::default(),
            AbortOnDropHandle::new(tokio::spawn(dial)),
            metrics::global().session_opened(),
        );
        let size = std::mem::size_of_val(&session);
        assert!(size <= 2048, "{size} bytes");
    }
}
