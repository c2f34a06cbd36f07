//! `--addr-file`: a hop writes the address it actually listens on (port 0 = OS-chosen) once the
//! socket is bound, so parallel labs never collide. Written to a temporary file in the same
//! directory and renamed into place, so a reader never sees a partial address.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

/// Writes `contents` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `addr` (e.g. `127.0.0.1:41234`, no trailing newline) to `path` atomically.
pub fn write_addr_file(path: &Path, addr: SocketAddr) -> io::Result<()> {
    write_atomically(path, addr.to_string().as_bytes())
}

/// Reads an address written by [`write_addr_file`] (surrounding whitespace ignored).
pub fn read_addr_file(path: &Path) -> io::Result<SocketAddr> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_without_leaving_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("addr").join("kubelet-stream");
        let addr: SocketAddr = "127.0.0.1:41234".parse().expect("addr");
        write_addr_file(&path, addr).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1:41234"
        );
        assert_eq!(read_addr_file(&path).expect("parse"), addr);
        write_addr_file(&path, "127.0.0.1:1".parse().expect("addr")).expect("rewrite");
        assert_eq!(read_addr_file(&path).expect("parse").port(), 1);
        let entries = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .count();
        assert_eq!(entries, 1, "temp file left behind");
    }
}
