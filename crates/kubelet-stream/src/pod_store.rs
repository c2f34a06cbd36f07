//! What the kubelet knows about its pods: the static pod manifests, and what the runtime last
//! reported for each (sandbox, containers). The reconciler writes it, `/pods` and the streaming
//! handlers read it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::manifest::StaticPod;

/// A container's state as the runtime last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerPhase {
    Created,
    Running {
        started_at: SystemTime,
    },
    Exited {
        exit_code: i32,
        reason: String,
        started_at: Option<SystemTime>,
        finished_at: Option<SystemTime>,
    },
    Unknown,
}

/// The current instance of one spec container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerObservation {
    pub id: String,
    pub phase: ContainerPhase,
    /// How many earlier instances of this container the sandbox holds.
    pub restart_count: u32,
}

/// What the runtime reported for a pod at the last successful reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObservation {
    pub sandbox_id: Option<String>,
    pub sandbox_ready: bool,
    /// Keyed by container name.
    pub containers: BTreeMap<String, ContainerObservation>,
}

/// One pod as served by `/pods`.
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub pod: StaticPod,
    /// When this kubelet first saw the pod (the pod's `startTime`).
    pub first_seen: SystemTime,
    pub observed: PodObservation,
}

/// Shared pod state. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PodStore {
    inner: Arc<RwLock<Vec<PodEntry>>>,
}

impl PodStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the set of pods with `pods`, keeping first-seen times and observations of pods
    /// that stay (same UID).
    pub fn set_pods(&self, pods: Vec<StaticPod>) {
        let mut entries = self.write();
        let now = SystemTime::now();
        let next = pods
            .into_iter()
            .map(
                |pod| match entries.iter().find(|e| e.pod.uid() == pod.uid()) {
                    Some(old) => PodEntry {
                        pod,
                        first_seen: old.first_seen,
                        observed: old.observed.clone(),
                    },
                    None => PodEntry {
                        pod,
                        first_seen: now,
                        observed: PodObservation::default(),
                    },
                },
            )
            .collect();
        *entries = next;
    }

    pub fn observe(&self, uid: &str, observed: PodObservation) {
        if let Some(entry) = self.write().iter_mut().find(|e| e.pod.uid() == uid) {
            entry.observed = observed;
        }
    }

    pub fn pods(&self) -> Vec<StaticPod> {
        self.read().iter().map(|e| e.pod.clone()).collect()
    }

    pub fn entries(&self) -> Vec<PodEntry> {
        self.read().clone()
    }

    /// The pod `namespace/name`, as upstream's GetPodByName.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<StaticPod> {
        self.read()
            .iter()
            .find(|e| e.pod.namespace() == namespace && e.pod.name() == name)
            .map(|e| e.pod.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<PodEntry>> {
        // A panicking writer cannot leave the Vec half-updated (whole-value assignments), so a
        // poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<PodEntry>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
