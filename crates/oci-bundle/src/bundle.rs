//! OCI bundles for busybox containers: a rootfs built from the host's static busybox and a
//! `config.json` shaped like the one containerd's CRI plugin generates for a host-network pod
//! (no network namespace; own mount/UTS/IPC/PID namespaces or the pod's PID namespace joined;
//! tmpfs on `/dev`, `/tmp`, `/run`; the runtime-spec default masked and read-only paths; the
//! default capability set of containerd's `oci.WithDefaultSpec`).
//!
//! Checked against opencontainers/runtime-spec `config.md`/`config-linux.md` (field names) and
//! containerd `pkg/oci/spec.go` (default mounts, masked paths, capabilities).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Busybox applets linked into `/bin` of every rootfs.
const APPLETS: &[&str] = &[
    "[",
    "ash",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hexdump",
    "hostname",
    "id",
    "ip",
    "kill",
    "less",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "more",
    "mount",
    "mv",
    "nc",
    "nproc",
    "nslookup",
    "od",
    "ping",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "setsid",
    "sh",
    "sha1sum",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "stty",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "tty",
    "umount",
    "uname",
    "uniq",
    "usleep",
    "vi",
    "wc",
    "wget",
    "which",
    "whoami",
    "xargs",
    "yes",
    "zcat",
];

/// Directories every rootfs needs, also as mount points when the rootfs is read-only.
const ROOTFS_DIRS: &[&str] = &["bin", "etc", "tmp", "proc", "dev", "sys", "run", "root"];

/// Capabilities of a default (non-privileged) container, as containerd grants them.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default `PATH` of a container process when the caller gives no environment.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("encode {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("container spec: {0}")]
    Invalid(&'static str),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Builds (or completes) a busybox rootfs in `rootfs`: `bin/busybox`, applet symlinks,
/// `etc/passwd`, `etc/group` and the mount-point directories. Running it twice is harmless.
pub fn prepare_busybox_rootfs(rootfs: &Path, busybox: &Path) -> Result<(), BundleError> {
    for dir in ROOTFS_DIRS {
        let d = rootfs.join(dir);
        fs::create_dir_all(&d).map_err(io_err("mkdir", &d))?;
    }
    let tmp = rootfs.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", &tmp))?;

    let target = rootfs.join("bin/busybox");
    let source_len = fs::metadata(busybox)
        .map_err(io_err("stat", busybox))?
        .len();
    let up_to_date = fs::metadata(&target).is_ok_and(|m| m.len() == source_len);
    if !up_to_date {
        // Copy to a side name and rename, so a concurrent reader never sees half a binary.
        let partial = rootfs.join("bin/.busybox.partial");
        fs::copy(busybox, &partial).map_err(io_err("copy", &partial))?;
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &partial))?;
        fs::rename(&partial, &target).map_err(io_err("rename", &target))?;
    }

    for applet in APPLETS {
        let link = rootfs.join("bin").join(applet);
        match symlink("busybox", &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("symlink", &link)(e)),
        }
    }

    write_if_missing(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    write_if_missing(&rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    write_if_missing(&rootfs.join("etc/hostname"), "execlab\n")?;
    Ok(())
}

fn write_if_missing(path: &Path, contents: &str) -> Result<(), BundleError> {
    if path.exists() {
        return Ok(());
    }
    fs::write(path, contents).map_err(io_err("write", path))
}

/// What a container runs and how it is isolated; turned into `config.json` by [`write_bundle`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub args: Vec<String>,
    /// `KEY=value` entries; empty means just [`DEFAULT_PATH_ENV`].
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub cwd: String,
    /// Absolute path of the rootfs directory on the host.
    pub rootfs: PathBuf,
    pub terminal: bool,
    pub readonly_rootfs: bool,
    pub hostname: Option<String>,
    /// `/proc/<pid>/ns/pid` of the pod's pause container; `None` gives a new PID namespace.
    pub join_pid_ns: Option<PathBuf>,
    pub annotations: BTreeMap<String, String>,
}

/// Writes `bundle_dir/config.json` for `spec` (creating `bundle_dir` if needed).
pub fn write_bundle(bundle_dir: &Path, spec: &ContainerSpec) -> Result<(), BundleError> {
    let config = oci_config(spec)?;
    fs::create_dir_all(bundle_dir).map_err(io_err("mkdir", bundle_dir))?;
    let path = bundle_dir.join("config.json");
    let bytes = serde_json::to_vec_pretty(&config).map_err(|source| BundleError::Encode {
        path: path.clone(),
        source,
    })?;
    let partial = bundle_dir.join(".config.json.partial");
    fs::write(&partial, bytes).map_err(io_err("write", &partial))?;
    fs::rename(&partial, &path).map_err(io_err("rename", &path))
}

/// The OCI runtime configuration for `spec`, as JSON.
pub fn oci_config(spec: &ContainerSpec) -> Result<Value, BundleError> {
    if spec.args.is_empty() {
        return Err(BundleError::Invalid("args must not be empty"));
    }
    if !spec.rootfs.is_absolute() {
        return Err(BundleError::Invalid("rootfs must be an absolute path"));
    }
    let env = if spec.env.is_empty() {
        vec![DEFAULT_PATH_ENV.to_string()]
    } else {
        spec.env.clone()
    };
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();

    let pid_ns = match &spec.join_pid_ns {
        Some(path) => json!({"type": "pid", "path": path}),
        None => json!({"type": "pid"}),
    };
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.terminal,
            "user": {"uid": 0, "gid": 0},
            "args": spec.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=755"]},
        ],
        "annotations": spec.annotations,
        "linux": {
            "namespaces": [pid_ns, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        },
    });
    if let Some(hostname) = &spec.hostname {
        config["hostname"] = json!(hostname);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            args: vec!["sleep".into(), "1".into()],
            rootfs: PathBuf::from("/r"),
            ..Default::default()
        }
    }

    #[test]
    fn host_network_and_own_namespaces() {
        let c = oci_config(&spec()).expect("config");
        let types: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount"]);
        assert_eq!(c["process"]["env"][0], DEFAULT_PATH_ENV);
        assert_eq!(c["process"]["cwd"], "/");
        assert!(c.get("hostname").is_none());
    }

    #[test]
    fn joined_pid_namespace_has_path() {
        let mut s = spec();
        s.join_pid_ns = Some(PathBuf::from("/proc/42/ns/pid"));
        s.hostname = Some("web".into());
        let c = oci_config(&s).expect("config");
        assert_eq!(c["linux"]["namespaces"][0]["path"], "/proc/42/ns/pid");
        assert_eq!(c["hostname"], "web");
    }

    #[test]
    fn rejects_empty_args_and_relative_rootfs() {
        let mut s = spec();
        s.args.clear();
        assert!(oci_config(&s).is_err());
        let mut s = spec();
        s.rootfs = PathBuf::from("rel");
        assert!(oci_config(&s).is_err());
    }

    #[test]
    fn rootfs_is_idempotent() {
        let dir = std::env::temp_dir().join(format!("shim-exec-rootfs-{}", std::process::id()));
        let busybox = Path::new("/bin/busybox");
        prepare_busybox_rootfs(&dir, busybox).expect("first");
        prepare_busybox_rootfs(&dir, busybox).expect("second");
        assert!(dir.join("bin/sh").symlink_metadata().is_ok());
        assert!(dir.join("etc/passwd").is_file());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
