//! The hops of the chain and the command line execlab starts each with (flags fixed in
//! docs/architecture.md, "Processes and flags").

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::LabLayout;
use crate::manifests::BUSYBOX_IMAGE;
use crate::pki::PkiPaths;

/// One process of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hop {
    ApiserverProxy,
    KubeletStream,
    CriStreaming,
    /// Started by cri-streaming (one per pod sandbox), not by execlab.
    ShimExec,
}

impl Hop {
    /// The chain from the client's side down to the container.
    pub const CHAIN: [Hop; 4] = [
        Hop::ApiserverProxy,
        Hop::KubeletStream,
        Hop::CriStreaming,
        Hop::ShimExec,
    ];
    /// The hops execlab starts itself, in start order (each needs the one before).
    pub const STARTED: [Hop; 3] = [Hop::CriStreaming, Hop::KubeletStream, Hop::ApiserverProxy];
    /// Stop order: from the client's side down, so no hop sees its backend vanish first.
    pub const STOP_ORDER: [Hop; 3] = [Hop::ApiserverProxy, Hop::KubeletStream, Hop::CriStreaming];

    /// The hop's name, which is also its binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Hop::ApiserverProxy => "apiserver-proxy",
            Hop::KubeletStream => "kubelet-stream",
            Hop::CriStreaming => "cri-streaming",
            Hop::ShimExec => "shim-exec",
        }
    }

    pub fn binary(self) -> &'static str {
        self.name()
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything the command lines depend on.
#[derive(Debug, Clone)]
pub struct HopArgs<'a> {
    pub layout: &'a LabLayout,
    pub pki: &'a PkiPaths,
    pub bin_dir: &'a Path,
    pub node_name: &'a str,
    pub redirect_container_streaming: bool,
    /// Users or groups the kubelet lets exec (`--allow-exec`).
    pub kubelet_allow_exec: &'a [String],
    /// The kubelet's client CA (normally the cluster CA; a fault lab points it elsewhere).
    pub kubelet_client_ca: &'a Path,
    /// Where kubelet-stream listens; needed by apiserver-proxy's `--node`.
    pub kubelet_addr: Option<SocketAddr>,
}

impl HopArgs<'_> {
    /// The arguments of `hop` (without the program).
    pub fn args(&self, hop: Hop) -> Vec<OsString> {
        let layout = self.layout;
        let mut args = Args::default();
        match hop {
            Hop::CriStreaming => {
                args.flag("--listen", layout.cri_endpoint());
                args.flag("--stream-addr", "127.0.0.1:0");
                args.flag("--state-dir", layout.state_dir());
                let image = format!("{BUSYBOX_IMAGE}={}", layout.rootfs().display());
                args.flag("--image", image);
                args.flag("--shim-binary", self.bin_dir.join(Hop::ShimExec.binary()));
                args.flag("--shim-socket-dir", layout.run_dir());
                args.flag("--shim-runtime-dir", layout.xdg_dir());
                args.flag("--runc-root", layout.runc_root());
                // Each shim serves metrics too: DIR/addr/shim-exec.<sandbox id>.metrics.
                args.flag("--shim-metrics-dir", layout.addr_dir());
            }
            Hop::KubeletStream => {
                args.flag("--listen", "127.0.0.1:0");
                args.flag("--tls-cert", &self.pki.kubelet.cert);
                args.flag("--tls-key", &self.pki.kubelet.key);
                args.flag("--client-ca", self.kubelet_client_ca);
                for who in self.kubelet_allow_exec {
                    args.flag("--allow-exec", who);
                }
                args.flag("--runtime-endpoint", layout.cri_endpoint());
                args.flag("--pod-manifests", layout.manifests_dir());
                args.flag("--node-name", self.node_name);
                if self.redirect_container_streaming {
                    args.push("--redirect-container-streaming");
                }
            }
            Hop::ApiserverProxy => {
                args.flag("--listen", "127.0.0.1:0");
                args.flag("--tls-cert", &self.pki.apiserver.cert);
                args.flag("--tls-key", &self.pki.apiserver.key);
                args.flag("--client-ca", &self.pki.ca.cert);
                args.flag("--token-auth-file", &self.pki.tokens_csv);
                args.flag("--policy-file", layout.policy_file());
                args.flag(
                    "--kubelet-client-cert",
                    &self.pki.apiserver_kubelet_client.cert,
                );
                args.flag(
                    "--kubelet-client-key",
                    &self.pki.apiserver_kubelet_client.key,
                );
                args.flag("--kubelet-ca", &self.pki.ca.cert);
                if let Some(addr) = self.kubelet_addr {
                    args.flag("--node", format!("{}={addr}", self.node_name));
                }
            }
            // cri-streaming starts the shims through the shim v2 binary contract.
            Hop::ShimExec => return Vec::new(),
        }
        args.flag("--addr-file", layout.addr_file(hop));
        // Prometheus metrics on an OS-chosen port, found through DIR/addr/<hop>.metrics.
        args.flag("--metrics-listen", "127.0.0.1:0");
        args.flag("--metrics-addr-file", metrics_addr_file(layout, hop));
        args.flag("--log-format", "json");
        args.0
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) {
        self.0.push(arg.into());
    }
    fn flag(&mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) {
        self.0.push(name.into());
        self.0.push(value.as_ref().to_owned());
    }
}

/// Where `hop` writes its metrics server's address: `DIR/addr/<hop>.metrics`.
pub fn metrics_addr_file(layout: &LabLayout, hop: Hop) -> PathBuf {
    let mut path = layout.addr_file(hop).into_os_string();
    path.push(".metrics");
    PathBuf::from(path)
}

/// The path of a hop's binary in `bin_dir`.
pub fn binary_path(bin_dir: &Path, hop: Hop) -> PathBuf {
    bin_dir.join(hop.binary())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(hop: Hop, redirect: bool) -> Vec<String> {
        let layout = LabLayout::new(Path::new("/tmp/lab")).unwrap();
        let pki = PkiPaths::in_dir(&layout.pki_dir());
        let allow = vec!["system:masters".to_owned()];
        let hop_args = HopArgs {
            layout: &layout,
            pki: &pki,
            bin_dir: Path::new("/bin/dir"),
            node_name: "node-1",
            redirect_container_streaming: redirect,
            kubelet_allow_exec: &allow,
            kubelet_client_ca: &pki.ca.cert,
            kubelet_addr: Some("127.0.0.1:4242".parse().unwrap()),
        };
        hop_args
            .args(hop)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    #[test]
    fn every_hop_listens_on_an_os_chosen_port_and_reports_it() {
        for hop in Hop::STARTED {
            let args = args_of(hop, false);
            let addr_file = format!("/tmp/lab/addr/{hop}");
            assert_eq!(value_of(&args, "--addr-file"), Some(addr_file.as_str()));
            assert_eq!(value_of(&args, "--log-format"), Some("json"));
            assert_eq!(value_of(&args, "--metrics-listen"), Some("127.0.0.1:0"));
            let metrics_file = format!("/tmp/lab/addr/{hop}.metrics");
            assert_eq!(
                value_of(&args, "--metrics-addr-file"),
                Some(metrics_file.as_str())
            );
        }
        let kubelet = args_of(Hop::KubeletStream, false);
        assert_eq!(value_of(&kubelet, "--listen"), Some("127.0.0.1:0"));
        let cri = args_of(Hop::CriStreaming, false);
        assert_eq!(
            value_of(&cri, "--listen"),
            Some("unix:///tmp/lab/run/cri.sock")
        );
        assert_eq!(value_of(&cri, "--stream-addr"), Some("127.0.0.1:0"));
        assert_eq!(value_of(&cri, "--image"), Some("busybox=/tmp/lab/rootfs"));
        assert_eq!(value_of(&cri, "--shim-binary"), Some("/bin/dir/shim-exec"));
    }

    #[test]
    fn apiserver_learns_the_kubelet_address() {
        let args = args_of(Hop::ApiserverProxy, false);
        assert_eq!(value_of(&args, "--node"), Some("node-1=127.0.0.1:4242"));
        assert_eq!(
            value_of(&args, "--kubelet-client-cert"),
            Some("/tmp/lab/pki/apiserver-kubelet-client.crt")
        );
    }

    #[test]
    fn redirect_mode_is_a_kubelet_flag() {
        let flag = "--redirect-container-streaming".to_owned();
        assert!(!args_of(Hop::KubeletStream, false).contains(&flag));
        assert!(args_of(Hop::KubeletStream, true).contains(&flag));
        assert_eq!(
            value_of(&args_of(Hop::KubeletStream, false), "--allow-exec"),
            Some("system:masters")
        );
    }
}
