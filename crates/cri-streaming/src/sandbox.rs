//! Pod sandboxes: one shim per pod (started through the shim binary contract) running the
//! pause container as the sandbox task; stop kills every task of the pod and shuts its shim
//! down, remove deletes what is left on disk. A shim that dies is cleaned up after as
//! containerd does ([`cleanup_after_dead_shim`]).
//!
//! Behaviour checked against containerd `internal/cri/server/{sandbox_run.go,sandbox_stop.go,
//! sandbox_remove.go,sandbox_status.go,sandbox_list.go}`: stop is idempotent and kills the pod's
//! containers first, remove stops first and removes the pod's containers, removing an unknown
//! sandbox succeeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_api::runtime::v1::{
    ContainerState, LinuxPodSandboxStatus, Namespace, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
};
use oci_bundle::{write_bundle, ContainerSpec};
use tokio::sync::{watch, Mutex as AsyncMutex};
use tokio_util::sync::CancellationToken;

use crate::container::DEAD_SHIM_CLEANUP;
use crate::errdefs::ErrorClass;
use crate::filters::{sandbox_matches, Subject};
use crate::runtime::{lock_store, CriError, Runtime};
use crate::shim::{DeletedTask, ProcessIo, Shim, ShimLauncher, ShimWatch};
use crate::store::{generate_id, now_nanos, sandbox_name, SandboxRecord, Store};

/// What the pause container runs: busybox `sleep` for ~68 years (no pause binary in the lab).
const PAUSE_ARGS: [&str; 2] = ["sleep", "2147483647"];
/// How long to wait for a killed task to exit.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(10);
pub(crate) const SIGKILL: u32 = 9;

fn not_found(id: &str) -> CriError {
    CriError::new(
        ErrorClass::NotFound,
        format!("an error occurred when try to find sandbox {id:?}: not found"),
    )
}

impl Runtime {
    pub async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, CriError> {
        let metadata = config
            .metadata
            .clone()
            .ok_or_else(|| CriError::invalid("sandbox config must include metadata"))?;
        let image = self
            .images
            .resolve(&self.config.pause_image)
            .cloned()
            .ok_or_else(|| {
                CriError::new(
                    ErrorClass::NotFound,
                    format!(
                        "failed to get sandbox image {:?}: not found",
                        self.config.pause_image
                    ),
                )
            })?;
        let id = generate_id();
        let name = sandbox_name(&metadata);
        self.store().reserve_name(&name, &id).map_err(|r| {
            CriError::unknown(format!(
                "failed to reserve sandbox name {:?}: name {:?} is reserved for {:?}",
                name, r.name, r.owner
            ))
        })?;

        let mut annotations: BTreeMap<String, String> = config
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in [
            ("io.kubernetes.cri.container-type", "sandbox"),
            ("io.kubernetes.cri.sandbox-id", &id),
            ("io.kubernetes.cri.sandbox-name", &metadata.name),
            ("io.kubernetes.cri.sandbox-namespace", &metadata.namespace),
            ("io.kubernetes.cri.sandbox-uid", &metadata.uid),
        ] {
            annotations.insert(k.to_string(), v.to_string());
        }
        let spec = ContainerSpec {
            args: PAUSE_ARGS.iter().map(|s| s.to_string()).collect(),
            rootfs: image.rootfs.clone(),
            readonly_rootfs: true,
            hostname: (!config.hostname.is_empty()).then(|| config.hostname.clone()),
            annotations,
            ..Default::default()
        };
        let bundle_dir = self.sandboxes_dir().join(&id);
        let (shim, pid) = match self.start_pause(&id, &bundle_dir, &spec).await {
            Ok(v) => v,
            Err(err) => {
                self.shims.delete(&id, &bundle_dir).await.ok();
                remove_dir(&bundle_dir);
                self.store().release_name(&name);
                return Err(err);
            }
        };

        let shim_watch = ShimWatch::connect(shim.address()).await;
        let (exited_tx, exited_rx) = watch::channel(false);
        let record = SandboxRecord {
            id: id.clone(),
            name,
            metadata,
            config,
            state: PodSandboxState::SandboxReady,
            created_at: now_nanos(),
            runtime_handler,
            bundle_dir,
            shim: Some(shim.clone()),
            pause_pid: pid,
            pause_exited: exited_rx,
            lifecycle: Arc::new(AsyncMutex::new(())),
            dead_shim_cleaned: CancellationToken::new(),
        };
        self.store().sandboxes.insert(id.clone(), record);
        self.watch_shim(&id, shim_watch);

        // The pod is NotReady once its pause container is gone (or its shim died).
        let store = self.store_handle();
        let sandbox_id = id.clone();
        tokio::spawn(async move {
            let result = shim.wait(&sandbox_id, "", None).await;
            tracing::info!(sandbox = %sandbox_id, ?result, "pause container exited");
            if let Some(sb) = lock_store(&store).sandboxes.get_mut(&sandbox_id) {
                sb.state = PodSandboxState::SandboxNotready;
            }
            let _ = exited_tx.send(true);
        });
        tracing::info!(sandbox = %id, pid, "pod sandbox running");
        Ok(id)
    }

    /// Cleans up after the pod's shim once its connection closes: containerd's ttrpc onClose
    /// callback (runtime/v2 `startShim`), event-driven, without polling the process.
    fn watch_shim(&self, id: &str, watch: std::io::Result<ShimWatch>) {
        let (store, shims, id) = (self.store_handle(), self.shims.clone(), id.to_string());
        tokio::spawn(async move {
            match watch {
                Ok(watch) => {
                    let pid = watch.pid();
                    watch.closed().await;
                    tracing::debug!(sandbox = %id, ?pid, "shim connection closed");
                }
                // Nobody listens any more: the shim died before it could be watched.
                Err(e) if is_gone(&e) => {
                    tracing::debug!(sandbox = %id, error = %e, "shim gone before it was watched");
                }
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %e, "cannot watch the shim; its death will go uncleaned");
                    return;
                }
            }
            cleanup_after_dead_shim(&store, &shims, &id).await;
        });
    }

    /// Writes the pause bundle, starts the pod's shim and the pause task in it.
    async fn start_pause(
        &self,
        id: &str,
        bundle_dir: &Path,
        spec: &ContainerSpec,
    ) -> Result<(Shim, u32), CriError> {
        write_bundle(bundle_dir, spec)
            .map_err(|e| CriError::unknown(format!("failed to create sandbox bundle: {e}")))?;
        let shim = self
            .shims
            .start(id, bundle_dir)
            .await
            .map_err(|e| CriError::shim("failed to start sandbox shim", &e))?;
        let started = async {
            let pid = shim
                .create(id, bundle_dir, &ProcessIo::default())
                .await
                .map_err(|e| {
                    CriError::shim(format!("failed to create containerd task {id:?}"), &e)
                })?;
            shim.start(id, "", None).await.map_err(|e| {
                CriError::shim(format!("failed to start sandbox container task {id:?}"), &e)
            })?;
            Ok(pid)
        };
        match started.await {
            Ok(pid) => Ok((shim, pid)),
            Err(e) => {
                teardown_shim(&shim, &[id.to_string()]).await;
                Err(e)
            }
        }
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let (id, lifecycle) = {
            let store = self.store();
            let id = store.sandbox_id(id).ok_or_else(|| not_found(id))?;
            let lifecycle = store.sandboxes[&id].lifecycle.clone();
            (id, lifecycle)
        };
        let _serialized = lifecycle.lock().await;

        let containers: Vec<(String, PathBuf)> = self
            .store()
            .containers
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| (c.id.clone(), c.bundle_dir.clone()))
            .collect();
        for (cid, _) in &containers {
            self.stop_container(cid, 0).await?;
        }

        let (shim, bundle_dir, mut pause_exited, cleaned) = {
            let mut store = self.store();
            let Some(sb) = store.sandboxes.get_mut(&id) else {
                return Ok(());
            };
            (
                sb.shim.take(),
                sb.bundle_dir.clone(),
                sb.pause_exited.clone(),
                sb.dead_shim_cleaned.clone(),
            )
        };
        if shim.is_none() {
            // A dead shim's cleanup took the shim: the pod is stopped once its deletes are done
            // (already so after an earlier stop).
            let _ = tokio::time::timeout(DEAD_SHIM_CLEANUP, cleaned.cancelled()).await;
        }
        if let Some(shim) = shim {
            if let Err(e) = shim.kill(&id, "", SIGKILL, None).await {
                if !e.is_not_found() && !e.is_transport() {
                    tracing::warn!(sandbox = %id, error = %e, "killing the pause container");
                }
            }
            let _ = tokio::time::timeout(KILL_WAIT, pause_exited.wait_for(|e| *e)).await;
            let mut tasks: Vec<String> = containers.iter().map(|(c, _)| c.clone()).collect();
            tasks.push(id.clone());
            let alive = teardown_shim(&shim, &tasks).await;
            if !alive {
                // The shim died: its containers are nobody's children any more. The binary's
                // `delete` cleans one task up per call (containerd's cleanupAfterDeadShim).
                delete_dead_tasks(&self.store_handle(), &self.shims, &containers).await;
            }
            if let Err(e) = self.shims.delete(&id, &bundle_dir).await {
                tracing::debug!(sandbox = %id, error = %e, "shim delete");
            }
        }
        let mut store = self.store();
        if let Some(sb) = store.sandboxes.get_mut(&id) {
            sb.state = PodSandboxState::SandboxNotready;
            // No cleanup after a dead shim comes any more (the stop took the shim); whoever
            // waits for one stops waiting.
            sb.dead_shim_cleaned.cancel();
        }
        tracing::info!(sandbox = %id, "pod sandbox stopped");
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let Some(id) = self.store().sandbox_id(id) else {
            return Ok(());
        };
        self.stop_pod_sandbox(&id).await?;
        let containers: Vec<String> = self
            .store()
            .containers
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for cid in containers {
            self.remove_container(&cid).await?;
        }
        let record = {
            let mut store = self.store();
            let record = store.sandboxes.remove(&id);
            if let Some(r) = &record {
                store.release_name(&r.name);
            }
            record
        };
        if let Some(r) = record {
            remove_dir(&r.bundle_dir);
        }
        tracing::info!(sandbox = %id, "pod sandbox removed");
        Ok(())
    }

    pub fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, CriError> {
        let store = self.store();
        let id = store.sandbox_id(id).ok_or_else(|| not_found(id))?;
        let sb = &store.sandboxes[&id];
        let options = sb
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        Ok(PodSandboxStatus {
            id: sb.id.clone(),
            metadata: Some(sb.metadata.clone()),
            state: sb.state as i32,
            created_at: sb.created_at,
            network: Some(PodSandboxNetworkStatus::default()),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(options),
                }),
            }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            runtime_handler: sb.runtime_handler.clone(),
        })
    }

    pub fn list_pod_sandbox(&self, filter: Option<&PodSandboxFilter>) -> Vec<PodSandbox> {
        let store = self.store();
        store
            .sandboxes
            .values()
            .filter(|sb| {
                sandbox_matches(
                    filter,
                    &Subject {
                        id: &sb.id,
                        state: sb.state as i32,
                        sandbox_id: &sb.id,
                        labels: &sb.config.labels,
                    },
                )
            })
            .map(|sb| PodSandbox {
                id: sb.id.clone(),
                metadata: Some(sb.metadata.clone()),
                state: sb.state as i32,
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                runtime_handler: sb.runtime_handler.clone(),
            })
            .collect()
    }

    /// Graceful shutdown: stop and remove every sandbox (and so every container, shim, FIFO
    /// and bundle), then the state directories.
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.store().sandboxes.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.remove_pod_sandbox(&id).await {
                tracing::warn!(sandbox = %id, error = %e, "removing sandbox at shutdown");
            }
        }
        self.remove_dirs();
    }
}

/// containerd's `cleanupAfterDeadShim` (runtime/v2/manager.go, run from each task's ttrpc
/// onClose) for every task of a pod whose shim died: the shim binary's `delete` (`runc delete
/// --force`, which kills the orphaned processes; shim-exec's also removes the socket and
/// metrics file), then the exit it reports becomes the container's, as the CRI plugin's
/// TaskExit handler records it; the sandbox reads NotReady, so the kubelet recreates the pod.
/// Nothing to do when a stop took the shim first: it tore the shim down on purpose.
pub(crate) async fn cleanup_after_dead_shim(
    store: &Arc<Mutex<Store>>,
    shims: &ShimLauncher,
    sandbox_id: &str,
) {
    let (tasks, cleaned) = {
        let mut store = lock_store(store);
        let Some(sb) = store.sandboxes.get_mut(sandbox_id) else {
            return;
        };
        if sb.shim.take().is_none() {
            return;
        }
        sb.state = PodSandboxState::SandboxNotready;
        let cleaned = sb.dead_shim_cleaned.clone();
        let pause = (sandbox_id.to_string(), sb.bundle_dir.clone());
        // Every container that got a task (a never-started one has none to delete).
        let mut tasks: Vec<(String, PathBuf)> = store
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .filter(|c| c.state != ContainerState::ContainerCreated)
            .map(|c| (c.id.clone(), c.bundle_dir.clone()))
            .collect();
        tasks.push(pause);
        (tasks, cleaned)
    };
    tracing::warn!(sandbox = %sandbox_id, tasks = tasks.len(), "cleaning up after shim disconnected");
    delete_dead_tasks(store, shims, &tasks).await;
    cleaned.cancel();
}

/// The binary's `delete` for each of `tasks` (id, bundle), all at once as containerd's
/// per-task callbacks run; a running container takes the exit it reports (255 and now when
/// `delete` failed, as containerd then publishes).
async fn delete_dead_tasks(
    store: &Arc<Mutex<Store>>,
    shims: &ShimLauncher,
    tasks: &[(String, PathBuf)],
) {
    let deletes = tasks.iter().map(|(id, bundle)| async move {
        let exit = shims.delete(id, bundle).await.unwrap_or_else(|e| {
            tracing::warn!(task = %id, error = %e, "failed to delete a dead shim's task");
            DeletedTask::unknown_now()
        });
        (id, exit)
    });
    let exits = futures_util::future::join_all(deletes).await;
    let mut store = lock_store(store);
    for (id, exit) in exits {
        tracing::info!(task = %id, exit_status = exit.exit_status, "dead shim's task deleted");
        if let Some(c) = store.containers.get_mut(id) {
            let code = i32::try_from(exit.exit_status).unwrap_or(i32::MAX);
            crate::container::record_exit(c, code, exit.exited_at);
        }
    }
}

/// Whether a connect error means nobody listens on the socket any more.
fn is_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    )
}

/// Kills, awaits and deletes `tasks` in `shim`, then asks the shim to exit. Returns whether
/// the shim was still there to answer.
pub(crate) async fn teardown_shim(shim: &Shim, tasks: &[String]) -> bool {
    let mut alive = true;
    for id in tasks {
        match shim.kill(id, "", SIGKILL, None).await {
            Ok(()) => {
                let _ = tokio::time::timeout(KILL_WAIT, shim.wait(id, "", None)).await;
            }
            Err(e) if e.is_transport() => alive = false,
            Err(_) => {}
        }
        if let Err(e) = shim.delete(id, "", None).await {
            if e.is_transport() {
                alive = false;
            } else if !e.is_not_found() {
                tracing::debug!(task = %id, error = %e, "deleting task");
            }
        }
    }
    if alive {
        if let Err(e) = shim.shutdown(true).await {
            tracing::debug!(shim = %shim.id(), error = %e, "shim shutdown");
        }
    }
    alive
}

pub(crate) fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "removing directory");
        }
    }
}
