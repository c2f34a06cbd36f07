//! Finding the hop binaries: `EXECLAB_BIN_DIR`, else the directory of the running executable
//! (`target/release/` for `execlab`, and `target/debug/` for an integration test, which runs from
//! `target/debug/deps/`).

use std::path::{Path, PathBuf};

use crate::error::LabError;
use crate::hop::{binary_path, Hop};

pub const BIN_DIR_ENV: &str = "EXECLAB_BIN_DIR";

/// The directory holding the hop binaries.
pub fn locate_bin_dir() -> Result<PathBuf, LabError> {
    let candidates = candidate_dirs();
    for dir in &candidates {
        if has_all_hops(dir) {
            return Ok(dir.clone());
        }
    }
    let searched = candidates
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let missing = candidates
        .first()
        .and_then(|dir| {
            Hop::CHAIN
                .into_iter()
                .find(|hop| !binary_path(dir, *hop).is_file())
        })
        .unwrap_or(Hop::CriStreaming);
    Err(LabError::BinaryNotFound {
        binary: missing.binary().to_owned(),
        searched,
    })
}

fn candidate_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(parent) = dir.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
        dirs.push(dir);
    }
    dirs
}

fn has_all_hops(dir: &Path) -> bool {
    Hop::CHAIN
        .into_iter()
        .all(|hop| binary_path(dir, hop).is_file())
}
