//! `GET /pods`: the kubelet's pods as a v1 `PodList`, with status from the last reconcile.
//!
//! Field names and shapes checked against kubernetes `staging/src/k8s.io/api/core/v1/types.go`
//! (PodStatus: phase, conditions, hostIP, podIP(s), startTime, containerStatuses with
//! name/state/lastState/ready/restartCount/image/imageID/containerID/started; ContainerState's
//! waiting/running/terminated) and `pkg/kubelet/server/server.go` (getPods encodes a PodList).
//! Container IDs are `<runtime>://<id>`; the lab names its runtime `cri`.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::pod_store::{ContainerPhase, PodEntry};

/// The node's address, used as hostIP and (host network) podIP.
pub const NODE_IP: &str = "127.0.0.1";

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Is the pod Running (sandbox ready, every container running) or still Pending?
fn phase(entry: &PodEntry) -> &'static str {
    let all_running = entry.pod.manifest.spec.containers.iter().all(|spec| {
        matches!(
            entry.observed.containers.get(&spec.name).map(|c| &c.phase),
            Some(ContainerPhase::Running { .. })
        )
    });
    if entry.observed.sandbox_ready && all_running {
        "Running"
    } else {
        "Pending"
    }
}

fn container_status(entry: &PodEntry, name: &str, image: &str) -> Value {
    let observed = entry.observed.containers.get(name);
    let (state, ready) = match observed.map(|c| &c.phase) {
        Some(ContainerPhase::Running { started_at }) => (
            json!({"running": {"startedAt": timestamp(*started_at)}}),
            true,
        ),
        Some(ContainerPhase::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
        }) => {
            let mut terminated = Map::new();
            terminated.insert("exitCode".into(), json!(exit_code));
            terminated.insert("reason".into(), json!(reason));
            if let Some(t) = started_at {
                terminated.insert("startedAt".into(), json!(timestamp(*t)));
            }
            if let Some(t) = finished_at {
                terminated.insert("finishedAt".into(), json!(timestamp(*t)));
            }
            if let Some(c) = observed {
                terminated.insert("containerID".into(), json!(format!("cri://{}", c.id)));
            }
            (json!({ "terminated": terminated }), false)
        }
        _ => (json!({"waiting": {"reason": "ContainerCreating"}}), false),
    };
    let mut status = Map::new();
    status.insert("name".into(), json!(name));
    status.insert("state".into(), state);
    status.insert("lastState".into(), json!({}));
    status.insert("ready".into(), json!(ready));
    status.insert(
        "restartCount".into(),
        json!(observed.map_or(0, |c| c.restart_count)),
    );
    status.insert("image".into(), json!(image));
    status.insert("imageID".into(), json!(""));
    if let Some(c) = observed {
        status.insert("containerID".into(), json!(format!("cri://{}", c.id)));
    }
    status.insert("started".into(), json!(ready));
    Value::Object(status)
}

fn condition(kind: &str, ok: bool, since: &str) -> Value {
    json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": since,
    })
}

/// One pod object.
pub fn pod_json(entry: &PodEntry) -> Value {
    let manifest = &entry.pod.manifest;
    let started = timestamp(entry.first_seen);
    let phase = phase(entry);
    let running = phase == "Running";
    let mut metadata = serde_json::to_value(&manifest.metadata).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut metadata {
        m.insert("creationTimestamp".into(), json!(started));
    }
    let statuses: Vec<Value> = manifest
        .spec
        .containers
        .iter()
        .map(|c| container_status(entry, &c.name, &c.image))
        .collect();
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": serde_json::to_value(&manifest.spec).unwrap_or_else(|_| json!({})),
        "status": {
            "phase": phase,
            "conditions": [
                condition("Initialized", true, &started),
                condition("Ready", running, &started),
                condition("ContainersReady", running, &started),
                condition("PodScheduled", true, &started),
            ],
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": NODE_IP,
            "podIPs": [{"ip": NODE_IP}],
            "startTime": started,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        },
    })
}

/// The `/pods` body.
pub fn pod_list_json(entries: &[PodEntry]) -> Value {
    json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": entries.iter().map(pod_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::StaticPod;
    use crate::pod_store::{ContainerObservation, PodObservation};
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(observed: PodObservation) -> PodEntry {
        let yaml = "metadata: {name: web}\nspec:\n  containers:\n  - {name: app, image: busybox}\n";
        PodEntry {
            pod: StaticPod::parse(Path::new("/m/web.yaml"), yaml.as_bytes(), "node1").expect("pod"),
            first_seen: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            observed,
        }
    }

    #[test]
    fn running_pod_lists_ready_container_with_cri_id() {
        let mut observed = PodObservation {
            sandbox_id: Some("sb".into()),
            sandbox_ready: true,
            ..Default::default()
        };
        observed.containers.insert(
            "app".into(),
            ContainerObservation {
                id: "abc123".into(),
                phase: ContainerPhase::Running {
                    started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_001),
                },
                restart_count: 0,
            },
        );
        let list = pod_list_json(&[entry(observed)]);
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["apiVersion"], "v1");
        let pod = &list["items"][0];
        assert_eq!(pod["metadata"]["name"], "web");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["metadata"]["uid"].as_str().map(str::len), Some(32));
        assert_eq!(pod["spec"]["nodeName"], "node1");
        assert_eq!(pod["spec"]["containers"][0]["name"], "app");
        assert_eq!(pod["status"]["phase"], "Running");
        assert_eq!(pod["status"]["podIP"], "127.0.0.1");
        assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
        assert_eq!(pod["status"]["startTime"], "2023-11-14T22:13:20Z");
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["ready"], true);
        assert_eq!(status["containerID"], "cri://abc123");
        assert_eq!(
            status["state"]["running"]["startedAt"],
            "2023-11-14T22:13:21Z"
        );
    }

    #[test]
    fn unobserved_pod_is_pending_and_waiting() {
        let list = pod_list_json(&[entry(PodObservation::default())]);
        let pod = &list["items"][0];
        assert_eq!(pod["status"]["phase"], "Pending");
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["ready"], false);
        assert_eq!(status["state"]["waiting"]["reason"], "ContainerCreating");
        assert!(status.get("containerID").is_none());
    }
}
