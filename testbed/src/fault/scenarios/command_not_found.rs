//! The most common exec failure of all: the command is not there (or cannot be run).
//!
//! Run directly (`kubectl exec web -- nosuchcmd`), the command never starts: runc init's
//! `exec.LookPath` fails, runc logs `exec failed: unable to start container process: exec:
//! "nosuchcmd": executable file not found in $PATH` to `<bundle>/log.json` (and prints it on its
//! own stderr, which containerd's shim never copies: its pipe copy starts only after
//! `runtime.Exec` succeeded), the shim answers Start with `OCI runtime exec failed: <that>`, and
//! kubectl gets an InternalError: exit 1, no exit code of the command. Run by a shell
//! (`sh -c nosuchcmd`), the shell starts, prints its own `not found` on the exec's stderr and exits
//! 127; a file without the execute bit gives `Permission denied` and 126. Those are plain
//! non-zero exits: `command terminated with exit code N`, and kubectl exits N.

use crate::fault::kubectl::Client;
use crate::fault::{kubectl_checks, Expected, FaultError, FaultReport, FaultRun};
use crate::lab::LabRuntime;

/// The error chain below the streaming server for a runc that could not start `cmd`
/// (failures.md §2: containerd's CRI and runc shim prefixes, errdefs' `: unknown`).
fn runc_failure_tail(cmd: &str) -> String {
    format!(
        "error executing command in container: failed to exec in container: failed to start exec \"{{hex64}}\": OCI runtime exec failed: exec failed: unable to start container process: exec: \"{cmd}\": executable file not found in $PATH: unknown"
    )
}

/// Per client: SPDY sees one `Internal error occurred: `, kubectl 1.32 over WebSocket two (the
/// API server's translator wraps the plain error again). Nothing else on stderr: runc's own
/// line must not come first.
fn not_found_expected(cmd: &str) -> Vec<(Client, Expected)> {
    let tail = runc_failure_tail(cmd);
    let spdy = Expected::new(
        format!("error: Internal error occurred: {tail}"),
        1,
        "failures.md §2 [spdy] (user reports, e.g. nigelpoulton/TheK8sBook#30: `exec: \"ps\": executable file not found in $PATH: unknown`); runc 1.1 exec.go/utils.go fatalWithCode; containerd pkg/process/exec.go start → runtimeError (last error of <bundle>/log.json)",
    )
    .with_stdout("");
    let ws = Expected::new(
        format!("error: Internal error occurred: Internal error occurred: {tail}"),
        1,
        "failures.md §2 [ws]: streamtranslator.go wraps errorDecoderV4's plain error in NewInternalError again (doubled prefix, verbatim in user reports)",
    )
    .with_stdout("");
    vec![
        (Client::Ws132, ws),
        (Client::Spdy132, spdy.clone()),
        (Client::Spdy120, spdy),
    ]
}

/// A shell that ran and exited `code` after printing `shell_line`: the same for every client
/// (the translator turns the exit back into NonZeroExitCode, `codeExitToStatusError`).
fn shell_exit_expected(shell_line: &str, code: i32) -> Vec<(Client, Expected)> {
    let text = format!("{shell_line}\ncommand terminated with exit code {code}");
    let source = "busybox ash's own message on the exec's stderr, then failures.md §3: NonZeroExitCode Status → client-go errorDecoderV4 CodeExitError `command terminated with exit code N`, kubectl checkErr prints it without `error: ` and exits N";
    Client::ALL
        .iter()
        .map(|c| {
            (
                *c,
                Expected::new(text.clone(), code, source).with_stdout(""),
            )
        })
        .collect()
}

pub fn run(run: &FaultRun) -> Result<FaultReport, FaultError> {
    let mut report = FaultReport::new("command-not-found", "failures.md §2, §3");
    let lab = run.start_lab(run.lab_config("lab"))?;
    kubectl_checks(
        &mut report,
        &lab,
        "no such executable: runc cannot start it",
        &["exec", "web", "-c", "app", "--", "nosuchcmd"],
        &not_found_expected("nosuchcmd"),
    )?;
    kubectl_checks(
        &mut report,
        &lab,
        "no such command, run by a shell: 127",
        &["exec", "web", "-c", "app", "--", "sh", "-c", "nosuchcmd"],
        &shell_exit_expected("sh: nosuchcmd: not found", 127),
    )?;
    kubectl_checks(
        &mut report,
        &lab,
        "not executable, run by a shell: 126",
        &["exec", "web", "-c", "app", "--", "sh", "-c", "/etc/passwd"],
        &shell_exit_expected("sh: /etc/passwd: Permission denied", 126),
    )?;
    let log = match run.runtime() {
        LabRuntime::Execlab => "cri-streaming.log (the shim's failed Start) and the bundle's log.json under DIR/lab/state",
        LabRuntime::Containerd | LabRuntime::ContainerdShimExec => {
            "containerd.log (the failed exec)"
        }
    };
    report.notes.push(format!(
        "Runtime: {}. Look at DIR/lab/logs/{log}. Exit 1 with `OCI runtime exec failed` means\n\
         the command never started (not on PATH, or not executable when run directly); 127 and\n\
         126 come from a shell that did start. Fix: `kubectl exec web -- ls /bin` (or\n\
         `which`) to see what the image has; images without a shell need `kubectl debug`.",
        run.runtime().name()
    ));
    run.stop_lab(lab)?;
    Ok(report)
}
