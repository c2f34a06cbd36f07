//! Request heads longer than hyper takes, through a real lab with real kubectl 1.32 (WebSocket
//! v5, and SPDY): `kubectl exec web -- sh -c 'echo $#' $(seq 1 10000)` makes a ~150 KB query that
//! kube-apiserver and the kubelet run (Go takes heads up to 1 MiB + 4096 bytes); a head over that
//! gets Go's `431 Request Header Fields Too Large`, worded by kubectl as production's is.

mod common;

use std::process::Stdio;

use common::{kubectl_exec, start_lab, stop_lab};
use execlab::fault::kubectl::Client;
use execlab::LabConfig;

#[test]
fn a_command_of_ten_thousand_arguments_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let kubeconfig = lab.kubeconfig();
    let numbers: Vec<String> = (1..=10_000).map(|n| n.to_string()).collect();
    let mut args = vec!["web", "-c", "app", "--", "sh", "-c", "echo $#"];
    args.extend(numbers.iter().map(String::as_str));
    for client in [Client::Ws132, Client::Spdy132] {
        let (code, stdout, stderr) = kubectl_exec(client, &kubeconfig, &args, Stdio::null());
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (Some(0), "9999\n", ""),
            "{client:?}\n{}",
            common::dump_logs(lab.dir())
        );
    }
    stop_lab(lab);
}

#[test]
fn a_head_over_a_mebibyte_gets_gos_431() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let kubeconfig = lab.kubeconfig();
    // Eleven arguments of 100 KiB (each under Linux's 128 KiB bound on one argument).
    let long = "a".repeat(100 * 1024);
    let mut args = vec!["web", "-c", "app", "--", "true"];
    args.extend(std::iter::repeat_n(long.as_str(), 11));
    for client in [Client::Ws132, Client::Spdy132] {
        let (code, stdout, stderr) = kubectl_exec(client, &kubeconfig, &args, Stdio::null());
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (
                Some(1),
                "",
                "error: unable to upgrade connection: 431 Request Header Fields Too Large\n"
            ),
            "{client:?}"
        );
    }
    stop_lab(lab);
}
