//! Error texts in the shape Go prints them, because the exec failure messages that reach kubectl
//! are Go `*os.PathError` strings: `<op> <path>: <errno text>`, where the errno text is Go's
//! `syscall.Errno` string — the C library message with a lower-case first letter
//! (e.g. `no space left on device`). Checked against Go `syscall/zerrors_linux_amd64.go`.

use std::io;
use std::path::Path;

/// Go's text for an OS error (`no space left on device`); non-OS errors use their own text.
pub fn errno_text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => format!("errno {code}"),
            }
        }
        None => err.to_string(),
    }
}

/// `<op> <path>: <errno text>`, as Go's `*os.PathError` prints.
pub fn path_error(op: &str, path: &Path, err: &io::Error) -> String {
    format!("{op} {}: {}", path.display(), errno_text(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_reads_like_go() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            path_error("open", Path::new("/tmp/runc-process1"), &e),
            "open /tmp/runc-process1: no space left on device"
        );
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_text(&e), "no such file or directory");
    }
}
