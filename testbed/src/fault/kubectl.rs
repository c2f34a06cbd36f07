//! Real kubectl, run with a time limit: the clients a fault is shown to.
//!
//! kubectl 1.32 tries WebSocket v5 first and falls back to SPDY only when the upgrade itself
//! fails; `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` makes it use SPDY from the start. kubectl
//! 1.20 speaks SPDY only (failures.md, "Observed").

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::KUBECTL_120;

/// How long one kubectl may take before it is killed.
pub const KUBECTL_LIMIT: Duration = Duration::from_secs(30);

/// A kubectl and the protocol it uses for exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// /usr/bin/kubectl 1.32, WebSocket v5 (the default).
    Ws132,
    /// /usr/bin/kubectl 1.32 with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`.
    Spdy132,
    /// kubectl 1.20 (SPDY only), where scripts/setup.sh puts it.
    Spdy120,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::Ws132, Client::Spdy132, Client::Spdy120];

    pub fn label(self) -> &'static str {
        match self {
            Client::Ws132 => "kubectl 1.32, WebSocket v5",
            Client::Spdy132 => "kubectl 1.32, SPDY",
            Client::Spdy120 => "kubectl 1.20, SPDY",
        }
    }

    pub fn binary(self) -> PathBuf {
        match self {
            Client::Ws132 | Client::Spdy132 => system_kubectl(),
            Client::Spdy120 => PathBuf::from(KUBECTL_120),
        }
    }

    /// The shell spelling of this client, for the report and the lab guides.
    pub fn shell_prefix(self) -> String {
        match self {
            Client::Ws132 => "kubectl".into(),
            Client::Spdy132 => "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false kubectl".into(),
            Client::Spdy120 => KUBECTL_120.into(),
        }
    }

    pub fn available(self) -> bool {
        self.binary().is_file()
    }
}

/// `EXECLAB_KUBECTL`, else /usr/bin/kubectl, else /usr/local/bin/kubectl.
pub fn system_kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("EXECLAB_KUBECTL") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/kubectl", "/usr/local/bin/kubectl"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("kubectl")
}

/// What one kubectl run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubectlOutput {
    pub stdout: String,
    pub stderr: String,
    /// `None` when it was killed (by the time limit or a signal).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Runs `client` with `args` against `kubeconfig`, killed after `limit`.
pub fn run(
    client: Client,
    kubeconfig: &Path,
    args: &[&str],
    limit: Duration,
) -> std::io::Result<KubectlOutput> {
    let mut command = Command::new(client.binary());
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    // Only the lab's kubeconfig and this client's protocol choice count.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("KUBECTL_") || name_text == "KUBECONFIG" {
            command.env_remove(&name);
        }
    }
    match client {
        Client::Spdy132 => {
            command.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
        }
        Client::Ws132 => {
            command.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true");
        }
        Client::Spdy120 => {}
    }
    run_bounded(&mut command, limit)
}

/// Runs a command with its output captured; kills it after `limit`.
pub fn run_bounded(command: &mut Command, limit: Duration) -> std::io::Result<KubectlOutput> {
    let started = Instant::now();
    // Its own process group, so a timeout kills whatever it started too (and the output pipes
    // close).
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let readers = [
        child.stdout.take().map(reader),
        child.stderr.take().map(reader),
    ];
    let deadline = started + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            timed_out = true;
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let [stdout, stderr] = readers.map(|r| {
        r.and_then(|handle| handle.join().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    });
    Ok(KubectlOutput {
        stdout,
        stderr,
        exit_code: status.code(),
        timed_out,
        elapsed: started.elapsed(),
    })
}

fn reader<R: Read + Send + 'static>(mut from: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_over_its_limit_is_killed() {
        let out = run_bounded(
            Command::new("/bin/sh").args(["-c", "echo started; sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert_eq!(out.stdout, "started\n");
        assert!(out.elapsed < Duration::from_secs(10));
    }

    #[test]
    fn output_and_exit_code_are_kept() {
        let out = run_bounded(
            Command::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
            ("out\n", "err\n", Some(3))
        );
        assert!(!out.timed_out);
    }
}
