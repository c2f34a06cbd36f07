//! `kubelet-stream`: flags, logging, then the library's `run` until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubelet_stream::streaming::StreamingMode;
use kubelet_stream::Config;

/// The kubelet's HTTPS API for exec/attach, with static pods run through CRI.
#[derive(Debug, Parser)]
#[command(name = "kubelet-stream", version)]
struct Args {
    /// Address to listen on (port 0 = OS-chosen).
    #[arg(long, env = "EXECLAB_LISTEN", default_value = "127.0.0.1:10250")]
    listen: SocketAddr,
    /// Where to write the actual listening address once listening.
    #[arg(long, env = "EXECLAB_ADDR_FILE")]
    addr_file: Option<PathBuf>,
    /// Serving certificate (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Serving key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// CA whose client certificates authenticate callers (CN = user, O = groups).
    #[arg(long)]
    client_ca: PathBuf,
    /// User or group allowed to use the API (repeatable).
    #[arg(long = "allow-exec", default_value = "system:masters")]
    allow_exec: Vec<String>,
    /// CRI endpoint, e.g. unix:///DIR/run/cri.sock.
    #[arg(long, env = "EXECLAB_RUNTIME_ENDPOINT")]
    runtime_endpoint: String,
    /// Directory of static pod manifests.
    #[arg(long)]
    pod_manifests: Option<PathBuf>,
    /// This node's name.
    #[arg(long, default_value = "execlab-node")]
    node_name: String,
    /// Answer exec/attach with a 302 to the runtime's streaming URL instead of proxying.
    #[arg(long)]
    redirect_container_streaming: bool,
    /// Static pod resync period.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    resync_period: Duration,
    /// How long open streams may continue after SIGTERM.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    #[command(flatten)]
    limits: hop_kit::LimitArgs,
    #[command(flatten)]
    observe: hop_kit::observe::ObserveArgs,
}

impl From<Args> for Config {
    fn from(args: Args) -> Self {
        Config {
            listen: args.listen,
            addr_file: args.addr_file,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            client_ca: args.client_ca,
            allow_exec: args.allow_exec,
            runtime_endpoint: args.runtime_endpoint,
            pod_manifests: args.pod_manifests,
            node_name: args.node_name,
            streaming_mode: if args.redirect_container_streaming {
                StreamingMode::Redirect
            } else {
                StreamingMode::Proxy
            },
            resync_period: args.resync_period,
            shutdown_grace: args.shutdown_grace,
            limits: args.limits.apply(hop_kit::ConnectionLimits::KUBELET),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hop_kit::heap::retain_freed_memory();
    let args = Args::parse();
    args.observe.start("kubelet-stream").await?;
    hop_kit::accept::on_worker(kubelet_stream::run(args.into(), shutdown_signal()))
        .await
        .context("kubelet-stream")?;
    Ok(())
}
