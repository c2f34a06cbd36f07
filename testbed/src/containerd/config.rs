//! The private containerd's config file (version 2): its own root, state and socket, the CRI
//! plugin on with host-network sandboxes only (no CNI), `restrict_oom_score_adj` (root here
//! lacks CAP_SYS_RESOURCE, and an oom_score_adj of -998 makes runc fail), the lab's image as
//! sandbox image, and optionally shim-exec as a runtime handler.
//!
//! Keys checked against containerd 1.6 `pkg/cri/config/config.go` and `docs/cri/config.md`.

use std::path::{Path, PathBuf};

/// The runtime handler name under which shim-exec is configured.
pub const EXECLAB_HANDLER: &str = "execlab";
/// Makes containerd run `containerd-shim-execlab-v2` from its PATH.
pub const EXECLAB_RUNTIME_TYPE: &str = "io.containerd.execlab.v2";

/// Everything the config names.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub root: PathBuf,
    pub state: PathBuf,
    /// The gRPC socket path (containerd adds `.ttrpc` beside it).
    pub address: PathBuf,
    pub sandbox_image: String,
    /// Where the `opt` plugin would install things (default /opt/containerd): kept in the lab.
    pub opt_dir: PathBuf,
    /// CNI dirs: unused with host networking, but kept off /etc/cni and /opt/cni.
    pub cni_dir: PathBuf,
    /// Add the [`EXECLAB_HANDLER`] runtime (shim-exec as `containerd-shim-execlab-v2`).
    pub execlab_handler: bool,
    /// Make [`EXECLAB_HANDLER`] the default runtime (kubelet-stream sends no handler).
    pub execlab_default: bool,
}

impl ContainerdConfig {
    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let s = |p: &Path| toml_string(&p.to_string_lossy());
        let cri = "[plugins.\"io.containerd.grpc.v1.cri\"]";
        let mut text = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = []\n\
             oom_score = 0\n\n\
             [grpc]\n  address = {address}\n\n\
             [ttrpc]\n  address = \"\"\n\n\
             [debug]\n  address = \"\"\n\n\
             [metrics]\n  address = \"\"\n\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n\n\
             {cri}\n\
             \x20 sandbox_image = {image}\n\
             \x20 restrict_oom_score_adj = true\n\
             \x20 stream_server_address = \"127.0.0.1\"\n\
             \x20 stream_server_port = \"0\"\n\
             \x20 enable_selinux = false\n\n\
             {cri_ns}.cni]\n\
             \x20 bin_dir = {cni_bin}\n\
             \x20 conf_dir = {cni_conf}\n\n\
             {cri_ns}.containerd]\n\
             \x20 snapshotter = \"overlayfs\"\n\
             \x20 default_runtime_name = {default_runtime}\n\n\
             {cri_ns}.containerd.runtimes.runc]\n\
             \x20 runtime_type = \"io.containerd.runc.v2\"\n",
            root = s(&self.root),
            state = s(&self.state),
            address = s(&self.address),
            opt = s(&self.opt_dir),
            image = toml_string(&self.sandbox_image),
            cni_bin = s(&self.cni_dir.join("bin")),
            cni_conf = s(&self.cni_dir.join("conf")),
            cri_ns = "[plugins.\"io.containerd.grpc.v1.cri\"",
            default_runtime = toml_string(if self.execlab_handler && self.execlab_default {
                EXECLAB_HANDLER
            } else {
                "runc"
            }),
        );
        if self.execlab_handler {
            text.push_str(&format!(
                "\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{EXECLAB_HANDLER}]\n  runtime_type = \"{EXECLAB_RUNTIME_TYPE}\"\n"
            ));
        }
        text
    }
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(execlab: bool) -> ContainerdConfig {
        ContainerdConfig {
            root: "/lab/state/containerd/root".into(),
            state: "/lab/state/containerd/state".into(),
            address: "/lab/run/containerd.sock".into(),
            sandbox_image: "docker.io/library/busybox:latest".into(),
            opt_dir: "/lab/state/containerd/opt".into(),
            cni_dir: "/lab/state/containerd/cni".into(),
            execlab_handler: execlab,
            execlab_default: execlab,
        }
    }

    #[test]
    fn everything_stays_in_the_lab_and_the_oom_trap_is_avoided() {
        let text = config(false).to_toml();
        assert!(text.starts_with("version = 2\n"));
        assert!(text.contains("root = \"/lab/state/containerd/root\""));
        assert!(text.contains("address = \"/lab/run/containerd.sock\""));
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("sandbox_image = \"docker.io/library/busybox:latest\""));
        assert!(text.contains("conf_dir = \"/lab/state/containerd/cni/conf\""));
        assert!(!text.contains("execlab"));
        for line in text
            .lines()
            .filter(|l| l.contains('/') && !l.contains("sandbox_image"))
        {
            assert!(line.contains("\"/lab/"), "path outside the lab: {line}");
        }
    }

    #[test]
    fn the_execlab_handler_names_our_shim() {
        let text = config(true).to_toml();
        assert!(text.contains(
            "containerd.runtimes.execlab]\n  runtime_type = \"io.containerd.execlab.v2\""
        ));
        assert!(text.contains("default_runtime_name = \"execlab\""));
        assert!(config(false)
            .to_toml()
            .contains("default_runtime_name = \"runc\""));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
