//! `cri-streaming`: the CRI runtime and streaming server of execlab (containerd's role).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cri_streaming::{parse_unix_endpoint, Config, ImageFlag};

#[derive(Debug, Parser)]
#[command(
    name = "cri-streaming",
    version,
    about = "CRI runtime + streaming server driving shim-exec"
)]
struct Args {
    /// CRI gRPC endpoint, `unix:///path/cri.sock`.
    #[arg(long, env = "EXECLAB_LISTEN")]
    listen: String,
    /// Streaming server address (port 0 = OS-chosen).
    #[arg(long, env = "EXECLAB_STREAM_ADDR", default_value = "127.0.0.1:0")]
    stream_addr: SocketAddr,
    /// Where the streaming server's actual address is written once it listens.
    #[arg(long, env = "EXECLAB_ADDR_FILE")]
    addr_file: Option<PathBuf>,
    /// Bundles and FIFOs.
    #[arg(long, env = "EXECLAB_STATE_DIR")]
    state_dir: PathBuf,
    /// `NAME=ROOTFS_DIR`, repeatable (`busybox`, `busybox:latest`, ... all match `busybox`).
    #[arg(long = "image", env = "EXECLAB_IMAGE", value_delimiter = ',')]
    images: Vec<ImageFlag>,
    /// Image of the sandbox (pause) container.
    #[arg(long, env = "EXECLAB_PAUSE_IMAGE", default_value = "busybox")]
    pause_image: String,
    /// The shim v2 binary (shim-exec).
    #[arg(long, env = "EXECLAB_SHIM_BINARY")]
    shim_binary: PathBuf,
    /// Where shims put their ttrpc sockets (EXECLAB_SHIM_SOCKET_DIR of the shim).
    #[arg(long, env = "EXECLAB_SHIM_SOCKET_DIR")]
    shim_socket_dir: PathBuf,
    /// XDG_RUNTIME_DIR of the shims (runc-process files).
    #[arg(long, env = "EXECLAB_SHIM_RUNTIME_DIR")]
    shim_runtime_dir: PathBuf,
    /// runc --root of the shims.
    #[arg(long, env = "EXECLAB_RUNC_ROOT")]
    runc_root: PathBuf,
    /// Idle timeout of a streaming connection.
    #[arg(long, env = "EXECLAB_STREAM_IDLE_TIMEOUT", default_value = "4h", value_parser = humantime::parse_duration)]
    stream_idle_timeout: Duration,
    /// How long an exec/attach URL stays valid.
    #[arg(long, env = "EXECLAB_STREAM_TOKEN_TTL", default_value = "1m", value_parser = humantime::parse_duration)]
    stream_token_ttl: Duration,
    /// Shims serve metrics on a loopback port and write its address to
    /// `DIR/shim-exec.<sandbox id>.metrics`.
    #[arg(long, env = "EXECLAB_SHIM_METRICS_DIR")]
    shim_metrics_dir: Option<PathBuf>,
    /// SIGKILL an exec's process when its client goes away (its connection ends or fails, an
    /// output write fails, or it idles past --stream-idle-timeout). Default: the process runs
    /// to its end, as under containerd 1.6, and its FIFOs and shim exec entry are freed when it
    /// exits. `--kill-exec-on-disconnect false` is the default spelled out.
    #[arg(long, env = "EXECLAB_KILL_EXEC_ON_DISCONNECT", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    kill_exec_on_disconnect: bool,
    #[command(flatten)]
    limits: hop_kit::LimitArgs,
    #[command(flatten)]
    observe: hop_kit::observe::ObserveArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hop_kit::heap::retain_freed_memory();
    let args = Args::parse();
    args.observe.start("cri-streaming").await?;
    let listen = parse_unix_endpoint(&args.listen).map_err(anyhow::Error::msg)?;
    let mut config = Config::new(listen, args.state_dir, args.shim_binary);
    config.stream_addr = args.stream_addr;
    config.addr_file = args.addr_file;
    config.images = args.images;
    config.pause_image = args.pause_image;
    config.shim_socket_dir = args.shim_socket_dir;
    config.shim_runtime_dir = args.shim_runtime_dir;
    config.runc_root = args.runc_root;
    config.stream_idle_timeout = args.stream_idle_timeout;
    config.token_ttl = args.stream_token_ttl;
    config.shim_metrics_dir = args.shim_metrics_dir;
    config.shim_otlp_endpoint = args.observe.otlp_endpoint;
    config.kill_exec_on_disconnect = args.kill_exec_on_disconnect;
    config.stream_limits = args
        .limits
        .apply(hop_kit::ConnectionLimits::STREAMING_SERVER);
    cri_streaming::run_until_signal(config)
        .await
        .context("cri-streaming")
}
