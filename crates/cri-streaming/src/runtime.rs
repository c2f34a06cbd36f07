//! The runtime behind the CRI services and the streaming server: configuration, the sandbox
//! and container records, the shim launcher, the token cache, and the error type every CRI
//! operation returns.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cri_api::runtime::v1::{AttachRequest, ExecRequest};
use hop_kit::TraceParent;

use crate::config::Config;
use crate::errdefs::ErrorClass;
use crate::images::ImageStore;
use crate::shim::{ShimError, ShimLauncher};
use crate::store::Store;
use crate::token_cache::{TokenCache, MAX_IN_FLIGHT};

/// A CRI operation's failure: containerd's error class (→ gRPC code) and its full text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CriError {
    pub class: ErrorClass,
    pub message: String,
}

impl CriError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unknown, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::InvalidArgument, message)
    }

    /// `<context>: <shim error>`, keeping the shim error's class.
    pub fn shim(context: impl std::fmt::Display, err: &ShimError) -> Self {
        Self::new(err.class(), format!("{context}: {err}"))
    }

    /// `<context>: <io error>` (class Unknown).
    pub fn io(context: impl std::fmt::Display, err: &std::io::Error) -> Self {
        Self::unknown(format!("{context}: {err}"))
    }

    /// Prefixes the message, keeping the class (Go's `fmt.Errorf("...: %w", err)`).
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self::new(self.class, format!("{context}: {}", self.message))
    }
}

impl From<CriError> for tonic::Status {
    fn from(e: CriError) -> Self {
        tonic::Status::new(e.class.grpc_code(), e.message)
    }
}

/// Locks the store. Updates are single assignments or inserts/removals, so a panic elsewhere
/// while holding the lock leaves no half-done change worth refusing to read.
pub(crate) fn lock_store(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// A parked streaming request, waiting for its token to be used.
#[derive(Debug, Clone)]
pub enum StreamRequest {
    Exec {
        request: ExecRequest,
        trace: Option<TraceParent>,
    },
    Attach {
        request: AttachRequest,
        trace: Option<TraceParent>,
    },
}

/// Everything the CRI services and the streaming server share.
pub struct Runtime {
    pub(crate) config: Config,
    pub(crate) images: ImageStore,
    pub(crate) shims: ShimLauncher,
    store: Arc<Mutex<Store>>,
    pub(crate) tokens: TokenCache<StreamRequest>,
    /// `http://<stream addr>/`, known once the streaming server listens.
    stream_base: OnceLock<String>,
}

impl Runtime {
    pub fn new(config: Config) -> Self {
        let publish_binary =
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cri-streaming"));
        let shims = ShimLauncher {
            binary: config.shim_binary.clone(),
            namespace: config.shim_namespace.clone(),
            address: config.listen.to_string_lossy().into_owned(),
            publish_binary,
            socket_dir: config.shim_socket_dir.clone(),
            runtime_dir: config.shim_runtime_dir.clone(),
            runc_root: config.runc_root.clone(),
            metrics_dir: config.shim_metrics_dir.clone(),
            otlp_endpoint: config.shim_otlp_endpoint.clone(),
        };
        let tokens = TokenCache::with_settings(
            config.token_ttl,
            MAX_IN_FLIGHT,
            Arc::new(crate::token_cache::SystemClock),
        );
        Self {
            images: ImageStore::new(&config.images),
            shims,
            store: Arc::new(Mutex::new(Store::default())),
            tokens,
            stream_base: OnceLock::new(),
            config,
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock_store(&self.store)
    }

    /// The store, for background tasks that outlive a request (exit watchers).
    pub(crate) fn store_handle(&self) -> Arc<Mutex<Store>> {
        self.store.clone()
    }

    /// Records the streaming server's address; URLs are built from it.
    pub fn set_stream_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.stream_base.set(format!("http://{addr}/"));
    }

    pub(crate) fn stream_url(&self, kind: &str, token: &str) -> Result<String, CriError> {
        let base = self
            .stream_base
            .get()
            .ok_or_else(|| CriError::unknown("streaming server is not listening"))?;
        Ok(format!("{base}{kind}/{token}"))
    }

    pub(crate) fn sandboxes_dir(&self) -> PathBuf {
        self.config.state_dir.join("sandboxes")
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.config.state_dir.join("containers")
    }

    pub(crate) fn exec_dir(&self) -> PathBuf {
        self.config.state_dir.join("exec")
    }

    /// Creates the state subdirectories.
    pub fn prepare_dirs(&self) -> std::io::Result<()> {
        for dir in [self.sandboxes_dir(), self.containers_dir(), self.exec_dir()] {
            std::fs::create_dir_all(dir)?;
        }
        for dir in [
            &self.config.shim_socket_dir,
            &self.config.shim_runtime_dir,
            &self.config.runc_root,
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// Removes the state subdirectories (after every sandbox is gone).
    pub fn remove_dirs(&self) {
        for dir in [self.sandboxes_dir(), self.containers_dir(), self.exec_dir()] {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing state directory");
                }
            }
        }
    }
}
