//! Exec through the real chain: CRI client → cri-streaming → shim-exec → runc, streams over
//! SPDY and WebSocket v5 with the k8s-stream client.

mod common;

use std::time::{Duration, Instant};

use common::{collect, exec, exec_request, Lab, LabOptions, Transport};
use cri_api::runtime::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest, ExecSyncRequest,
    ListContainersRequest, VersionRequest,
};
use k8s_stream::remotecommand::{RemoteError, TerminalSize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_streams_and_exit_code_over_spdy_and_websocket() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let version = cri
        .version(VersionRequest::default())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(version.runtime_api_version, "v1");
    let (sandbox, container) = lab.run_pod(&mut cri, "web").await;

    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        let req = exec_request(
            &container,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        );
        let result = collect(exec(&mut cri, req, transport).await).await;
        assert_eq!(result.stdout, b"out\n", "{transport:?}");
        assert_eq!(result.stderr, b"err\n", "{transport:?}");
        assert_eq!(
            result.outcome,
            Err(RemoteError::ExitCode { code: 3 }),
            "{transport:?}"
        );

        let req = exec_request(&container, &["sh", "-c", "cat; echo done"], false, true);
        let mut streams = exec(&mut cri, req, transport).await;
        let mut stdin = streams.stdin.take().expect("stdin");
        tokio::io::AsyncWriteExt::write_all(&mut stdin, b"from stdin\n")
            .await
            .expect("write");
        tokio::io::AsyncWriteExt::shutdown(&mut stdin)
            .await
            .expect("stdin EOF");
        let result = collect(streams).await;
        assert_eq!(result.stdout, b"from stdin\ndone\n", "{transport:?}");
        assert_eq!(result.outcome, Ok(()));
    }

    // kubelet finds the container by labels and state.
    let found = cri
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                label_selector: [
                    ("io.kubernetes.pod.name".to_string(), "web".to_string()),
                    (
                        "io.kubernetes.container.name".to_string(),
                        "app".to_string(),
                    ),
                ]
                .into(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, container);
    let none = cri
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: "nope".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert!(none.is_empty());

    // ExecSync returns both streams and the code.
    let sync = cri
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo a; echo b >&2; exit 7".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        (
            sync.stdout.as_slice(),
            sync.stderr.as_slice(),
            sync.exit_code
        ),
        (&b"a\n"[..], &b"b\n"[..], 7)
    );
    let timed_out = cri
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .expect_err("timeout");
    assert_eq!(timed_out.code(), tonic::Code::DeadlineExceeded);
    assert_eq!(
        timed_out.message(),
        "failed to exec in container: timeout 1s exceeded: context deadline exceeded"
    );

    // The container's own output went to its CRI log.
    let status = cri
        .container_status(ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    let log = std::fs::read_to_string(&status.log_path).expect("container log");
    assert!(log.ends_with(" stdout F app started\n"), "{log:?}");

    assert_eq!(lab.exec_dir_entries(), 0, "exec FIFOs left");
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tty_exec_follows_resize() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "tty").await;
    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        // Poll until the size arrived (the resize races the command's start).
        let script = "for i in $(seq 50); do s=$(stty size); [ \"$s\" = '30 100' ] && break; sleep 0.1; done; echo \"size=$s\"";
        let req = exec_request(&container, &["sh", "-c", script], true, true);
        let mut streams = exec(&mut cri, req, transport).await;
        let mut resize = streams.resize.take().expect("resize stream");
        resize
            .send(TerminalSize {
                width: 100,
                height: 30,
            })
            .await
            .expect("resize");
        let result = collect(streams).await;
        let text = String::from_utf8_lossy(&result.stdout);
        assert!(text.contains("size=30 100"), "{transport:?}: {text:?}");
        assert_eq!(result.stderr, b"");
        assert_eq!(result.outcome, Ok(()));
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_execs_each_get_their_own_output() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "many").await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut cri = cri.clone();
        let container = container.clone();
        tasks.push(tokio::spawn(async move {
            let transport = if i % 2 == 0 {
                Transport::Spdy
            } else {
                Transport::WebSocketV5
            };
            let script = format!("echo out-{i}; echo err-{i} >&2");
            let req = exec_request(&container, &["sh", "-c", &script], false, false);
            let result = collect(exec(&mut cri, req, transport).await).await;
            (i, result)
        }));
    }
    for task in tasks {
        let (i, result) = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("in time")
            .expect("join");
        assert_eq!(result.stdout, format!("out-{i}\n").into_bytes());
        assert_eq!(result.stderr, format!("err-{i}\n").into_bytes());
        assert_eq!(result.outcome, Ok(()));
    }
    eprintln!("100 concurrent execs: {:?}", started.elapsed());
    assert_eq!(lab.exec_dir_entries(), 0, "exec FIFOs left");
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_mib_of_random_bytes_arrive_intact() {
    const SIZE: usize = 100 * 1024 * 1024;
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "bulk").await;
    // The container hashes what it sends (through a FIFO beside tee) and reports it on stderr.
    let script = format!(
        "mkfifo /tmp/h.$$; sha256sum < /tmp/h.$$ >&2 & head -c {SIZE} /dev/urandom | tee /tmp/h.$$; wait; rm /tmp/h.$$"
    );
    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        let req = exec_request(&container, &["sh", "-c", &script], false, false);
        let started = Instant::now();
        let mut streams = exec(&mut cri, req, transport).await;
        let mut stdout = streams.stdout.take().expect("stdout");
        let mut stderr = streams.stderr.take().expect("stderr");
        let hash_out = async {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0usize;
            loop {
                let n = stdout.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                total += n;
            }
            (total, hex::encode(hasher.finalize()))
        };
        let read_err = async {
            let mut s = String::new();
            stderr.read_to_string(&mut s).await.expect("stderr");
            s
        };
        let ((total, got), reported) = tokio::join!(hash_out, read_err);
        let outcome = streams.outcome.await;
        let elapsed = started.elapsed();
        assert_eq!(total, SIZE, "{transport:?}");
        assert_eq!(
            reported.split_whitespace().next(),
            Some(got.as_str()),
            "{transport:?}"
        );
        assert_eq!(outcome, Ok(()));
        eprintln!(
            "{transport:?}: 100 MiB in {elapsed:?} = {:.0} MiB/s",
            100.0 / elapsed.as_secs_f64()
        );
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_session_id_follows_traceparent_to_the_shim() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "traced").await;
    let from_grpc = "4bf92f3577b34da6a3ce929d0e0e4736";
    let from_http = "0af7651916cd43dd8448eb211c80319c";

    // gRPC metadata only: the session is the kubelet's trace.
    let req = exec_request(&container, &["echo", "traced"], false, false);
    let mut grpc = tonic::Request::new(req.clone());
    grpc.metadata_mut().insert(
        "traceparent",
        format!("00-{from_grpc}-00f067aa0ba902b7-01")
            .parse()
            .expect("metadata"),
    );
    let url = cri.exec(grpc).await.expect("Exec").into_inner().url;
    let result =
        collect(common::dial_exec(&url, Transport::Spdy, &common::options_of(&req)).await).await;
    assert_eq!(result.stdout, b"traced\n");

    // The streaming request's own header wins.
    let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
    let header = format!("00-{from_http}-b7ad6b7169203331-01");
    let result = collect(
        common::dial_exec_traced(
            &url,
            Transport::WebSocketV5,
            &common::options_of(&req),
            &header,
        )
        .await,
    )
    .await;
    assert_eq!(result.stdout, b"traced\n");

    for trace in [from_grpc, from_http] {
        let session = format!("\"session\":\"{trace}\"");
        assert!(
            !common::log_lines_with(&lab, "cri.log", &session).is_empty(),
            "cri-streaming log lacks {trace}"
        );
        assert!(
            !common::log_lines_with(&lab, "shim.log", trace).is_empty(),
            "shim log lacks {trace}"
        );
    }
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

/// The process's first output reaches the client before the shim's answer to Start: runc
/// answers 2 s late here (the process already runs), and "hi" must not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn output_flows_before_the_shim_answers_start() {
    let bin = tempfile::tempdir().expect("tempdir");
    let real = which_runc();
    let slow = bin.path().join("runc-slow-exec");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\n{real} \"$@\"; rc=$?\nfor a in \"$@\"; do [ \"$a\" = exec ] && sleep 2; done\nexit $rc\n"
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let lab = Lab::start(LabOptions {
        runc: Some(slow),
        ..Default::default()
    })
    .await;
    let mut cri = lab.cri().await;
    let (sandbox, container) = lab.run_pod(&mut cri, "early").await;

    let req = exec_request(&container, &["sh", "-c", "echo hi; sleep 3"], false, false);
    let started = Instant::now();
    let mut streams = exec(&mut cri, req, Transport::Spdy).await;
    let mut stdout = streams.stdout.take().expect("stdout");
    let mut hi = [0u8; 3];
    stdout.read_exact(&mut hi).await.expect("hi");
    assert_eq!(&hi, b"hi\n");
    assert!(
        common::log_lines_with(&lab, "cri.log", "the shim started the process").is_empty(),
        "output waited for Start's answer ({:?} after the request)",
        started.elapsed()
    );
    streams.stdout = Some(stdout);
    let result = collect(streams).await;
    assert_eq!(result.outcome, Ok(()));
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}

fn which_runc() -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!path.is_empty(), "runc not on PATH");
    path
}
