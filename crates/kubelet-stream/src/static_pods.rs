//! Keeps the static pods running through CRI: for each manifest, a READY sandbox (found by its
//! `io.kubernetes.pod.uid` label, so a restarted kubelet adopts what is already running) and one
//! running instance of each container. Runs until shutdown; while the runtime is unreachable it
//! retries with a bounded backoff, so the kubelet starts before the runtime and recovers after a
//! runtime restart. Pods are never stopped here: a kubelet restart leaves containers running.
//!
//! Checked against kubernetes `pkg/kubelet/kuberuntime/kuberuntime_sandbox.go`
//! (generatePodSandboxConfig: metadata name/namespace/uid/attempt, hostname, labels and
//! annotations), `kuberuntime_container.go` (generateContainerConfig: command, args, env,
//! working dir, stdin/stdinOnce/tty, the `io.kubernetes.*` labels) and
//! `kuberuntime_manager.go` (a dead container is recreated with attempt+1, restarts backed off
//! 10 s doubling to 5 min; restartPolicy Never leaves it dead).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri_api::runtime::v1 as cri;
use tokio_util::sync::CancellationToken;

use crate::manifest::{load_dir, ContainerSpec, StaticPod};
use crate::pod_store::{ContainerObservation, ContainerPhase, PodObservation, PodStore};
use crate::runtime::{
    RuntimeClient, RuntimeError, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
};

const CRASH_BACKOFF_START: Duration = Duration::from_secs(10);
const CRASH_BACKOFF_MAX: Duration = Duration::from_secs(300);
const RUNTIME_BACKOFF_START: Duration = Duration::from_millis(250);
const RUNTIME_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the static pods come from and how often to look again.
#[derive(Debug, Clone)]
pub struct StaticPodSource {
    pub dir: Option<PathBuf>,
    pub node_name: String,
    pub resync: Duration,
}

impl StaticPodSource {
    /// Reads the manifests; logs unusable files once per change.
    pub fn load(&self, last_errors: &mut Vec<String>) -> Vec<StaticPod> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let (pods, errors) = load_dir(dir, &self.node_name);
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        if texts != *last_errors {
            for text in &texts {
                tracing::warn!(error = %text, "skipping static pod manifest");
            }
            *last_errors = texts;
        }
        pods
    }
}

/// Restart backoff of one container.
#[derive(Debug, Clone, Copy)]
struct CrashBackoff {
    next_allowed: Instant,
    delay: Duration,
}

/// Drives the runtime towards the manifests.
#[derive(Debug)]
pub struct Reconciler {
    runtime: RuntimeClient,
    store: PodStore,
    source: StaticPodSource,
    backoff: HashMap<(String, String), CrashBackoff>,
    manifest_errors: Vec<String>,
}

impl Reconciler {
    pub fn new(runtime: RuntimeClient, store: PodStore, source: StaticPodSource) -> Self {
        Self {
            runtime,
            store,
            source,
            backoff: HashMap::new(),
            manifest_errors: Vec::new(),
        }
    }

    /// Loads the manifests into the store (done before serving, so `/exec` knows the pods even
    /// while the runtime is down).
    pub fn load_manifests(&mut self) {
        let pods = self.source.load(&mut self.manifest_errors);
        self.store.set_pods(pods);
    }

    /// Reconciles until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            self.load_manifests();
            let pass = tokio::select! {
                _ = shutdown.cancelled() => return,
                pass = self.reconcile_all() => pass,
            };
            let delay = match pass {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!("container runtime reachable again");
                    }
                    failures = 0;
                    self.source.resync
                }
                Err(err) => {
                    if failures == 0 {
                        tracing::warn!(error = %err, socket = %self.runtime.socket().display(), "container runtime unreachable; retrying");
                    } else {
                        tracing::debug!(error = %err, "container runtime still unreachable");
                    }
                    failures = failures.saturating_add(1);
                    runtime_backoff(failures)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One pass over every pod. Stops at the first runtime error (the runtime is likely down).
    pub async fn reconcile_all(&mut self) -> Result<(), RuntimeError> {
        for pod in self.store.pods() {
            let observed = self.reconcile_pod(&pod).await?;
            self.store.observe(pod.uid(), observed);
        }
        Ok(())
    }

    async fn reconcile_pod(&mut self, pod: &StaticPod) -> Result<PodObservation, RuntimeError> {
        let sandboxes = self
            .runtime
            .list_sandboxes(HashMap::from([(
                LABEL_POD_UID.to_owned(),
                pod.uid().to_owned(),
            )]))
            .await?;
        let sandbox_config = sandbox_config(pod, sandboxes.len());
        let ready = sandboxes
            .iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at);
        let sandbox_id = match ready {
            Some(sandbox) => sandbox.id.clone(),
            None => {
                let id = self.runtime.run_pod_sandbox(sandbox_config.clone()).await?;
                tracing::info!(pod = %pod.name(), namespace = %pod.namespace(), sandbox = %id, "started pod sandbox");
                id
            }
        };
        // All of the pod's containers, in every sandbox it had: kubelet counts restarts (and
        // so attempts) per pod, and the runtime keeps an old sandbox's container names reserved
        // until they are removed (kuberuntime_manager.go computePodActions/startContainer).
        let containers = self
            .runtime
            .list_containers(
                cri::ContainerFilter {
                    label_selector: HashMap::from([(
                        LABEL_POD_UID.to_owned(),
                        pod.uid().to_owned(),
                    )]),
                    ..Default::default()
                },
                None,
            )
            .await?;
        let mut observed = PodObservation {
            sandbox_id: Some(sandbox_id.clone()),
            sandbox_ready: true,
            containers: BTreeMap::new(),
        };
        for spec in &pod.manifest.spec.containers {
            let instances: Vec<&cri::Container> = containers
                .iter()
                .filter(|c| container_name(c) == Some(spec.name.as_str()))
                .collect();
            let obs = self
                .reconcile_container(pod, spec, &sandbox_id, &sandbox_config, &instances)
                .await?;
            if let Some(obs) = obs {
                observed.containers.insert(spec.name.clone(), obs);
            }
        }
        Ok(observed)
    }

    async fn reconcile_container(
        &mut self,
        pod: &StaticPod,
        spec: &ContainerSpec,
        sandbox_id: &str,
        sandbox_config: &cri::PodSandboxConfig,
        instances: &[&cri::Container],
    ) -> Result<Option<ContainerObservation>, RuntimeError> {
        let restart_count = u32::try_from(instances.len().saturating_sub(1)).unwrap_or(u32::MAX);
        let next_attempt = instances
            .iter()
            .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt.saturating_add(1)))
            .max()
            .unwrap_or(0);
        // Only a container of the current sandbox can be running or be started again.
        let latest = instances
            .iter()
            .filter(|c| c.pod_sandbox_id == sandbox_id)
            .max_by_key(|c| c.created_at)
            .copied();
        let key = (pod.uid().to_owned(), spec.name.clone());
        match latest.map(|c| (c, cri::ContainerState::try_from(c.state))) {
            Some((c, Ok(cri::ContainerState::ContainerRunning))) => {
                return Ok(Some(self.observe_container(c, restart_count).await));
            }
            Some((c, Ok(cri::ContainerState::ContainerCreated))) => {
                self.runtime.start_container(&c.id).await?;
                tracing::info!(pod = %pod.name(), container = %spec.name, id = %c.id, "started container");
                return Ok(Some(self.observe_container(c, restart_count).await));
            }
            Some((c, _)) => {
                let never = pod.manifest.spec.restart_policy.as_deref() == Some("Never");
                let backing_off = self
                    .backoff
                    .get(&key)
                    .is_some_and(|b| Instant::now() < b.next_allowed);
                if never || backing_off {
                    return Ok(Some(self.observe_container(c, restart_count).await));
                }
                let delay = self.backoff.get(&key).map_or(CRASH_BACKOFF_START, |b| {
                    (b.delay * 2).min(CRASH_BACKOFF_MAX)
                });
                self.backoff.insert(
                    key,
                    CrashBackoff {
                        next_allowed: Instant::now() + delay,
                        delay,
                    },
                );
                tracing::info!(pod = %pod.name(), container = %spec.name, "container exited; restarting");
            }
            None => {}
        }
        let attempt = next_attempt;
        let config = container_config(pod, spec, attempt);
        let id = self
            .runtime
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await?;
        self.runtime.start_container(&id).await?;
        tracing::info!(pod = %pod.name(), container = %spec.name, id = %id, attempt, "started container");
        let restart_count = u32::try_from(instances.len()).unwrap_or(u32::MAX);
        Ok(Some(ContainerObservation {
            id,
            phase: ContainerPhase::Running {
                started_at: SystemTime::now(),
            },
            restart_count,
        }))
    }

    /// The container's state, with times and exit code from ContainerStatus when the runtime
    /// offers it.
    async fn observe_container(
        &self,
        c: &cri::Container,
        restart_count: u32,
    ) -> ContainerObservation {
        let status = self.runtime.container_status(&c.id).await.ok().flatten();
        let time = |ns: i64| (ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs()));
        let started_at = status
            .as_ref()
            .and_then(|s| time(s.started_at))
            .or_else(|| time(c.created_at));
        let phase = match cri::ContainerState::try_from(c.state) {
            Ok(cri::ContainerState::ContainerRunning) => ContainerPhase::Running {
                started_at: started_at.unwrap_or(UNIX_EPOCH),
            },
            Ok(cri::ContainerState::ContainerCreated) => ContainerPhase::Created,
            Ok(cri::ContainerState::ContainerExited) => ContainerPhase::Exited {
                exit_code: status.as_ref().map_or(0, |s| s.exit_code),
                reason: status
                    .as_ref()
                    .map(|s| s.reason.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "Error".into()),
                started_at,
                finished_at: status.as_ref().and_then(|s| time(s.finished_at)),
            },
            _ => ContainerPhase::Unknown,
        };
        ContainerObservation {
            id: c.id.clone(),
            phase,
            restart_count,
        }
    }
}

fn runtime_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(10);
    (RUNTIME_BACKOFF_START * 2u32.pow(exp)).min(RUNTIME_BACKOFF_MAX)
}

fn container_name(c: &cri::Container) -> Option<&str> {
    c.labels
        .get(LABEL_CONTAINER_NAME)
        .map(String::as_str)
        .or_else(|| c.metadata.as_ref().map(|m| m.name.as_str()))
}

fn pod_labels(pod: &StaticPod) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod
        .manifest
        .metadata
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_POD_NAME.into(), pod.name().into());
    labels.insert(LABEL_POD_NAMESPACE.into(), pod.namespace().into());
    labels.insert(LABEL_POD_UID.into(), pod.uid().into());
    labels
}

/// RunPodSandbox's config for `pod`. Every lab pod uses the host network (there is no CNI).
/// As upstream's kubelet, a host-network sandbox gets no hostname: it shares the host's UTS
/// namespace, and containerd refuses a hostname there.
pub fn sandbox_config(pod: &StaticPod, attempt: usize) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name().into(),
            uid: pod.uid().into(),
            namespace: pod.namespace().into(),
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        }),
        hostname: String::new(),
        labels: pod_labels(pod),
        annotations: pod
            .manifest
            .metadata
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// CreateContainer's config for `spec` of `pod`.
pub fn container_config(
    pod: &StaticPod,
    spec: &ContainerSpec,
    attempt: u32,
) -> cri::ContainerConfig {
    let labels = HashMap::from([
        (LABEL_POD_NAME.to_owned(), pod.name().to_owned()),
        (LABEL_POD_NAMESPACE.to_owned(), pod.namespace().to_owned()),
        (LABEL_POD_UID.to_owned(), pod.uid().to_owned()),
        (LABEL_CONTAINER_NAME.to_owned(), spec.name.clone()),
    ]);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: spec.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: spec.image.clone(),
            ..Default::default()
        }),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec.working_dir.clone().unwrap_or_default(),
        envs: spec
            .env
            .iter()
            .map(|e| cri::KeyValue {
                key: e.name.clone(),
                value: e.value.clone().unwrap_or_default().into_bytes(),
            })
            .collect(),
        labels,
        stdin: spec.stdin,
        stdin_once: spec.stdin_once,
        tty: spec.tty,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn web() -> StaticPod {
        let yaml = "metadata: {name: web}\nspec:\n  containers:\n  - {name: app, image: busybox, command: [sh], args: [-c, 'sleep 1d'], env: [{name: A, value: b}], tty: true, stdin: true}\n";
        StaticPod::parse(Path::new("/m/web.yaml"), yaml.as_bytes(), "node1").expect("pod")
    }

    #[test]
    fn container_config_carries_the_kubelet_labels() {
        let pod = web();
        let config = container_config(&pod, &pod.manifest.spec.containers[0], 2);
        assert_eq!(config.labels[LABEL_POD_NAME], "web");
        assert_eq!(config.labels[LABEL_POD_NAMESPACE], "default");
        assert_eq!(config.labels[LABEL_POD_UID], pod.uid());
        assert_eq!(config.labels[LABEL_CONTAINER_NAME], "app");
        assert_eq!(config.metadata.as_ref().map(|m| m.attempt), Some(2));
        assert_eq!(config.command, ["sh"]);
        assert_eq!(config.args, ["-c", "sleep 1d"]);
        assert_eq!(config.envs[0].key, "A");
        assert!(config.tty && config.stdin);
    }

    #[test]
    fn sandbox_config_uses_host_network_and_pod_identity() {
        let pod = web();
        let config = sandbox_config(&pod, 0);
        let meta = config.metadata.as_ref().expect("metadata");
        assert_eq!(
            (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str()
            ),
            ("web", "default", pod.uid())
        );
        let network = config
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .map(|n| n.network);
        assert_eq!(network, Some(cri::NamespaceMode::Node as i32));
        assert_eq!(config.labels[LABEL_POD_UID], pod.uid());
    }

    #[test]
    fn host_network_sandbox_has_no_hostname() {
        assert_eq!(sandbox_config(&web(), 0).hostname, "");
    }

    #[test]
    fn runtime_backoff_is_bounded() {
        assert_eq!(runtime_backoff(1), RUNTIME_BACKOFF_START);
        assert_eq!(runtime_backoff(2), RUNTIME_BACKOFF_START * 2);
        assert_eq!(runtime_backoff(1000), RUNTIME_BACKOFF_MAX);
    }
}
