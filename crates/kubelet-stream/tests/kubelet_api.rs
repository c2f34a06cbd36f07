//! kubelet-stream against a fake CRI runtime and a fake streaming server: authentication,
//! authorization, error texts, proxy and redirect modes, /pods, runtime outages, restarts.

mod support;

use std::time::Duration;

use hop_kit::session_id::TraceParent;
use hop_kit::upgrade::UpgradeOutcome;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kubelet_stream::streaming::StreamingMode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXEC: &str =
    "/exec/default/web/app?command=sh&command=-c&command=echo%20hi&input=1&output=1&error=1";

#[tokio::test]
async fn missing_or_foreign_client_certificate_gets_401() {
    let lab = Lab::new();
    let _runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    for identity in [None, Some(&lab.pki.stranger)] {
        let tls = lab.pki.client(identity);
        let (status, body, headers) =
            refused(request(&kubelet, tls, Method::POST, EXEC, spdy_headers()).await);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, "Unauthorized");
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    }
    // /healthz needs no certificate.
    assert_healthz_ok(&lab, &kubelet).await;
    kubelet.stop().await;
}

#[tokio::test]
async fn user_outside_allow_exec_gets_403_naming_the_verb() {
    let lab = Lab::new();
    let _runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.jane));
    let (status, body, _) =
        refused(request(&kubelet, tls.clone(), Method::POST, EXEC, spdy_headers()).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        "Forbidden (user=jane, verb=create, resource=nodes, subresource=proxy)"
    );
    let (_, body, _) = refused(request(&kubelet, tls, Method::GET, EXEC, spdy_headers()).await);
    assert_eq!(
        body,
        "Forbidden (user=jane, verb=get, resource=nodes, subresource=proxy)"
    );
    kubelet.stop().await;
}

#[tokio::test]
async fn request_errors_read_like_the_kubelet() {
    let lab = Lab::new();
    let runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;

    let cases = [
        (
            "/exec/default/nope/app?command=ls&output=1",
            StatusCode::NOT_FOUND,
            "pod does not exist",
        ),
        (
            "/exec/default/web/x?command=ls&output=1",
            StatusCode::INTERNAL_SERVER_ERROR,
            "container not found (\"x\")",
        ),
        (
            "/exec/default/web/app?command=ls",
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
        (
            "/attach/default/web/x?output=1",
            StatusCode::INTERNAL_SERVER_ERROR,
            "container x not found in pod web_default",
        ),
        (
            "/exec/default/web/wrong-uid/app?command=ls&output=1",
            StatusCode::INTERNAL_SERVER_ERROR,
            "container not found (\"app\")",
        ),
    ];
    for (path, want_status, want_body) in cases {
        let (status, body, _) =
            refused(request(&kubelet, tls.clone(), Method::POST, path, spdy_headers()).await);
        assert_eq!((status, body.as_str()), (want_status, want_body), "{path}");
    }
    assert!(runtime.runtime.exec_requests().is_empty());
    kubelet.stop().await;
}

#[tokio::test]
async fn proxy_mode_relays_the_101_and_splices_both_ways() {
    let lab = Lab::new();
    let (stream_addr, seen) = spawn_streaming_server().await;
    let fake = FakeRuntime::default();
    fake.set_stream_base(&format!("http://{stream_addr}"));
    let runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    let pods = wait_running(&kubelet, tls.clone()).await;
    let uid = pods["items"][0]["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();

    let trace: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("tp");
    let mut headers = spdy_headers();
    headers.insert(
        "traceparent",
        HeaderValue::from_str(&trace.to_string()).expect("hv"),
    );
    let path = format!("/exec/default/web/{uid}/app?command=sh&command=-c&command=echo%20hi&input=1&output=1&tty=1");
    let outcome = request(&kubelet, tls, Method::POST, &path, headers).await;
    let UpgradeOutcome::Switched { response, io } = outcome else {
        panic!("expected 101, got {outcome:?}");
    };
    assert_eq!(response.headers["upgrade"], "SPDY/3.1");
    assert_eq!(
        response.headers["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = {
        let payload = payload.clone();
        tokio::spawn(async move {
            wr.write_all(&payload).await.expect("write");
            wr.shutdown().await.expect("half-close");
        })
    };
    let mut echoed = Vec::new();
    tokio::time::timeout(LIMIT, rd.read_to_end(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");
    writer.await.expect("writer");
    assert_eq!(echoed, payload);
    drop(rd);

    let execs = runtime.runtime.exec_requests();
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0].cmd, ["sh", "-c", "echo hi"]);
    assert!(execs[0].stdin && execs[0].stdout && execs[0].tty && !execs[0].stderr);
    // The session id travels: same trace id to CRI and to the streaming server, new parent ids.
    let to_cri: TraceParent = runtime.runtime.exec_traceparents()[0]
        .parse()
        .expect("traceparent to CRI");
    assert_eq!(to_cri.trace_id, trace.trace_id);
    assert_ne!(to_cri.parent_id, trace.parent_id);
    let seen = seen.lock().expect("seen").clone();
    let to_stream: TraceParent = seen[0]
        .traceparent
        .as_deref()
        .expect("forwarded")
        .parse()
        .expect("tp");
    assert_eq!(to_stream.trace_id, trace.trace_id);
    kubelet.stop().await;
}

#[tokio::test]
async fn redirect_mode_answers_302_with_the_runtime_url() {
    let lab = Lab::new();
    let fake = FakeRuntime::default();
    fake.set_stream_base("http://127.0.0.1:35243");
    let _runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Redirect).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    let (status, _, headers) =
        refused(request(&kubelet, tls, Method::POST, EXEC, spdy_headers()).await);
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "http://127.0.0.1:35243/exec/Ab3_xY9-");
    kubelet.stop().await;
}

#[tokio::test]
async fn streaming_server_down_gives_error_dialing_backend() {
    let lab = Lab::new();
    // Bound and never listening: a connect is refused, and no other test's server can take the
    // port meanwhile (a port freed again was once reused by a TLS server, whose alert came back).
    let dead = tokio::net::TcpSocket::new_v4().expect("socket");
    dead.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    let fake = FakeRuntime::default();
    fake.set_stream_base(&format!("http://{dead_addr}"));
    let _runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    let (status, body, headers) =
        refused(request(&kubelet, tls, Method::POST, EXEC, spdy_headers()).await);
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        format!("error dialing backend: dial tcp {dead_addr}: connect: connection refused\n")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    kubelet.stop().await;
}

#[tokio::test]
async fn runtime_refusal_is_relayed_as_is() {
    let lab = Lab::new();
    let (stream_addr, _seen) = spawn_streaming_server().await;
    let fake = FakeRuntime::default();
    // A base with a path prefix makes the token path unknown to the streaming server.
    fake.set_stream_base(&format!("http://{stream_addr}/gone"));
    let _runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    let (status, body, _) =
        refused(request(&kubelet, tls.clone(), Method::POST, EXEC, spdy_headers()).await);
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
    // Not an upgrade request at all: upstream's proxy insists on one.
    let (status, body, _) =
        refused(request(&kubelet, tls, Method::POST, EXEC, HeaderMap::new()).await);
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Upgrade request required\n"
        )
    );
    kubelet.stop().await;
}

#[tokio::test]
async fn pods_lists_the_static_pod_with_its_containers() {
    let lab = Lab::new();
    let runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    let list = wait_running(&kubelet, tls).await;
    assert_eq!(list["kind"], "PodList");
    let pod = &list["items"][0];
    assert_eq!(pod["metadata"]["name"], "web");
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(pod["spec"]["nodeName"], "node1");
    assert_eq!(pod["spec"]["containers"][0]["command"][2], "sleep 3600");
    assert_eq!(pod["status"]["podIP"], "127.0.0.1");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["name"], "app");
    assert_eq!(status["ready"], true);
    let id = status["containerID"].as_str().expect("containerID");
    assert!(id.starts_with("cri://container"), "{id}");
    assert!(status["state"]["running"]["startedAt"].is_string());
    assert_eq!(
        (
            runtime.runtime.sandbox_count(),
            runtime.runtime.container_count()
        ),
        (1, 1)
    );
    kubelet.stop().await;
}

#[tokio::test]
async fn kubelet_starts_without_runtime_and_recovers_when_it_appears() {
    let lab = Lab::new();
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    let (status, body, _) =
        refused(request(&kubelet, tls.clone(), Method::POST, EXEC, spdy_headers()).await);
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.starts_with("rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix "),
        "{body}"
    );
    let (status, body, _) = refused(
        request(
            &kubelet,
            tls.clone(),
            Method::GET,
            "/pods",
            HeaderMap::new(),
        )
        .await,
    );
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"phase\":\"Pending\""), "{body}");

    let runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    wait_running(&kubelet, tls).await;
    assert_eq!(runtime.runtime.sandbox_count(), 1);
    kubelet.stop().await;
}

#[tokio::test]
async fn restarted_kubelet_adopts_running_pods_and_shutdown_leaves_them() {
    let lab = Lab::new();
    let runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    let first = lab.start_kubelet(StreamingMode::Proxy).await;
    let before = wait_running(&first, tls.clone()).await;
    first.stop().await;

    let second = lab.start_kubelet(StreamingMode::Proxy).await;
    let after = wait_running(&second, tls).await;
    assert_eq!(
        before["items"][0]["status"]["containerStatuses"][0]["containerID"],
        after["items"][0]["status"]["containerStatuses"][0]["containerID"]
    );
    assert_eq!(
        before["items"][0]["metadata"]["uid"],
        after["items"][0]["metadata"]["uid"]
    );
    assert_eq!(
        (
            runtime.runtime.sandbox_count(),
            runtime.runtime.container_count()
        ),
        (1, 1)
    );
    second.stop().await;
}

#[tokio::test]
async fn shutdown_waits_briefly_for_open_streams_then_returns() {
    let lab = Lab::new();
    let (stream_addr, _seen) = spawn_streaming_server().await;
    let fake = FakeRuntime::default();
    fake.set_stream_base(&format!("http://{stream_addr}"));
    let _runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let addr = kubelet.addr;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    let UpgradeOutcome::Switched { io: _open, .. } =
        request(&kubelet, tls, Method::POST, EXEC, spdy_headers()).await
    else {
        panic!("expected 101");
    };
    // The session stays open: shutdown must not hang on it beyond the grace period (1 s).
    let took = kubelet.stop().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    // The address file was written.
    let written = hop_kit::read_addr_file(&lab.dir.path().join("addr").join("kubelet-stream"))
        .expect("addr file");
    assert_eq!(written, addr);
}

#[tokio::test]
async fn exited_container_is_recreated_with_the_next_attempt() {
    let lab = Lab::new();
    let runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    let before = wait_running(&kubelet, tls.clone()).await;
    runtime.runtime.exit_all_containers();
    runtime
        .runtime
        .wait_containers(2, "container never recreated")
        .await;
    let after = wait_running(&kubelet, tls).await;
    let status =
        |list: &serde_json::Value| list["items"][0]["status"]["containerStatuses"][0].clone();
    assert_ne!(
        status(&before)["containerID"],
        status(&after)["containerID"]
    );
    assert_eq!(status(&after)["restartCount"], 1);
    assert_eq!(runtime.runtime.sandbox_count(), 1);
    kubelet.stop().await;
}

/// A killed shim takes the sandbox down with the container: the new sandbox's container must
/// take the next attempt of the pod (the runtime still reserves the old container's name), as
/// kubelet counts restarts across all of a pod's sandboxes.
#[tokio::test]
async fn container_in_a_new_sandbox_takes_the_next_attempt() {
    let lab = Lab::new();
    let runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Proxy).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    runtime.runtime.lose_all_sandboxes();
    runtime
        .runtime
        .wait_containers(2, "container never recreated in a new sandbox")
        .await;
    assert_eq!(runtime.runtime.sandbox_count(), 2);
    assert_eq!(runtime.runtime.container_attempts(), [0, 1]);
    let after = wait_running(&kubelet, tls).await;
    assert_eq!(
        after["items"][0]["status"]["containerStatuses"][0]["restartCount"],
        1
    );
    kubelet.stop().await;
}

/// The container an exec found is used directly by the next one (no ListContainers), until the
/// runtime refuses it: then it is looked up afresh and the new container is used.
#[tokio::test]
async fn the_container_found_once_is_used_until_the_runtime_refuses_it() {
    let lab = Lab::new();
    let fake = FakeRuntime::default();
    fake.set_stream_base("http://127.0.0.1:9");
    let runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Redirect).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    let exec = || async {
        let outcome = request(
            &kubelet,
            tls.clone(),
            Method::POST,
            "/exec/default/web/app?command=ls&output=1",
            spdy_headers(),
        )
        .await;
        assert_eq!(refused(outcome).0, StatusCode::FOUND);
    };
    exec().await;
    exec().await;
    assert_eq!(runtime.runtime.lookups_at_exec(), [1, 1]);

    runtime.runtime.exit_all_containers();
    runtime
        .runtime
        .wait_containers(2, "container never recreated")
        .await;
    wait_running(&kubelet, tls.clone()).await;
    exec().await;
    let execs = runtime.runtime.exec_requests();
    assert_eq!(runtime.runtime.lookups_at_exec(), [1, 1, 2]);
    assert_ne!(execs[2].container_id, execs[0].container_id);
    kubelet.stop().await;
}

/// Slow clients after TLS (slowloris): an idle session and half a request line are closed once
/// the request-header timeout passes; a prompt request is served as before.
#[tokio::test]
async fn a_request_head_that_never_ends_is_closed() {
    let lab = Lab::new();
    let _runtime = serve_runtime(FakeRuntime::default(), &lab.socket);
    let mut config = lab.config(StreamingMode::Proxy);
    config.limits.request_header_timeout = Duration::from_millis(400);
    config.limits.tls_handshake_timeout = Duration::from_millis(400);
    let kubelet = lab.start_kubelet_with(config).await;
    let held = Duration::from_secs(10);
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(kubelet.addr)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        tokio_rustls::TlsConnector::from(lab.pki.client(Some(&lab.pki.apiserver)))
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    };
    let mut idle = connect().await;
    assert!(hop_kit::test_io::peer_closed_within(&mut idle, held)
        .await
        .is_some());
    let mut slow = connect().await;
    slow.write_all(b"POST /exec/default/web/app?comm")
        .await
        .expect("write");
    slow.flush().await.expect("flush");
    assert!(hop_kit::test_io::peer_closed_within(&mut slow, held)
        .await
        .is_some());
    let mut bare = tokio::net::TcpStream::connect(kubelet.addr)
        .await
        .expect("connect");
    assert!(hop_kit::test_io::peer_closed_within(&mut bare, held)
        .await
        .is_some());
    assert_healthz_ok(&lab, &kubelet).await;
    kubelet.stop().await;
}

/// `GET /healthz` without a client certificate answers 200 `ok`.
async fn assert_healthz_ok(lab: &Lab, kubelet: &KubeletHandle) {
    let healthz = request(
        kubelet,
        lab.pki.client(None),
        Method::GET,
        "/healthz",
        HeaderMap::new(),
    );
    let (status, body, _) = refused(healthz.await);
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}
