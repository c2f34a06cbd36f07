//! End to end: a kubectl that is killed mid-exec (SIGKILL: its connection closes under the
//! chain) leaves no session behind once its command ends, over WebSocket v5 and over SPDY.
//!
//! Upstream 1.32 does not end the exec when the client goes: the API server's translator
//! closes the command's stdin (its WebSocket pipes are closed) and reads the output it can no
//! longer deliver, dropping it (client-go `copyStdout`), until the command ends; the kubelet's
//! splice ends with either side. So a command that ends at stdin EOF ends, and one that writes
//! a flood of output is not held up by the client that is gone.

mod common;

use std::time::{Duration, Instant};

use common::hop_metrics::wait_sessions_closed;
use common::{dump_logs, start_lab, stop_lab, HeldSession};
use execlab::fault::kubectl::Client;
use execlab::{Hop, LabConfig};

const HOPS: [Hop; 3] = [Hop::ApiserverProxy, Hop::KubeletStream, Hop::CriStreaming];

/// How long the chain may take to see the end once the command can end.
const TEARDOWN: Duration = Duration::from_secs(30);

/// After stdin EOF, about 4 MiB of output, far more than every buffer on the way holds.
const FLOOD_AT_EOF: &str = "echo ready; cat >/dev/null; \
    line=0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789; \
    i=0; while [ $i -lt 40000 ]; do echo $line; i=$((i+1)); done";

fn killed_client_leaves_nothing(client: Client, script: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let lab = start_lab(LabConfig::new(&dir));
    let held = HeldSession::start_script(client, &lab.kubeconfig(), script);
    assert!(
        held.wait_ready(Instant::now() + Duration::from_secs(30)),
        "{}: the command never said ready\n{}",
        client.label(),
        dump_logs(&dir)
    );
    // Dropping a running session SIGKILLs kubectl.
    drop(held);
    let (texts, closed) = wait_sessions_closed(&dir, &HOPS, TEARDOWN);
    assert!(
        closed,
        "{}: sessions still open {TEARDOWN:?} after kubectl was killed\n{}\n{}",
        client.label(),
        texts.join("\n"),
        dump_logs(&dir)
    );
    stop_lab(lab);
}

#[test]
fn a_killed_websocket_client_s_command_gets_stdin_eof() {
    killed_client_leaves_nothing(Client::Ws132, common::HELD_SCRIPT);
}

#[test]
fn a_killed_spdy_client_s_command_gets_stdin_eof() {
    killed_client_leaves_nothing(Client::Spdy132, common::HELD_SCRIPT);
}

#[test]
fn a_killed_websocket_client_does_not_hold_up_its_command_s_output() {
    killed_client_leaves_nothing(Client::Ws132, FLOOD_AT_EOF);
}
