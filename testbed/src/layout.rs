//! The lab directory: where every file of a lab lives (docs/architecture.md, "Lab directory").
//!
//! Everything a lab makes is under one directory, so parallel labs never share a path and the
//! sweep after a crash knows exactly what to look at.
//!
//! The volatile part (`run/`, `xdg/`, `state/`: sockets, FIFOs, runc-process files, bundles and
//! runc's state) lives on a tmpfs, as a node's `/run` does: `DIR/run` and its siblings are
//! symlinks into `/dev/shm/execlab-<hash of DIR>/`. On a disk, creating an exec's FIFOs and its
//! process file costs milliseconds per exec (measured here: mkdir + 2 mkfifo 2.8 ms on ext4,
//! 12 µs on tmpfs) that no real node pays. Where /dev/shm is not a writable tmpfs they are
//! plain directories under DIR.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::LabError;
use crate::hop::Hop;

/// The tmpfs every Linux system has; the lab's volatile dirs go below it.
const VOLATILE_BASE: &str = "/dev/shm";
/// `statfs` magic of a tmpfs (linux/magic.h `TMPFS_MAGIC`).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Longest path a unix socket address can carry (`sun_path` is 108 bytes with its NUL).
const UNIX_SOCKET_PATH_MAX: usize = 107;

/// The paths of one lab, all under an absolute root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabLayout {
    root: PathBuf,
}

impl LabLayout {
    /// A layout rooted at `dir`, made absolute against the current directory (the hops get
    /// these paths on their command lines and in `unix://` URLs, which must be absolute).
    pub fn new(dir: &Path) -> Result<Self, LabError> {
        let root = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| LabError::io("current directory", e))?
                .join(dir)
        };
        let root = normalize(&root);
        if root.parent().is_none() {
            return Err(LabError::BadFile {
                path: root,
                message: "the file system root cannot be a lab dir".into(),
            });
        }
        let layout = Self { root };
        let socket = layout.cri_socket();
        if socket.as_os_str().len() > UNIX_SOCKET_PATH_MAX {
            return Err(LabError::DirTooLong {
                dir: layout.root.clone(),
                socket,
            });
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn policy_file(&self) -> PathBuf {
        self.root.join("policy.json")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }
    /// Sockets: the CRI socket, the shims' ttrpc sockets, console sockets.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn cri_socket(&self) -> PathBuf {
        self.run_dir().join("cri.sock")
    }
    /// `unix:///…/run/cri.sock`, as the kubelet's `--runtime-endpoint` spells it.
    pub fn cri_endpoint(&self) -> String {
        format!("unix://{}", self.cri_socket().display())
    }
    /// The shims' `XDG_RUNTIME_DIR`, where the `runc-process*` files are made.
    pub fn xdg_dir(&self) -> PathBuf {
        self.root.join("xdg")
    }
    /// cri-streaming's state: bundles, FIFOs, and runc's state under `runc/`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn runc_root(&self) -> PathBuf {
        self.state_dir().join("runc")
    }
    /// Where a sweep looks for the lab's runc containers: the runc root, and the same root on
    /// the tmpfs, which outlives `DIR/state` when DIR was removed under a running lab.
    pub fn runc_roots(&self) -> Vec<PathBuf> {
        let on_tmpfs = self.volatile_root().join("state").join("runc");
        let mut roots = vec![self.runc_root()];
        let same = |a: &Path, b: &Path| match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if on_tmpfs.is_dir() && !same(&on_tmpfs, &roots[0]) {
            roots.push(on_tmpfs);
        }
        roots
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self, hop: Hop) -> PathBuf {
        self.logs_dir().join(format!("{}.log", hop.name()))
    }
    /// Where a detached supervisor (`execlab up --detach`) writes its own output.
    pub fn supervisor_log(&self) -> PathBuf {
        self.logs_dir().join("execlab.log")
    }
    pub fn addr_dir(&self) -> PathBuf {
        self.root.join("addr")
    }
    pub fn addr_file(&self, hop: Hop) -> PathBuf {
        self.addr_dir().join(hop.name())
    }
    /// The running shims' metrics address files, `DIR/addr/shim-exec.<sandbox id>.metrics`
    /// (each shim removes its own when it exits), sorted.
    pub fn shim_metrics_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.addr_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("shim-exec.") && n.ends_with(".metrics"))
            })
            .collect();
        files.sort();
        files
    }
    pub fn lab_record(&self) -> PathBuf {
        self.root.join("lab.json")
    }
    /// Written last, atomically: its existence means the lab is ready.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    /// The tmpfs directory holding the volatile dirs: one per lab root (FNV-1a of its path,
    /// so `up` and a later `down` or sweep find the same one).
    pub fn volatile_root(&self) -> PathBuf {
        let hash = self
            .root
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
        Path::new(VOLATILE_BASE).join(format!("execlab-{hash:016x}"))
    }

    /// The dirs that live on the tmpfs (see the module comment).
    fn volatile_dirs(&self) -> [PathBuf; 3] {
        [self.run_dir(), self.xdg_dir(), self.state_dir()]
    }

    /// Makes the directories a starting lab needs.
    pub fn create_dirs(&self) -> Result<(), LabError> {
        for dir in [
            self.root.clone(),
            self.pki_dir(),
            self.manifests_dir(),
            self.logs_dir(),
            self.addr_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        }
        let on_tmpfs = volatile_base().is_some();
        for dir in self.volatile_dirs() {
            let is_link = fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink());
            if on_tmpfs && (is_link || !dir.exists()) {
                let name = dir.file_name().unwrap_or_default();
                let target = self.volatile_root().join(name);
                fs::create_dir_all(&target).map_err(|e| LabError::io(&target, e))?;
                if is_link {
                    fs::remove_file(&dir).map_err(|e| LabError::io(&dir, e))?;
                }
                std::os::unix::fs::symlink(&target, &dir).map_err(|e| LabError::io(&dir, e))?;
            } else {
                fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
            }
        }
        Ok(())
    }

    /// Everything a lab makes and removes again when it stops. The logs stay, so a stopped
    /// lab can still be read; they are overwritten by the next `up`.
    pub fn removable(&self) -> Vec<PathBuf> {
        vec![
            self.kubeconfig(),
            self.lab_record(),
            self.addr_dir(),
            self.run_dir(),
            self.xdg_dir(),
            self.state_dir(),
            self.manifests_dir(),
            self.rootfs(),
            self.policy_file(),
            self.pki_dir(),
            self.volatile_root(),
        ]
    }

    /// True when `path` is the lab root or lies under it (or under its volatile root).
    pub fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.root) || path.starts_with(self.volatile_root())
    }
}

/// The tmpfs for volatile files (FIFOs, sockets), when this system has a writable one.
pub fn volatile_base() -> Option<&'static Path> {
    Some(Path::new(VOLATILE_BASE)).filter(|base| is_tmpfs(base))
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == TMPFS_MAGIC)
        && nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Writes `contents` to `path` so that readers see either nothing or the whole file:
/// a temp file in the same directory, fsync, then rename.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(LabError::io(path, e));
    }
    Ok(())
}

/// Removes `.` and `..` components without touching the file system (the directory may not
/// exist yet, so `canonicalize` is not an option).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dirs_become_absolute_and_normal() {
        let layout = LabLayout::new(Path::new("./a/../lab")).unwrap();
        assert!(layout.root().is_absolute());
        assert!(layout.root().ends_with("lab"));
        assert!(!layout.root().to_string_lossy().contains(".."));
    }

    #[test]
    fn volatile_dirs_are_symlinks_into_a_tmpfs_dir_of_their_own() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LabLayout::new(&tmp.path().join("lab")).unwrap();
        let other = LabLayout::new(&tmp.path().join("lab2")).unwrap();
        assert_ne!(layout.volatile_root(), other.volatile_root());
        assert_eq!(
            layout.volatile_root(),
            LabLayout::new(&tmp.path().join("lab"))
                .unwrap()
                .volatile_root()
        );
        assert!(layout.removable().contains(&layout.volatile_root()));
        layout.create_dirs().unwrap();
        if is_tmpfs(Path::new(VOLATILE_BASE)) {
            for dir in [layout.run_dir(), layout.xdg_dir(), layout.state_dir()] {
                let target = fs::read_link(&dir).expect("a symlink");
                assert!(target.starts_with(layout.volatile_root()), "{target:?}");
                assert!(is_tmpfs(&target));
            }
            assert!(layout.contains(&layout.volatile_root().join("state/x")));
            // A second `up` in the same dir finds the links and keeps them.
            layout.create_dirs().unwrap();
        }
        for path in layout.removable() {
            let _ = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
        }
        assert!(!layout.volatile_root().exists());
    }

    /// The sweep finds runc's state on the tmpfs even after DIR (and its links) is gone.
    #[test]
    fn runc_roots_include_the_tmpfs_one_once_dir_is_removed() {
        if !is_tmpfs(Path::new(VOLATILE_BASE)) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layout = LabLayout::new(&tmp.path().join("lab")).unwrap();
        layout.create_dirs().unwrap();
        fs::create_dir_all(layout.runc_root()).unwrap();
        assert_eq!(layout.runc_roots(), vec![layout.runc_root()]);
        fs::remove_dir_all(layout.root()).unwrap();
        assert_eq!(
            layout.runc_roots(),
            vec![
                layout.runc_root(),
                layout.volatile_root().join("state").join("runc")
            ]
        );
        fs::remove_dir_all(layout.volatile_root()).unwrap();
    }

    #[test]
    fn paths_follow_the_architecture() {
        let layout = LabLayout::new(Path::new("/tmp/x")).unwrap();
        assert_eq!(layout.cri_endpoint(), "unix:///tmp/x/run/cri.sock");
        assert_eq!(
            layout.addr_file(Hop::KubeletStream),
            Path::new("/tmp/x/addr/kubelet-stream")
        );
        assert_eq!(
            layout.log_file(Hop::ApiserverProxy),
            Path::new("/tmp/x/logs/apiserver-proxy.log")
        );
        assert_eq!(layout.runc_root(), Path::new("/tmp/x/state/runc"));
        assert!(layout.contains(Path::new("/tmp/x/run/cri.sock")));
        assert!(!layout.contains(Path::new("/tmp/xy/run")));
    }

    #[test]
    fn the_root_dir_is_refused() {
        assert!(LabLayout::new(Path::new("/")).is_err());
        assert!(LabLayout::new(Path::new("/tmp/..")).is_err());
    }

    #[test]
    fn a_dir_too_long_for_a_socket_is_refused() {
        let long = format!("/tmp/{}", "d".repeat(100));
        assert!(matches!(
            LabLayout::new(Path::new(&long)),
            Err(LabError::DirTooLong { .. })
        ));
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_atomically(&path, b"hello", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
