//! `--runtime containerd`: Debian's containerd in place of cri-streaming + shim-exec. A private
//! instance with its own config, root, state and socket under the lab dir (never the system
//! service or /etc/containerd), the CRI plugin on, host-network sandboxes only, and the lab's
//! busybox image built as an OCI archive and imported with `ctr -n k8s.io images import`.
//!
//! Stopping removes every pod sandbox through CRI (so containerd stops the containers and its
//! shims remove their sockets and runc state under /run/containerd), then stops containerd; a
//! sweep after that kills shims still naming the lab's socket, force-deletes runc containers
//! whose bundle lies in the lab, and removes their shim sockets. Nothing else under
//! /run/containerd is touched.
//!
//! Facts checked against containerd 1.6 (`runtime/v2/shim/util_unix.go`: a shim's socket is
//! `/run/containerd/s/<sha256 of address/namespace/id>`; the runc shim's runc root is
//! `/run/containerd/runc/<namespace>`) and ../shared/docs/containerd-notes.md.

pub mod config;
pub mod image;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use crate::error::log_tail;
use crate::layout::LabLayout;
use crate::procfs;
use crate::supervise::{wait_gone, LAB_DIR_ENV};

pub use config::{ContainerdConfig, EXECLAB_HANDLER, EXECLAB_RUNTIME_TYPE};
pub use image::{ImageError, IMAGE_NAME};

/// The containerd namespace the CRI plugin works in.
pub const NAMESPACE: &str = "k8s.io";
/// Where containerd 1.6's shims put their sockets, whatever containerd's state dir is.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// The runc root of containerd's runc shim for [`NAMESPACE`].
pub const RUNC_ROOT: &str = "/run/containerd/runc/k8s.io";
/// The shim binary name containerd derives from [`EXECLAB_RUNTIME_TYPE`].
pub const EXECLAB_SHIM_BINARY: &str = "containerd-shim-execlab-v2";

const SHIM_PROGRAMS: &[&str] = &["containerd-shim-runc-v2", EXECLAB_SHIM_BINARY, "shim-exec"];
const GRACE: Duration = Duration::from_secs(5);
const CRI_CLEANUP_LIMIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("`{0}` not found on PATH; install Debian's containerd (scripts/setup.sh)")]
    NotInstalled(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the busybox image: {0}")]
    Image(#[from] ImageError),
    #[error("starting containerd: {0}")]
    Spawn(std::io::Error),
    #[error("containerd exited ({status}); its log {log}:\n{tail}", log = .log.display())]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("containerd's CRI was not ready after {:.1} s; last error: {last}; see {log}", .waited.as_secs_f64(), log = .log.display())]
    NotReady {
        waited: Duration,
        last: String,
        log: PathBuf,
    },
    #[error("ctr images import failed: {0}")]
    Import(String),
}

fn io_err(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> ContainerdError {
    let path = path.as_ref().to_path_buf();
    move |source| ContainerdError::Io { path, source }
}

/// Whether `containerd` and `ctr` are on PATH.
pub fn installed() -> bool {
    ["containerd", "ctr"].iter().all(|b| on_path(b).is_some())
}

fn on_path(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|p| p.is_file())
    })
}

/// Where the lab's containerd keeps everything: under DIR/state (removed by the lab's sweep,
/// which also unmounts what is mounted there) and its socket in DIR/run.
#[derive(Debug, Clone)]
pub struct ContainerdPaths {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub image_archive: PathBuf,
    /// A PATH entry holding `containerd-shim-execlab-v2`.
    pub shim_bin_dir: PathBuf,
    pub log: PathBuf,
}

impl ContainerdPaths {
    pub fn new(layout: &LabLayout) -> Self {
        let dir = layout.state_dir().join("containerd");
        Self {
            root: dir.join("root"),
            state: dir.join("state"),
            socket: layout.run_dir().join("containerd.sock"),
            config: dir.join("config.toml"),
            image_archive: dir.join("busybox-oci.tar"),
            shim_bin_dir: dir.join("bin"),
            log: layout.logs_dir().join("containerd.log"),
            dir,
        }
    }

    /// The CRI endpoint for kubelet-stream's `--runtime-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The shim socket containerd 1.6 gives container `id` of [`NAMESPACE`].
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let key = format!("{}/{NAMESPACE}/{id}", self.socket.display());
        Path::new(SHIM_SOCKET_DIR).join(hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    pub busybox: PathBuf,
    /// Extra environment (as the lab gives its hops).
    pub env: Vec<(String, String)>,
    /// shim-exec, to be installed as `containerd-shim-execlab-v2` and configured as the
    /// [`EXECLAB_HANDLER`] runtime handler.
    pub execlab_shim: Option<PathBuf>,
}

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    paths: ContainerdPaths,
    child: Child,
    version: String,
    stopped: bool,
}

impl Containerd {
    /// Writes the config and image, starts containerd, waits for its CRI and imports the image.
    pub async fn start(
        layout: &LabLayout,
        options: &ContainerdOptions,
        deadline: Instant,
    ) -> Result<Self, ContainerdError> {
        for binary in ["containerd", "ctr"] {
            if on_path(binary).is_none() {
                return Err(ContainerdError::NotInstalled(binary));
            }
        }
        let paths = ContainerdPaths::new(layout);
        // Whatever a crashed lab left goes first.
        sweep(layout);
        std::fs::create_dir_all(&paths.dir).map_err(io_err(&paths.dir))?;
        let config = ContainerdConfig {
            root: paths.root.clone(),
            state: paths.state.clone(),
            address: paths.socket.clone(),
            sandbox_image: IMAGE_NAME.into(),
            opt_dir: paths.dir.join("opt"),
            cni_dir: paths.dir.join("cni"),
            execlab_handler: options.execlab_shim.is_some(),
            execlab_default: options.execlab_shim.is_some(),
        };
        std::fs::write(&paths.config, config.to_toml()).map_err(io_err(&paths.config))?;
        let applets = image::applets(&options.busybox)?;
        let layer = image::busybox_layer(&options.busybox, &applets)?;
        let archive = image::oci_archive(&layer)?;
        std::fs::write(&paths.image_archive, archive).map_err(io_err(&paths.image_archive))?;
        let mut path_var = std::env::var_os("PATH").unwrap_or_default();
        if let Some(shim) = &options.execlab_shim {
            std::fs::create_dir_all(&paths.shim_bin_dir).map_err(io_err(&paths.shim_bin_dir))?;
            let link = paths.shim_bin_dir.join(EXECLAB_SHIM_BINARY);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(shim, &link).map_err(io_err(&link))?;
            let mut dirs = vec![paths.shim_bin_dir.clone()];
            dirs.extend(std::env::split_paths(&path_var));
            path_var = std::env::join_paths(dirs).unwrap_or(path_var);
        }

        let log = std::fs::File::create(&paths.log).map_err(io_err(&paths.log))?;
        let log_err = log.try_clone().map_err(io_err(&paths.log))?;
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(&paths.config)
            .arg("--root")
            .arg(&paths.root)
            .arg("--state")
            .arg(&paths.state)
            .arg("--address")
            .arg(&paths.socket)
            .current_dir(layout.root())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env("PATH", path_var)
            .env(LAB_DIR_ENV, layout.root())
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            // Its own process group: a Ctrl-C reaches execlab, which stops it in order.
            .process_group(0);
        let child = command.spawn().map_err(ContainerdError::Spawn)?;
        let mut containerd = Self {
            paths,
            child,
            version: String::new(),
            stopped: false,
        };
        containerd.version = containerd.wait_cri(deadline).await?;
        containerd.import_image()?;
        Ok(containerd)
    }

    async fn wait_cri(&mut self, deadline: Instant) -> Result<String, ContainerdError> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            let last = match crate::probe::cri_version(&self.paths.socket).await {
                Ok(version) => return Ok(version),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ContainerdError::NotReady {
                    waited: started.elapsed(),
                    last,
                    log: self.paths.log.clone(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn import_image(&self) -> Result<(), ContainerdError> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.paths.socket)
            .args(["-n", NAMESPACE, "images", "import"])
            .arg(&self.paths.image_archive)
            .output()
            .map_err(|e| ContainerdError::Import(e.to_string()))?;
        if !out.status.success() {
            return Err(ContainerdError::Import(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        tracing::info!(output = %String::from_utf8_lossy(&out.stdout).trim(), "image imported");
        Ok(())
    }

    pub fn paths(&self) -> &ContainerdPaths {
        &self.paths
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The CRI `Version` answer (`containerd v1.6.20~ds1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `Err(Exited)` once containerd has exited.
    pub fn check_running(&mut self) -> Result<(), ContainerdError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(ContainerdError::Exited {
                status: status.to_string(),
                log: self.paths.log.clone(),
                tail: log_tail(&self.paths.log, 20),
            });
        }
        Ok(())
    }

    /// Removes every pod sandbox through CRI, stops containerd (SIGTERM, then SIGKILL after a
    /// grace period) and sweeps what is left; returns the problems met.
    pub fn stop(&mut self) -> Vec<String> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        let mut problems = Vec::new();
        if matches!(self.child.try_wait(), Ok(None)) {
            let socket = self.paths.socket.clone();
            // Callers may be inside a tokio runtime: the CRI calls get a thread of their own.
            let removed = std::thread::spawn(move || remove_all_sandboxes(&socket))
                .join()
                .unwrap_or_else(|_| Err("the CRI clean-up thread panicked".into()));
            if let Err(e) = removed {
                problems.push(format!("removing pod sandboxes through CRI: {e}"));
            }
            let pid = Pid::from_raw(self.child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + GRACE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        let _ = self.child.wait();
        problems.extend(sweep_paths(&self.paths).problems);
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let problems = self.stop();
        if !problems.is_empty() {
            tracing::warn!(?problems, "containerd clean-up incomplete");
        }
    }
}

fn remove_all_sandboxes(socket: &Path) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        tokio::time::timeout(CRI_CLEANUP_LIMIT, remove_all_sandboxes_inner(socket))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CRI_CLEANUP_LIMIT:?}")))
    })
}

async fn remove_all_sandboxes_inner(socket: &Path) -> Result<usize, String> {
    use cri_api::runtime::v1 as cri;
    let mut client = cri_client(socket).await?;
    let sandboxes = client
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner()
        .items;
    for sandbox in &sandboxes {
        let id = sandbox.id.clone();
        client
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|s| format!("StopPodSandbox {id}: {}", s.message()))?;
        client
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|s| format!("RemovePodSandbox {id}: {}", s.message()))?;
    }
    Ok(sandboxes.len())
}

/// A CRI RuntimeService client on a unix socket.
pub async fn cri_client(
    socket: &Path,
) -> Result<
    cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    String,
> {
    let socket = socket.to_path_buf();
    // The URI is a placeholder: the connector dials the unix socket whatever it says.
    let channel = tonic::transport::Endpoint::from_static("http://containerd.sock")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .map_err(|e| e.to_string())?;
    Ok(cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient::new(channel))
}

/// What a containerd sweep found and did.
#[derive(Debug, Default, Clone)]
pub struct ContainerdSweep {
    pub killed: Vec<String>,
    pub runc_deleted: Vec<String>,
    pub removed: Vec<PathBuf>,
    pub problems: Vec<String>,
}

/// Removes what a containerd of the lab in `layout` left behind (a crashed lab): the
/// containerd process itself, its shims, runc containers whose bundle is in the lab, and their
/// shim sockets.
pub fn sweep(layout: &LabLayout) -> ContainerdSweep {
    sweep_paths(&ContainerdPaths::new(layout))
}

/// The lab's containerd and its shims: the processes that name the lab's containerd socket.
pub fn lab_processes(layout: &LabLayout) -> Vec<procfs::ProcessInfo> {
    lab_processes_of(&ContainerdPaths::new(layout))
}

/// The shims of the lab's containerd (its runc shim, or shim-exec under its v2 name).
pub fn shim_pids(layout: &LabLayout) -> Vec<u32> {
    lab_processes(layout)
        .into_iter()
        .filter(|p| p.program() != "containerd")
        .map(|p| p.pid)
        .collect()
}

fn lab_processes_of(paths: &ContainerdPaths) -> Vec<procfs::ProcessInfo> {
    let socket = paths.socket.display().to_string();
    let spared = procfs::self_and_ancestors();
    procfs::processes()
        .into_iter()
        .filter(|p| !spared.contains(&p.pid))
        .filter(|p| p.program() == "containerd" || SHIM_PROGRAMS.contains(&p.program()))
        .filter(|p| p.cmdline.contains(&socket))
        .collect()
}

fn sweep_paths(paths: &ContainerdPaths) -> ContainerdSweep {
    let mut report = ContainerdSweep::default();
    let ours = lab_processes_of(paths);
    for process in &ours {
        let _ = kill(Pid::from_raw(process.pid as i32), Signal::SIGKILL);
    }
    for process in &ours {
        if !wait_gone(process.pid, Duration::from_secs(2)) {
            report
                .problems
                .push(format!("process {} survived SIGKILL", process.pid));
        }
        report
            .killed
            .push(format!("{} {}", process.pid, process.cmdline.join(" ")));
    }
    let mut ids = lab_task_ids(paths);
    for (id, bundle) in runc_containers(Path::new(RUNC_ROOT)) {
        if bundle.starts_with(&paths.dir) {
            let out = Command::new("runc")
                .args(["--root", RUNC_ROOT, "delete", "--force", &id])
                .output();
            match out {
                Ok(out) if out.status.success() => report.runc_deleted.push(id.clone()),
                // Deleted meanwhile by a dead shim's `delete` that containerd had started.
                Ok(_)
                    if !runc_containers(Path::new(RUNC_ROOT))
                        .iter()
                        .any(|(c, _)| *c == id) =>
                {
                    report.runc_deleted.push(id.clone())
                }
                Ok(out) => report.problems.push(format!(
                    "runc delete --force {id}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => report.problems.push(format!("runc: {e}")),
            }
            ids.push(id);
        }
    }
    for id in ids {
        for path in [paths.shim_socket(&id), Path::new(RUNC_ROOT).join(&id)] {
            if std::fs::symlink_metadata(&path).is_ok() {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => report.removed.push(path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => report.problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
    }
    for path in [
        paths.socket.clone(),
        PathBuf::from(format!("{}.ttrpc", paths.socket.display())),
    ] {
        if std::fs::remove_file(&path).is_ok() {
            report.removed.push(path);
        }
    }
    remove_empty_run_dirs(&mut report);
    report
}

/// The directories containerd's shims make under /run/containerd, removed only while empty
/// and while no other containerd runs (which might be using them).
fn remove_empty_run_dirs(report: &mut ContainerdSweep) {
    let others = procfs::processes()
        .iter()
        .any(|p| p.program() == "containerd" || SHIM_PROGRAMS.contains(&p.program()));
    if others {
        return;
    }
    for dir in [
        RUNC_ROOT,
        "/run/containerd/runc",
        SHIM_SOCKET_DIR,
        "/run/containerd",
    ] {
        // rmdir refuses a non-empty directory: nothing but empty dirs can go.
        if std::fs::remove_dir(dir).is_ok() {
            report.removed.push(PathBuf::from(dir));
        }
    }
}

/// Task ids containerd knows in the lab's state dir.
fn lab_task_ids(paths: &ContainerdPaths) -> Vec<String> {
    let dir = paths
        .state
        .join("io.containerd.runtime.v2.task")
        .join(NAMESPACE);
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `(id, bundle)` of the containers in runc root `root`.
fn runc_containers(root: &Path) -> Vec<(String, PathBuf)> {
    if !root.is_dir() {
        return Vec::new();
    }
    let Ok(out) = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "--format", "json"])
        .output()
    else {
        return Vec::new();
    };
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_owned(),
                PathBuf::from(c["bundle"].as_str()?),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_but_shim_sockets_is_in_the_lab() {
        let layout = LabLayout::new(Path::new("/tmp/lab")).unwrap();
        let paths = ContainerdPaths::new(&layout);
        assert_eq!(paths.endpoint(), "unix:///tmp/lab/run/containerd.sock");
        for p in [
            &paths.root,
            &paths.state,
            &paths.config,
            &paths.image_archive,
        ] {
            assert!(
                p.starts_with("/tmp/lab/state/containerd"),
                "{}",
                p.display()
            );
        }
        // sha256("/tmp/lab/run/containerd.sock/k8s.io/abc")
        let socket = paths.shim_socket("abc");
        assert!(socket.starts_with(SHIM_SOCKET_DIR));
        let expected = hex::encode(Sha256::digest(b"/tmp/lab/run/containerd.sock/k8s.io/abc"));
        assert_eq!(socket.file_name().unwrap().to_string_lossy(), expected);
    }

    #[test]
    fn a_sweep_of_a_lab_without_containerd_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LabLayout::new(dir.path()).unwrap();
        let report = sweep(&layout);
        assert!(report.killed.is_empty() && report.runc_deleted.is_empty());
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
