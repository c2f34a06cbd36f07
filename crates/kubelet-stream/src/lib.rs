//! kubelet-stream: the kubelet's HTTPS API as far as `kubectl exec` needs it — client-certificate
//! authentication and `--allow-exec` authorization, `/exec` and `/attach` (proxied to the
//! runtime's streaming server, or redirected to it), `/pods`, `/healthz` — plus static pods kept
//! running through CRI.

pub mod auth;
pub mod container_cache;
pub mod manifest;
pub mod pod_store;
pub mod pods_api;
pub mod responses;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod stream_request;
pub mod streaming;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hop_kit::tls::{ServerTls, TlsError};
use tokio_util::task::TaskTracker;

use crate::auth::Authorizer;
use crate::pod_store::PodStore;
use crate::runtime::RuntimeClient;
use crate::server::{Api, KubeletServer};
use crate::static_pods::{Reconciler, StaticPodSource};
use crate::streaming::{StreamingContext, StreamingMode};

/// Everything the kubelet is configured with (the binary's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub addr_file: Option<PathBuf>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: PathBuf,
    /// Users or groups allowed to use the API.
    pub allow_exec: Vec<String>,
    pub runtime_endpoint: String,
    pub pod_manifests: Option<PathBuf>,
    pub node_name: String,
    pub streaming_mode: StreamingMode,
    /// How often the static pods are reconciled when the runtime is healthy.
    pub resync_period: Duration,
    /// How long open requests and streams may continue after SIGTERM.
    pub shutdown_grace: Duration,
    /// What one client connection may take (handshake and head timeouts, open connections).
    pub limits: hop_kit::ConnectionLimits,
}

/// Starting the kubelet failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("loading TLS material: {0}")]
    Tls(#[from] TlsError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("writing address file {path}: {source}")]
    AddrFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Loads the TLS files, reads the manifests, binds the port and writes the address file.
    pub async fn bind(&self) -> Result<KubeletServer, KubeletError> {
        let tls = ServerTls::from_files(&self.tls_cert, &self.tls_key, Some(&self.client_ca))?;
        self.bind_with_tls(tls).await
    }

    /// [`bind`](Self::bind) with TLS material already loaded.
    pub async fn bind_with_tls(&self, tls: ServerTls) -> Result<KubeletServer, KubeletError> {
        let store = PodStore::new();
        let runtime = RuntimeClient::lazy(&self.runtime_endpoint);
        let mut reconciler = Reconciler::new(
            runtime.clone(),
            store.clone(),
            StaticPodSource {
                dir: self.pod_manifests.clone(),
                node_name: self.node_name.clone(),
                resync: self.resync_period,
            },
        );
        reconciler.load_manifests();
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| KubeletError::Listen {
                addr: self.listen,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| KubeletError::Listen {
                addr: self.listen,
                source,
            })?;
        if let Some(path) = &self.addr_file {
            hop_kit::write_addr_file(path, local).map_err(|source| KubeletError::AddrFile {
                path: path.clone(),
                source,
            })?;
        }
        tracing::info!(addr = %local, node = %self.node_name, mode = ?self.streaming_mode, "kubelet listening");
        let api = Api {
            authorizer: Authorizer::new(self.allow_exec.clone()),
            store: store.clone(),
            streaming: StreamingContext {
                store,
                runtime,
                mode: self.streaming_mode,
                sessions: TaskTracker::new(),
                containers: Default::default(),
            },
        };
        Ok(KubeletServer {
            listener,
            tls,
            api: Arc::new(api),
            reconciler,
            shutdown_grace: self.shutdown_grace,
            limits: self.limits,
        })
    }
}

/// Binds and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), KubeletError> {
    config.bind().await?.run(shutdown).await;
    Ok(())
}
