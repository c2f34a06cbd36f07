//! Pods: a cache fed by the kubelets' `/pods`, lookups, and the `kubectl get pods` table.
//!
//! Without etcd the kubelets are the source of truth. A request refreshes every node's list when
//! the last refresh is older than [`MAX_LIST_AGE`] (bounded by the kubelet client timeout); an
//! exec to a known pod does it in the background instead ([`PodCache::lookup`]); a node
//! that does not answer keeps its last known pods, as etcd would keep them, so an exec to a pod on
//! a dead kubelet reaches the dial and fails with upstream's `error dialing backend: ...` rather
//! than a NotFound. Each pod's `spec.nodeName` is set to the `--node` name it was listed from:
//! that table plays the Node objects' part, so routing never depends on what the kubelet calls
//! itself.
//!
//! The table follows kubernetes `pkg/printers/internalversion/printers.go` (`printPod`: NAME,
//! READY `ready/total`, STATUS (phase, or the pod/container reason), RESTARTS, AGE; IP, NODE at
//! priority 1) and `staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go` (`Table`,
//! `TableColumnDefinition`, `TableRow` with a `PartialObjectMetadata` object), and AGE uses the
//! rules of `staging/src/k8s.io/apimachinery/pkg/util/duration/duration.go` (`HumanDuration`).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::kubelet::KubeletClient;

/// How old the pod lists may be before a request refreshes them (keeps the exec path from
/// paying a `/pods` round trip per request under load, while new pods show up at once for people).
pub const MAX_LIST_AGE: Duration = Duration::from_secs(1);

/// Pods known per node, refreshed from the kubelets.
#[derive(Debug, Clone)]
pub struct PodCache {
    kubelets: KubeletClient,
    by_node: Arc<Mutex<BTreeMap<String, Vec<Value>>>>,
    /// When the last refresh started; also serializes refreshes.
    last_refresh: Arc<Mutex<Option<Instant>>>,
}

impl PodCache {
    pub fn new(kubelets: KubeletClient) -> Self {
        PodCache {
            kubelets,
            by_node: Arc::new(Mutex::new(BTreeMap::new())),
            last_refresh: Arc::new(Mutex::new(None)),
        }
    }

    /// Refreshes unless the lists are younger than [`MAX_LIST_AGE`].
    pub async fn refresh_if_stale(&self) {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < MAX_LIST_AGE) {
            return;
        }
        *last = Some(Instant::now());
        self.refresh().await;
    }

    pub fn kubelets(&self) -> &KubeletClient {
        &self.kubelets
    }

    /// Re-reads every kubelet's `/pods`; failures keep the node's previous list.
    pub async fn refresh(&self) {
        let nodes: Vec<String> = self.kubelets.node_names().map(String::from).collect();
        let fetches = nodes.iter().map(|node| {
            let kubelets = self.kubelets.clone();
            let node = node.clone();
            async move {
                let result = kubelets.pods(&node).await;
                (node, result)
            }
        });
        let mut handles = Vec::new();
        for fetch in fetches {
            handles.push(tokio::spawn(fetch));
        }
        for handle in handles {
            let Ok((node, result)) = handle.await else {
                continue;
            };
            match result {
                Ok(pods) => {
                    let pods = pods
                        .into_iter()
                        .map(|pod| bind_to_node(pod, &node))
                        .collect();
                    self.by_node.lock().await.insert(node, pods);
                }
                Err(err) => {
                    tracing::warn!(%node, error = %err, "listing kubelet pods failed; keeping last known pods");
                }
            }
        }
    }

    /// All known pods, optionally only those of `namespace`, sorted by namespace and name.
    pub async fn list(&self, namespace: Option<&str>) -> Vec<Value> {
        self.refresh_if_stale().await;
        let by_node = self.by_node.lock().await;
        let mut pods: Vec<Value> = by_node
            .values()
            .flatten()
            .filter(|p| namespace.is_none_or(|ns| pod_namespace(p) == ns))
            .cloned()
            .collect();
        pods.sort_by(|a, b| (pod_namespace(a), pod_name(a)).cmp(&(pod_namespace(b), pod_name(b))));
        pods
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        self.list(Some(namespace))
            .await
            .into_iter()
            .find(|p| pod_name(p) == name)
    }

    /// The pod a stream request (exec, attach) names. A pod already known is answered at once,
    /// and stale lists are refreshed in the background: the real API server finds the pod in
    /// its watch cache, so this stand-in's `/pods` round trip to the kubelet must not sit on
    /// the exec's path (it did, once a second). An unknown pod is looked up as
    /// [`PodCache::get`] does, so a pod that just started is found.
    pub async fn lookup(&self, namespace: &str, name: &str) -> Option<Value> {
        let known = self
            .by_node
            .lock()
            .await
            .values()
            .flatten()
            .find(|p| pod_namespace(p) == namespace && pod_name(p) == name)
            .cloned();
        match known {
            Some(pod) => {
                self.refresh_in_background_if_stale();
                Some(pod)
            }
            None => self.get(namespace, name).await,
        }
    }

    fn refresh_in_background_if_stale(&self) {
        // Held: a refresh is running already.
        let Ok(last) = self.last_refresh.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < MAX_LIST_AGE) {
            return;
        }
        drop(last);
        let cache = self.clone();
        tokio::spawn(async move { cache.refresh_if_stale().await });
    }
}

/// Sets `kind`, `apiVersion` and `spec.nodeName` (the `--node` name the pod was listed from).
pub fn bind_to_node(mut pod: Value, node: &str) -> Value {
    if let Some(obj) = pod.as_object_mut() {
        obj.insert("kind".into(), json!("Pod"));
        obj.insert("apiVersion".into(), json!("v1"));
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            let reported = spec.get("nodeName").and_then(Value::as_str).unwrap_or("");
            if !reported.is_empty() && reported != node {
                tracing::warn!(%node, %reported, "kubelet reports another node name; using --node's");
            }
            spec.insert("nodeName".into(), json!(node));
        }
    }
    pod
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

pub fn pod_name(pod: &Value) -> &str {
    str_at(pod, &["metadata", "name"])
}

pub fn pod_namespace(pod: &Value) -> &str {
    str_at(pod, &["metadata", "namespace"])
}

pub fn pod_node(pod: &Value) -> &str {
    str_at(pod, &["spec", "nodeName"])
}

/// Names of the app containers (`spec.containers`), in order.
pub fn app_containers(pod: &Value) -> Vec<&str> {
    names(pod, "containers")
}

/// Every container name exec may target: init, app and ephemeral containers.
pub fn all_containers(pod: &Value) -> Vec<&str> {
    let mut all = names(pod, "initContainers");
    all.extend(names(pod, "containers"));
    all.extend(names(pod, "ephemeralContainers"));
    all
}

fn names<'a>(pod: &'a Value, field: &str) -> Vec<&'a str> {
    pod.get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// A `v1.PodList` document.
pub fn pod_list(pods: Vec<Value>) -> Value {
    json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"},
        "items": pods,
    })
}

/// Which `meta.k8s.io` Table version the client asked for in `Accept`, if any.
pub fn table_version(accept: &str) -> Option<&'static str> {
    let mut best: Option<&'static str> = None;
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let has = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
        if params.first().is_some_and(|t| *t == "application/json")
            && has("as=Table")
            && has("g=meta.k8s.io")
        {
            if has("v=v1") {
                return Some("meta.k8s.io/v1");
            }
            if has("v=v1beta1") && best.is_none() {
                best = Some("meta.k8s.io/v1beta1");
            }
        }
    }
    best
}

/// The `kubectl get pods` table for `pods`.
pub fn pod_table(api_version: &str, pods: &[Value], now: SystemTime) -> Value {
    let column = |name: &str, format: &str, priority: u8, description: &str| json!({"name": name, "type": "string", "format": format, "description": description, "priority": priority});
    let rows: Vec<Value> = pods.iter().map(|pod| pod_row(pod, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": [
            column("Name", "name", 0, "Name must be unique within a namespace."),
            column("Ready", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", "", 0, "The aggregate status of the containers in this pod."),
            column("Restarts", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            column("Age", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
            column("IP", "", 1, "podIP is the IP address allocated to the pod."),
            column("Node", "", 1, "NodeName indicates in which node this pod is scheduled."),
        ],
        "rows": rows,
    })
}

fn pod_row(pod: &Value, now: SystemTime) -> Value {
    let statuses: Vec<&Value> = pod
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let total = app_containers(pod).len().max(statuses.len());
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool).unwrap_or(false))
        .count();
    let restarts: u64 = statuses
        .iter()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_u64))
        .sum();
    let mut reason = str_at(pod, &["status", "phase"]).to_string();
    if let Some(r) = Some(str_at(pod, &["status", "reason"])).filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    for status in &statuses {
        let waiting = str_at(status, &["state", "waiting", "reason"]);
        let terminated = str_at(status, &["state", "terminated", "reason"]);
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if !terminated.is_empty() {
            reason = terminated.to_string();
        }
    }
    if reason.is_empty() {
        reason = "Unknown".into();
    }
    let created = str_at(pod, &["metadata", "creationTimestamp"]);
    let age = parse_rfc3339(created)
        .map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
        .unwrap_or_else(|| "<unknown>".into());
    let ip = Some(str_at(pod, &["status", "podIP"]))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let mut metadata = json!({
        "name": pod_name(pod),
        "namespace": pod_namespace(pod),
    });
    for key in [
        "uid",
        "creationTimestamp",
        "labels",
        "annotations",
        "resourceVersion",
    ] {
        if let Some(v) = pod.get("metadata").and_then(|m| m.get(key)) {
            metadata[key] = v.clone();
        }
    }
    json!({
        "cells": [pod_name(pod), format!("{ready}/{total}"), reason, restarts.to_string(), age, ip, pod_node(pod)],
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        },
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what Kubernetes writes for timestamps) → time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A short age like kubectl's AGE column (`45s`, `3m20s`, `5h`, `2d3h`, `1y`).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::NodeAddress;

    /// A kubelet that accepts and never answers: a refresh against it hangs until the client's
    /// timeout.
    async fn silent_kubelet() -> (tokio::net::TcpListener, KubeletClient) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node: NodeAddress = format!("n1={}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(hop_kit::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        (listener, KubeletClient::new(vec![node], Arc::new(tls)))
    }

    fn pod(namespace: &str, name: &str) -> Value {
        json!({"metadata": {"namespace": namespace, "name": name}})
    }

    #[tokio::test]
    async fn a_known_pod_is_found_without_waiting_for_a_stale_refresh() {
        let (_kubelet, client) = silent_kubelet().await;
        let cache = PodCache::new(client);
        cache
            .by_node
            .lock()
            .await
            .insert("n1".into(), vec![pod("default", "web")]);
        *cache.last_refresh.lock().await = Some(Instant::now() - 2 * MAX_LIST_AGE);

        let found =
            tokio::time::timeout(Duration::from_millis(500), cache.lookup("default", "web"))
                .await
                .expect("answered from the cache, not after the kubelet");
        assert_eq!(found.as_ref().map(pod_name), Some("web"));
        // The refresh started in the background, and holds the refresh lock meanwhile.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            cache.last_refresh.try_lock().is_err(),
            "a refresh is running"
        );

        // A pod the cache does not know waits for the lists, as `get` does.
        let unknown =
            tokio::time::timeout(Duration::from_millis(300), cache.lookup("default", "new")).await;
        assert!(
            unknown.is_err(),
            "an unknown pod is looked up at the kubelet"
        );
    }
}
