//! Bulk data client → server through a WebSocket exec session over loopback TCP, checked with
//! sha256. Size: `K8S_STREAM_GIB_BYTES` (default 1 GiB in release builds, 64 MiB in debug).
use std::time::{Duration, Instant};

use k8s_stream::exec::{self, ExecOutcome, ServeConfig};
use k8s_stream::remotecommand::{ExecOptions, StreamProtocol, WsProtocol};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn total_bytes() -> u64 {
    std::env::var("K8S_STREAM_GIB_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            64 << 20
        } else {
            1 << 30
        })
}

/// Deterministic, incompressible-looking data.
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_client_to_server_over_websocket() {
    let total = total_bytes();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    let opts = ExecOptions {
        command: vec!["sha256sum".into()],
        stdin: true,
        stdout: true,
        ..ExecOptions::default()
    };
    let server_opts = opts.clone();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        sock.set_nodelay(true).unwrap();
        let mut s = exec::serve(sock, proto, &server_opts, &ServeConfig::default())
            .await
            .unwrap();
        let mut stdin = s.stdin.take().unwrap();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n_total = 0u64;
        loop {
            let n = stdin.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            n_total += n as u64;
        }
        let digest = hex::encode(hasher.finalize());
        let mut out = s.stdout.take().unwrap();
        out.write_all(format!("{digest} {n_total}").as_bytes())
            .await
            .unwrap();
        out.shutdown().await.unwrap();
        s.status.finish(ExecOutcome::Success).await.unwrap();
    });

    let sock = TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let mut c = exec::connect(sock, proto, &opts).await.unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(buf.len() as u64) as usize;
        fill(&mut buf[..n], &mut seed);
        hasher.update(&buf[..n]);
        stdin.write_all(&buf[..n]).await.unwrap();
        sent += n as u64;
    }
    stdin.shutdown().await.unwrap();
    let mut answer = String::new();
    c.stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    tokio::time::timeout(Duration::from_secs(30), c.outcome)
        .await
        .unwrap()
        .unwrap();
    server.await.unwrap();
    assert_eq!(
        answer,
        format!("{} {total}", hex::encode(hasher.finalize()))
    );
    eprintln!(
        "{total} bytes in {elapsed:?}: {:.0} MB/s",
        total as f64 / 1e6 / elapsed.as_secs_f64()
    );
}
