//! Issue #6's exec matrix through a whole lab (apiserver-proxy → kubelet-stream → cri-streaming
//! → shim-exec → runc): each of the three clients (kubectl 1.32 over WebSocket v5, 1.32 forced
//! to SPDY, 1.20 over SPDY) in proxy and in redirect mode runs `echo hi`, a command with stdout,
//! stderr and exit code 3, and `-i` with 20 MiB piped into `sha256sum` in the container.

mod common;

use common::{assert_exec_matrix, start_lab_mode, stop_lab, StdinCase};
use execlab::fault::kubectl::Client;

fn every_client(redirect: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab_mode(&tmp.path().join("lab"), redirect);
    let stdin = StdinCase::write(tmp.path());
    let mode = if redirect { "redirect" } else { "proxy" };
    for client in Client::ALL {
        let label = format!("{} ({mode} mode)", client.label());
        assert_exec_matrix(client, &lab.kubeconfig(), &stdin, &label, lab.dir());
    }
    stop_lab(lab);
}

#[test]
fn every_client_execs_in_proxy_mode() {
    every_client(false);
}

#[test]
fn every_client_execs_in_redirect_mode() {
    every_client(true);
}
