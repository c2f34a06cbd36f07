//! `execlab status`: each hop of a lab, its pid, address, health (asked live) and metrics URL.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::containerd::{self, ContainerdPaths};
use crate::error::LabError;
use crate::hop::{metrics_addr_file, Hop};
use crate::layout::LabLayout;
use crate::pki::PkiPaths;
use crate::probe::{self, TlsClient};
use crate::procfs;
use crate::record::LabRecord;
use crate::sweep;

#[derive(Debug, Clone)]
pub struct HopStatus {
    pub hop: Hop,
    /// What runs at the hop's place: the hop's name, or containerd's in a `--runtime
    /// containerd` lab.
    pub name: &'static str,
    pub pids: Vec<u32>,
    pub address: String,
    /// `Ok(detail)` when healthy (the detail may be empty), `Err(why)` when not.
    pub health: Result<String, String>,
    /// `http://ADDR/metrics`, from `DIR/addr/<hop>.metrics`, when the hop serves metrics.
    pub metrics_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LabStatus {
    pub dir: PathBuf,
    pub supervisor_pid: u32,
    pub supervisor_alive: bool,
    /// The kubeconfig exists.
    pub ready: bool,
    pub hops: Vec<HopStatus>,
}

impl LabStatus {
    pub fn healthy(&self) -> bool {
        self.ready && self.hops.iter().all(|h| h.health.is_ok())
    }
}

/// The status of the lab in `layout`, or `None` when there is no lab record.
pub async fn lab_status(layout: &LabLayout) -> Result<Option<LabStatus>, LabError> {
    let Some(record) = LabRecord::read(&layout.lab_record())? else {
        return Ok(None);
    };
    let pki = PkiPaths::in_dir(&layout.pki_dir());
    let mut hops = Vec::new();
    for hop in Hop::CHAIN {
        hops.push(hop_status(layout, &record, &pki, hop).await);
    }
    Ok(Some(LabStatus {
        dir: layout.root().to_path_buf(),
        supervisor_pid: record.supervisor_pid,
        supervisor_alive: record.supervisor_alive(),
        ready: layout.kubeconfig().exists(),
        hops,
    }))
}

async fn hop_status(layout: &LabLayout, record: &LabRecord, pki: &PkiPaths, hop: Hop) -> HopStatus {
    let containerd_socket = ContainerdPaths::new(layout).socket;
    if record.hop(Hop::CriStreaming).is_none() && containerd_socket.exists() {
        if let Some(status) = containerd_status(layout, hop, &containerd_socket).await {
            return status;
        }
    }
    if hop == Hop::ShimExec {
        let pids = sweep::shim_pids(layout);
        let sockets = shim_sockets(layout);
        let answering: Vec<(String, bool)> = sockets
            .iter()
            .map(|s| (s.clone(), socket_answers(s)))
            .collect();
        let health = shim_health(&pids, &answering);
        let urls = shim_metrics_urls(layout);
        return HopStatus {
            hop,
            name: hop.name(),
            pids,
            address: sockets.join(" "),
            health,
            metrics_url: (!urls.is_empty()).then(|| urls.join(" ")),
        };
    }
    let Some(entry) = record.hop(hop) else {
        return HopStatus {
            hop,
            name: hop.name(),
            pids: Vec::new(),
            address: String::new(),
            health: Err("not started".into()),
            metrics_url: None,
        };
    };
    let address = entry.address.clone().unwrap_or_default();
    let mut shown = address.clone();
    if let Some(stream) = entry.stream_address {
        shown.push_str(&format!("  streaming http://{stream}"));
    }
    let health = if !procfs::is_alive(entry.pid) {
        Err("not running".to_owned())
    } else {
        probe_hop(layout, pki, hop, &address).await
    };
    HopStatus {
        hop,
        name: hop.name(),
        pids: vec![entry.pid],
        address: shown,
        health,
        metrics_url: metrics_url(layout, hop),
    }
}

/// In a `--runtime containerd` lab, containerd holds cri-streaming's place (health: CRI
/// Version on its socket) and its shims shim-exec's; `None` for the other hops.
async fn containerd_status(layout: &LabLayout, hop: Hop, socket: &Path) -> Option<HopStatus> {
    let processes = containerd::lab_processes(layout);
    let (name, pids): (&'static str, Vec<u32>) = match hop {
        Hop::CriStreaming => (
            "containerd",
            processes
                .iter()
                .filter(|p| p.program() == "containerd")
                .map(|p| p.pid)
                .collect(),
        ),
        Hop::ShimExec => ("containerd shims", containerd::shim_pids(layout)),
        _ => return None,
    };
    let health = match hop {
        _ if pids.is_empty() => Err("not running".to_owned()),
        Hop::CriStreaming => probe::cri_version(socket).await.map_err(|e| e.to_string()),
        _ => Ok(String::new()),
    };
    let address = match hop {
        Hop::CriStreaming => format!("unix://{}", socket.display()),
        _ => String::new(),
    };
    Some(HopStatus {
        hop,
        name,
        pids,
        address,
        health,
        metrics_url: None,
    })
}

/// The hop's metrics URL, from the address file it wrote once its metrics server listened.
pub fn metrics_url(layout: &LabLayout, hop: Hop) -> Option<String> {
    hop_kit::read_addr_file(&metrics_addr_file(layout, hop))
        .ok()
        .map(|addr| format!("http://{addr}/metrics"))
}

async fn probe_hop(
    layout: &LabLayout,
    pki: &PkiPaths,
    hop: Hop,
    address: &str,
) -> Result<String, String> {
    match hop {
        Hop::CriStreaming => probe::cri_version(&layout.cri_socket())
            .await
            .map(|version| format!("({version})"))
            .map_err(|e| e.to_string()),
        Hop::KubeletStream | Hop::ApiserverProxy => {
            let identity = (hop == Hop::ApiserverProxy).then_some(&pki.admin);
            let target = address.trim_start_matches("https://");
            let client = TlsClient::new(&pki.ca.cert, identity).map_err(|e| e.to_string())?;
            client
                .healthz(target)
                .await
                .map(|()| String::new())
                .map_err(|e| e.to_string())
        }
        Hop::ShimExec => Ok(String::new()),
    }
}

/// The metrics URLs of the running shims, from `DIR/addr/shim-exec.<id>.metrics` (each shim
/// removes its file when it exits).
pub fn shim_metrics_urls(layout: &LabLayout) -> Vec<String> {
    let mut urls: Vec<String> = layout
        .shim_metrics_files()
        .iter()
        .filter_map(|p| hop_kit::read_addr_file(p).ok())
        .map(|addr| format!("http://{addr}/metrics"))
        .collect();
    urls.sort();
    urls
}

/// Healthy when a shim runs and someone listens on every shim socket. A socket no one answers on
/// is a dead shim's: its process is gone (killed, say) and nothing cleaned up after it.
pub fn shim_health(pids: &[u32], sockets: &[(String, bool)]) -> Result<String, String> {
    let dead: Vec<&str> = sockets
        .iter()
        .filter(|(_, answers)| !answers)
        .map(|(socket, _)| socket.as_str())
        .collect();
    if !dead.is_empty() {
        return Err(format!(
            "dead shim: {} (connection refused)",
            dead.join(" ")
        ));
    }
    if pids.is_empty() {
        return Err("no shim running".to_owned());
    }
    Ok(String::new())
}

/// Whether a process listens on `unix://PATH`: only a refused connection (a socket file
/// without its listener) counts as nobody.
fn socket_answers(address: &str) -> bool {
    let path = address.trim_start_matches("unix://");
    !matches!(
        std::os::unix::net::UnixStream::connect(path),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The shims' ttrpc sockets in the lab's socket dir (everything there but the CRI socket).
fn shim_sockets(layout: &LabLayout) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(layout.run_dir()) else {
        return Vec::new();
    };
    let cri = layout.cri_socket();
    let mut sockets: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| *p != cri)
        .filter(|p| {
            use std::os::unix::fs::FileTypeExt;
            std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
        })
        .map(|p| format!("unix://{}", p.display()))
        .collect();
    sockets.sort();
    sockets
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.supervisor_alive, self.ready) {
            (true, true) => "ready",
            (true, false) => "starting",
            (false, _) => "supervisor gone",
        };
        writeln!(
            f,
            "lab {}: {state} (execlab pid {})",
            self.dir.display(),
            self.supervisor_pid
        )?;
        writeln!(f, "{:<16} {:<9} {:<7} ADDRESS", "HOP", "PID", "HEALTH")?;
        for hop in &self.hops {
            let pids = if hop.pids.is_empty() {
                "-".to_owned()
            } else {
                hop.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let (health, detail) = match &hop.health {
                Ok(detail) => ("ok", detail.clone()),
                Err(why) => ("FAIL", why.clone()),
            };
            let metrics = hop
                .metrics_url
                .as_ref()
                .map(|url| format!("  metrics {url}"))
                .unwrap_or_default();
            let line = format!(
                "{:<16} {:<9} {:<7} {}{metrics}  {}",
                hop.name, pids, health, hop.address, detail
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_no_one_answers_on_is_a_dead_shim() {
        let live = ("unix:///lab/run/a.sock".to_owned(), true);
        let dead = ("unix:///lab/run/b.sock".to_owned(), false);
        assert_eq!(
            shim_health(&[7], std::slice::from_ref(&live)),
            Ok(String::new())
        );
        // A dead shim beside a live one (the pod recreated, the old socket left) is no health.
        let both = shim_health(&[7], &[live.clone(), dead.clone()]).expect_err("dead");
        assert_eq!(
            both,
            "dead shim: unix:///lab/run/b.sock (connection refused)"
        );
        assert!(shim_health(&[], &[dead])
            .expect_err("dead")
            .starts_with("dead shim"));
        assert_eq!(shim_health(&[], &[]), Err("no shim running".to_owned()));
    }

    #[test]
    fn only_a_listener_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let address = format!("unix://{}", path.display());
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert!(socket_answers(&address));
        drop(listener);
        assert!(
            !socket_answers(&address),
            "the file stays, its listener is gone"
        );
    }
}
