//! The serving daemon: a child subreaper (so container processes reparent to it and are reaped
//! here, as containerd-shim-runc-v2 does in `cmd/containerd-shim-runc-v2/manager`), the reaper,
//! and the ttrpc server on the listener `start` handed over. Runs until Shutdown finds no tasks
//! left or SIGTERM/SIGINT arrives; removes its socket file on the way out.

use std::io;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::config::ShimConfig;
use crate::reaper::Reaper;
use crate::service::TaskService;
use crate::task_api::task_services;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("become child subreaper: {0}")]
    Subreaper(#[source] io::Error),
    #[error("install reaper: {0}")]
    Reaper(#[source] io::Error),
    #[error("listener: {0}")]
    Listener(#[source] io::Error),
    #[error("ttrpc server: {0}")]
    Ttrpc(String),
}

/// Marks the calling process as a child subreaper.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Serves the task API on `listener` until shut down. Must run inside a tokio runtime.
pub async fn serve(
    listener: StdUnixListener,
    socket_path: Option<PathBuf>,
    config: ShimConfig,
) -> Result<(), ServeError> {
    become_subreaper().map_err(ServeError::Subreaper)?;
    let reaper = Reaper::install().map_err(ServeError::Reaper)?;
    let shutdown = Arc::new(Notify::new());
    let service = TaskService::new(config, reaper, shutdown.clone());

    listener
        .set_nonblocking(true)
        .map_err(ServeError::Listener)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(ServeError::Listener)?;
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(ttrpc::r#async::transport::Listener::from(listener))
        .register_service(task_services(Arc::new(service)));
    server
        .start()
        .await
        .map_err(|e| ServeError::Ttrpc(e.to_string()))?;
    tracing::info!(pid = std::process::id(), "shim serving");

    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Reaper)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Reaper)?;
    tokio::select! {
        _ = shutdown.notified() => tracing::info!("shutdown: no tasks left"),
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    let _ = server.shutdown().await;
    Ok(())
}
