//! `kubectl exec -it` in a real terminal (issue #6): tmux gives each client a terminal of a known
//! size; `stty size` in the container's shell must show it, and after the terminal is resized
//! the new size must reach the shell. For the three clients (kubectl 1.32 over WebSocket v5,
//! 1.32 forced to SPDY, 1.20 over SPDY), in proxy and in redirect mode.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{client_argv, dump_logs, run_bounded, start_lab_mode, stop_lab};
use execlab::fault::kubectl::Client;

const WAIT: Duration = Duration::from_secs(20);
const SESSION: &str = "exec";
/// What the pane prints, with the exit status, once kubectl has exited.
const EXITED: &str = "kubectl exited with";

/// A private tmux server (its own socket) holding one session; killed when dropped.
struct Tmux {
    socket: PathBuf,
}

/// `arg` quoted for sh: tmux runs a session's command through the shell.
fn shell_quote(arg: &OsString) -> String {
    format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"))
}

impl Tmux {
    /// Starts `argv` in a detached `width`×`height` session; the pane stays after the command
    /// exits, showing `EXITED <status>`.
    fn start(socket: &Path, argv: &[OsString], width: u16, height: u16) -> Self {
        let tmux = Tmux {
            socket: socket.to_path_buf(),
        };
        // The shell around the command reports its exit status on the screen: tmux 3.3a does
        // not always reap a pane's own process (it stays a zombie, its status never read).
        let quoted: Vec<String> = argv.iter().map(shell_quote).collect();
        let command = format!("{}; echo \"{EXITED} $?\"", quoted.join(" "));
        let (w, h) = (width.to_string(), height.to_string());
        let out = tmux.run(&[
            "start-server",
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &w,
            "-y",
            &h,
            &command,
        ]);
        assert!(out.status.success(), "tmux: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket).args(args);
        run_bounded(&mut command, Duration::from_secs(10))
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", SESSION]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn type_line(&self, line: &str) {
        let out = self.run(&["send-keys", "-t", SESSION, "-l", line]);
        assert!(out.status.success(), "send-keys: {out:?}");
        self.run(&["send-keys", "-t", SESSION, "Enter"]);
    }

    /// Polls the screen until `check` holds or `limit` passes; the last screen either way.
    fn wait_screen(&self, limit: Duration, check: impl Fn(&str) -> bool) -> (bool, String) {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if check(&screen) || Instant::now() > deadline {
                return (check(&screen), screen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

fn has_line(screen: &str, want: &str) -> bool {
    screen.lines().any(|l| l.trim() == want)
}

/// Types `stty size` until the shell reports `want`: a resize travels on its own stream, so
/// the first command typed after it may still see the old size.
fn stty_shows(tmux: &Tmux, want: &str) -> (bool, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        tmux.type_line("stty size");
        let (seen, screen) = tmux.wait_screen(Duration::from_secs(2), |s| has_line(s, want));
        if seen || Instant::now() > deadline {
            return (seen, screen);
        }
    }
}

fn terminal_size_reaches_the_shell(redirect: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab_mode(&tmp.path().join("lab"), redirect);
    let dir = lab.dir().to_path_buf();
    for client in Client::ALL {
        let label = format!(
            "{} ({} mode)",
            client.label(),
            if redirect { "redirect" } else { "proxy" }
        );
        let mut argv = client_argv(client, &lab.kubeconfig());
        argv.extend(["exec", "-it", "web", "-c", "app", "--", "sh"].map(OsString::from));
        let tmux = Tmux::start(&tmp.path().join("tmux.sock"), &argv, 120, 40);

        let (prompt, screen) =
            tmux.wait_screen(WAIT, |s| s.lines().any(|l| l.trim_end().ends_with('#')));
        assert!(
            prompt,
            "{label}: no shell prompt:\n{screen}\n{}",
            dump_logs(&dir)
        );
        let (seen, screen) = stty_shows(&tmux, "40 120");
        assert!(seen, "{label}: size 40x120 not seen:\n{screen}");

        let out = tmux.run(&["resize-window", "-t", SESSION, "-x", "100", "-y", "30"]);
        assert!(out.status.success(), "resize-window: {out:?}");
        let (seen, screen) = stty_shows(&tmux, "30 100");
        assert!(
            seen,
            "{label}: the resize to 30x100 did not reach the shell:\n{screen}"
        );

        tmux.type_line("exit");
        let (exited, screen) = tmux.wait_screen(WAIT, |s| s.contains(EXITED));
        assert!(
            has_line(&screen, &format!("{EXITED} 0")),
            "{label}: kubectl did not exit 0 (exited: {exited}):\n{screen}"
        );
    }
    stop_lab(lab);
}

#[test]
fn tty_size_and_resize_in_proxy_mode() {
    terminal_size_reaches_the_shell(false);
}

#[test]
fn tty_size_and_resize_in_redirect_mode() {
    terminal_size_reaches_the_shell(true);
}
