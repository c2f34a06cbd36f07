//! kubelet-stream in front of the real runtime, driven directly as the API server drives it
//! (SPDY, the lab's apiserver-kubelet-client certificate), for the acceptance points of issue #5
//! that need real processes:
//! - cri-streaming killed mid-session: the client learns at once that the session is over, and
//!   once the runtime is back the next exec works with the same kubelet-stream process;
//! - 1 GiB of stdout to a slow reader: kubelet-stream's memory stays bounded (its splice pushes
//!   back instead of buffering).
//!
//! What "a clear error" can be for a SPDY client: kubelet-stream splices bytes, so when the
//! runtime's streaming connection goes it closes the client's connection, and spdystream (and
//! k8s-stream, which follows it) ends every stream with EOF when its connection ends. client-go
//! reads an error stream that ends empty as success (failures.md §9). The signal is therefore at
//! the protocol level: a v4+ session that finished carries a Status on its error stream; one cut
//! by the runtime's death carries none. The test reads the error stream raw to see that.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_command, dump_logs, run_bounded, start_lab, stop_lab, tokio_runtime};
use common::{HeldSession, HELD_SCRIPT};
use execlab::bench::client::{ExecCommand, Session};
use execlab::bench::paths::{LabTarget, PathName};
use execlab::fault::kubectl::Client;
use execlab::{Hop, Lab, LabConfig};
use hop_kit::{UpgradeOutcome, UpgradeRequest};
use http::Method;
use k8s_stream::remotecommand::{
    spdy_request_headers, validate_spdy_response, ProtocolVersion, StreamType, STREAM_TYPE_HEADER,
};
use k8s_stream::spdy::session::{Incoming, Role, Session as SpdySession, SessionConfig};
use k8s_stream::spdy::{StreamReader, StreamWriter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);
/// The acceptance bound (1 s from the kill to the client's knowing) plus slack for a loaded CI
/// machine; the measured figure is printed.
const END_BOUND: Duration = Duration::from_millis(1500);
/// How long the kubelet may take to run the pod again once the runtime is back (its runtime
/// backoff is at most 5 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);
const GIB: u64 = 1024 * 1024 * 1024;
/// The slow reader's pace: well below what the chain delivers (~100+ MB/s), so the producer
/// side is always ahead and any unbounded buffer in kubelet-stream would grow by hundreds of MiB.
const SLOW_READER_BYTES_PER_S: f64 = 48.0 * 1024.0 * 1024.0;
const KUBELET_MEMORY_BOUND_KIB: u64 = 64 * 1024;

/// An exec on kubelet-stream's `/exec` opened stream by stream as client-go opens it (error,
/// stdin, stdout, stderr), with the API server's kubelet-client certificate.
struct RawExec {
    version: ProtocolVersion,
    error: StreamReader,
    stdin: StreamWriter,
    stdout: StreamReader,
    stderr: StreamReader,
    _session: (SpdySession, Incoming),
}

/// Opens the exec; a refused upgrade is `Err(status and body)`.
async fn open_raw(lab: &Lab, script: &str) -> Result<RawExec, String> {
    let pki = &lab.pki().expect("lab PKI").paths;
    let identity = &pki.apiserver_kubelet_client;
    let tls =
        hop_kit::tls::client_config_from_files(&pki.ca.cert, Some((&identity.cert, &identity.key)))
            .expect("client TLS");
    let kubelet = lab.kubelet_addr().expect("kubelet address");
    let mut url = url::Url::parse(&format!("https://{kubelet}/exec/default/web/app")).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("command", "sh"),
        ("command", "-c"),
        ("command", script),
        ("input", "1"),
        ("output", "1"),
        ("error", "1"),
    ]);
    let headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    let request = UpgradeRequest::new(url, Method::POST, headers).with_tls(Some(tls));
    let outcome = tokio::time::timeout(LIMIT, request.send())
        .await
        .expect("kubelet answers in time")
        .expect("kubelet reachable");
    let (response, io) = match outcome {
        UpgradeOutcome::Switched { response, io } => (response, io),
        UpgradeOutcome::Refused { response, body } => {
            return Err(format!(
                "{}: {}",
                response.status,
                String::from_utf8_lossy(&body)
            ))
        }
    };
    let version =
        validate_spdy_response(response.status, &response.headers, b"").expect("a SPDY 101");
    let (session, incoming) = SpdySession::new(io, Role::Client, SessionConfig::default());
    let mut streams = Vec::new();
    for kind in [
        StreamType::Error,
        StreamType::Stdin,
        StreamType::Stdout,
        StreamType::Stderr,
    ] {
        let header = (
            STREAM_TYPE_HEADER.to_ascii_lowercase(),
            kind.as_str().to_owned(),
        );
        streams.push(
            session
                .open_stream(vec![header])
                .await
                .expect("stream")
                .into_split(),
        );
    }
    let mut streams = streams.into_iter();
    let mut next = || streams.next().expect("four streams");
    let (error, _) = next();
    let (_, stdin) = next();
    let (stdout, _) = next();
    let (stderr, _) = next();
    Ok(RawExec {
        version,
        error,
        stdin,
        stdout,
        stderr,
        _session: (session, incoming),
    })
}

/// Reads `from` to its end; when it ended, and what it held.
async fn read_all(mut from: impl AsyncRead + Unpin) -> (Instant, std::io::Result<Vec<u8>>) {
    let mut all = Vec::new();
    let result = from.read_to_end(&mut all).await.map(|_| all);
    (Instant::now(), result)
}

#[test]
fn runtime_killed_mid_session_ends_the_stream_at_once_and_the_next_exec_works() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let dir = lab.dir().to_path_buf();
    let rt = tokio_runtime();
    let kubelet_pid = lab.pid(Hop::KubeletStream);

    // An idle session straight to the kubelet, and one of real kubectl through the whole chain.
    let raw = rt
        .block_on(open_raw(&lab, HELD_SCRIPT))
        .expect("exec upgraded");
    let RawExec {
        version,
        error,
        stdin: _stdin,
        mut stdout,
        stderr,
        _session: held,
    } = raw;
    let ready = rt.block_on(async {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 64];
        while !seen.starts_with(b"ready\n") {
            match tokio::time::timeout(LIMIT, stdout.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
        true
    });
    assert!(
        ready,
        "the direct session never said ready\n{}",
        dump_logs(&dir)
    );
    let error_end = rt.spawn(read_all(error));
    let stdout_end = rt.spawn(read_all(stdout));
    let _stderr_end = rt.spawn(read_all(stderr));
    let mut kubectl = HeldSession::start(Client::Ws132, &lab.kubeconfig());
    assert!(
        kubectl.wait_ready(Instant::now() + LIMIT),
        "kubectl never said ready\n{}",
        dump_logs(&dir)
    );

    let killed_at = Instant::now();
    lab.stop_hop(Hop::CriStreaming, true);
    let ends = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            (
                error_end.await.expect("task"),
                stdout_end.await.expect("task"),
            )
        })
        .await
    });
    let ((error_at, error), (stdout_at, stdout)) = ends.unwrap_or_else(|_| {
        panic!(
            "no end of the session 10 s after the kill\n{}",
            dump_logs(&dir)
        )
    });
    let kubectl_end = kubectl.wait_exit(Duration::from_secs(10));
    let kubectl_out = kubectl.finish(Duration::from_secs(5));
    let kubectl_stderr = String::from_utf8_lossy(&kubectl_out.stderr).into_owned();
    let latency = error_at.max(stdout_at) - killed_at;
    eprintln!(
        "cri-streaming killed: direct {version} session ended after {latency:?} (stdout {:?}, \
         error stream {:?})\nkubectl 1.32 (WebSocket, through the apiserver) exited {:?} after \
         {:?}: {:?}",
        stdout.as_ref().map(Vec::len),
        error
            .as_ref()
            .map(|e| String::from_utf8_lossy(e).into_owned()),
        kubectl_out.status.code(),
        kubectl_end.map(|(_, at)| at - killed_at),
        kubectl_stderr.trim()
    );
    assert_eq!(
        error.expect("the error stream ends"),
        b"",
        "a cut session carries no Status"
    );
    assert_eq!(stdout.expect("stdout ends"), b"");
    assert!(
        latency < END_BOUND,
        "the session ended only {latency:?} after the kill"
    );
    let (_, kubectl_at) = kubectl_end.expect("kubectl exits on its own after the kill");
    assert!(
        kubectl_at - killed_at < END_BOUND,
        "kubectl: {kubectl_stderr}"
    );
    drop(held);

    // The runtime comes back on its address. cri-streaming keeps no state across a restart,
    // so the kubelet's reconciler must run the pod again before an exec can find `app`; the
    // same kubelet-stream then serves the execs, and a finished session carries its Status.
    if let Err(e) = rt.block_on(lab.restart_hop(Hop::CriStreaming)) {
        panic!("cri-streaming did not restart: {e}\n{}", dump_logs(&dir));
    }
    let back_at = Instant::now();
    let (stdout, status, refusals) = rt.block_on(async {
        let mut refusals = Vec::new();
        let mut again = loop {
            match open_raw(&lab, "echo again").await {
                Ok(exec) => break exec,
                Err(refused) if back_at.elapsed() < RECOVERY_LIMIT => refusals.push(refused),
                Err(refused) => panic!("no exec {RECOVERY_LIMIT:?} after the restart: {refused}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        again.stdin.shutdown().await.expect("stdin EOF");
        let _stderr = tokio::spawn(read_all(again.stderr));
        let stdout = tokio::spawn(read_all(again.stdout));
        let (_, status) = read_all(again.error).await;
        (stdout.await.expect("task").1, status, refusals)
    });
    eprintln!(
        "first exec after the runtime's restart worked {:?} after it was healthy; refused before: {:?}",
        back_at.elapsed(),
        refusals.first()
    );
    assert_eq!(stdout.expect("stdout"), b"again\n", "{}", dump_logs(&dir));
    let status: serde_json::Value =
        serde_json::from_slice(&status.expect("error stream")).expect("a Status");
    assert_eq!(status["status"], "Success", "{status}");
    let out = run_bounded(
        client_command(Client::Ws132, &lab.kubeconfig())
            .args(["exec", "web", "-c", "app", "--", "echo", "hi"]),
        LIMIT,
    );
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), b"hi\n".as_slice()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lab.pid(Hop::KubeletStream),
        kubelet_pid,
        "kubelet-stream was restarted"
    );
    assert!(lab.check_running().is_ok(), "a hop died");
    drop(rt);
    stop_lab(lab);
}

/// One `kB` field of /proc/PID/status (VmRSS, VmHWM).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or("");
    let mut words = line.split_whitespace().skip(1);
    words.next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn a_gib_to_a_slow_reader_keeps_kubelet_stream_memory_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let dir = lab.dir().to_path_buf();
    let rt = tokio_runtime();
    let dialer = rt.block_on(async {
        let target = LabTarget::open(lab.dir(), "runc").await.expect("the lab");
        target
            .dialer(PathName::KubeletProxy, lab.dir())
            .await
            .expect("kubelet dialer")
    });
    let pid = lab.pid(Hop::KubeletStream).expect("kubelet-stream pid");
    let rss_before = proc_status_kib(pid, "VmRSS:");

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };

    let started = Instant::now();
    let cmd = ExecCommand::shell(&format!("head -c {GIB} /dev/zero"), false);
    let received = rt.block_on(async {
        let transfer = async {
            let mut session: Session = dialer.open(&cmd).await.map_err(|e| e.to_string())?;
            let began = Instant::now();
            let mut total = 0u64;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = session
                    .stdout
                    .read(&mut chunk)
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                let due = Duration::from_secs_f64(total as f64 / SLOW_READER_BYTES_PER_S);
                if let Some(ahead) = due.checked_sub(began.elapsed()) {
                    tokio::time::sleep(ahead).await;
                }
            }
            session.done.await.map_err(|e| e.to_string())?;
            Ok::<u64, String>(total)
        };
        tokio::time::timeout(Duration::from_secs(120), transfer)
            .await
            .unwrap_or_else(|_| Err("not done in 120 s".into()))
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    let hwm = proc_status_kib(pid, "VmHWM:");
    eprintln!(
        "1 GiB to a reader at {:.0} MiB/s in {took:?}: kubelet-stream VmRSS {rss_before} KiB before, \
         peak {peak} KiB ({samples} samples), VmHWM {hwm} KiB",
        SLOW_READER_BYTES_PER_S / (1024.0 * 1024.0)
    );
    assert_eq!(received, Ok(GIB), "{}", dump_logs(&dir));
    assert!(samples > 10, "too few RSS samples: {samples}");
    assert!(
        peak < KUBELET_MEMORY_BOUND_KIB && hwm < KUBELET_MEMORY_BOUND_KIB,
        "kubelet-stream grew to {peak} KiB (VmHWM {hwm} KiB)"
    );
    drop(rt);
    stop_lab(lab);
}
