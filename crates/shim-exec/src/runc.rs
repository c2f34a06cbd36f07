//! runc command lines and runc's JSON log, as containerd's shim drives runc through go-runc
//! (containerd/go-runc `runc.go`: global args `--root R --log L --log-format json` before the
//! subcommand; `exec --process F --detach --pid-file P [--console-socket S] ID`; environment
//! minus `NOTIFY_SOCKET`) and reads runc's failure reason back (containerd
//! `cmd/containerd-shim-runc-v2/process/utils.go` `getLastRuntimeError`: the `msg` of the last
//! `"level":"error"` entry of the log, trimmed).
//!
//! As containerd (`pkg/process/init.go` `NewRunc`: `Log: <bundle>/log.json`), every runc call
//! of a container, each exec included, appends to one `<bundle>/log.json`, so a runc that fails
//! without logging reports the last error an earlier call logged, as production does. runc also
//! prints its error on its own stderr; the shim keeps that line off the exec's stderr
//! (see [`crate::stdio`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to run runc: which binary and which state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// Where runc's pty master goes (`--console-socket`), if the process has a terminal.
pub type ConsoleSocketPath<'a> = Option<&'a Path>;

impl Runc {
    fn global(&self, log: &Path) -> Vec<OsString> {
        vec![
            "--root".into(),
            self.root.clone().into(),
            "--log".into(),
            log.into(),
            "--log-format".into(),
            "json".into(),
        ]
    }

    pub fn create_args(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console: ConsoleSocketPath<'_>,
        log: &Path,
    ) -> Vec<OsString> {
        let mut a = self.global(log);
        a.extend(["create".into(), "--bundle".into(), bundle.into()]);
        a.extend(["--pid-file".into(), pid_file.into()]);
        if let Some(s) = console {
            a.extend(["--console-socket".into(), s.into()]);
        }
        a.push(id.into());
        a
    }

    pub fn start_args(&self, id: &str, log: &Path) -> Vec<OsString> {
        let mut a = self.global(log);
        a.extend(["start".into(), id.into()]);
        a
    }

    pub fn exec_args(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        console: ConsoleSocketPath<'_>,
        log: &Path,
    ) -> Vec<OsString> {
        let mut a = self.global(log);
        a.extend(["exec".into(), "--process".into(), process_file.into()]);
        if let Some(s) = console {
            a.extend(["--console-socket".into(), s.into()]);
        }
        a.extend(["--detach".into(), "--pid-file".into(), pid_file.into()]);
        a.push(id.into());
        a
    }

    pub fn kill_args(&self, id: &str, signal: u32, all: bool, log: &Path) -> Vec<OsString> {
        let mut a = self.global(log);
        a.push("kill".into());
        if all {
            a.push("--all".into());
        }
        a.extend([id.into(), signal.to_string().into()]);
        a
    }

    pub fn delete_args(&self, id: &str, force: bool, log: &Path) -> Vec<OsString> {
        let mut a = self.global(log);
        a.push("delete".into());
        if force {
            a.push("--force".into());
        }
        a.push(id.into());
        a
    }

    pub fn ps_args(&self, id: &str, log: &Path) -> Vec<OsString> {
        let mut a = self.global(log);
        a.extend(["ps".into(), "--format".into(), "json".into(), id.into()]);
        a
    }

    /// A runc command with `args`, environment without `NOTIFY_SOCKET`.
    pub fn command(&self, args: Vec<OsString>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args).env_remove("NOTIFY_SOCKET");
        cmd
    }
}

/// The message of the last error-level entry of a runc JSON log, trimmed; `None` if there is
/// none. Lines that are not JSON objects are skipped.
pub fn last_error(log: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        level: String,
        #[serde(default)]
        msg: String,
    }
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Entry>(line).ok())
        .find(|e| e.level == "error")
        .map(|e| e.msg.trim().to_string())
}

/// Parses `runc ps --format json` output: a JSON array of pids.
pub fn parse_ps(output: &[u8]) -> Result<Vec<u32>, serde_json::Error> {
    serde_json::from_slice(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runc() -> Runc {
        Runc {
            binary: "runc".into(),
            root: "/run/r".into(),
        }
    }

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn exec_command_line_matches_go_runc_order() {
        let a = runc().exec_args(
            "c1",
            Path::new("/x/runc-process1"),
            Path::new("/b/e1.pid"),
            Some(Path::new("/x/pty1/pty.sock")),
            Path::new("/b/l.json"),
        );
        assert_eq!(
            strs(a).join(" "),
            "--root /run/r --log /b/l.json --log-format json exec --process /x/runc-process1 \
             --console-socket /x/pty1/pty.sock --detach --pid-file /b/e1.pid c1"
        );
    }

    #[test]
    fn create_kill_delete() {
        let r = runc();
        let l = Path::new("/l");
        assert_eq!(
            strs(r.create_args("c", Path::new("/b"), Path::new("/b/init.pid"), None, l))[6..]
                .join(" "),
            "create --bundle /b --pid-file /b/init.pid c"
        );
        assert_eq!(
            strs(r.kill_args("c", 9, true, l))[6..].join(" "),
            "kill --all c 9"
        );
        assert_eq!(
            strs(r.delete_args("c", true, l))[6..].join(" "),
            "delete --force c"
        );
    }

    #[test]
    fn last_error_takes_final_error_entry() {
        let log = concat!(
            "{\"level\":\"error\",\"msg\":\"old\",\"time\":\"2024-01-01T00:00:00Z\"}\n",
            "not json\n",
            "{\"level\":\"error\",\"msg\":\"exec failed: unable to start container process: exec: \\\"nosuch\\\": executable file not found in $PATH \",\"time\":\"2024-01-01T00:00:00Z\"}\n",
            "{\"level\":\"warning\",\"msg\":\"w\",\"time\":\"2024-01-01T00:00:00Z\"}\n",
        );
        assert_eq!(
            last_error(log).as_deref(),
            Some("exec failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH")
        );
        assert_eq!(last_error(""), None);
    }

    #[test]
    fn ps_output() {
        assert_eq!(parse_ps(b"[1,23]\n").expect("ps"), vec![1, 23]);
        assert!(parse_ps(b"nope").is_err());
    }
}
