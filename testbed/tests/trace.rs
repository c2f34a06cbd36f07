//! `execlab trace` end to end: after one real kubectl exec through a lab, the trace of the last
//! session holds events from all four hops (read from the hops' logs and the shim's log in the
//! sandbox bundle), as a table, a Mermaid diagram and an SVG.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{dump_logs, kubectl_run, run_bounded};
use execlab::{Lab, LabConfig};

#[test]
fn one_kubectl_exec_is_traced_across_every_hop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let lab = match Lab::start_blocking(LabConfig::new(&dir)) {
        Ok(lab) => lab,
        Err(e) => panic!("lab did not start: {e}\n{}", dump_logs(&dir)),
    };
    let out = kubectl_run(
        &lab.kubeconfig(),
        &["exec", "web", "-c", "app", "--", "echo", "hi"],
    );
    assert!(out.status.success(), "kubectl exec: {out:?}");

    let files = tmp.path().join("trace");
    let mut command = Command::new(env!("CARGO_BIN_EXE_execlab"));
    command
        .args(["trace", "--dir"])
        .arg(lab.dir())
        .arg("--out")
        .arg(&files);
    let run = run_bounded(&mut command, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "execlab trace: {}\n{text}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    // The library's view: one session with events from every hop, in chain order.
    let trace = execlab::trace::trace_session(lab.dir(), None).expect("a session");
    let hops: Vec<_> = trace.timeline.hops.keys().map(|h| h.name()).collect();
    assert_eq!(
        hops,
        [
            "apiserver-proxy",
            "kubelet-stream",
            "cri-streaming",
            "shim-exec"
        ],
        "{text}"
    );
    let events: Vec<(&str, &str)> = trace
        .timeline
        .steps
        .iter()
        .map(|s| (s.hop.name(), s.event.as_str()))
        .collect();
    for wanted in [
        ("apiserver-proxy", "accept"),
        ("apiserver-proxy", "authn"),
        ("kubelet-stream", "cri_exec"),
        ("cri-streaming", "token"),
        ("shim-exec", "spec_file_written"),
        ("shim-exec", "runc_started"),
        ("cri-streaming", "first_byte"),
        ("apiserver-proxy", "first_byte"),
        ("cri-streaming", "exit"),
        ("apiserver-proxy", "close"),
    ] {
        assert!(events.contains(&wanted), "{wanted:?} missing:\n{text}");
    }
    let position = |e| events.iter().position(|x| *x == e).expect("present");
    assert!(position(("apiserver-proxy", "accept")) < position(("shim-exec", "runc_started")));
    assert!(position(("shim-exec", "runc_started")) < position(("apiserver-proxy", "close")));
    assert!(
        position(("cri-streaming", "first_byte")) < position(("apiserver-proxy", "first_byte"))
    );

    // The command printed the same session, and wrote the diagram and the SVG.
    let session = &trace.timeline.session;
    assert!(text.contains(session.as_str()), "{text}");
    assert!(
        text.contains("sequenceDiagram") && text.contains("S->>P: runc exec"),
        "{text}"
    );
    let mmd = std::fs::read_to_string(files.join(format!("trace-{session}.mmd"))).expect("mmd");
    assert!(mmd.starts_with("sequenceDiagram"));
    let svg = std::fs::read_to_string(files.join(format!("trace-{session}.svg"))).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("runc_started"));
    lab.stop().expect("clean stop");
}
