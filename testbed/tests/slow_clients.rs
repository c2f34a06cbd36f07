//! Slow and idle clients (slowloris, issue 17 item 2) against a real lab whose hops run with short
//! bounds (`--tls-handshake-timeout`, `--request-header-timeout`, `--max-connections`): every
//! listening hop closes a connection that never handshakes, never sends a request or sends half of
//! one, and real kubectl 1.32 (WebSocket v5, and SPDY) still gets through an API server whose
//! connections are all taken, once the bound frees them.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{kubectl_exec, start_lab, stop_lab, tokio_runtime};
use execlab::fault::kubectl::Client;
use execlab::{Hop, HopFlag, LabConfig};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bound each hop gets for a handshake and for a request head.
const BOUND: &str = "1s";
/// Connections each hop takes at once.
const MAX_CONNECTIONS: usize = 4;
/// Longer than a closed case may take here, and shorter than the hops' default bounds (32 s).
const HELD: Duration = Duration::from_secs(12);

async fn assert_closed<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let took = hop_kit::test_io::peer_closed_within(stream, HELD).await;
    assert!(took.is_some(), "{what}: still open after {HELD:?}");
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[test]
fn idle_and_slow_connections_are_closed_at_every_hop_and_kubectl_gets_through() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = LabConfig::new(tmp.path().join("lab"));
    for hop in [Hop::ApiserverProxy, Hop::KubeletStream, Hop::CriStreaming] {
        config.hop_flags.extend([
            HopFlag::new(hop, "--tls-handshake-timeout", BOUND),
            HopFlag::new(hop, "--request-header-timeout", BOUND),
            HopFlag::new(hop, "--max-connections", MAX_CONNECTIONS),
        ]);
    }
    let lab = start_lab(config);
    let api = lab.apiserver_addr().expect("apiserver address");
    let kubelet = lab.kubelet_addr().expect("kubelet address");
    let streaming = lab.stream_addr().expect("streaming address");
    let ca = lab.pki().expect("lab PKI").paths.ca.cert.clone();
    let tls = hop_kit::tls::client_config_from_files(&ca, None).expect("client TLS config");
    let runtime = tokio_runtime();
    runtime.block_on(async {
        for (hop, addr) in [("apiserver-proxy", api), ("kubelet-stream", kubelet)] {
            assert_closed(&mut connect(addr).await, &format!("{hop}: bare TCP")).await;
            // A TLS record header announcing a ClientHello that never comes.
            let mut half = connect(addr).await;
            half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
                .await
                .expect("write");
            assert_closed(&mut half, &format!("{hop}: half a ClientHello")).await;
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let mut idle = connector
                .connect(name.clone(), connect(addr).await)
                .await
                .expect("TLS handshake");
            assert_closed(&mut idle, &format!("{hop}: idle TLS session")).await;
            let mut slow = connector
                .connect(name, connect(addr).await)
                .await
                .expect("TLS handshake");
            slow.write_all(b"GET /healthz HT").await.expect("write");
            slow.flush().await.expect("flush");
            assert_closed(&mut slow, &format!("{hop}: half a request line")).await;
        }
        assert_closed(&mut connect(streaming).await, "cri-streaming: idle").await;
        let mut slow = connect(streaming).await;
        slow.write_all(b"POST /exec/tok").await.expect("write");
        assert_closed(&mut slow, "cri-streaming: half a request line").await;
    });

    for client in [Client::Ws132, Client::Spdy132] {
        // Every place at the API server taken by a client that says nothing.
        let mut idle: Vec<TcpStream> = runtime.block_on(async {
            let mut held = Vec::new();
            for _ in 0..MAX_CONNECTIONS {
                held.push(connect(api).await);
            }
            held
        });
        let (code, stdout, stderr) = kubectl_exec(
            client,
            &lab.kubeconfig(),
            &["web", "-c", "app", "--", "echo", "hi"],
            Stdio::null(),
        );
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (Some(0), "hi\n", ""),
            "{client:?} behind {MAX_CONNECTIONS} idle connections\n{}",
            common::dump_logs(lab.dir())
        );
        // kubectl's connection was accepted only when a place came free.
        let freed = runtime.block_on(async {
            let mut freed = 0;
            for held in &mut idle {
                let now = hop_kit::test_io::peer_closed_within(held, Duration::from_millis(20));
                freed += usize::from(now.await.is_some());
            }
            freed
        });
        assert!(
            freed > 0,
            "{client:?} got through while every place was held"
        );
        runtime.block_on(async {
            for held in &mut idle {
                assert_closed(held, "an idle connection holding a place").await;
            }
        });
    }
    stop_lab(lab);
}
