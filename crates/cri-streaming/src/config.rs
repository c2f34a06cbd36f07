//! What `cri-streaming` is told on its command line, as one value the library runs from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::images::ImageFlag;
use crate::token_cache::DEFAULT_TOKEN_TTL;

/// Everything the CRI server and the streaming server need.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the CRI gRPC unix socket (`--listen unix:///path`).
    pub listen: PathBuf,
    /// Where the streaming server listens (port 0 = OS-chosen).
    pub stream_addr: SocketAddr,
    /// Receives the streaming server's actual address once it listens.
    pub addr_file: Option<PathBuf>,
    /// Bundles and FIFOs go here.
    pub state_dir: PathBuf,
    pub images: Vec<ImageFlag>,
    /// The image the sandbox (pause) container runs.
    pub pause_image: String,
    pub shim_binary: PathBuf,
    pub shim_socket_dir: PathBuf,
    pub shim_runtime_dir: PathBuf,
    pub runc_root: PathBuf,
    /// Idle timeout of a streaming connection (upstream: 4 h).
    pub stream_idle_timeout: Duration,
    /// How long an exec/attach URL stays valid (upstream: 1 min).
    pub token_ttl: Duration,
    /// The `-namespace` given to shims (containerd's CRI namespace).
    pub shim_namespace: String,
    /// Shims serve metrics and write `shim-exec.<id>.metrics` here (`EXECLAB_SHIM_METRICS_DIR`).
    pub shim_metrics_dir: Option<PathBuf>,
    /// Given to shims as `EXECLAB_OTLP_ENDPOINT` (this hop's `--otlp-endpoint`).
    pub shim_otlp_endpoint: Option<String>,
    /// SIGKILL an exec's process when its client goes away (`--kill-exec-on-disconnect`).
    /// Off by default: containerd 1.6 lets the process run to its end.
    pub kill_exec_on_disconnect: bool,
    /// What one connection to the streaming server may take (head timeout, open connections).
    pub stream_limits: hop_kit::ConnectionLimits,
}

impl Config {
    /// A configuration with upstream defaults for everything but the paths.
    pub fn new(listen: PathBuf, state_dir: PathBuf, shim_binary: PathBuf) -> Self {
        let runc_root = state_dir.join("runc");
        Self {
            listen,
            stream_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            addr_file: None,
            shim_socket_dir: state_dir.clone(),
            shim_runtime_dir: state_dir.clone(),
            runc_root,
            state_dir,
            images: Vec::new(),
            pause_image: "busybox".to_string(),
            shim_binary,
            stream_idle_timeout: Duration::from_secs(4 * 3600),
            token_ttl: DEFAULT_TOKEN_TTL,
            shim_namespace: crate::shim::CRI_NAMESPACE.to_string(),
            shim_metrics_dir: None,
            shim_otlp_endpoint: None,
            kill_exec_on_disconnect: false,
            stream_limits: hop_kit::ConnectionLimits::STREAMING_SERVER,
        }
    }
}

/// Parses `unix:///path` (or a bare absolute path) into the socket path.
pub fn parse_unix_endpoint(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(format!(
            "invalid endpoint {endpoint:?} (expected unix:///absolute/path)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_endpoints() {
        assert_eq!(
            parse_unix_endpoint("unix:///run/cri.sock"),
            Ok(PathBuf::from("/run/cri.sock"))
        );
        assert_eq!(parse_unix_endpoint("/a.sock"), Ok(PathBuf::from("/a.sock")));
        assert!(parse_unix_endpoint("unix://rel.sock").is_err());
        assert!(parse_unix_endpoint("tcp://1.2.3.4:5").is_err());
    }
}
