//! The container's root filesystem from the `rootfs` mounts of a Create request: containerd
//! prepares a snapshot (overlayfs here) and sends its mounts instead of a ready directory; the
//! shim mounts them, in order, on `<bundle>/rootfs` (made 0711) before `runc create`, and
//! unmounts that path on Delete and in the `delete` action. Behaviour checked against
//! containerd 1.6's `runtime/v2/runc/container.go` (NewContainer), `pkg/process/init.go`
//! (delete) and `mount/mount_linux.go` (option parsing, bind then read-only remount).
//! [`MountOptions::parse`] is pure; [`mount_rootfs`] and [`unmount_rootfs`] do the syscalls.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use containerd_shim_protos::types::mount::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Unmount attempts per path (nested mounts of the same path come off one at a time).
const UNMOUNT_ATTEMPTS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed to create rootfs dir {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("failed to mount rootfs component {kind} {source_path:?} on {target}: {errno}")]
    Mount {
        kind: String,
        source_path: String,
        target: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("failed to unmount {path}: {errno}")]
    Unmount {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
}

/// A mount's `options` split into kernel flags and the filesystem's data string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub data: String,
}

impl MountOptions {
    /// Splits options as containerd does: known flag words set or clear flags, the rest are
    /// joined with `,` as filesystem data (e.g. overlay's `lowerdir=…`).
    pub fn parse(options: &[String]) -> MountOptions {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for option in options {
            match flag_word(option) {
                Some((true, f)) => flags.remove(f),
                Some((false, f)) => flags.insert(f),
                None => data.push(option.as_str()),
            }
        }
        MountOptions {
            flags,
            data: data.join(","),
        }
    }

    /// A bind mount asked to be read-only needs a second, remounting call.
    fn needs_ro_remount(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND) && self.flags.contains(MsFlags::MS_RDONLY)
    }
}

/// `(clears, flag)` for a flag word of mount(8); `None` for filesystem data.
fn flag_word(word: &str) -> Option<(bool, MsFlags)> {
    let entry = match word {
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "atime" => (true, MsFlags::MS_NOATIME),
        "bind" => (false, MsFlags::MS_BIND),
        "defaults" => (false, MsFlags::empty()),
        "dev" => (true, MsFlags::MS_NODEV),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "nodev" => (false, MsFlags::MS_NODEV),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "suid" => (true, MsFlags::MS_NOSUID),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    };
    Some(entry)
}

/// The rootfs path of `bundle`, where config.json's `root.path = "rootfs"` points.
pub fn rootfs_path(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` on `<bundle>/rootfs`, creating it. With no mounts the bundle's rootfs is
/// used as it is (cri-streaming hands over a ready one). On failure, what was mounted comes
/// off again.
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<(), RootfsError> {
    if mounts.is_empty() {
        return Ok(());
    }
    let target = rootfs_path(bundle);
    DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&target)
        .map_err(|source| RootfsError::Dir {
            path: target.clone(),
            source,
        })?;
    for m in mounts {
        if let Err(e) = mount_one(m, &target) {
            let _ = unmount_rootfs(bundle);
            return Err(e);
        }
    }
    tracing::info!(rootfs = %target.display(), mounts = mounts.len(), "rootfs mounted");
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), RootfsError> {
    let opts = MountOptions::parse(&m.options);
    let err = |errno| RootfsError::Mount {
        kind: m.type_.clone(),
        source_path: m.source.clone(),
        target: target.to_path_buf(),
        errno,
    };
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.type_.as_str()),
        opts.flags,
        data,
    )
    .map_err(err)?;
    if opts.needs_ro_remount() {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(err)?;
    }
    Ok(())
}

/// Unmounts everything mounted on `<bundle>/rootfs` (lazily, so a straggling process cannot
/// keep it). A path that is not a mount point (or does not exist) is fine.
pub fn unmount_rootfs(bundle: &Path) -> Result<(), RootfsError> {
    let path = rootfs_path(bundle);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    for _ in 0..UNMOUNT_ATTEMPTS {
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(errno) => return Err(RootfsError::Unmount { path, errno }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> MountOptions {
        MountOptions::parse(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn overlay_options_are_data() {
        let o = opts(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b");
    }

    #[test]
    fn read_only_bind_is_flags_and_remount() {
        let o = opts(&["ro", "rbind"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert!(o.data.is_empty());
        assert!(o.needs_ro_remount());
        assert!(!opts(&["ro", "rw", "bind"]).needs_ro_remount());
    }
}
