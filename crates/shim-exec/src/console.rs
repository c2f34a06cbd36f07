//! The console socket runc hands a terminal's pty master through (`--console-socket`), made as
//! go-runc's `NewTempConsoleSocket` makes it (containerd/go-runc `console.go`): a directory
//! `pty<random u32>` created with mode 0700 in the runtime dir (`$XDG_RUNTIME_DIR`, else the temp
//! dir), a listening socket `pty.sock` in it; runc connects and sends the master fd with
//! SCM_RIGHTS. Dropping the [`ConsoleSocket`] removes the directory.
//!
//! Also the pty size ioctl (`TIOCSWINSZ`) ResizePty needs.

use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::net::UnixListener;

use crate::go_error::path_error;

const CREATE_ATTEMPTS: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Worded as containerd's shim words it (`failed to create runc console socket: ...`).
    #[error("failed to create runc console socket: {0}")]
    Create(String),
    #[error("receive pty master: {0}")]
    Receive(#[source] io::Error),
}

/// A listening console socket in its own temp directory.
#[derive(Debug)]
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new(runtime_dir: &Path) -> Result<ConsoleSocket, ConsoleError> {
        let mut attempt = 0;
        let dir = loop {
            let dir = runtime_dir.join(format!("pty{}", rand::random::<u32>()));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < CREATE_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(ConsoleError::Create(path_error("mkdir", &dir, &e))),
            }
        };
        let path = dir.join("pty.sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(ConsoleSocket {
                dir,
                path,
                listener,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(ConsoleError::Create(path_error("listen unix", &path, &e)))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts runc's connection and returns the pty master it sends.
    pub async fn receive_master(&self) -> Result<OwnedFd, ConsoleError> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(ConsoleError::Receive)?;
        loop {
            stream.readable().await.map_err(ConsoleError::Receive)?;
            match stream.try_io(tokio::io::Interest::READABLE, || {
                recv_fd(stream.as_raw_fd())
            }) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(ConsoleError::Receive(e)),
            }
        }
    }
}

fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    // runc sends the terminal's name as data and the fd as SCM_RIGHTS.
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut received = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor for us; we own it now.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    received.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no fd in console message"))
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Sets the window size of the terminal behind `master`.
pub fn set_window_size(master: RawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own for the duration of the call.
    let rc = unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_fd_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let console = ConsoleSocket::new(dir.path()).expect("console");
        let name = console
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .expect("dir name");
        assert!(name.starts_with("pty") && name[3..].parse::<u32>().is_ok());
        let path = console.path().to_path_buf();
        let sender = tokio::task::spawn_blocking(move || {
            let s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            let f = fs::File::open("/dev/null").expect("null");
            let fds = [f.as_raw_fd()];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let iov = [io::IoSlice::new(b"/dev/pts/0")];
            nix::sys::socket::sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
                .expect("sendmsg");
        });
        let fd = console.receive_master().await.expect("receive");
        sender.await.expect("sender");
        assert!(fd.as_raw_fd() >= 0);
        let dir_path = console.path().parent().map(Path::to_path_buf).expect("dir");
        drop(console);
        assert!(!dir_path.exists());
    }

    #[test]
    fn create_failure_is_worded_like_containerd() {
        let err = ConsoleSocket::new(Path::new("/nonexistent-dir")).expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("failed to create runc console socket: mkdir /nonexistent-dir/pty")
                && text.ends_with(": no such file or directory"),
            "{text}"
        );
    }
}
