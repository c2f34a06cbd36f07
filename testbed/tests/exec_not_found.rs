//! `kubectl exec web -- nosuchcmd` through a real lab with real kubectl 1.32, over WebSocket v5
//! and over SPDY: stderr is exactly production's one error line (containerd 1.6's chain), with
//! nothing before it — runc prints its own error on its stderr too, which containerd's shim
//! never passes on. A shell that runs but cannot find or run a command exits 127 / 126.

mod common;

use std::process::Stdio;

use common::{kubectl_exec, start_lab, stop_lab};
use execlab::fault::expect::Pattern;
use execlab::fault::kubectl::Client;
use execlab::LabConfig;

const TAIL: &str = "error executing command in container: failed to exec in container: failed to start exec \"{hex64}\": OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH: unknown";

#[test]
fn a_missing_command_prints_only_productions_error() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let kubeconfig = lab.kubeconfig();
    for (client, prefix) in [
        // The API server's translator wraps the plain error once more (failures.md §2 [ws]).
        (
            Client::Ws132,
            "error: Internal error occurred: Internal error occurred: ",
        ),
        (Client::Spdy132, "error: Internal error occurred: "),
    ] {
        let (code, stdout, stderr) = kubectl_exec(
            client,
            &kubeconfig,
            &["web", "-c", "app", "--", "nosuchcmd"],
            Stdio::null(),
        );
        let want = Pattern::parse(&format!("{prefix}{TAIL}\n")).unwrap();
        assert!(
            want.matches(&stderr),
            "{client:?}: stderr\n{stderr}\nis not exactly\n{}",
            want.as_str()
        );
        assert_eq!((code, stdout.as_str()), (Some(1), ""), "{client:?}");

        for (script, line, exit) in [
            ("nosuchcmd", "sh: nosuchcmd: not found", 127),
            ("/etc/passwd", "sh: /etc/passwd: Permission denied", 126),
        ] {
            let answer = kubectl_exec(
                client,
                &kubeconfig,
                &["web", "-c", "app", "--", "sh", "-c", script],
                Stdio::null(),
            );
            assert_eq!(
                answer,
                (
                    Some(exit),
                    String::new(),
                    format!("{line}\ncommand terminated with exit code {exit}\n")
                ),
                "{client:?}: sh -c {script}"
            );
        }
    }
    stop_lab(lab);
}
