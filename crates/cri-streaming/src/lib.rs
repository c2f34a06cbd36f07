//! cri-streaming: containerd's CRI plugin, reduced to what `kubectl exec` needs. CRI
//! `RuntimeService`/`ImageService` over gRPC on a unix socket, pod sandboxes as one shim-exec per
//! pod (shim v2 task API over ttrpc), and the CRI streaming server that turns `Exec`/`Attach`
//! tokens into SPDY/WebSocket sessions.
//!
//! Entry points: [`run_until_signal`] / [`run`] with a [`Config`].

pub mod attach;
pub mod config;
pub mod connection_watch;
pub mod container;
pub mod container_io;
pub mod container_log;
pub mod cri_service;
pub mod errdefs;
pub mod exec;
pub mod fifo;
pub mod filters;
pub mod images;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod shim;
pub mod store;
pub mod streaming_server;
pub mod token_cache;

pub use config::{parse_unix_endpoint, Config};
pub use images::{ImageFlag, ImageStore};
pub use runtime::{CriError, Runtime};
pub use server::{run, run_until_signal, ServerError};
pub use token_cache::{Clock, SystemClock, TokenCache, TokenCacheError};
