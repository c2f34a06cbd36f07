//! Static pod manifests (`DIR/manifests/*.yaml`): real Pod YAML that kubelet-stream runs through
//! CRI at start, as a kubelet runs static pods from `--pod-manifest-path`.
//!
//! The default pod is `web` in `default` with one container `app`: a busybox shell that waits
//! forever. It traps TERM and exits, because a PID 1 that ignores TERM (plain `sleep`) would hold
//! every stop up for the whole grace period. `stdin` and `tty` are set as for an interactive
//! container, so `kubectl attach -it` has something to attach to.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::LabError;
use crate::layout::write_atomically;

/// The image name the lab's rootfs is registered under (cri-streaming `--image busybox=DIR`).
pub const BUSYBOX_IMAGE: &str = "busybox";

/// A single-container static pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPod {
    pub name: String,
    pub namespace: String,
    pub container: String,
    pub image: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub tty: bool,
    pub termination_grace_period_seconds: u32,
}

impl StaticPod {
    /// `web`/`app`: a busybox shell waiting forever.
    pub fn lab_default() -> Self {
        Self {
            name: "web".into(),
            namespace: "default".into(),
            container: "app".into(),
            image: BUSYBOX_IMAGE.into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "trap 'exit 0' TERM; sleep 2147483647 & wait".into(),
            ],
            stdin: true,
            tty: true,
            termination_grace_period_seconds: 2,
        }
    }

    /// The Pod as YAML.
    pub fn to_yaml(&self) -> String {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": { "app": self.name },
            },
            "spec": {
                "terminationGracePeriodSeconds": self.termination_grace_period_seconds,
                "containers": [{
                    "name": self.container,
                    "image": self.image,
                    "command": self.command,
                    "stdin": self.stdin,
                    "tty": self.tty,
                }],
            },
        });
        // A json! value always serializes.
        serde_yaml::to_string(&pod).unwrap_or_default()
    }

    /// Writes `NAME.yaml` into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, LabError> {
        let path = dir.join(format!("{}.yaml", self.name));
        write_atomically(&path, self.to_yaml().as_bytes(), 0o644)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pod_is_web_app_busybox() {
        let yaml = StaticPod::lab_default().to_yaml();
        let pod: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["metadata"]["name"], "web");
        assert_eq!(pod["metadata"]["namespace"], "default");
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["name"], "app");
        assert_eq!(container["image"], "busybox");
        assert_eq!(container["command"][0], "sh");
        assert_eq!(container["tty"], true);
        assert_eq!(container["stdin"], true);
    }
}
