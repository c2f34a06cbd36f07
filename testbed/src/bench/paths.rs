//! The measured paths, from the floor (raw `runc exec`) up to the whole chain, and how each is
//! reached in a running lab: the difference between neighbours is one hop's cost.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use url::Url;

use super::client::{CriDialer, Dialer, HttpDialer, HttpStyle, RuncDialer, ShimDialer, Transport};
use super::BenchError;
use crate::containerd::ContainerdPaths;
use crate::layout::LabLayout;
use crate::pki::PkiPaths;
use crate::record::LabRecord;
use crate::Hop;

/// One way from a client to the process in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PathName {
    /// `runc exec` run by the bench itself: the floor.
    Runc,
    /// shim-exec's task API (Exec + Start over ttrpc, FIFOs made by the bench).
    Shim,
    /// CRI `Exec` on cri-streaming, then its streaming server (SPDY).
    Cri,
    /// kubelet-stream `/exec` proxying to the streaming server (SPDY over mTLS).
    KubeletProxy,
    /// kubelet-stream `/exec` answering 302; the client follows to the streaming server.
    KubeletRedirect,
    /// apiserver-proxy with WebSocket v5 (translated to SPDY towards the kubelet).
    ApiserverWs,
    /// apiserver-proxy with SPDY passed through.
    ApiserverSpdy,
    /// CRI `Exec` on containerd, then its streaming server (SPDY, settles on v4): the
    /// counterpart of `cri`.
    ContainerdCri,
    /// apiserver-proxy (WebSocket v5) → kubelet-stream → containerd: the counterpart of
    /// `apiserver-ws`.
    ContainerdChain,
}

impl PathName {
    /// Floor first, whole chain last.
    pub const ALL: [PathName; 7] = [
        PathName::Runc,
        PathName::Shim,
        PathName::Cri,
        PathName::KubeletProxy,
        PathName::KubeletRedirect,
        PathName::ApiserverWs,
        PathName::ApiserverSpdy,
    ];

    /// The containerd paths, measured in a `--runtime containerd` lab when containerd is
    /// installed.
    pub const CONTAINERD: [PathName; 2] = [PathName::ContainerdCri, PathName::ContainerdChain];
    /// [`PathName::ALL`] then [`PathName::CONTAINERD`].
    pub const EVERY: [PathName; 9] = [
        PathName::Runc,
        PathName::Shim,
        PathName::Cri,
        PathName::KubeletProxy,
        PathName::KubeletRedirect,
        PathName::ApiserverWs,
        PathName::ApiserverSpdy,
        PathName::ContainerdCri,
        PathName::ContainerdChain,
    ];

    pub fn is_containerd(self) -> bool {
        PathName::CONTAINERD.contains(&self)
    }

    /// Our path this containerd path is compared with.
    pub fn ours(self) -> Option<PathName> {
        match self {
            PathName::ContainerdCri => Some(PathName::Cri),
            PathName::ContainerdChain => Some(PathName::ApiserverWs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PathName::Runc => "runc",
            PathName::Shim => "shim",
            PathName::Cri => "cri",
            PathName::KubeletProxy => "kubelet-proxy",
            PathName::KubeletRedirect => "kubelet-redirect",
            PathName::ApiserverWs => "apiserver-ws",
            PathName::ApiserverSpdy => "apiserver-spdy",
            PathName::ContainerdCri => "containerd-cri",
            PathName::ContainerdChain => "containerd-chain",
        }
    }

    /// The path one hop below this one: its difference is that hop's cost.
    pub fn below(self) -> Option<PathName> {
        match self {
            PathName::Runc => None,
            PathName::Shim => Some(PathName::Runc),
            PathName::Cri => Some(PathName::Shim),
            PathName::KubeletProxy | PathName::KubeletRedirect => Some(PathName::Cri),
            PathName::ApiserverWs | PathName::ApiserverSpdy => Some(PathName::KubeletProxy),
            // containerd's CRI hop (its shim included) over the same runc floor.
            PathName::ContainerdCri => Some(PathName::Runc),
            PathName::ContainerdChain => Some(PathName::ContainerdCri),
        }
    }

    /// The hop whose cost `self - below()` is.
    pub fn hop_added(self) -> &'static str {
        match self {
            PathName::Runc => "-",
            PathName::Shim => "shim-exec",
            PathName::Cri => "cri-streaming",
            PathName::KubeletProxy => "kubelet-stream (proxy)",
            PathName::KubeletRedirect => "kubelet-stream (302)",
            PathName::ApiserverWs => "apiserver-proxy (WS v5 → SPDY)",
            PathName::ApiserverSpdy => "apiserver-proxy (SPDY)",
            PathName::ContainerdCri => "containerd (CRI + runc shim)",
            PathName::ContainerdChain => "kubelet-stream + apiserver-proxy (WS) over containerd",
        }
    }

    /// Whether the path can carry a tty (the raw floors are measured without one).
    pub fn has_tty(self) -> bool {
        !matches!(self, PathName::Runc | PathName::Shim)
    }

    /// Whether this path needs a lab whose kubelet redirects.
    pub fn needs_redirect_lab(self) -> bool {
        self == PathName::KubeletRedirect
    }
}

impl fmt::Display for PathName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The containerd namespace cri-streaming starts its shims in (CRI's `k8s.io`).
const SHIM_NAMESPACE: &str = "k8s.io";

/// What the bench needs to know about a running lab, read from its directory (so `--dir` of a
/// lab started elsewhere works as well as one the bench started).
#[derive(Debug, Clone)]
pub struct LabTarget {
    pub layout: LabLayout,
    pub record: LabRecord,
    pub pki: PkiPaths,
    pub runc: String,
    pub namespace: String,
    pub pod: String,
    pub container_name: String,
    /// The app container's CRI id (also its runc id and its task id in the shim).
    pub container_id: String,
    pub sandbox_id: String,
    /// The container's OCI `process` (from its bundle's config.json).
    pub process: serde_json::Value,
    /// A `--runtime containerd` lab: it serves the containerd paths only.
    pub containerd: bool,
}

impl LabTarget {
    /// Reads the lab in `dir` and finds the pod's running app container through CRI.
    pub async fn open(dir: &Path, runc: &str) -> Result<Self, BenchError> {
        let layout = LabLayout::new(dir)?;
        let record = LabRecord::read(&layout.lab_record())?.ok_or_else(|| {
            BenchError::Lab(format!("no lab record in {}", layout.root().display()))
        })?;
        if !layout.kubeconfig().exists() {
            return Err(BenchError::Lab(format!(
                "the lab in {} is not ready (no kubeconfig)",
                layout.root().display()
            )));
        }
        let pki = PkiPaths::in_dir(&layout.pki_dir());
        let (namespace, pod, container_name) = ("default", "web", "app");
        let containerd = ContainerdPaths::new(&layout).socket.exists();
        let (socket, runc_root) = if containerd {
            (
                ContainerdPaths::new(&layout).socket,
                PathBuf::from(crate::containerd::RUNC_ROOT),
            )
        } else {
            (layout.cri_socket(), layout.runc_root())
        };
        let found = super::client::find_container(&socket, namespace, pod, container_name).await?;
        let bundle = runc_bundle(runc, &runc_root, &found.container_id)?;
        let config: serde_json::Value = read_json(&bundle.join("config.json"))?;
        let process = config
            .get("process")
            .cloned()
            .ok_or_else(|| BenchError::Lab(format!("{} has no process", bundle.display())))?;
        Ok(Self {
            layout,
            record,
            pki,
            runc: runc.to_string(),
            namespace: namespace.into(),
            pod: pod.into(),
            container_name: container_name.into(),
            container_id: found.container_id,
            sandbox_id: found.sandbox_id,
            process,
            containerd,
        })
    }

    pub fn redirects(&self) -> bool {
        self.record.redirect_container_streaming
    }

    /// Whether this lab can measure `path` (a kubelet path needs the matching kubelet mode).
    pub fn serves(&self, path: PathName) -> bool {
        if path.is_containerd() != self.containerd {
            return false;
        }
        match path {
            PathName::KubeletProxy => !self.redirects(),
            PathName::KubeletRedirect => self.redirects(),
            _ => true,
        }
    }

    fn hop_url(&self, hop: Hop) -> Result<Url, BenchError> {
        let address = self
            .record
            .hop(hop)
            .and_then(|h| h.address.clone())
            .ok_or_else(|| BenchError::Lab(format!("{hop} has no address in lab.json")))?;
        Url::parse(&address).map_err(|e| BenchError::Lab(format!("{hop} address {address}: {e}")))
    }

    fn tls(
        &self,
        identity: &crate::pki::CertFiles,
    ) -> Result<Arc<rustls::ClientConfig>, BenchError> {
        hop_kit::tls::client_config_from_files(
            &self.pki.ca.cert,
            Some((&identity.cert, &identity.key)),
        )
        .map_err(|e| BenchError::Lab(format!("client TLS config: {e}")))
    }

    /// The dialer for `path`, connected where it needs a connection.
    pub async fn dialer(&self, path: PathName, fifo_dir: &Path) -> Result<Dialer, BenchError> {
        Ok(match path {
            PathName::Runc => Dialer::Runc(RuncDialer {
                runc: self.runc.clone(),
                root: self.layout.runc_root(),
                container: self.container_id.clone(),
            }),
            PathName::Shim => Dialer::Shim(
                ShimDialer::connect(
                    &self.shim_socket(),
                    &self.container_id,
                    self.process.clone(),
                    fifo_dir.to_path_buf(),
                )
                .await?,
            ),
            PathName::Cri => Dialer::Cri(
                CriDialer::connect(&self.layout.cri_socket(), &self.container_id).await?,
            ),
            PathName::KubeletProxy | PathName::KubeletRedirect => {
                let mut url = self.hop_url(Hop::KubeletStream)?;
                url.set_path(&format!(
                    "/exec/{}/{}/{}",
                    self.namespace, self.pod, self.container_name
                ));
                Dialer::Http(HttpDialer {
                    url,
                    style: HttpStyle::Kubelet,
                    tls: Some(self.tls(&self.pki.apiserver_kubelet_client)?),
                    transport: Transport::Spdy,
                    follow_redirect: path == PathName::KubeletRedirect,
                })
            }
            PathName::ContainerdCri => Dialer::Cri(
                CriDialer::connect(
                    &ContainerdPaths::new(&self.layout).socket,
                    &self.container_id,
                )
                .await?,
            ),
            PathName::ApiserverWs | PathName::ApiserverSpdy | PathName::ContainerdChain => {
                let mut url = self.hop_url(Hop::ApiserverProxy)?;
                url.set_path(&format!(
                    "/api/v1/namespaces/{}/pods/{}/exec",
                    self.namespace, self.pod
                ));
                Dialer::Http(HttpDialer {
                    url,
                    style: HttpStyle::Apiserver {
                        container: self.container_name.clone(),
                    },
                    tls: Some(self.tls(&self.pki.admin)?),
                    transport: if path != PathName::ApiserverSpdy {
                        Transport::WebSocket
                    } else {
                        Transport::Spdy
                    },
                    follow_redirect: false,
                })
            }
        })
    }

    /// The pod's shim socket (shim-exec names it from namespace and sandbox id).
    pub fn shim_socket(&self) -> PathBuf {
        self.layout.run_dir().join(shim_exec::config::socket_name(
            SHIM_NAMESPACE,
            &self.sandbox_id,
        ))
    }

    /// Pids of each hop (the shim found through its socket dir).
    pub fn hop_pids(&self) -> Vec<(Hop, u32)> {
        let mut pids: Vec<(Hop, u32)> = self.record.hops.iter().map(|h| (h.hop, h.pid)).collect();
        pids.extend(
            crate::sweep::shim_pids(&self.layout)
                .into_iter()
                .map(|pid| (Hop::ShimExec, pid)),
        );
        pids.sort();
        pids
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, BenchError> {
    let text =
        std::fs::read(path).map_err(|e| BenchError::Lab(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| BenchError::Lab(format!("{}: {e}", path.display())))
}

/// The bundle directory of a runc container (`runc state`).
fn runc_bundle(runc: &str, root: &Path, id: &str) -> Result<PathBuf, BenchError> {
    let out = std::process::Command::new(runc)
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .map_err(|e| BenchError::Lab(format!("runc state: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Lab(format!(
            "runc state {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let state: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Lab(format!("runc state {id}: {e}")))?;
    state["bundle"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| BenchError::Lab(format!("runc state {id}: no bundle")))
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    #[test]
    fn the_path_flag_takes_the_names_bench_json_uses() {
        for path in PathName::EVERY {
            let flag = path.to_possible_value().expect("a value");
            assert_eq!(flag.get_name(), path.name());
            assert_eq!(PathName::from_str(path.name(), false), Ok(path));
        }
    }

    use super::*;

    #[test]
    fn containerd_paths_pair_with_ours_and_stand_on_the_runc_floor() {
        assert_eq!(PathName::ContainerdCri.ours(), Some(PathName::Cri));
        assert_eq!(
            PathName::ContainerdChain.ours(),
            Some(PathName::ApiserverWs)
        );
        assert_eq!(PathName::ContainerdCri.below(), Some(PathName::Runc));
        assert_eq!(
            PathName::ContainerdChain.below(),
            Some(PathName::ContainerdCri)
        );
        assert!(PathName::ALL.iter().all(|p| !p.is_containerd()));
        assert_eq!(&PathName::EVERY[..7], &PathName::ALL[..]);
        assert_eq!(&PathName::EVERY[7..], &PathName::CONTAINERD[..]);
        assert_eq!(PathName::ContainerdChain.name(), "containerd-chain");
    }
}
