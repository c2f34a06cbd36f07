//! Upgrades that are not kubectl's: legacy WebSocket subprotocols (passed through to the
//! kubelet), byte-exact splicing, and the plain-HTTP answers of the exec endpoint.
mod common;

use bytes::Bytes;
use common::{KubeletMode, Lab};
use http::Method;
use k8s_stream::exec::{self, ExecOptions};
use k8s_stream::remotecommand::{
    spdy_request_headers, validate_websocket_response, websocket_request_headers, ProtocolVersion,
    StreamProtocol, WsProtocol,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXEC_ECHO: &str =
    "/api/v1/namespaces/default/pods/web/exec?command=echo&command=legacy&stdout=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_websocket_subprotocols_reach_the_kubelet_unchanged() {
    let lab = Lab::start(KubeletMode::Exec).await;
    for protocol in [
        WsProtocol::V4Channel,
        WsProtocol::V4Base64Channel,
        WsProtocol::Channel,
        WsProtocol::Base64Channel,
    ] {
        let handshake = websocket_request_headers(&[protocol]);
        let mut headers = handshake.headers.clone();
        headers.insert(
            "authorization",
            "Bearer admintoken".parse().expect("header"),
        );
        let url = url::Url::parse(&format!(
            "https://127.0.0.1:{}{EXEC_ECHO}",
            lab.api_addr.port()
        ))
        .expect("url");
        let outcome = hop_kit::UpgradeRequest::new(url, Method::GET, headers)
            .with_tls(Some(lab.client_tls()))
            .send()
            .await
            .expect("dial proxy");
        let hop_kit::UpgradeOutcome::Switched { response, io } = outcome else {
            panic!("{protocol:?}: not switched: {outcome:?}");
        };
        let chosen =
            validate_websocket_response(&handshake, response.status, &response.headers, b"")
                .expect("valid 101");
        assert_eq!(chosen, protocol);
        let opts = ExecOptions {
            command: vec!["echo".into(), "legacy".into()],
            stdout: true,
            ..ExecOptions::default()
        };
        let streams = exec::connect(io, StreamProtocol::WebSocket(chosen), &opts)
            .await
            .expect("session");
        let mut stdout = streams.stdout.expect("stdout");
        let mut out = String::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stdout.read_to_string(&mut out),
        );
        read.await.expect("stdout in time").expect("read stdout");
        assert_eq!(out, "legacy\n", "{protocol:?}");
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), streams.outcome)
            .await
            .expect("outcome in time");
        assert!(outcome.is_ok(), "{protocol:?}: {outcome:?}");
    }
    let seen = lab.kubelet().stream_requests();
    let offered: Vec<String> = seen
        .iter()
        .map(|s| {
            assert_eq!(s.method, "GET", "legacy WebSocket keeps its method");
            s.headers
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        offered,
        [
            "v4.channel.k8s.io",
            "v4.base64.channel.k8s.io",
            "channel.k8s.io",
            "base64.channel.k8s.io"
        ]
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_upgrade_is_spliced_byte_for_byte() {
    let lab = Lab::start(KubeletMode::Echo).await;
    let mut headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    headers.insert(
        "authorization",
        "Bearer admintoken".parse().expect("header"),
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    headers.insert("traceparent", tp.parse().expect("header"));
    let url = url::Url::parse(&format!(
        "https://127.0.0.1:{}{EXEC_ECHO}",
        lab.api_addr.port()
    ))
    .expect("url");
    let outcome = hop_kit::UpgradeRequest::new(url, Method::POST, headers)
        .with_tls(Some(lab.client_tls()))
        .send()
        .await
        .expect("dial proxy");
    let hop_kit::UpgradeOutcome::Switched { response, mut io } = outcome else {
        panic!("not switched: {outcome:?}");
    };
    assert_eq!(
        response
            .headers
            .get("x-stream-protocol-version")
            .map(|v| v.as_bytes()),
        Some(&b"v5.channel.k8s.io"[..]),
        "the kubelet's choice is relayed"
    );
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let payload = payload.clone();
        async move {
            io.write_all(&payload).await.expect("write");
            let mut back = vec![0u8; payload.len()];
            io.read_exact(&mut back).await.expect("read back");
            back
        }
    };
    let back = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .expect("echo in time");
    assert!(back == payload, "bytes changed on the way");
    // The session id travels on: same trace id, new parent id.
    let seen = lab.kubelet().stream_requests();
    let forwarded = seen[0]
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{forwarded}"
    );
    assert_ne!(forwarded, tp);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_answers_of_the_api() {
    let lab = Lab::start(KubeletMode::Exec).await;
    let admin = [("authorization", "Bearer admintoken")];
    let (status, _, body) = lab.request(Method::POST, EXEC_ECHO, &admin).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        Bytes::from_static(br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Upgrade request required","reason":"BadRequest","code":400}"#)
    );
    let (status, _, body) = lab
        .request(Method::GET, "/api/v1/namespaces/default/pods", &[])
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        Bytes::from_static(br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#)
    );
    let (status, _, body) = lab.request(Method::GET, "/healthz", &[]).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
    let (status, _, body) = lab.request(Method::GET, "/version", &admin).await;
    assert_eq!(status, 200);
    let version: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("32"))
    );
    let (status, _, _) = lab
        .request(Method::GET, "/api/v1/namespaces/default/services", &admin)
        .await;
    assert_eq!(status, 404);
    // A bad WebSocket v5 handshake is refused before any kubelet dial.
    let (status, _, _) = lab
        .request(
            Method::GET,
            EXEC_ECHO,
            &[
                admin[0],
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "v5.channel.k8s.io"),
                ("sec-websocket-version", "12"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(lab.kubelet().stream_requests().is_empty());
    lab.shutdown().await;
}
