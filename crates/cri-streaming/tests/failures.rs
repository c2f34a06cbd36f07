//! What goes wrong, and how it is reported: bad requests, token misuse, clients and shims that
//! vanish mid-stream, and a full shim runtime directory (ENOSPC) — each with production's text
//! and nothing left behind.

mod common;

use std::time::{Duration, Instant};

use common::{
    collect, dial_exec, dial_exec_severable, dial_refused, exec, exec_request, options_of,
    processes_mentioning, processes_with, Lab, LabOptions, Transport,
};
use cri_api::runtime::v1::image_service_client::ImageServiceClient;
use cri_api::runtime::v1::{
    ExecRequest, ExecSyncRequest, ImageSpec, ImageStatusRequest, ListImagesRequest,
    PullImageRequest,
};
use k8s_stream::remotecommand::{spdy_request_headers, ProtocolVersion, RemoteError};
use tokio::io::AsyncReadExt;

const NOT_FOUND: &str = "404 page not found\n";

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_exec_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_upstream_texts() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "bad").await;
    let base = exec_request(&container, &["true"], false, false);
    let cases = [
        (
            ExecRequest {
                container_id: String::new(),
                ..base.clone()
            },
            tonic::Code::InvalidArgument,
            "missing required container_id".to_string(),
        ),
        (
            ExecRequest {
                tty: true,
                stderr: true,
                ..base.clone()
            },
            tonic::Code::InvalidArgument,
            "tty and stderr cannot both be true".to_string(),
        ),
        (
            ExecRequest {
                stdout: false,
                stderr: false,
                ..base.clone()
            },
            tonic::Code::InvalidArgument,
            "one of stdin, stdout, or stderr must be set".to_string(),
        ),
        (
            ExecRequest {
                container_id: "nope".into(),
                ..base.clone()
            },
            tonic::Code::NotFound,
            "failed to find container \"nope\" in store: not found".to_string(),
        ),
    ];
    for (req, code, text) in cases {
        let err = cri.exec(req).await.expect_err(&text);
        assert_eq!((err.code(), err.message()), (code, text.as_str()));
    }
    // RPCs cri-streaming does not implement say so.
    let err = cri
        .port_forward(cri_api::runtime::v1::PortForwardRequest::default())
        .await
        .expect_err("port forward");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // The image service answers for the configured image only.
    let mut images = ImageServiceClient::new(lab.channel().await);
    let listed = images
        .list_images(ListImagesRequest::default())
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo_tags, ["docker.io/library/busybox:latest"]);
    let spec = |image: &str| {
        Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        })
    };
    let status = images
        .image_status(ImageStatusRequest {
            image: spec("busybox"),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    assert_eq!(status.image.map(|i| i.id), Some(listed[0].id.clone()));
    let pulled = images
        .pull_image(PullImageRequest {
            image: spec("docker.io/library/busybox"),
            ..Default::default()
        })
        .await
        .expect("PullImage")
        .into_inner();
    assert_eq!(pulled.image_ref, listed[0].id);
    let missing = images
        .image_status(ImageStatusRequest {
            image: spec("nginx"),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    assert!(missing.image.is_none());
    let err = images
        .pull_image(PullImageRequest {
            image: spec("nginx"),
            ..Default::default()
        })
        .await
        .expect_err("not configured");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let url = cri.exec(base).await.expect("Exec").into_inner().url;
    let token = url
        .strip_prefix(&format!("http://{}/exec/", lab.stream_addr))
        .expect("url shape");
    assert_eq!(token.len(), 8, "{url}");
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_single_use_expire_and_must_exist() {
    let lab = Lab::start(LabOptions {
        token_ttl: Some("1s"),
        ..Default::default()
    })
    .await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "tokens").await;
    let req = exec_request(&container, &["echo", "once"], false, false);

    // Used once: fine; again: 404.
    let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
    let result = collect(dial_exec(&url, Transport::Spdy, &options_of(&req)).await).await;
    assert_eq!(result.stdout, b"once\n");
    let (status, content_type, body) = dial_refused(&url).await;
    assert_eq!(
        (status, content_type.as_str(), body.as_str()),
        (404, "text/plain; charset=utf-8", NOT_FOUND)
    );

    // Made up.
    let made_up = format!("http://{}/exec/AAAAAAAA", lab.stream_addr);
    assert_eq!(dial_refused(&made_up).await.2, NOT_FOUND);

    // Expired (TTL 1 s here).
    let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(dial_refused(&url).await.0, 404);

    // Wrong kind: an exec token on /attach is refused, and consumed.
    let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
    let attach = url.replace("/exec/", "/attach/");
    assert_eq!(dial_refused(&attach).await.2, NOT_FOUND);
    assert_eq!(dial_refused(&url).await.2, NOT_FOUND);

    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

/// Idle and slow connections to the streaming server (slowloris) are closed once the
/// request-header timeout passes, and a prompt request is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_slow_connections_to_the_streaming_server_are_closed() {
    use tokio::io::AsyncWriteExt;
    let lab = Lab::start(LabOptions {
        request_header_timeout: Some("400ms"),
        ..Default::default()
    })
    .await;
    let held = Duration::from_secs(10);
    let mut idle = tokio::net::TcpStream::connect(&lab.stream_addr)
        .await
        .expect("connect");
    let took = hop_kit::test_io::peer_closed_within(&mut idle, held).await;
    assert!(took.is_some(), "an idle connection is held past {held:?}");
    let mut slow = tokio::net::TcpStream::connect(&lab.stream_addr)
        .await
        .expect("connect");
    slow.write_all(b"POST /exec/AAAA").await.expect("write");
    let took = hop_kit::test_io::peer_closed_within(&mut slow, held).await;
    assert!(took.is_some(), "half a request line is held past {held:?}");
    let made_up = format!("http://{}/exec/AAAAAAAA", lab.stream_addr);
    assert_eq!(dial_refused(&made_up).await.2, NOT_FOUND);
    lab.stop().await;
}

/// An SPDY upgrade offering no `X-Stream-Protocol-Version` gets upstream's 400 (remotecommand
/// `createHTTPStreamStreams` writes `Handshake`'s error with `http.Error`), and its token is
/// spent, as upstream consumes it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_without_a_protocol_version_gets_400_and_spends_the_token() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "noversion").await;
    let req = exec_request(&container, &["true"], false, false);
    let url = cri.exec(req).await.expect("Exec").into_inner().url;
    let mut headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    headers.remove("x-stream-protocol-version");
    let parsed = url::Url::parse(&url).expect("url");
    match hop_kit::dial_upgrade(&parsed, http::Method::POST, headers, None)
        .await
        .expect("dial")
    {
        hop_kit::UpgradeOutcome::Refused { response, body } => {
            assert_eq!(response.status.as_u16(), 400);
            assert_eq!(
                response.headers["content-type"],
                "text/plain; charset=utf-8"
            );
            assert_eq!(
                String::from_utf8_lossy(&body),
                "unable to upgrade: X-Stream-Protocol-Version is required\n"
            );
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    assert_eq!(dial_refused(&url).await.2, NOT_FOUND);
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_vanishes_mid_stream_frees_everything() {
    // The option that kills a vanished client's process (the default lets it run on).
    let lab = Lab::start(LabOptions {
        kill_exec_on_disconnect: true,
        ..Default::default()
    })
    .await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "vanish").await;
    for (i, transport) in [Transport::Spdy, Transport::WebSocketV5]
        .into_iter()
        .enumerate()
    {
        let marker = format!("vanishing-client-{i}-{}", std::process::id());
        let req = exec_request(
            &container,
            &["sh", "-c", "exec yes \"$0\"", &marker],
            false,
            false,
        );
        let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
        let (mut streams, connection) =
            dial_exec_severable(&url, transport, &options_of(&req)).await;
        let mut stdout = streams.stdout.take().expect("stdout");
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 1024 * 1024 {
            got += stdout.read(&mut buf).await.expect("read");
        }
        assert!(
            !processes_with(&marker).is_empty(),
            "exec process not found"
        );
        // Gone: the TCP connection drops mid-stream.
        connection.abort();
        drop(stdout);
        drop(streams);
        eventually("exec process killed", || processes_with(&marker).is_empty()).await;
        eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;
    }
    // A silent process: the dropped connection itself is noticed.
    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        let marker = unique_sleep();
        let req = exec_request(
            &container,
            &["sh", "-c", &format!("echo up; exec sleep {marker}")],
            false,
            false,
        );
        let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
        let (mut streams, connection) =
            dial_exec_severable(&url, transport, &options_of(&req)).await;
        let mut up = [0u8; 3];
        streams
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut up)
            .await
            .expect("up");
        eventually("sleep running", || !processes_with(&marker).is_empty()).await;
        connection.abort();
        drop(streams);
        eventually("silent exec process killed", || {
            processes_with(&marker).is_empty()
        })
        .await;
        eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

/// A `sleep` argument no other process has, to find the process by its command line.
fn unique_sleep() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{:05}{}",
        9,
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed) + 10
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_streaming_connections_time_out() {
    let lab = Lab::start(LabOptions {
        idle_timeout: Some("2s"),
        kill_exec_on_disconnect: true,
        ..Default::default()
    })
    .await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "idle").await;
    // Output every 0.5 s keeps a 3.5 s session alive.
    let req = exec_request(
        &container,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7; do echo $i; sleep 0.5; done",
        ],
        false,
        false,
    );
    let result = collect(exec(&mut cri, req, Transport::Spdy).await).await;
    assert_eq!(result.stdout, b"1\n2\n3\n4\n5\n6\n7\n");
    assert_eq!(result.outcome, Ok(()));
    // A silent one is cut after 2 s (before the client's first ping at 5 s).
    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        let marker = unique_sleep();
        let req = exec_request(
            &container,
            &["sh", "-c", &format!("exec sleep {marker}")],
            false,
            false,
        );
        let started = Instant::now();
        let mut streams = exec(&mut cri, req, transport).await;
        let mut sink = Vec::new();
        let read = streams
            .stdout
            .as_mut()
            .expect("stdout")
            .read_to_end(&mut sink)
            .await;
        let outcome = streams.outcome.await;
        let elapsed = started.elapsed();
        eprintln!("{transport:?}: idle session cut after {elapsed:?}: {read:?} / {outcome:?}");
        // spdystream ends every stream with EOF when the connection goes, and an error stream
        // ended so reads as success: an SPDY client sees the cut as exit 0 (as with upstream's
        // streaming server); a WebSocket client sees the abnormal close.
        match transport {
            Transport::Spdy => assert_eq!(outcome, Ok(()), "{transport:?}"),
            _ => assert!(outcome.is_err(), "{transport:?}: {outcome:?}"),
        }
        assert!(
            elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(5),
            "{transport:?}: {elapsed:?}"
        );
        eventually("idle exec process killed", || {
            processes_with(&marker).is_empty()
        })
        .await;
        eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shim_killed_mid_stream_ends_the_session_with_an_error() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "shimkill").await;
    let marker = format!("shim-killed-{}", std::process::id());
    let req = exec_request(
        &container,
        &[
            "sh",
            "-c",
            "echo started; while :; do sleep 1; done",
            &marker,
        ],
        false,
        false,
    );
    let mut streams = exec(&mut cri, req, Transport::Spdy).await;
    let mut stdout = streams.stdout.take().expect("stdout");
    let mut line = [0u8; 8];
    stdout.read_exact(&mut line).await.expect("started");
    assert_eq!(&line, b"started\n");
    // Output flows before the shim's Start answer is back: kill it only once that answer came,
    // so the wait (not the start) is what breaks.
    eventually("Start answered", || {
        !common::log_lines_with(&lab, "cri.log", "the shim started the process").is_empty()
    })
    .await;

    let shims: Vec<i32> = processes_mentioning(lab.root.path())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&sandbox))
                .unwrap_or(false)
        })
        .collect();
    assert!(!shims.is_empty(), "shim process not found");
    for pid in shims {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    let result = collect(streams).await;
    let Err(RemoteError::Failure(message)) = &result.outcome else {
        panic!("unexpected outcome {:?}", result.outcome);
    };
    let rest = message
        .strip_prefix("Internal error occurred: error executing command in container: failed to exec in container: failed while waiting for exec \"")
        .unwrap_or_else(|| panic!("{message}"));
    let (exec_id, tail) = rest.split_at(64);
    assert!(is_exec_id(exec_id), "{message}");
    assert_eq!(tail, "\": ttrpc: closed: unknown");
    // The exec'd shell is killed by pid; its last `sleep 1` ends by itself.
    eventually("exec process gone", || processes_with(&marker).is_empty()).await;
    eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;

    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enospc_in_the_shim_runtime_dir_reaches_the_client_with_production_text() {
    let lab = Lab::start(LabOptions {
        tiny_runtime_tmpfs: Some("4k"),
        ..Default::default()
    })
    .await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "enospc").await;

    // Fill the tmpfs (it exists only in cri-streaming's mount namespace).
    let pid = lab.child.as_ref().expect("child").id().to_string();
    let xdg = lab.path("xdg").display().to_string();
    let fill = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-m",
            "sh",
            "-c",
            &format!("cat /dev/zero > {xdg}/fill 2>/dev/null; df -k {xdg} | tail -1"),
        ])
        .output()
        .expect("nsenter");
    eprintln!("filled: {}", String::from_utf8_lossy(&fill.stdout).trim());

    let expected_tail = ": no space left on device: unknown";
    let check = |message: &str, prefix: &str| {
        let rest = message
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{message}"));
        let (exec_id, rest) = rest.split_at(64);
        assert!(is_exec_id(exec_id), "{message}");
        let rest = rest
            .strip_prefix(&format!(
                "\": OCI runtime exec failed: write {xdg}/runc-process"
            ))
            .unwrap_or_else(|| panic!("{message}"));
        let digits = rest
            .strip_suffix(expected_tail)
            .unwrap_or_else(|| panic!("{message}"));
        assert!(
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
            "{message}"
        );
    };

    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        let req = exec_request(&container, &["echo", "hi"], false, false);
        let result = collect(exec(&mut cri, req, transport).await).await;
        let Err(RemoteError::Failure(message)) = &result.outcome else {
            panic!("unexpected outcome {:?}", result.outcome);
        };
        check(
            message,
            "Internal error occurred: error executing command in container: failed to exec in container: failed to start exec \"",
        );
        assert!(result.stdout.is_empty());
    }
    let err = cri
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["true".into()],
            timeout: 5,
        })
        .await
        .expect_err("ExecSync fails");
    assert_eq!(err.code(), tonic::Code::Unknown);
    check(
        err.message(),
        "failed to exec in container: failed to start exec \"",
    );

    // Nothing leaked: no FIFOs, and the runtime dir holds only our filler.
    assert_eq!(lab.exec_dir_entries(), 0);
    let ls = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-m", "ls", "-A", &xdg])
        .output()
        .expect("nsenter ls");
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "fill");

    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

/// The shim creates the exec process while the client opens its streams, but starts it only
/// once they all exist: a client that upgrades and goes before opening them leaves no process
/// (the command never ran), no shim entry and no FIFOs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_gone_before_its_streams_never_starts_the_process() {
    use k8s_stream::remotecommand::{spdy_request_headers, ProtocolVersion};
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "nostreams").await;
    let marker = unique_sleep();
    let req = exec_request(
        &container,
        &["sh", "-c", &format!("exec sleep {marker}")],
        false,
        false,
    );
    let url = cri.exec(req).await.expect("Exec").into_inner().url;
    let url = url::Url::parse(&url).expect("url");
    let headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    let outcome = hop_kit::dial_upgrade(&url, http::Method::POST, headers, None)
        .await
        .expect("dial");
    let io = match outcome {
        hop_kit::UpgradeOutcome::Switched { io, .. } => io,
        other => panic!("no upgrade: {other:?}"),
    };
    // Let the shim create the process, then vanish without opening a stream.
    eventually("the shim was asked to exec", || {
        !common::log_lines_with(&lab, "cri.log", "asking the shim to exec").is_empty()
    })
    .await;
    drop(io);
    eventually("exec FIFOs removed", || lab.exec_dir_entries() == 0).await;
    assert!(processes_with(&marker).is_empty());
    assert!(
        common::log_lines_with(&lab, "cri.log", "the shim started the process").is_empty(),
        "the process must not start without the client's streams"
    );
    // The container still serves execs.
    let req = exec_request(&container, &["echo", "ok"], false, false);
    let result = collect(exec(&mut cri, req, Transport::Spdy).await).await;
    assert_eq!(result.stdout, b"ok\n");
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}
