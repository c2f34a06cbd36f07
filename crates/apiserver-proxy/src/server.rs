//! The HTTPS listener: rustls (client certificates requested, judged against `--client-ca`),
//! HTTP/1.1 with upgrades (SPDY and WebSocket only exist there), graceful shutdown.
//!
//! Like kube-apiserver's secure serving, a client certificate that does not verify does not
//! abort the handshake: the request carries on without that identity and ends as a 401 unless a
//! bearer token authenticates it.
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::Instrument;

use crate::authn::{Authenticator, TokenFile, TokenFileError, UserInfo};
use crate::authz::{Policy, PolicyError};
use crate::handler::{self, AppState, ConnectionInfo};
use crate::kubelet::{KubeletClient, NodeAddress};
use crate::pods::PodCache;

/// How long open HTTP connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the server is started with (the binary's flags).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub addr_file: Option<PathBuf>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
    pub kubelet_ca: PathBuf,
    pub nodes: Vec<NodeAddress>,
    /// What one client connection may take (handshake and head timeouts, open connections).
    pub limits: hop_kit::ConnectionLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("serving TLS: {0}")]
    ServingTls(#[source] hop_kit::tls::TlsError),
    #[error("kubelet client TLS: {0}")]
    KubeletTls(#[source] hop_kit::tls::TlsError),
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing address file {path}: {source}")]
    AddrFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready-to-serve apiserver.
pub struct ApiServer {
    listener: TcpListener,
    tls: hop_kit::ServerTls,
    limits: hop_kit::ConnectionLimits,
    state: Arc<AppState>,
    local_addr: SocketAddr,
}

impl ApiServer {
    /// Loads certificates, tokens and policy, binds `--listen` and writes `--addr-file`.
    pub async fn bind(config: &ProxyConfig) -> Result<Self, SetupError> {
        let tls = hop_kit::ServerTls::from_files(
            &config.tls_cert,
            &config.tls_key,
            config.client_ca.as_deref(),
        )
        .map_err(SetupError::ServingTls)?;
        let kubelet_tls = hop_kit::tls::client_config_from_files(
            &config.kubelet_ca,
            Some((&config.kubelet_client_cert, &config.kubelet_client_key)),
        )
        .map_err(SetupError::KubeletTls)?;
        let tokens = match &config.token_auth_file {
            Some(path) => TokenFile::load(path)?,
            None => TokenFile::default(),
        };
        let policy = match &config.policy_file {
            Some(path) => Policy::load(path)?,
            None => Policy::default(),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SetupError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| SetupError::Bind {
            addr: config.listen,
            source,
        })?;
        tracing::info!(
            addr = %local_addr,
            tokens = tokens.len(),
            rules = policy.rules.len(),
            nodes = config.nodes.len(),
            "apiserver-proxy listening"
        );
        let state = AppState {
            authenticator: Authenticator::new(tokens),
            policy,
            pods: PodCache::new(KubeletClient::new(config.nodes.clone(), kubelet_tls)),
            server_address: local_addr.to_string(),
        };
        if let Some(path) = &config.addr_file {
            hop_kit::write_addr_file(path, local_addr).map_err(|source| SetupError::AddrFile {
                path: path.clone(),
                source,
            })?;
        }
        Ok(ApiServer {
            listener,
            tls,
            limits: config.limits,
            state: Arc::new(state),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then lets open HTTP connections finish (bounded).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        // Each connection holds a receiver; `closed()` tells when the last one is gone.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let slots = hop_kit::ConnectionSlots::new(&self.limits);
        let limits = self.limits;
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer, slot) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = slots.accept(&self.listener) => accepted,
            };
            let tls = self.tls.clone();
            let state = self.state.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(
                async move {
                    let _slot = slot;
                    let (stream, verdict) = match limits.tls_handshake(tls.accept(tcp)).await {
                        Ok(pair) => pair,
                        Err(err) => {
                            tracing::debug!(error = %err, "TLS handshake ended");
                            return;
                        }
                    };
                    let conn_info = Arc::new(connection_info(verdict));
                    let handle = move |req| {
                        let state = state.clone();
                        let conn_info = conn_info.clone();
                        async move { handler::handle(&state, &conn_info, req).await }
                    };
                    let stopping = async move {
                        let _ = stop.wait_for(|stopping| *stopping).await;
                    };
                    hop_kit::serve_http1(stream, &limits, handle, stopping).await;
                }
                .instrument(tracing::debug_span!("conn", %peer)),
            );
        }
        tracing::info!("shutting down: no new connections");
        drop(self.listener);
        drop(stop_rx);
        let _ = stop_tx.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing");
        }
    }
}

fn connection_info(verdict: hop_kit::ClientCert) -> ConnectionInfo {
    match verdict {
        hop_kit::ClientCert::Absent => ConnectionInfo::default(),
        hop_kit::ClientCert::Rejected(why) => ConnectionInfo {
            cert_user: None,
            cert_rejection: Some(why),
        },
        hop_kit::ClientCert::Verified(identity) => ConnectionInfo {
            cert_user: Some(user_from_certificate(identity)),
            cert_rejection: None,
        },
    }
}

/// A verified client certificate's user: CN = name, O = groups, no uid.
pub fn user_from_certificate(identity: hop_kit::PeerIdentity) -> UserInfo {
    UserInfo::new(identity.user, "", identity.groups)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Binds and serves until SIGTERM/SIGINT.
pub async fn run(config: &ProxyConfig) -> Result<(), SetupError> {
    let server = ApiServer::bind(config).await?;
    server.serve(shutdown_signal()).await;
    Ok(())
}
