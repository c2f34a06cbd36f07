//! Process wiring: bind the CRI socket and the streaming port, publish the streaming address,
//! serve until told to stop, then tear every sandbox down and remove what we created.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use cri_api::runtime::v1::image_service_server::ImageServiceServer;
use cri_api::runtime::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cri_service::CriService;
use crate::runtime::Runtime;
use crate::streaming_server::{self, StreamingConfig};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("preparing {path}: {source}")]
    Prepare {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the address file {path}: {source}")]
    AddrFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run_until_signal(config: Config) -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|source| ServerError::Prepare {
        path: "SIGTERM handler".into(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| ServerError::Prepare {
        path: "SIGINT handler".into(),
        source,
    })?;
    run(config, async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
    .await
}

/// Serves the CRI API and the streaming server until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let runtime = Arc::new(Runtime::new(config.clone()));
    runtime
        .prepare_dirs()
        .map_err(|source| ServerError::Prepare {
            path: config.state_dir.display().to_string(),
            source,
        })?;

    let socket = &config.listen;
    let unix = bind_unix(socket)?;
    let tcp = TcpListener::bind(config.stream_addr)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.stream_addr.to_string(),
            source,
        })?;
    let stream_addr = tcp.local_addr().map_err(|source| ServerError::Listen {
        addr: config.stream_addr.to_string(),
        source,
    })?;
    runtime.set_stream_addr(stream_addr);
    if let Some(path) = &config.addr_file {
        hop_kit::write_addr_file(path, stream_addr).map_err(|source| ServerError::AddrFile {
            path: path.display().to_string(),
            source,
        })?;
    }
    tracing::info!(cri = %socket.display(), streaming = %stream_addr, "cri-streaming listening");

    let stop = CancellationToken::new();
    let streaming = tokio::spawn(streaming_server::serve(
        tcp,
        runtime.clone(),
        StreamingConfig {
            idle_timeout: config.stream_idle_timeout,
            limits: config.stream_limits,
        },
        stop.clone(),
    ));
    let service = CriService::new(runtime.clone());
    let stop_grpc = stop.clone();
    let grpc = tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(service.clone()).max_encoding_message_size(usize::MAX),
        )
        .add_service(ImageServiceServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(unix), async move {
            tokio::select! {
                () = shutdown => {}
                () = stop_grpc.cancelled() => {}
            }
            stop_grpc.cancel();
        })
        .await;
    stop.cancel();
    let _ = streaming.await;
    runtime.shutdown().await;
    remove_file(socket);
    if let Some(path) = &config.addr_file {
        remove_file(path);
    }
    tracing::info!("cri-streaming stopped");
    grpc.map_err(ServerError::from)
}

fn bind_unix(path: &Path) -> Result<UnixListener, ServerError> {
    let listen_err = |source| ServerError::Listen {
        addr: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(listen_err)?;
    }
    // A socket file left by a previous run would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_err(e)),
    }
    UnixListener::bind(path).map_err(listen_err)
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "removing file");
        }
    }
}
