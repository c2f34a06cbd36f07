//! Throughput of exec sessions over loopback TCP, SPDY and WebSocket, next to a plain TCP copy
//! measured in the same run, plus the bytes that pile up while a reader stalls for 2 s.
//!
//! `cargo run --release -p k8s-stream --example stream_bench` (size per run:
//! `STREAM_BENCH_BYTES`, default 512 MiB).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_stream::exec::{self, BoxRead, BoxWrite, ExecOutcome, ServeConfig};
use k8s_stream::remotecommand::{ExecOptions, ProtocolVersion, StreamProtocol, WsProtocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;
const STALL: Duration = Duration::from_secs(2);
/// Most bytes the stall test writes (a bound, should buffering be unbounded).
const STALL_CAP: u64 = 256 << 20;

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.expect("connect");
    let (server, _) = server.expect("accept");
    client.set_nodelay(true).ok();
    server.set_nodelay(true).ok();
    (client, server)
}

async fn write_n<W: AsyncWrite + Unpin>(
    w: &mut W,
    total: u64,
    written: Option<&AtomicU64>,
) -> std::io::Result<()> {
    let buf = vec![0x5Au8; CHUNK];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(CHUNK as u64) as usize;
        w.write_all(&buf[..n]).await?;
        sent += n as u64;
        if let Some(c) = written {
            c.store(sent, Ordering::Relaxed);
        }
    }
    w.shutdown().await
}

async fn read_all<R: AsyncRead + Unpin>(r: &mut R) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Plain TCP: write `total` on one end, read it on the other.
async fn tcp_copy(total: u64) -> f64 {
    let (mut a, mut b) = tcp_pair().await;
    let start = Instant::now();
    let writer = tokio::spawn(async move { write_n(&mut a, total, None).await });
    let got = read_all(&mut b).await;
    let _ = writer.await;
    assert_eq!(got, total);
    mbps(total, start.elapsed())
}

/// An exec session over loopback TCP: (client streams, server streams).
async fn exec_pair(
    protocol: StreamProtocol,
    opts: &ExecOptions,
) -> (exec::ClientStreams, exec::ServerStreams) {
    let (client_io, server_io) = tcp_pair().await;
    let server_opts = opts.clone();
    let server = tokio::spawn(async move {
        exec::serve(server_io, protocol, &server_opts, &ServeConfig::default()).await
    });
    let client = exec::connect(client_io, protocol, opts)
        .await
        .expect("connect");
    let server = server.await.expect("join").expect("serve");
    (client, server)
}

enum Direction {
    /// Server stdout → client (`kubectl exec cat big`).
    Download,
    /// Client stdin → server (`kubectl exec -i -- tar x < big`).
    Upload,
}

async fn exec_copy(protocol: StreamProtocol, total: u64, dir: Direction) -> f64 {
    let opts = ExecOptions {
        command: vec!["bench".into()],
        stdin: true,
        stdout: true,
        ..ExecOptions::default()
    };
    let (mut c, mut s) = exec_pair(protocol, &opts).await;
    let start = Instant::now();
    let got = match dir {
        Direction::Download => {
            // The server ends stdout and reports the status; over WebSocket, stdout's EOF is the
            // connection's close, so the reader only sees EOF after `finish`.
            let mut out: BoxWrite = s.stdout.take().expect("stdout");
            let server = tokio::spawn(async move {
                let _ = write_n(&mut out, total, None).await;
                drop(out);
                let _ = s.status.finish(ExecOutcome::Success).await;
            });
            let mut r: BoxRead = c.stdout.take().expect("stdout");
            let got = read_all(&mut r).await;
            let _ = server.await;
            got
        }
        Direction::Upload => {
            let mut w: BoxWrite = c.stdin.take().expect("stdin");
            let writer = tokio::spawn(async move {
                let r = write_n(&mut w, total, None).await;
                (r, w)
            });
            let mut r: BoxRead = s.stdin.take().expect("stdin");
            let got = read_all(&mut r).await;
            let _ = writer.await;
            drop(s.stdout.take());
            let _ = s.status.finish(ExecOutcome::Success).await;
            got
        }
    };
    let elapsed = start.elapsed();
    assert_eq!(got, total, "{protocol}");
    let _ = c.outcome.await;
    mbps(total, elapsed)
}

/// Bytes the server got rid of while the client did not read for [`STALL`]: what sits in our
/// buffers plus the kernel's socket buffers.
async fn exec_stall(protocol: StreamProtocol) -> u64 {
    let opts = ExecOptions {
        command: vec!["bench".into()],
        stdout: true,
        ..ExecOptions::default()
    };
    let (mut c, mut s) = exec_pair(protocol, &opts).await;
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let mut out = s.stdout.take().expect("stdout");
    let server = tokio::spawn(async move {
        let _ = write_n(&mut out, STALL_CAP, Some(&counter)).await;
        drop(out);
        let _ = s.status.finish(ExecOutcome::Success).await;
    });
    tokio::time::sleep(STALL).await;
    let peak = written.load(Ordering::Relaxed);
    let mut r = c.stdout.take().expect("stdout");
    read_all(&mut r).await;
    let _ = server.await;
    let _ = c.outcome.await;
    peak
}

async fn tcp_stall() -> u64 {
    let (mut a, mut b) = tcp_pair().await;
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move { write_n(&mut a, STALL_CAP, Some(&counter)).await });
    tokio::time::sleep(STALL).await;
    let peak = written.load(Ordering::Relaxed);
    read_all(&mut b).await;
    let _ = writer.await;
    peak
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u64 = std::env::var("STREAM_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512 << 20);
    let spdy = StreamProtocol::Spdy(ProtocolVersion::V5);
    let ws = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    println!(
        "stream_bench: {} MiB per run over 127.0.0.1, 64 KiB writes",
        total >> 20
    );
    println!(
        "{:<40} {:>10.0} MB/s",
        "plain TCP copy",
        tcp_copy(total).await
    );
    for (name, p) in [("SPDY v5", spdy), ("WebSocket v5", ws)] {
        println!(
            "{:<40} {:>10.0} MB/s",
            format!("{name} stdout (server -> client)"),
            exec_copy(p, total, Direction::Download).await
        );
        println!(
            "{:<40} {:>10.0} MB/s",
            format!("{name} stdin (client -> server)"),
            exec_copy(p, total, Direction::Upload).await
        );
    }
    println!(
        "bytes written while the reader stalled {} s (kernel socket buffers included):",
        STALL.as_secs()
    );
    println!("{:<40} {:>10} KiB", "plain TCP", tcp_stall().await >> 10);
    println!(
        "{:<40} {:>10} KiB",
        "SPDY v5 stdout",
        exec_stall(spdy).await >> 10
    );
    println!(
        "{:<40} {:>10} KiB",
        "WebSocket v5 stdout",
        exec_stall(ws).await >> 10
    );
}
