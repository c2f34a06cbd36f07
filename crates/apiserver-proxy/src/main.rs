//! `apiserver-proxy`: flags → [`apiserver_proxy::run`].
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use apiserver_proxy::kubelet::NodeAddress;
use apiserver_proxy::ProxyConfig;
use clap::Parser;

/// kube-apiserver's exec path: discovery, pods, authn/authz, SPDY passthrough and WebSocket v5
/// translation to kubelets.
#[derive(Debug, Parser)]
#[command(name = "apiserver-proxy", version)]
struct Flags {
    /// Address to listen on (port 0 = any free port).
    #[arg(long, env = "EXECLAB_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where to write the actual listening address once bound.
    #[arg(long, env = "EXECLAB_ADDR_FILE")]
    addr_file: Option<PathBuf>,
    /// Serving certificate (PEM).
    #[arg(long, env = "EXECLAB_TLS_CERT")]
    tls_cert: PathBuf,
    /// Serving key (PEM).
    #[arg(long, env = "EXECLAB_TLS_KEY")]
    tls_key: PathBuf,
    /// CA whose client certificates identify users (CN = user, O = groups).
    #[arg(long, env = "EXECLAB_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Static bearer tokens: CSV `token,user,uid,"group1,group2"`.
    #[arg(long, env = "EXECLAB_TOKEN_AUTH_FILE")]
    token_auth_file: Option<PathBuf>,
    /// Authorization policy (JSON list of rules; see the `authz` module docs).
    #[arg(long, env = "EXECLAB_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Client certificate presented to kubelets.
    #[arg(long, env = "EXECLAB_KUBELET_CLIENT_CERT")]
    kubelet_client_cert: PathBuf,
    /// Key of the kubelet client certificate.
    #[arg(long, env = "EXECLAB_KUBELET_CLIENT_KEY")]
    kubelet_client_key: PathBuf,
    /// CA that signs the kubelets' serving certificates.
    #[arg(long, env = "EXECLAB_KUBELET_CA")]
    kubelet_ca: PathBuf,
    /// A kubelet: NAME=HOST:PORT (repeatable).
    #[arg(long = "node", value_name = "NAME=HOST:PORT")]
    nodes: Vec<NodeAddress>,
    #[command(flatten)]
    limits: hop_kit::LimitArgs,
    #[command(flatten)]
    observe: hop_kit::observe::ObserveArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hop_kit::heap::retain_freed_memory();
    let flags = Flags::parse();
    flags.observe.start("apiserver-proxy").await?;
    let config = ProxyConfig {
        listen: flags.listen,
        addr_file: flags.addr_file,
        tls_cert: flags.tls_cert,
        tls_key: flags.tls_key,
        client_ca: flags.client_ca,
        token_auth_file: flags.token_auth_file,
        policy_file: flags.policy_file,
        kubelet_client_cert: flags.kubelet_client_cert,
        kubelet_client_key: flags.kubelet_client_key,
        kubelet_ca: flags.kubelet_ca,
        nodes: flags.nodes,
        limits: flags
            .limits
            .apply(hop_kit::ConnectionLimits::KUBE_APISERVER),
    };
    hop_kit::accept::on_worker(async move { apiserver_proxy::run(&config).await })
        .await
        .context("apiserver-proxy failed")
}
