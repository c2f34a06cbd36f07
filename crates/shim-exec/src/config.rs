//! Where the shim puts things, from the environment (names fixed in docs/architecture.md):
//! `EXECLAB_SHIM_SOCKET_DIR`, `EXECLAB_RUNC`, `EXECLAB_RUNC_ROOT`, `XDG_RUNTIME_DIR`.
//!
//! The socket name mirrors containerd `pkg/shim/util_unix.go` `SocketAddress`: the first 32 hex
//! digits of sha256 over `<namespace>/<id>`, plus `.sock`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const DEFAULT_SOCKET_DIR: &str = "/run/containerd/s";
pub const DEFAULT_RUNC_ROOT_PARENT: &str = "/run/containerd/runc";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimConfig {
    pub socket_dir: PathBuf,
    pub runc_binary: PathBuf,
    pub runc_root: PathBuf,
    /// `$XDG_RUNTIME_DIR` or, when unset or empty, the temp dir (`$TMPDIR` or `/tmp`), as Go's
    /// `os.CreateTemp("", ...)` picks it: runc-process files and console sockets go here.
    pub runtime_dir: PathBuf,
}

impl ShimConfig {
    /// Reads the configuration for `namespace` through `var` (an environment lookup).
    pub fn from_env_with(namespace: &str, var: impl Fn(&str) -> Option<OsString>) -> ShimConfig {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        ShimConfig {
            socket_dir: non_empty("EXECLAB_SHIM_SOCKET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_DIR)),
            runc_binary: non_empty("EXECLAB_RUNC")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("runc")),
            runc_root: non_empty("EXECLAB_RUNC_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(DEFAULT_RUNC_ROOT_PARENT).join(namespace)),
            runtime_dir: non_empty("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .or_else(|| non_empty("TMPDIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/tmp")),
        }
    }

    pub fn from_env(namespace: &str) -> ShimConfig {
        ShimConfig::from_env_with(namespace, |n| std::env::var_os(n))
    }

    /// The ttrpc socket of the shim serving `<namespace>/<id>`.
    pub fn socket_path(&self, namespace: &str, id: &str) -> PathBuf {
        self.socket_dir.join(socket_name(namespace, id))
    }
}

/// `hex(sha256("<namespace>/<id>"))[..32] + ".sock"`.
pub fn socket_name(namespace: &str, id: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}/{id}").as_bytes());
    let mut name = hex::encode(digest);
    name.truncate(32);
    name.push_str(".sock");
    name
}

/// The address form printed by `start` and accepted by ttrpc clients.
pub fn socket_address(path: &Path) -> String {
    format!("unix://{}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_name_is_sha256_prefix() {
        // sha256("k8s.io/abc") computed independently with sha256sum.
        assert_eq!(
            socket_name("k8s.io", "abc"),
            "dc8322dde99ae1599a6de32c7fbd26ac.sock"
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let c = ShimConfig::from_env_with("k8s.io", |_| None);
        assert_eq!(c.socket_dir, PathBuf::from("/run/containerd/s"));
        assert_eq!(c.runc_root, PathBuf::from("/run/containerd/runc/k8s.io"));
        assert_eq!(c.runtime_dir, PathBuf::from("/tmp"));
        let c = ShimConfig::from_env_with("ns", |n| match n {
            "XDG_RUNTIME_DIR" => Some("/x".into()),
            "EXECLAB_RUNC" => Some("/r/runc".into()),
            "TMPDIR" => Some("/t".into()),
            _ => Some("".into()),
        });
        assert_eq!(c.runtime_dir, PathBuf::from("/x"));
        assert_eq!(c.runc_binary, PathBuf::from("/r/runc"));
        assert_eq!(c.runc_root, PathBuf::from("/run/containerd/runc/ns"));
    }
}
