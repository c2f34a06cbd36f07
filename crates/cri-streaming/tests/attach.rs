//! Attach: a session on a running container's own stdio.

mod common;

use common::{dial_exec, Cri, Lab, LabOptions, Transport};
use cri_api::runtime::v1::{
    AttachRequest, ContainerConfig, ContainerState, ContainerStatusRequest,
};
use k8s_stream::exec::ClientStreams;
use k8s_stream::remotecommand::ExecOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo_container(lab: &Lab, cri: &mut Cri, pod: &str, stdin_once: bool) -> (String, String) {
    let sandbox = lab.run_sandbox(cri, pod).await;
    let container = lab
        .run_container(
            cri,
            &sandbox,
            pod,
            ContainerConfig {
                command: vec!["sh".into(), "-c".into()],
                args: vec!["while read line; do echo \"got $line\"; done; echo bye".into()],
                stdin: true,
                stdin_once,
                ..Default::default()
            },
        )
        .await;
    (sandbox, container)
}

async fn attach(cri: &mut Cri, container: &str, transport: Transport) -> ClientStreams {
    let req = AttachRequest {
        container_id: container.into(),
        stdin: true,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let url = cri.attach(req).await.expect("Attach").into_inner().url;
    assert!(url.contains("/attach/"), "{url}");
    let opts = ExecOptions {
        command: vec![],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    dial_exec(&url, transport, &opts).await
}

async fn state(cri: &mut Cri, container: &str) -> i32 {
    cri.container_status(ContainerStatusRequest {
        container_id: container.into(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("status")
    .state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_reaches_the_container_stdin_and_stdout() {
    let lab = Lab::start(LabOptions::default()).await;
    let mut cri = lab.cri().await;

    // Without stdin_once, attach sessions come and go; the container keeps its stdin.
    let (sandbox, container) = echo_container(&lab, &mut cri, "attached", false).await;
    for (i, transport) in [Transport::WebSocketV5, Transport::Spdy]
        .into_iter()
        .enumerate()
    {
        let mut streams = attach(&mut cri, &container, transport).await;
        let mut stdin = streams.stdin.take().expect("stdin");
        let mut stdout = streams.stdout.take().expect("stdout");
        stdin
            .write_all(format!("hello {i}\n").as_bytes())
            .await
            .expect("write");
        let expected = format!("got hello {i}\n");
        let mut got = vec![0u8; expected.len()];
        stdout.read_exact(&mut got).await.expect("read");
        assert_eq!(String::from_utf8_lossy(&got), expected, "{transport:?}");
        stdin.shutdown().await.expect("EOF");
    }
    assert_eq!(
        state(&mut cri, &container).await,
        ContainerState::ContainerRunning as i32
    );
    lab.remove_pod(&mut cri, &sandbox).await;

    // With stdin_once, the first session's EOF is the container's EOF.
    let (sandbox, container) = echo_container(&lab, &mut cri, "once", true).await;
    let mut streams = attach(&mut cri, &container, Transport::Spdy).await;
    let mut stdin = streams.stdin.take().expect("stdin");
    let mut stdout = streams.stdout.take().expect("stdout");
    stdin.write_all(b"last\n").await.expect("write");
    stdin.shutdown().await.expect("EOF");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.expect("read");
    assert_eq!(rest, "got last\nbye\n");
    assert_eq!(streams.outcome.await, Ok(()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(&mut cri, &container).await != ContainerState::ContainerExited as i32 {
        assert!(
            std::time::Instant::now() < deadline,
            "container did not exit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let err = cri
        .attach(AttachRequest {
            container_id: container.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("exited container");
    assert_eq!(err.message(), "container is in CONTAINER_EXITED state");
    lab.remove_pod(&mut cri, &sandbox).await;
    lab.stop().await;
}
