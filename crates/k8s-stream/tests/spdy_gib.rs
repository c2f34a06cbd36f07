//! Streams a large payload client → server through a SPDY session over real loopback TCP and
//! checks its SHA-256 on the far side; prints the throughput next to a plain TCP copy.
//!
//! Size: `SPDY_GIB_BYTES` if set, else 1 GiB in release builds and 64 MiB in debug builds
//! (`cargo test -p k8s-stream --release --test spdy_gib -- --nocapture` for the full GiB).
use std::time::{Duration, Instant};

use k8s_stream::spdy::session::{Role, Session, SessionConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn total_bytes() -> u64 {
    std::env::var("SPDY_GIB_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            64 << 20
        } else {
            1 << 30
        })
}

/// Deterministic, incompressible-enough data: a cheap xorshift stream.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Writes `total` bytes of the pattern (64 KiB writes) and returns their SHA-256.
async fn send_pattern<W: AsyncWrite + Unpin>(mut w: W, total: u64) -> [u8; 32] {
    let mut buf = vec![0u8; 64 * 1024];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut hash = Sha256::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill(&mut buf[..n], &mut state);
        hash.update(&buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    w.shutdown().await.unwrap();
    hash.finalize().into()
}

/// Reads to EOF and returns (bytes, SHA-256).
async fn receive<R: AsyncRead + Unpin>(mut r: R) -> (u64, [u8; 32]) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut hash = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (total, hash.finalize().into());
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    let server = server.unwrap().0;
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// Copies `total` zero bytes through `w`/`r` without hashing: the transport cost alone.
async fn raw_copy<W, R>(mut w: W, mut r: R, total: u64) -> Duration
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
    let start = Instant::now();
    let rx = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                return got;
            }
            got += n as u64;
        }
    });
    let buf = vec![0u8; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    w.shutdown().await.unwrap();
    assert_eq!(rx.await.unwrap(), total);
    start.elapsed()
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_through_a_session_over_loopback_tcp() {
    let total = total_bytes();

    // Baseline: the same pattern over a plain TCP connection.
    let (c, s) = tcp_pair().await;
    let start = Instant::now();
    let rx = tokio::spawn(receive(s));
    let sent = send_pattern(c, total).await;
    let (got, digest) = rx.await.unwrap();
    let plain = start.elapsed();
    assert_eq!((got, digest), (total, sent));

    // The same through SPDY.
    let (c, s) = tcp_pair().await;
    let (client, _ci) = Session::new(c, Role::Client, SessionConfig::default());
    let (_server, mut si) = Session::new(s, Role::Server, SessionConfig::default());
    let rx = tokio::spawn(async move {
        let stream = si
            .next()
            .await
            .expect("stream")
            .accept()
            .await
            .expect("accept");
        receive(stream).await
    });
    let start = Instant::now();
    let stream = client
        .open_stream(vec![("streamtype".into(), "stdin".into())])
        .await
        .expect("open stream");
    let sent = send_pattern(stream, total).await;
    let (got, digest) = tokio::time::timeout(Duration::from_secs(600), rx)
        .await
        .unwrap()
        .unwrap();
    let spdy = start.elapsed();
    assert_eq!(got, total);
    assert_eq!(hex::encode(digest), hex::encode(sent));

    // Transport cost alone (no hashing): plain TCP vs a session stream, same byte count.
    let (c, s) = tcp_pair().await;
    let plain_raw = raw_copy(c, s, total).await;
    let (c, s) = tcp_pair().await;
    let (client, _ci) = Session::new(c, Role::Client, SessionConfig::default());
    let (_server, mut si) = Session::new(s, Role::Server, SessionConfig::default());
    let accept = tokio::spawn(async move { si.next().await.unwrap().accept().await.unwrap() });
    let w = client
        .open_stream(vec![("streamtype".into(), "stdin".into())])
        .await
        .unwrap();
    let r = accept.await.unwrap();
    let spdy_raw = raw_copy(w, r, total).await;
    println!(
        "{} MiB raw copy: plain TCP {:.0} MiB/s, SPDY session {:.0} MiB/s ({:.0}%)",
        total >> 20,
        rate(total, plain_raw),
        rate(total, spdy_raw),
        100.0 * plain_raw.as_secs_f64() / spdy_raw.as_secs_f64()
    );

    println!(
        "{} MiB with SHA-256: plain TCP {:.0} MiB/s, SPDY session {:.0} MiB/s ({:.0}%)",
        total >> 20,
        rate(total, plain),
        rate(total, spdy),
        100.0 * plain.as_secs_f64() / spdy.as_secs_f64()
    );
}
