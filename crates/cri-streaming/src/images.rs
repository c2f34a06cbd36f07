//! The images cri-streaming can run: `--image NAME=ROOTFS_DIR` maps an image reference to an
//! unpacked rootfs on disk (there is no registry and no snapshotter in the lab).
//!
//! References are compared in their normalized Docker form, as containerd's CRI plugin does via
//! distribution/reference `ParseDockerRef`: `busybox`, `busybox:latest`, `library/busybox` and
//! `docker.io/library/busybox:latest` are one image; a digest is ignored for matching.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";

/// One configured image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `sha256:<hex>` derived from the reference and the rootfs path (stable across restarts).
    pub id: String,
    pub rootfs: PathBuf,
}

/// A `--image NAME=ROOTFS_DIR` flag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFlag {
    pub name: String,
    pub rootfs: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --image {0:?} (expected NAME=ROOTFS_DIR)")]
pub struct ImageFlagError(String);

impl FromStr for ImageFlag {
    type Err = ImageFlagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => Ok(Self {
                name: name.to_string(),
                rootfs: PathBuf::from(dir),
            }),
            _ => Err(ImageFlagError(s.to_string())),
        }
    }
}

/// The configured images.
#[derive(Debug, Clone, Default)]
pub struct ImageStore {
    images: Vec<Image>,
}

impl ImageStore {
    pub fn new(flags: &[ImageFlag]) -> Self {
        let mut images: Vec<Image> = Vec::new();
        for flag in flags {
            let reference = normalize(&flag.name);
            images.retain(|i| i.reference != reference);
            images.push(Image {
                id: image_id(&reference, &flag.rootfs),
                reference,
                rootfs: flag.rootfs.clone(),
            });
        }
        Self { images }
    }

    /// The image a CRI `ImageSpec.image` names: a reference in any short form, or an image id
    /// (`sha256:...`, as kubelet passes `image_ref` back).
    pub fn resolve(&self, name: &str) -> Option<&Image> {
        if name.starts_with("sha256:") {
            return self.images.iter().find(|i| i.id == name);
        }
        let reference = normalize(name);
        self.images.iter().find(|i| i.reference == reference)
    }

    pub fn all(&self) -> &[Image] {
        &self.images
    }
}

/// Docker-style normalization: default domain `docker.io`, `library/` for official images,
/// tag `latest` when there is neither tag nor digest; a digest is dropped.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    let without_digest = name.split_once('@').map_or(name, |(n, _)| n);
    let (domain, rest) = match without_digest.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), without_digest.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let rest = if domain == DEFAULT_DOMAIN && !rest.contains('/') {
        format!("{OFFICIAL_PREFIX}{rest}")
    } else {
        rest
    };
    // A tag is a ':' after the last '/'.
    let last_segment = rest.rsplit('/').next().unwrap_or(&rest);
    let rest = if last_segment.contains(':') {
        rest
    } else {
        format!("{rest}:{DEFAULT_TAG}")
    };
    format!("{domain}/{rest}")
}

fn image_id(reference: &str, rootfs: &Path) -> String {
    let mut hasher = Sha256::new();
    hasher.update(reference.as_bytes());
    hasher.update([0]);
    hasher.update(rootfs.as_os_str().as_encoded_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_normalize_like_docker() {
        for name in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/busybox",
            "docker.io/library/busybox:latest",
            "index.docker.io/library/busybox",
            "busybox@sha256:0123",
        ] {
            assert_eq!(
                normalize(name),
                "docker.io/library/busybox:latest",
                "{name}"
            );
        }
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("quay.io/x/y"), "quay.io/x/y:latest");
        assert_eq!(normalize("localhost:5000/y:2"), "localhost:5000/y:2");
        assert_eq!(normalize("user/app"), "docker.io/user/app:latest");
    }

    #[test]
    fn resolves_by_any_form_and_by_id() {
        let flag: ImageFlag = "busybox=/lab/rootfs".parse().expect("flag");
        let store = ImageStore::new(&[flag]);
        let image = store
            .resolve("docker.io/library/busybox:latest")
            .expect("image");
        assert_eq!(image.rootfs, PathBuf::from("/lab/rootfs"));
        assert_eq!(store.resolve(&image.id.clone()), Some(image));
        assert!(store.resolve("busybox:1.0").is_none());
        assert!(store.resolve("nginx").is_none());
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert!("busybox".parse::<ImageFlag>().is_err());
        assert!("=x".parse::<ImageFlag>().is_err());
        assert!("x=".parse::<ImageFlag>().is_err());
    }
}
