//! What `/proc` says about processes and mounts: enough to find a lab's processes after a
//! crash (by the lab directory in their command line or environment) and its mounts.
//!
//! Formats per proc(5): `cmdline` and `environ` are NUL-separated; `stat`'s fourth field, after
//! the parenthesised command name, is the parent pid; `mountinfo`'s fifth field is the mount
//! point with space, tab, newline and backslash written as octal escapes.

use std::fs;
use std::path::{Path, PathBuf};

/// A process as seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub cmdline: Vec<String>,
}

impl ProcessInfo {
    /// The program's file name (`shim-exec` for `/x/target/release/shim-exec`).
    pub fn program(&self) -> &str {
        self.cmdline
            .first()
            .map(|arg0| arg0.rsplit('/').next().unwrap_or(arg0))
            .unwrap_or("")
    }
}

/// Every process with a readable, non-empty command line (kernel threads have none).
pub fn processes() -> Vec<ProcessInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = cmdline(pid)?;
            (!cmdline.is_empty()).then_some(ProcessInfo { pid, cmdline })
        })
        .collect()
}

pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(split_nul(&raw))
}

pub fn environ(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|raw| split_nul(&raw))
        .unwrap_or_default()
}

fn split_nul(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// The parent pid, from `/proc/PID/stat`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ppid(&stat)
}

fn parse_stat_ppid(stat: &str) -> Option<u32> {
    // The command name may contain spaces and parentheses: skip to the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// When the process started, in clock ticks since boot (`stat` field 22): with the pid, it
/// names one process even after the pid is recycled.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name start at field 3 (state); field 22 is the 20th of them.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// This process and all its ancestors (never to be killed by a sweep).
pub fn self_and_ancestors() -> Vec<u32> {
    let mut chain = vec![std::process::id()];
    while let Some(parent) = chain.last().and_then(|pid| parent_pid(*pid)) {
        if parent == 0 || chain.contains(&parent) {
            break;
        }
        chain.push(parent);
    }
    chain
}

/// Whether `text` names `dir` or a path under it (`/tmp/a` names `/tmp/a/run`, not `/tmp/ab`).
pub fn mentions_dir(text: &str, dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return false;
    }
    text.match_indices(dir).any(|(at, _)| {
        let rest = &text[at + dir.len()..];
        rest.is_empty() || rest.starts_with('/') || rest.starts_with(',') || rest.starts_with(' ')
    })
}

/// Whether the process's command line mentions `dir`.
pub fn cmdline_mentions(process: &ProcessInfo, dir: &Path) -> bool {
    process.cmdline.iter().any(|arg| mentions_dir(arg, dir))
}

/// Whether the process's environment mentions `dir` (shims get the lab's dirs that way).
pub fn environ_mentions(pid: u32, dir: &Path) -> bool {
    environ(pid).iter().any(|var| mentions_dir(var, dir))
}

/// Mount points of this mount namespace under `dir`, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .filter(|point| point.starts_with(dir))
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(digits, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Ports of listening TCP sockets (IPv4 and IPv6) in this network namespace, from
/// `/proc/net/tcp{,6}`.
pub fn listening_tcp_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT, st 0A is LISTEN.
            if fields.get(3) != Some(&"0A") {
                continue;
            }
            if let Some(port) = fields
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_is_mentioned_only_as_a_whole_path_component() {
        let dir = Path::new("/tmp/a");
        assert!(mentions_dir("/tmp/a", dir));
        assert!(mentions_dir("unix:///tmp/a/run/cri.sock", dir));
        assert!(mentions_dir("busybox=/tmp/a/rootfs", dir));
        assert!(!mentions_dir("/tmp/ab/run", dir));
        assert!(!mentions_dir("/tmp/b", dir));
    }

    #[test]
    fn stat_parent_pid_survives_odd_command_names() {
        let stat = "1234 (we ird) name)) S 42 1234 1234 0 -1";
        assert_eq!(parse_stat_ppid(stat), Some(42));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }

    #[test]
    fn this_process_is_alive_and_its_own_ancestor_chain_starts_with_it() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(self_and_ancestors()[0], me);
        assert!(processes().iter().any(|p| p.pid == me));
    }
}
