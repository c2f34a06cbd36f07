//! Containers: an OCI bundle per container (shim-exec's `bundle` module) with the image's
//! rootfs read-only, a task in the pod's shim, stdio through FIFOs into the CRI log.
//!
//! Behaviour checked against containerd `internal/cri/server/{container_create.go,
//! container_start.go,container_stop.go,container_remove.go,container_status.go,
//! container_list.go}`: remove of a running container stops it first, remove of an unknown
//! container succeeds, stop sends SIGTERM then SIGKILL after the timeout, an exit sets reason
//! `Completed` (code 0) or `Error`, a failed start leaves the container exited with
//! `StartError`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cri_api::runtime::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerState, ContainerStatus, NamespaceMode,
    PodSandboxConfig, PodSandboxState,
};
use oci_bundle::{oci_config, write_bundle, ContainerSpec, DEFAULT_PATH_ENV};
use tokio::sync::{watch, Mutex as AsyncMutex};

use crate::container_io::{attach_channel, log_path, open_log, pump_output};
use crate::container_log::LogStream;
use crate::errdefs::ErrorClass;
use crate::fifo::FifoSet;
use crate::filters::{container_matches, Subject};
use crate::runtime::{lock_store, CriError, Runtime};
use crate::sandbox::{remove_dir, KILL_WAIT, SIGKILL};
use crate::shim::ProcessIo;
use crate::store::{container_name, generate_id, now_nanos, ContainerRecord};

const SIGTERM: u32 = 15;
/// How long a container's exit waits for the rest of its output.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How long a container whose shim died waits for the cleanup's exit (its `delete` runs are
/// bounded by 30 s each and run at once).
pub(crate) const DEAD_SHIM_CLEANUP: Duration = Duration::from_secs(40);

pub(crate) fn container_not_found(id: &str) -> CriError {
    CriError::new(
        ErrorClass::NotFound,
        format!("an error occurred when try to find container {id:?}: not found"),
    )
}

/// The reason CRI reports for an exit: containerd's `completeExitReason` / `errorExitReason`
/// (container_status.go; no OOM here).
pub(crate) fn exit_reason(code: i32) -> &'static str {
    if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Records a running container's exit (containerd's `handleContainerExit`: only the first
/// exit counts).
pub(crate) fn record_exit(c: &mut ContainerRecord, code: i32, finished_at: i64) {
    if c.state != ContainerState::ContainerRunning {
        return;
    }
    c.state = ContainerState::ContainerExited;
    c.finished_at = finished_at;
    c.exit_code = code;
    c.reason = exit_reason(code).into();
}

/// containerd's `criContainerStateToString`: the enum's proto name.
pub(crate) fn state_name(state: ContainerState) -> &'static str {
    state.as_str_name()
}

fn pod_pid_mode(config: &PodSandboxConfig) -> i32 {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map_or(NamespaceMode::Pod as i32, |n| n.pid)
}

impl Runtime {
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let metadata = config
            .metadata
            .clone()
            .ok_or_else(|| CriError::invalid("container config must include metadata"))?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self.images.resolve(&image_name).cloned().ok_or_else(|| {
            CriError::new(
                ErrorClass::NotFound,
                format!("failed to resolve image {image_name:?}: not found"),
            )
        })?;
        let mut args = config.command.clone();
        args.extend(config.args.iter().cloned());
        if args.is_empty() {
            return Err(CriError::invalid("no command specified"));
        }

        let id = generate_id();
        let (sandbox_id, pod, hostname, pause_pid, log_dir) = {
            let mut store = self.store();
            let sid = store.sandbox_id(sandbox_id).ok_or_else(|| {
                CriError::new(
                    ErrorClass::NotFound,
                    format!("failed to find sandbox id {sandbox_id:?}: not found"),
                )
            })?;
            let sb = &store.sandboxes[&sid];
            if sb.state != PodSandboxState::SandboxReady {
                return Err(CriError::unknown(format!(
                    "sandbox container {sid:?} is not running"
                )));
            }
            let pod_config = sandbox_config.as_ref().unwrap_or(&sb.config);
            let join_pid =
                (pod_pid_mode(pod_config) == NamespaceMode::Pod as i32).then_some(sb.pause_pid);
            let values = (
                sid.clone(),
                sb.metadata.clone(),
                sb.config.hostname.clone(),
                join_pid,
                sb.config.log_directory.clone(),
            );
            let name = container_name(&metadata, &sb.metadata);
            store.reserve_name(&name, &id).map_err(|r| {
                CriError::unknown(format!(
                    "failed to reserve container name {:?}: name {:?} is reserved for {:?}",
                    name, r.name, r.owner
                ))
            })?;
            values
        };
        let name = container_name(&metadata, &pod);

        let mut env: Vec<String> = config
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH_ENV.to_string());
        }
        let mut annotations: BTreeMap<String, String> = config
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in [
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.container-name", &metadata.name),
            ("io.kubernetes.cri.sandbox-id", &sandbox_id),
            ("io.kubernetes.cri.image-name", &image.reference),
        ] {
            annotations.insert(k.to_string(), v.to_string());
        }
        let spec = ContainerSpec {
            args,
            env,
            cwd: config.working_dir.clone(),
            rootfs: image.rootfs.clone(),
            terminal: config.tty,
            // The lab's image rootfs is shared by every container: never writable.
            readonly_rootfs: true,
            hostname: (!hostname.is_empty()).then_some(hostname),
            join_pid_ns: pause_pid.map(|pid| PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            annotations,
        };
        let bundle_dir = self.containers_dir().join(&id);
        let process = oci_config(&spec)
            .map(|c| c["process"].clone())
            .and_then(|p| write_bundle(&bundle_dir, &spec).map(|()| p));
        let process = match process {
            Ok(p) => p,
            Err(e) => {
                remove_dir(&bundle_dir);
                self.store().release_name(&name);
                return Err(CriError::unknown(format!(
                    "failed to generate container {id:?} spec: {e}"
                )));
            }
        };
        let record = ContainerRecord {
            id: id.clone(),
            name,
            sandbox_id,
            metadata,
            image: config.image.clone().unwrap_or_default(),
            image_ref: image.id.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            state: ContainerState::ContainerCreated,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path: config.log_path.clone(),
            full_log_path: log_path(&log_dir, &config.log_path),
            bundle_dir,
            process,
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            pid: 0,
            exited: None,
            output: None,
            stdin_writer: None,
            lifecycle: Arc::new(AsyncMutex::new(())),
        };
        self.store().containers.insert(id.clone(), record);
        tracing::info!(container = %id, "container created");
        Ok(id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let (id, shim, dead_shim_cleaned, bundle_dir, tty, stdin, log_file) = {
            let store = self.store();
            let id = store
                .container_id(id)
                .ok_or_else(|| container_not_found(id))?;
            let c = &store.containers[&id];
            if c.state != ContainerState::ContainerCreated {
                return Err(CriError::new(
                    ErrorClass::FailedPrecondition,
                    format!(
                        "container {id:?} is in {} state: failed precondition",
                        state_name(c.state)
                    ),
                ));
            }
            let sb = store.sandboxes.get(&c.sandbox_id);
            let shim = sb.and_then(|s| s.shim.clone()).ok_or_else(|| {
                CriError::unknown(format!(
                    "sandbox container {:?} is not running",
                    c.sandbox_id
                ))
            })?;
            let cleaned = sb.map(|s| s.dead_shim_cleaned.clone()).unwrap_or_default();
            (
                id.clone(),
                shim,
                cleaned,
                c.bundle_dir.clone(),
                c.tty,
                c.stdin,
                c.full_log_path.clone(),
            )
        };

        let started = async {
            let fifos = FifoSet::create(bundle_dir.join("io"), stdin, tty)
                .map_err(|e| CriError::io("failed to create container io", &e))?;
            let stdout = FifoSet::open_reader(&fifos.stdout)
                .map_err(|e| CriError::io("failed to open stdout fifo", &e))?;
            let stderr = match &fifos.stderr {
                Some(p) => Some(
                    FifoSet::open_reader(p)
                        .map_err(|e| CriError::io("failed to open stderr fifo", &e))?,
                ),
                None => None,
            };
            let stdin_writer = match &fifos.stdin {
                Some(p) => Some(
                    FifoSet::open_writer(p)
                        .map_err(|e| CriError::io("failed to open stdin fifo", &e))?,
                ),
                None => None,
            };
            let log = match &log_file {
                Some(path) => Some(open_log(path).await.map_err(|e| {
                    CriError::io(
                        format!("failed to create container log {}", path.display()),
                        &e,
                    )
                })?),
                None => None,
            };
            let io = ProcessIo {
                terminal: tty,
                stdin: FifoSet::path_arg(fifos.stdin.as_ref()),
                stdout: FifoSet::path_arg(Some(&fifos.stdout)),
                stderr: FifoSet::path_arg(fifos.stderr.as_ref()),
            };
            let pid = shim.create(&id, &bundle_dir, &io).await.map_err(|e| {
                CriError::shim(format!("failed to create containerd task {id:?}"), &e)
            })?;
            if let Err(e) = shim.start(&id, "", None).await {
                let _ = shim.delete(&id, "", None).await;
                return Err(CriError::shim(
                    format!("failed to start containerd task {id:?}"),
                    &e,
                ));
            }
            Ok((fifos, pid, stdout, stderr, stdin_writer, log))
        };
        let (fifos, pid, stdout, stderr, stdin_writer, log) = match started.await {
            Ok(v) => v,
            Err(e) => {
                if let Some(c) = self.store().containers.get_mut(&id) {
                    c.state = ContainerState::ContainerExited;
                    c.finished_at = now_nanos();
                    c.exit_code = 128;
                    c.reason = "StartError".into();
                    c.message = e.message.clone();
                }
                return Err(e);
            }
        };

        let attach = attach_channel();
        let stderr_log = match (&stderr, &log) {
            (Some(_), Some(f)) => f.try_clone().await.ok(),
            _ => None,
        };
        let stdout_pump = tokio::spawn(pump_output(stdout, LogStream::Stdout, log, attach.clone()));
        let stderr_pump = stderr.map(|r| {
            tokio::spawn(pump_output(
                r,
                LogStream::Stderr,
                stderr_log,
                attach.clone(),
            ))
        });
        let (exited_tx, exited_rx) = watch::channel(false);
        {
            let mut store = self.store();
            if let Some(c) = store.containers.get_mut(&id) {
                c.state = ContainerState::ContainerRunning;
                c.started_at = now_nanos();
                c.pid = pid;
                c.exited = Some(exited_rx);
                c.output = Some(attach);
                c.stdin_writer = stdin_writer.map(|w| Arc::new(AsyncMutex::new(Some(w))));
            }
        }

        let store = self.store_handle();
        let cid = id.clone();
        tokio::spawn(async move {
            let result = shim.wait(&cid, "", None).await;
            if matches!(&result, Err(e) if e.is_transport()) {
                // The shim died: the exit is the one its cleanup's `delete` reports (containerd
                // publishes TaskExit from cleanupAfterDeadShim), once the orphans are killed.
                let cleaned = dead_shim_cleaned.cancelled();
                if tokio::time::timeout(DEAD_SHIM_CLEANUP, cleaned)
                    .await
                    .is_err()
                {
                    tracing::warn!(container = %cid, "no cleanup after the shim's death");
                }
            }
            // Output first, so an attach session sees everything before the end; but a
            // background child (or a dead shim's orphan) may hold the FIFOs open for good.
            let drain = async {
                let _ = stdout_pump.await;
                if let Some(p) = stderr_pump {
                    let _ = p.await;
                }
            };
            if result.is_err() || tokio::time::timeout(OUTPUT_DRAIN, drain).await.is_err() {
                tracing::debug!(container = %cid, "container output still open after exit");
            }
            drop(fifos);
            {
                let mut store = lock_store(&store);
                if let Some(c) = store.containers.get_mut(&cid) {
                    c.output = None;
                    c.stdin_writer = None;
                    // A dead shim's cleanup may have recorded the exit already.
                    match &result {
                        Ok(code) => {
                            let code = i32::try_from(*code).unwrap_or(i32::MAX);
                            record_exit(c, code, now_nanos());
                        }
                        Err(e) if c.state == ContainerState::ContainerRunning => {
                            c.state = ContainerState::ContainerExited;
                            c.finished_at = now_nanos();
                            c.exit_code = 255;
                            c.reason = "Unknown".into();
                            c.message = e.to_string();
                        }
                        Err(_) => {}
                    }
                }
            }
            tracing::info!(container = %cid, ?result, "container exited");
            let _ = exited_tx.send(true);
        });
        tracing::info!(container = %id, pid, "container started");
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds (0 = SIGKILL at once).
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        let (id, lifecycle) = {
            let store = self.store();
            let id = store
                .container_id(id)
                .ok_or_else(|| container_not_found(id))?;
            (id.clone(), store.containers[&id].lifecycle.clone())
        };
        let _serialized = lifecycle.lock().await;
        let (shim, exited) = {
            let store = self.store();
            let Some(c) = store.containers.get(&id) else {
                return Ok(());
            };
            if c.state != ContainerState::ContainerRunning {
                return Ok(());
            }
            let shim = store
                .sandboxes
                .get(&c.sandbox_id)
                .and_then(|s| s.shim.clone());
            (shim, c.exited.clone())
        };
        let (Some(shim), Some(mut exited)) = (shim, exited) else {
            return Ok(());
        };
        if timeout > 0 {
            if let Err(e) = shim.kill(&id, "", SIGTERM, None).await {
                if !e.is_not_found() {
                    return Err(CriError::shim(
                        format!("failed to stop container {id:?}"),
                        &e,
                    ));
                }
            }
            let grace = Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
            if tokio::time::timeout(grace, exited.wait_for(|e| *e))
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        if let Err(e) = shim.kill(&id, "", SIGKILL, None).await {
            if !e.is_not_found() && !e.is_transport() {
                return Err(CriError::shim(
                    format!("failed to kill container {id:?}"),
                    &e,
                ));
            }
        }
        if tokio::time::timeout(KILL_WAIT, exited.wait_for(|e| *e))
            .await
            .is_err()
        {
            return Err(CriError::new(
                ErrorClass::DeadlineExceeded,
                format!("an error occurs during waiting for container {id:?} to be killed: wait container {id:?}: context deadline exceeded"),
            ));
        }
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let Some(id) = self.store().container_id(id) else {
            return Ok(());
        };
        self.stop_container(&id, 0).await?;
        let record = {
            let mut store = self.store();
            let record = store.containers.remove(&id);
            if let Some(r) = &record {
                store.release_name(&r.name);
            }
            record.map(|r| {
                let shim = store
                    .sandboxes
                    .get(&r.sandbox_id)
                    .and_then(|s| s.shim.clone());
                (r, shim)
            })
        };
        if let Some((record, shim)) = record {
            if let (Some(shim), true) = (shim, record.exited.is_some()) {
                if let Err(e) = shim.delete(&id, "", None).await {
                    if !e.is_not_found() && !e.is_transport() {
                        tracing::warn!(container = %id, error = %e, "deleting task");
                    }
                }
            }
            remove_dir(&record.bundle_dir);
        }
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerStatus, CriError> {
        let store = self.store();
        let id = store
            .container_id(id)
            .ok_or_else(|| container_not_found(id))?;
        let c = &store.containers[&id];
        Ok(ContainerStatus {
            id: c.id.clone(),
            metadata: Some(c.metadata.clone()),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: Some(c.image.clone()),
            image_ref: c.image_ref.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            log_path: c
                .full_log_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            image_id: c.image_ref.clone(),
            ..Default::default()
        })
    }

    pub fn list_containers(&self, filter: Option<&ContainerFilter>) -> Vec<Container> {
        let store = self.store();
        store
            .containers
            .values()
            .filter(|c| {
                container_matches(
                    filter,
                    &Subject {
                        id: &c.id,
                        state: c.state as i32,
                        sandbox_id: &c.sandbox_id,
                        labels: &c.labels,
                    },
                )
            })
            .map(|c| Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: Some(c.metadata.clone()),
                image: Some(c.image.clone()),
                image_ref: c.image_ref.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                image_id: c.image_ref.clone(),
            })
            .collect()
    }
}

/// Labels kubelet sets, for tests and callers that build containers by hand.
pub fn kubelet_labels(
    pod: &str,
    namespace: &str,
    uid: &str,
    container: &str,
) -> HashMap<String, String> {
    HashMap::from([
        ("io.kubernetes.pod.name".to_string(), pod.to_string()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            namespace.to_string(),
        ),
        ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
        (
            "io.kubernetes.container.name".to_string(),
            container.to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_follow_containerd() {
        assert_eq!(exit_reason(0), "Completed");
        assert_eq!(exit_reason(137), "Error");
        assert_eq!(exit_reason(1), "Error");
    }
}
