//! The lab's busybox image as an OCI image layout archive, for `ctr images import` (no registry
//! is reachable from the lab machines): one uncompressed layer with busybox-static and a symlink
//! per applet, an image config whose entrypoint sleeps (so it also serves as the sandbox
//! image), a manifest, `index.json` naming the image and `oci-layout`, all as blobs addressed by
//! their sha256 digest, packed into one ustar archive.
//!
//! Layout checked against the OCI image-spec (`image-layout.md`, `manifest.md`, `config.md`)
//! and containerd 1.6's importer (`images/archive/importer.go`: an index entry's
//! `io.containerd.image.name` annotation names the image).

use std::path::Path;
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

/// The name the image is imported under: what containerd's CRI resolves the manifests' bare
/// `busybox` to.
pub const IMAGE_NAME: &str = "docker.io/library/busybox:latest";

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A sleep that outlives any lab: the sandbox's pause process.
const ENTRYPOINT: [&str; 2] = ["/bin/sleep", "2147483647"];
const BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{busybox} --list` failed: {message}")]
    Applets { busybox: String, message: String },
    #[error("tar entry {path}: {message}")]
    Entry { path: String, message: String },
}

/// An ustar archive under construction (regular files, directories and symlinks only).
#[derive(Debug, Default)]
pub struct TarWriter {
    bytes: Vec<u8>,
}

#[derive(Clone, Copy)]
enum EntryKind {
    File,
    Dir,
    Symlink,
}

impl TarWriter {
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), ImageError> {
        self.entry(
            &format!("{}/", path.trim_end_matches('/')),
            mode,
            EntryKind::Dir,
            "",
            &[],
        )
    }
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), ImageError> {
        self.entry(path, mode, EntryKind::File, "", data)
    }
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), ImageError> {
        self.entry(path, 0o777, EntryKind::Symlink, target, &[])
    }

    /// The archive with its two zero end blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 2 * BLOCK, 0);
        self.bytes
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        kind: EntryKind,
        link: &str,
        data: &[u8],
    ) -> Result<(), ImageError> {
        let bad = |message: &str| ImageError::Entry {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        // Short names only: no prefix field or PAX headers needed for what the lab packs.
        if path.len() > 100 || link.len() > 100 {
            return Err(bad("name longer than 100 bytes"));
        }
        let mut header = [0u8; BLOCK];
        header[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], 0);
        header[156] = match kind {
            EntryKind::File => b'0',
            EntryKind::Symlink => b'2',
            EntryKind::Dir => b'5',
        };
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        // The checksum is taken with its own field as spaces.
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(data);
        let padded = data.len().div_ceil(BLOCK) * BLOCK;
        self.bytes.resize(self.bytes.len() + padded - data.len(), 0);
        Ok(())
    }
}

/// `value` as zero-padded octal filling `field` but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The busybox layer: busybox at /bin/busybox, a symlink per applet in /bin, the directories
/// runc and containerd mount onto, and a root user.
pub fn busybox_layer(busybox: &Path, applets: &[String]) -> Result<Vec<u8>, ImageError> {
    let binary = std::fs::read(busybox).map_err(|source| ImageError::Read {
        path: busybox.display().to_string(),
        source,
    })?;
    let mut tar = TarWriter::default();
    for dir in ["bin", "dev", "etc", "proc", "root", "sys", "var", "usr"] {
        tar.dir(dir, 0o755)?;
    }
    tar.dir("tmp", 0o1777)?;
    tar.file("bin/busybox", 0o755, &binary)?;
    for applet in applets {
        if applet != "busybox" && !applet.contains('/') && !applet.is_empty() {
            tar.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }
    tar.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    tar.file("etc/group", 0o644, b"root:x:0:\n")?;
    Ok(tar.finish())
}

/// The applets `busybox` provides (`busybox --list`).
pub fn applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let failed = |message: String| ImageError::Applets {
        busybox: busybox.display().to_string(),
        message,
    };
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The OCI architecture name of the machine (Go's GOARCH names).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The image layout archive for a single-layer image named [`IMAGE_NAME`].
pub fn oci_archive(layer: &[u8]) -> Result<Vec<u8>, ImageError> {
    let arch = oci_arch();
    let layer_digest = digest(layer);
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": ENTRYPOINT,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap_or_default();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": IMAGE_NAME,
                "org.opencontainers.image.ref.name": "latest",
            },
        }],
    }))
    .unwrap_or_default();
    let mut tar = TarWriter::default();
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.dir("blobs", 0o755)?;
    tar.dir("blobs/sha256", 0o755)?;
    for blob in [layer, &config, &manifest] {
        let name = digest(blob).replace("sha256:", "blobs/sha256/");
        tar.file(&name, 0o644, blob)?;
    }
    tar.file("index.json", 0o644, &index)?;
    Ok(tar.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(archive: &[u8], dir: &Path) -> Vec<String> {
        let path = dir.join("a.tar");
        std::fs::write(&path, archive).unwrap();
        let out = Command::new("tar").arg("-tvf").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn gnu_tar_reads_files_dirs_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = TarWriter::default();
        tar.dir("bin", 0o755).unwrap();
        tar.file("bin/busybox", 0o755, &[7u8; 700]).unwrap();
        tar.symlink("bin/sh", "busybox").unwrap();
        let lines = list(&tar.finish(), dir.path());
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with("bin/"));
        assert!(lines[1].contains(" 700 ") && lines[1].ends_with("bin/busybox"));
        assert!(lines[2].starts_with('l') && lines[2].ends_with("bin/sh -> busybox"));
    }

    #[test]
    fn long_names_are_refused_not_truncated() {
        let mut tar = TarWriter::default();
        assert!(tar.file(&"x".repeat(101), 0o644, b"").is_err());
    }

    #[test]
    fn archive_blobs_are_named_by_their_digest_and_linked() {
        let layer = {
            let mut tar = TarWriter::default();
            tar.file("hello", 0o644, b"hi").unwrap();
            tar.finish()
        };
        let archive = oci_archive(&layer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.tar");
        std::fs::write(&path, &archive).unwrap();
        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let read_json = |p: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
        };
        let blob = |d: &serde_json::Value| {
            out.join("blobs")
                .join(d.as_str().unwrap().replace(':', "/"))
        };
        let index = read_json(&out.join("index.json"));
        let entry = &index["manifests"][0];
        assert_eq!(entry["annotations"]["io.containerd.image.name"], IMAGE_NAME);
        let manifest_bytes = std::fs::read(blob(&entry["digest"])).unwrap();
        assert_eq!(digest(&manifest_bytes), entry["digest"].as_str().unwrap());
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let layer_blob = blob(&manifest["layers"][0]["digest"]);
        assert_eq!(std::fs::read(layer_blob).unwrap(), layer);
        let config = read_json(&blob(&manifest["config"]["digest"]));
        assert_eq!(config["rootfs"]["diff_ids"][0], digest(&layer));
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/sleep");
    }

    #[test]
    fn busybox_layer_has_an_applet_per_symlink() {
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            return;
        }
        let applets = applets(busybox).unwrap();
        assert!(applets.iter().any(|a| a == "sh"));
        let dir = tempfile::tempdir().unwrap();
        let lines = list(&busybox_layer(busybox, &applets).unwrap(), dir.path());
        assert!(lines.iter().any(|l| l.ends_with("bin/sh -> busybox")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("drwxrwxrwt") && l.ends_with("tmp/")));
    }
}
