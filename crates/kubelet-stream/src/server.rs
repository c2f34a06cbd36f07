//! The kubelet's HTTPS server: TLS accept (client certificate judged after the handshake),
//! HTTP/1.1 with upgrades, the auth filter, routing, and graceful shutdown.
//!
//! Checked against kubernetes `pkg/kubelet/server/server.go` (routes `/healthz`, `/pods`,
//! `/exec/...`, `/attach/...` for GET and POST; the auth filter in front of every route).
//! `/healthz` answers without a client certificate here, as on upstream's read-only port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hop_kit::tls::{ClientCert, ServerTls};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthDecision, Authorizer, UNAUTHORIZED_BODY};
use crate::pod_store::PodStore;
use crate::pods_api::pod_list_json;
use crate::responses::{http_error, json, restful_error, text, Body};
use crate::static_pods::Reconciler;
use crate::stream_request::parse_stream_path;
use crate::streaming::StreamingContext;

/// Routes and handlers of the kubelet API.
#[derive(Debug)]
pub struct Api {
    pub authorizer: Authorizer,
    pub store: PodStore,
    pub streaming: StreamingContext,
}

impl Api {
    /// One request from a peer whose certificate verdict is `client`.
    pub async fn handle(&self, client: &ClientCert, req: Request<Incoming>) -> Response<Body> {
        let path = hop_kit::path_and_query(&req).0.to_owned();
        if path == "/healthz" {
            return text("ok");
        }
        match self.authorizer.decide(client, req.method(), &path) {
            AuthDecision::Allowed(_) => {}
            AuthDecision::Unauthenticated => {
                tracing::info!(path = %k8s_stream::Bounded(&path), reason = ?client, "unauthenticated request");
                return restful_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY);
            }
            AuthDecision::Forbidden(attrs) => {
                let text = attrs.forbidden_text();
                tracing::info!(path = %k8s_stream::Bounded(&path), "{text}");
                return restful_error(StatusCode::FORBIDDEN, &text);
            }
        }
        if path == "/pods" || path == "/pods/" {
            return match *req.method() {
                Method::GET => json(&pod_list_json(&self.store.entries())),
                _ => method_not_allowed(),
            };
        }
        if let Some((kind, target)) = parse_stream_path(&path) {
            return match *req.method() {
                Method::GET | Method::POST => self.streaming.serve(kind, target, req).await,
                _ => method_not_allowed(),
            };
        }
        http_error(StatusCode::NOT_FOUND, "404 page not found")
    }
}

fn method_not_allowed() -> Response<Body> {
    restful_error(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed")
}

/// A bound kubelet, ready to serve.
pub struct KubeletServer {
    pub(crate) listener: TcpListener,
    pub(crate) tls: ServerTls,
    pub(crate) api: Arc<Api>,
    pub(crate) reconciler: Reconciler,
    pub(crate) shutdown_grace: Duration,
    pub(crate) limits: hop_kit::ConnectionLimits,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl KubeletServer {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets open requests and sessions
    /// end within the grace period, and returns. Pods keep running.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            tls,
            api,
            reconciler,
            shutdown_grace,
            limits,
        } = self;
        let slots = hop_kit::ConnectionSlots::new(&limits);
        let stop = CancellationToken::new();
        let reconcile = tokio::spawn(reconciler.run(stop.clone()));
        let connections = TaskTracker::new();
        let draining = CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                (tcp, peer, slot) = slots.accept(&listener) => {
                    let conn = serve_connection(tcp, peer, tls.clone(), api.clone(), limits, draining.clone());
                    connections.spawn(async move {
                        let _slot = slot;
                        conn.await
                    });
                }
            }
        }
        tracing::info!("shutting down: no new connections");
        drop(listener);
        stop.cancel();
        let _ = reconcile.await;
        draining.cancel();
        connections.close();
        if tokio::time::timeout(shutdown_grace, connections.wait())
            .await
            .is_err()
        {
            tracing::info!("open requests did not finish within the grace period");
        }
        let sessions = api.streaming.sessions.clone();
        sessions.close();
        if tokio::time::timeout(shutdown_grace, sessions.wait())
            .await
            .is_err()
        {
            tracing::info!(
                open = sessions.len(),
                "streams still open after the grace period; leaving them"
            );
        }
    }
}

/// TLS handshake, then HTTP/1.1 until the peer leaves or (idle) shutdown.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: ServerTls,
    api: Arc<Api>,
    limits: hop_kit::ConnectionLimits,
    draining: CancellationToken,
) {
    let (stream, client) = match limits.tls_handshake(tls.accept(tcp)).await {
        Ok(accepted) => accepted,
        Err(err) => {
            tracing::debug!(%peer, error = %err, "TLS handshake ended");
            return;
        }
    };
    let client = Arc::new(client);
    let handle = move |req| {
        let api = api.clone();
        let client = client.clone();
        async move { api.handle(&client, req).await }
    };
    let serve = hop_kit::serve_http1(stream, &limits, handle, draining.cancelled_owned());
    tracing::Instrument::instrument(serve, tracing::debug_span!("conn", %peer)).await;
}
