//! Static pod manifests: the v1 Pod YAML files under `--pod-manifests`.
//!
//! Checked against kubernetes `pkg/kubelet/config/file.go` (every regular, non-hidden file of the
//! directory is a manifest; a bad file is logged and skipped) and `pkg/kubelet/config/common.go`
//! (applyDefaults: namespace `default` when empty; a missing UID is derived from a hash of the
//! manifest, the node name and the file, so it is stable across kubelet restarts; annotations
//! `kubernetes.io/config.source=file` and `kubernetes.io/config.hash`). Unlike upstream, the pod
//! keeps its manifest name (no `-<node>` suffix) so the lab's pod is simply `web`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The subset of a v1 Pod the lab kubelet understands.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodManifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<ContainerSpec>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_once: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A static pod with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    pub manifest: PodManifest,
    pub source: PathBuf,
}

impl StaticPod {
    pub fn name(&self) -> &str {
        &self.manifest.metadata.name
    }

    pub fn namespace(&self) -> &str {
        self.manifest
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default")
    }

    pub fn uid(&self) -> &str {
        self.manifest.metadata.uid.as_deref().unwrap_or_default()
    }

    pub fn container(&self, name: &str) -> Option<&ContainerSpec> {
        self.manifest
            .spec
            .containers
            .iter()
            .find(|c| c.name == name)
    }

    /// Parses one manifest file's bytes and applies the static-pod defaults.
    pub fn parse(source: &Path, bytes: &[u8], node_name: &str) -> Result<Self, ManifestError> {
        let mut manifest: PodManifest =
            serde_yaml::from_slice(bytes).map_err(|source_err| ManifestError::Parse {
                path: source.to_owned(),
                source: source_err,
            })?;
        let invalid = |reason: String| ManifestError::Invalid {
            path: source.to_owned(),
            reason,
        };
        if let Some(kind) = manifest.kind.as_deref().filter(|k| *k != "Pod") {
            return Err(invalid(format!("kind {kind:?} is not Pod")));
        }
        if manifest.metadata.name.is_empty() {
            return Err(invalid("metadata.name is empty".into()));
        }
        if manifest.spec.containers.is_empty() {
            return Err(invalid("spec.containers is empty".into()));
        }
        let mut seen = HashSet::new();
        for container in &manifest.spec.containers {
            if container.name.is_empty() || container.image.is_empty() {
                return Err(invalid("every container needs a name and an image".into()));
            }
            if !seen.insert(container.name.as_str()) {
                return Err(invalid(format!(
                    "duplicate container name {:?}",
                    container.name
                )));
            }
        }
        let meta = &mut manifest.metadata;
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".into());
        }
        if meta.uid.as_deref().is_none_or(str::is_empty) {
            meta.uid = Some(stable_uid(source, bytes, node_name));
        }
        let uid = meta.uid.clone().unwrap_or_default();
        meta.annotations
            .insert("kubernetes.io/config.source".into(), "file".into());
        meta.annotations
            .insert("kubernetes.io/config.hash".into(), uid);
        manifest.kind = Some("Pod".into());
        manifest.api_version = Some("v1".into());
        manifest.spec.node_name = Some(node_name.to_owned());
        Ok(Self {
            manifest,
            source: source.to_owned(),
        })
    }
}

/// 32 hex digits from a hash of the manifest, the node and the file path: the same pod gets the
/// same UID after a kubelet restart, so its running sandbox is adopted rather than duplicated.
pub fn stable_uid(source: &Path, bytes: &[u8], node_name: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update(b"host:");
    hasher.update(node_name.as_bytes());
    hasher.update(b"file:");
    hasher.update(source.as_os_str().as_encoded_bytes());
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every usable manifest in `dir` (sorted by file name), plus the errors of the unusable ones.
pub fn load_dir(dir: &Path, node_name: &str) -> (Vec<StaticPod>, Vec<ManifestError>) {
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            errors.push(ManifestError::Read {
                path: dir.to_owned(),
                source,
            });
            return (pods, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut names = HashSet::new();
    for path in paths {
        let parsed = std::fs::read(&path)
            .map_err(|source| ManifestError::Read {
                path: path.clone(),
                source,
            })
            .and_then(|bytes| StaticPod::parse(&path, &bytes, node_name));
        match parsed {
            Ok(pod) => {
                if names.insert((pod.namespace().to_owned(), pod.name().to_owned())) {
                    pods.push(pod);
                } else {
                    errors.push(ManifestError::Invalid {
                        path,
                        reason: format!("pod {}/{} is defined twice", pod.namespace(), pod.name()),
                    });
                }
            }
            Err(err) => errors.push(err),
        }
    }
    (pods, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  hostNetwork: true
  containers:
  - name: app
    image: busybox
    command: ["/bin/sh", "-c"]
    args: ["sleep 3600"]
    env:
    - name: GREETING
      value: hi
    tty: true
"#;

    #[test]
    fn parses_and_defaults_a_static_pod() {
        let pod = StaticPod::parse(Path::new("/m/web.yaml"), WEB.as_bytes(), "node1").expect("pod");
        assert_eq!(pod.name(), "web");
        assert_eq!(pod.namespace(), "default");
        assert_eq!(pod.uid().len(), 32);
        assert_eq!(pod.manifest.spec.node_name.as_deref(), Some("node1"));
        let app = pod.container("app").expect("container");
        assert_eq!(app.command, ["/bin/sh", "-c"]);
        assert_eq!(app.args, ["sleep 3600"]);
        assert_eq!(app.env[0].value.as_deref(), Some("hi"));
        assert!(app.tty && pod.manifest.spec.host_network);
        assert_eq!(
            pod.manifest.metadata.annotations["kubernetes.io/config.source"],
            "file"
        );
    }

    #[test]
    fn uid_is_stable_and_depends_on_node_and_content() {
        let a = StaticPod::parse(Path::new("/m/web.yaml"), WEB.as_bytes(), "node1").expect("pod");
        let b = StaticPod::parse(Path::new("/m/web.yaml"), WEB.as_bytes(), "node1").expect("pod");
        let c = StaticPod::parse(Path::new("/m/web.yaml"), WEB.as_bytes(), "node2").expect("pod");
        assert_eq!(a.uid(), b.uid());
        assert_ne!(a.uid(), c.uid());
    }

    #[test]
    fn rejects_unusable_manifests() {
        for bad in [
            "kind: Service\nmetadata: {name: x}\nspec: {containers: [{name: a, image: b}]}",
            "metadata: {name: x}\nspec: {containers: []}",
            "metadata: {name: x}\nspec: {containers: [{name: a, image: b}, {name: a, image: c}]}",
            "metadata: {name: ''}\nspec: {containers: [{name: a, image: b}]}",
            "not: [valid",
        ] {
            assert!(
                StaticPod::parse(Path::new("x.yaml"), bad.as_bytes(), "n").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn load_dir_skips_hidden_and_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("web.yaml"), WEB).expect("write");
        std::fs::write(dir.path().join(".web.yaml.swp"), "junk").expect("write");
        std::fs::write(dir.path().join("broken.yaml"), "metadata: [").expect("write");
        let (pods, errors) = load_dir(dir.path(), "node1");
        assert_eq!(pods.len(), 1);
        assert_eq!(errors.len(), 1);
    }
}
