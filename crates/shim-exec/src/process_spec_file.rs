//! The `runc-process<N>` file that carries an exec's OCI process spec to `runc exec --process`,
//! created exactly as go-runc's `Exec` does it (containerd/go-runc `runc.go`, via Go
//! `os.CreateTemp(os.Getenv("XDG_RUNTIME_DIR"), "runc-process")`): in the runtime dir, name
//! `runc-process` + a random `u32` in decimal, `O_RDWR|O_CREAT|O_EXCL` mode 0600, retried on
//! `EEXIST` (up to 10000 times), JSON plus a trailing newline. The file is removed when the
//! [`ProcessSpecFile`] is dropped, i.e. when runc has returned, success or not.
//!
//! Failures read like Go's: `open <path>: no space left on device` when the file cannot be
//! created (the op is `open` because CreateTemp returns the OpenFile error) and
//! `write <path>: no space left on device` when the JSON cannot be written (the file is removed
//! first). The shim prefixes `OCI runtime exec failed: `.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::go_error::path_error;

const NAME_PREFIX: &str = "runc-process";
const CREATE_ATTEMPTS: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SpecFileError {
    #[error("{}", path_error("open", path, source))]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", path_error("write", path, source))]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A process spec on disk; removed on drop.
#[derive(Debug)]
pub struct ProcessSpecFile {
    path: PathBuf,
}

impl ProcessSpecFile {
    /// Writes `spec_json` (without trailing newline; one is added) to a new file in `dir`.
    pub fn create(dir: &Path, spec_json: &[u8]) -> Result<ProcessSpecFile, SpecFileError> {
        Self::create_with(dir, spec_json, rand::random::<u32>)
    }

    fn create_with(
        dir: &Path,
        spec_json: &[u8],
        mut random: impl FnMut() -> u32,
    ) -> Result<ProcessSpecFile, SpecFileError> {
        let mut attempt = 0;
        let (path, mut file) = loop {
            let path = dir.join(format!("{NAME_PREFIX}{}", random()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < CREATE_ATTEMPTS => {
                    attempt += 1;
                }
                Err(source) => return Err(SpecFileError::Open { path, source }),
            }
        };
        // From here on the file exists: the guard removes it on every path.
        let spec_file = ProcessSpecFile { path };
        let mut contents = Vec::with_capacity(spec_json.len() + 1);
        contents.extend_from_slice(spec_json);
        contents.push(b'\n');
        if let Err(source) = file.write_all(&contents) {
            return Err(SpecFileError::Write {
                path: spec_file.path.clone(),
                source,
            });
        }
        Ok(spec_file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProcessSpecFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "removing process spec file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_mode_contents_and_removal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = ProcessSpecFile::create_with(dir.path(), b"{\"args\":[\"sh\"]}", || 2116393344)
            .expect("create");
        assert_eq!(f.path(), dir.path().join("runc-process2116393344"));
        let meta = fs::metadata(f.path()).expect("meta");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(f.path()).expect("read"), b"{\"args\":[\"sh\"]}\n");
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists());
    }

    #[test]
    fn retries_on_existing_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("runc-process1"), b"").expect("pre-existing");
        let mut n = 0;
        let f = ProcessSpecFile::create_with(dir.path(), b"{}", || {
            n += 1;
            n
        })
        .expect("create");
        assert_eq!(f.path(), dir.path().join("runc-process2"));
    }

    #[test]
    fn open_failure_reads_like_go() {
        let err = ProcessSpecFile::create_with(Path::new("/nonexistent-dir"), b"{}", || 7)
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "open /nonexistent-dir/runc-process7: no such file or directory"
        );
    }
}
