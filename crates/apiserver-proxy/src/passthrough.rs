//! Upgrade passthrough: the client's upgrade request goes to the kubelet as is, the kubelet's
//! answer comes back as is, and after a 101 the two connections are spliced byte for byte.
//!
//! This is kube-apiserver's upgrade-aware proxy for SPDY (and legacy WebSocket) exec/attach,
//! checked against kubernetes `staging/src/k8s.io/apimachinery/pkg/util/proxy/upgradeaware.go`
//! (`tryUpgrade`: dial the backend with the client's headers, relay a non-101 answer with its
//! status, headers and body — so a kubelet `401 Unauthorized` text reaches kubectl as
//! `unable to upgrade connection: Unauthorized` — dial errors answered as a plain error, which
//! the apiserver's responder turns into a 500 Status with an empty reason:
//! `error dialing backend: dial tcp ...: connect: connection refused`).
//! The `Authorization` header is not forwarded (upstream's authentication filter deletes it);
//! the kubelet sees the apiserver's client certificate instead.
//!
//! Metrics: a session counts from this request to the splice's end; setup = request → the
//! kubelet's 101; the spliced bytes are counted per direction as they pass (the hop does not
//! parse the streams, so there is no per-stream count here).
//!
//! Redirect mode: a `302` from the kubelet (`--redirect-container-streaming`) is followed once
//! to the streaming server it names (plain http, no client certificate), as the apiserver did
//! while `StreamingProxyRedirects` existed.
use std::sync::Arc;

use bytes::Bytes;
use hop_kit::metrics::{self, Counted, Direction};
use http::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Response};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tracing::Instrument;
use url::Url;

use crate::status::ApiStatus;

/// Headers never copied from the client to the kubelet.
const NOT_FORWARDED: [HeaderName; 4] = [AUTHORIZATION, HOST, CONTENT_LENGTH, TRANSFER_ENCODING];

/// The headers of the request to the kubelet: the client's, minus credentials and framing, plus
/// `traceparent`.
pub fn backend_headers(client: &HeaderMap, traceparent: &hop_kit::TraceParent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in client {
        if NOT_FORWARDED.contains(name) || name.as_str().starts_with("impersonate-") {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(hop_kit::TRACEPARENT, traceparent.header_value());
    headers
}

/// Proxies one upgrade request; the returned response is what the client gets. After a 101 the
/// splice runs in a spawned task, in the current tracing span.
pub async fn proxy_upgrade(
    method: Method,
    client_headers: &HeaderMap,
    client_upgrade: OnUpgrade,
    kubelet_url: Url,
    tls: Arc<ClientConfig>,
    traceparent: &hop_kit::TraceParent,
) -> Response<Full<Bytes>> {
    let request = hop_kit::UpgradeRequest::new(
        kubelet_url.clone(),
        method,
        backend_headers(client_headers, &traceparent.child()),
    )
    .with_tls(Some(tls));
    let mut session = metrics::global().session_opened();
    tracing::info!(event = "dial", url = %k8s_stream::Bounded(&kubelet_url), "dialing the kubelet");
    let outcome = match request.send_following_redirect().await {
        Ok(outcome) => outcome,
        Err(err) => {
            tracing::warn!(url = %k8s_stream::Bounded(&kubelet_url), error = %k8s_stream::Bounded(&err), "dialing kubelet failed");
            return ApiStatus::from_plain_error(err.proxy_error_text()).into_response();
        }
    };
    match outcome {
        hop_kit::UpgradeOutcome::Refused { response, body } => {
            tracing::info!(status = %response.status, body = %k8s_stream::Bounded(String::from_utf8_lossy(&body).trim()), "kubelet refused the upgrade");
            let mut resp = Response::new(Full::new(body));
            *resp.status_mut() = response.status;
            *resp.headers_mut() = response.headers;
            resp.headers_mut().remove(TRANSFER_ENCODING);
            resp.headers_mut().remove(CONTENT_LENGTH);
            resp
        }
        hop_kit::UpgradeOutcome::Switched { response, io } => {
            tracing::info!(event = "upgrade", "kubelet switched protocols; splicing");
            session.set_up();
            let mut kubelet_io = io;
            tokio::spawn(
                async move {
                    let _session = session;
                    match client_upgrade.await {
                        Ok(upgraded) => {
                            let mut client_io = Counted::new(TokioIo::new(upgraded))
                                .count_reads(metrics::global().direction(Direction::ToBackend))
                                .count_writes(metrics::global().direction(Direction::ToClient));
                            match hop_kit::splice(&mut client_io, &mut kubelet_io).await {
                                Ok((up, down)) => {
                                    tracing::info!(
                                        event = "close",
                                        bytes_to_kubelet = up,
                                        bytes_to_client = down,
                                        "stream closed"
                                    )
                                }
                                Err(err) => {
                                    tracing::info!(event = "close", error = %err, "stream ended")
                                }
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "client upgrade failed"),
                    }
                }
                .in_current_span(),
            );
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = response.status;
            *resp.headers_mut() = response.headers;
            resp
        }
    }
}
