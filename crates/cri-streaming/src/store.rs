//! In-memory records of pod sandboxes and containers (cri-streaming keeps no state on disk:
//! after a restart kubelet recreates its pods), plus id generation and name reservation.
//!
//! Mirrors containerd's CRI `sandboxStore` / `containerStore` and `nameIndex`: ids are 64 hex
//! characters (32 random bytes, `util.GenerateID`), a sandbox name is
//! `<name>_<namespace>_<uid>_<attempt>` and a container name
//! `<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>`, each reserved for one id.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cri_api::runtime::v1::{
    ContainerMetadata, ContainerState, ImageSpec, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxState,
};
use tokio::sync::{broadcast, watch, Mutex as AsyncMutex};
use tokio_util::sync::CancellationToken;

use crate::shim::Shim;

/// 64 random hex characters, like containerd's ids (sandbox, container, exec).
pub fn generate_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Nanoseconds since the epoch, as CRI timestamps are.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct SandboxRecord {
    pub id: String,
    pub name: String,
    pub metadata: PodSandboxMetadata,
    pub config: PodSandboxConfig,
    pub state: PodSandboxState,
    pub created_at: i64,
    pub runtime_handler: String,
    /// The shim's bundle and working directory (holds the pause container's `config.json`).
    pub bundle_dir: PathBuf,
    pub shim: Option<Shim>,
    pub pause_pid: u32,
    /// Becomes `true` once the pause container exited.
    pub pause_exited: watch::Receiver<bool>,
    /// Serializes stop/remove of this sandbox.
    pub lifecycle: Arc<AsyncMutex<()>>,
    /// Cancelled once a dead shim's tasks were deleted and their exits recorded (or the sandbox
    /// was stopped): a container whose Wait broke with the shim waits for it, so that its exit
    /// is the one `delete` reported, not the broken call.
    pub dead_shim_cleaned: CancellationToken,
}

/// Output of a running container, for attach sessions.
#[derive(Clone, Debug)]
pub struct OutputChunk {
    pub stderr: bool,
    pub bytes: bytes::Bytes,
}

pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub metadata: ContainerMetadata,
    pub image: ImageSpec,
    pub image_ref: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The container's `log_path` as kubelet gave it (relative to the pod's log directory).
    pub log_path: String,
    /// Where the log is written, if kubelet asked for one.
    pub full_log_path: Option<PathBuf>,
    pub bundle_dir: PathBuf,
    /// The `process` object of the container's `config.json` (exec processes inherit it).
    pub process: serde_json::Value,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub pid: u32,
    /// Becomes `true` once the container's task exited (`None` before it was started).
    pub exited: Option<watch::Receiver<bool>>,
    /// Live output for attach; `None` once the container's output ended.
    pub output: Option<broadcast::Sender<OutputChunk>>,
    /// Our writing end of the container's stdin FIFO, shared by attach sessions.
    pub stdin_writer: Option<Arc<AsyncMutex<Option<tokio::net::unix::pipe::Sender>>>>,
    pub lifecycle: Arc<AsyncMutex<()>>,
}

/// Every sandbox and container, and the names they reserve.
#[derive(Default)]
pub struct Store {
    pub sandboxes: BTreeMap<String, SandboxRecord>,
    pub containers: BTreeMap<String, ContainerRecord>,
    names: HashMap<String, String>,
}

/// A name already reserved for another id (containerd's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameReserved {
    pub name: String,
    pub owner: String,
}

impl Store {
    pub fn reserve_name(&mut self, name: &str, id: &str) -> Result<(), NameReserved> {
        match self.names.get(name) {
            Some(owner) if owner != id => Err(NameReserved {
                name: name.to_string(),
                owner: owner.clone(),
            }),
            _ => {
                self.names.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    pub fn release_name(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// The one sandbox whose id is `id` or starts with it (containerd accepts unique
    /// prefixes).
    pub fn sandbox_id(&self, id: &str) -> Option<String> {
        unique_prefix(self.sandboxes.keys(), id)
    }

    pub fn container_id(&self, id: &str) -> Option<String> {
        unique_prefix(self.containers.keys(), id)
    }
}

fn unique_prefix<'a>(ids: impl Iterator<Item = &'a String>, wanted: &str) -> Option<String> {
    if wanted.is_empty() {
        return None;
    }
    let mut found = None;
    for id in ids {
        if id == wanted {
            return Some(id.clone());
        }
        if id.starts_with(wanted) {
            if found.is_some() {
                return None;
            }
            found = Some(id.clone());
        }
    }
    found
}

pub fn sandbox_name(m: &PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

pub fn container_name(c: &ContainerMetadata, pod: &PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, pod.name, pod.namespace, pod.uid, c.attempt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex() {
        let id = generate_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, generate_id());
    }

    #[test]
    fn names_are_reserved_once() {
        let mut store = Store::default();
        store.reserve_name("web_default_u_0", "a").expect("first");
        store
            .reserve_name("web_default_u_0", "a")
            .expect("same owner");
        let err = store
            .reserve_name("web_default_u_0", "b")
            .expect_err("taken");
        assert_eq!(err.owner, "a");
        store.release_name("web_default_u_0");
        store
            .reserve_name("web_default_u_0", "b")
            .expect("released");
    }

    #[test]
    fn prefixes_resolve_only_when_unique() {
        let ids = ["abc1".to_string(), "abc2".to_string(), "def".to_string()];
        assert_eq!(unique_prefix(ids.iter(), "d"), Some("def".into()));
        assert_eq!(unique_prefix(ids.iter(), "abc"), None);
        assert_eq!(unique_prefix(ids.iter(), "abc2"), Some("abc2".into()));
        assert_eq!(unique_prefix(ids.iter(), ""), None);
    }

    #[test]
    fn names_follow_containerd() {
        let pod = PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        };
        let c = ContainerMetadata {
            name: "app".into(),
            attempt: 2,
        };
        assert_eq!(sandbox_name(&pod), "web_default_u1_0");
        assert_eq!(container_name(&c, &pod), "app_web_default_u1_2");
    }
}
