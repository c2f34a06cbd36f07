//! Child reaping for a subreaper shim: on every SIGCHLD, `waitpid(-1, WNOHANG)` until nothing is
//! left and hand each exit to every subscriber. runc commands are waited for through the same
//! channel (never through `Child::wait`, which would race the reaper); container processes
//! reparented to the shim are matched to tasks by the caller.
//!
//! Exit statuses as containerd reports them (containerd `sys/reaper/reaper_unix.go`
//! `exitStatus`): the exit code, or 128 + the signal number for a signal death.

use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// One reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitEvent {
    pub pid: i32,
    pub status: u32,
    pub at: SystemTime,
}

/// The status containerd reports for a raw `waitpid` status; `None` if the child did not end.
pub fn exit_status(raw: i32) -> Option<u32> {
    if libc::WIFEXITED(raw) {
        Some(libc::WEXITSTATUS(raw) as u32)
    } else if libc::WIFSIGNALED(raw) {
        Some(128 + libc::WTERMSIG(raw) as u32)
    } else {
        None
    }
}

#[derive(Default)]
struct Subscribers {
    next_id: u64,
    list: Vec<(u64, mpsc::UnboundedSender<ExitEvent>)>,
}

/// The shim's reaper; cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    subscribers: Arc<Mutex<Subscribers>>,
}

impl Reaper {
    /// Installs the SIGCHLD handler and the reaping task. Call once, inside the runtime, before
    /// any child is spawned.
    pub fn install() -> io::Result<Reaper> {
        let reaper = Reaper {
            subscribers: Arc::default(),
        };
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            r.reap_all();
            while sigchld.recv().await.is_some() {
                r.reap_all();
            }
        });
        Ok(reaper)
    }

    fn reap_all(&self) {
        loop {
            let mut raw = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(status) = exit_status(raw) else {
                continue;
            };
            let event = ExitEvent {
                pid,
                status,
                at: SystemTime::now(),
            };
            tracing::debug!(pid, status, "reaped");
            let subs = self
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (_, tx) in &subs.list {
                let _ = tx.send(event);
            }
        }
    }

    /// Every exit from now on, until the subscription is dropped.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = subs.next_id;
        subs.next_id += 1;
        subs.list.push((id, tx));
        Subscription {
            id,
            rx,
            seen: Vec::new(),
            subscribers: self.subscribers.clone(),
        }
    }

    /// Spawns `cmd` with a subscription taken before the spawn, so its exit cannot be missed.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, Subscription)> {
        let sub = self.subscribe();
        let child = cmd.spawn()?;
        Ok((child, sub))
    }
}

/// A stream of exits; remembers the ones passed over while waiting for a particular pid.
pub struct Subscription {
    id: u64,
    rx: mpsc::UnboundedReceiver<ExitEvent>,
    seen: Vec<ExitEvent>,
    subscribers: Arc<Mutex<Subscribers>>,
}

impl Subscription {
    /// The next exit.
    pub async fn recv(&mut self) -> Option<ExitEvent> {
        self.rx.recv().await
    }

    /// Waits for `pid` to exit; other exits are kept for [`Subscription::take_exit_of`].
    pub async fn wait_for(&mut self, pid: u32) -> io::Result<ExitEvent> {
        if let Some(ev) = self.take_seen(pid) {
            return Ok(ev);
        }
        while let Some(ev) = self.rx.recv().await {
            if ev.pid as u32 == pid {
                return Ok(ev);
            }
            self.seen.push(ev);
        }
        Err(io::Error::other("reaper stopped"))
    }

    fn take_seen(&mut self, pid: u32) -> Option<ExitEvent> {
        let i = self.seen.iter().position(|e| e.pid as u32 == pid)?;
        Some(self.seen.swap_remove(i))
    }

    /// The exit of `pid` if it happened since the subscription began (without waiting).
    pub fn take_exit_of(&mut self, pid: u32) -> Option<ExitEvent> {
        while let Ok(ev) = self.rx.try_recv() {
            self.seen.push(ev);
        }
        self.take_seen(pid)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.list.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_containerd() {
        // Raw wait statuses: exit code in bits 8..16, signal in the low 7 bits.
        assert_eq!(exit_status(3 << 8), Some(3));
        assert_eq!(exit_status(0), Some(0));
        assert_eq!(exit_status(libc::SIGKILL), Some(137));
        assert_eq!(exit_status(libc::SIGTERM | 0x80), Some(143)); // core dumped
        assert_eq!(exit_status(0x137f), None); // stopped by SIGSTOP
    }
}
