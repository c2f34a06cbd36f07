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

use common::hop_metrics::{scrape, value, wait_sessions_closed};
use common::{dump_logs, start_lab, stop_lab, HeldSession};
use execlab::fault::kubectl::Client;
use execlab::{Hop, LabConfig};

const HOPS: [Hop; 3] = [Hop::ApiserverProxy, Hop::KubeletStream, Hop::CriStreaming];

/// How long the chain may take to see the end once the command can end.
const TEARDOWN: Duration = Duration::from_secs(30);

/// Lines of [`FLOOD_AT_EOF`]'s output, of [`FLOOD_LINE`] bytes each.
const FLOOD_LINES: u32 = 40_000;
const FLOOD_LINE: u32 = 101;
/// After stdin EOF, about 4 MB of output, far more than every buffer on the way holds.
const FLOOD_AT_EOF: &str = "echo ready; cat >/dev/null; \
    line=0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789; \
    i=0; while [ $i -lt 40000 ]; do echo $line; i=$((i+1)); done";

/// Bytes of stdout cri-streaming has read from exec'd processes so far.
fn stdout_read_by_the_runtime(dir: &std::path::Path) -> f64 {
    let text = scrape(dir, Hop::CriStreaming);
    value(
        &text,
        Hop::CriStreaming,
        "execlab_exec_bytes_total",
        ",stream=\"stdout\"",
    )
}

/// Kills `client` once `script` said ready; every hop's sessions must then close. Returns the
/// stdout bytes the runtime read from the command meanwhile.
fn killed_client_leaves_nothing(client: Client, script: &str) -> f64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let lab = start_lab(LabConfig::new(&dir));
    let before = stdout_read_by_the_runtime(&dir);
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
    let read = stdout_read_by_the_runtime(&dir) - before;
    stop_lab(lab);
    read
}

#[test]
fn a_killed_websocket_client_s_command_gets_stdin_eof() {
    let _ = killed_client_leaves_nothing(Client::Ws132, common::HELD_SCRIPT);
}

#[test]
fn a_killed_spdy_client_s_command_gets_stdin_eof() {
    let _ = killed_client_leaves_nothing(Client::Spdy132, common::HELD_SCRIPT);
}

#[test]
fn a_killed_websocket_client_does_not_hold_up_its_command_s_output() {
    // The command ran to its end: all of its output was read from it, not cut short by a kill.
    let read = killed_client_leaves_nothing(Client::Ws132, FLOOD_AT_EOF);
    let flood = f64::from(FLOOD_LINES * FLOOD_LINE);
    assert!(
        read >= flood,
        "the runtime read {read} bytes of the command's {flood}"
    );
}
