//! The throughput floors, measured in the same run as the paths:
//!
//! - **loopback TCP copy**: one socket hop, the ceiling of any single hop;
//! - **chain copy**: every crossing stdout makes on its way through the whole chain, with no
//!   protocol work. The container's writes into a pipe, a plain TCP hop (the runtime's
//!   streaming server to the kubelet), two TLS hops with the hops' own cipher order (kubelet →
//!   apiserver → client), each relay a thread doing blocking reads and writes. What
//!   `apiserver-ws` moves below it is the cost of the hops' own work (SPDY, WebSocket, tokio,
//!   their extra copies); what the machine cannot do is in the floor itself.
//!
//! The relays are threads of one process where the chain has processes: a switch between
//! processes costs a little more, so this floor is, if anything, a little high.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cpu::{CpuMeter, CpuUse};
use super::measure::{transfer_limit, within, MeasureError, CHUNK};
use super::stats::mb_per_s;

/// The kernel pipe behind the container's stdout: as large as cri-streaming makes it
/// (`OUTPUT_PIPE_BYTES` in its `fifo.rs`).
const PIPE_BYTES: i32 = 1024 * 1024;
/// What the relays read at once: as much as the hops read from a pipe or a socket.
const RELAY_CHUNK: usize = 128 * 1024;
/// The container's `dd` block.
const DD_BLOCK: usize = 1024 * 1024;
/// A relay that waits this long for bytes is stuck: the floor fails instead of hanging.
const STALL: Duration = Duration::from_secs(30);

/// A plain TCP copy over loopback: the physical limit of a byte stream on this machine. It runs
/// on a two-worker runtime of its own, as hops do: on the bench's one thread, writer and reader
/// would take turns without ever waking each other, unlike two processes.
pub async fn loopback_tcp(bytes: u64) -> Result<f64, MeasureError> {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(loopback_copy(bytes))
    })
    .await
    .map_err(|e| MeasureError::Unexpected(e.to_string()))?
}

async fn loopback_copy(bytes: u64) -> Result<f64, MeasureError> {
    use tokio::net::{TcpListener, TcpStream};
    within("loopback copy", transfer_limit(bytes), async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let writer = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            let chunk = vec![0u8; CHUNK];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                stream.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            stream.shutdown().await
        });
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; CHUNK];
        let first = stream.read(&mut buf).await? as u64;
        let started = Instant::now();
        let mut total = first;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let elapsed = started.elapsed();
        writer
            .await
            .map_err(|e| MeasureError::Unexpected(e.to_string()))??;
        Ok(mb_per_s(total - first, elapsed))
    })
    .await
}

/// The chain copy floor: MB/s from the first byte the client gets to the last, and the CPU
/// the whole machine spent meanwhile.
#[derive(Debug, Clone)]
pub struct ChainCopy {
    pub mb_s: f64,
    pub cpu: CpuUse,
}

/// Moves `bytes` (a whole number of MiB) through the chain's crossings (see the module docs).
pub async fn chain_copy(bytes: u64) -> Result<ChainCopy, MeasureError> {
    tokio::task::spawn_blocking(move || run_chain_copy(bytes))
        .await
        .map_err(|e| MeasureError::Unexpected(e.to_string()))?
}

fn run_chain_copy(bytes: u64) -> Result<ChainCopy, MeasureError> {
    let (server_tls, client_tls) = self_signed_tls()?;
    let localhost = ServerName::try_from("localhost").expect("a valid DNS name");
    let (pipe_rd, pipe_wr) = nix::unistd::pipe().map_err(io::Error::from)?;
    let (pipe_rd, pipe_wr) = (std::fs::File::from(pipe_rd), std::fs::File::from(pipe_wr));
    // Enlarging the pipe is best effort, as in cri-streaming.
    let _ = nix::fcntl::fcntl(&pipe_rd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    let to_kubelet = TcpListener::bind("127.0.0.1:0")?;
    let to_apiserver = TcpListener::bind("127.0.0.1:0")?;
    let to_client = TcpListener::bind("127.0.0.1:0")?;
    let (kubelet_addr, apiserver_addr, client_addr) = (
        to_kubelet.local_addr()?,
        to_apiserver.local_addr()?,
        to_client.local_addr()?,
    );

    let mut relays: Vec<JoinHandle<io::Result<()>>> = Vec::new();
    // The container: dd if=/dev/zero bs=1M into its stdout pipe.
    relays.push(std::thread::spawn(move || {
        let mut zero = std::fs::File::open("/dev/zero")?;
        let mut pipe_wr = pipe_wr;
        let mut block = vec![0u8; DD_BLOCK];
        for _ in 0..bytes / DD_BLOCK as u64 {
            zero.read_exact(&mut block)?;
            pipe_wr.write_all(&block)?;
        }
        Ok(())
    }));
    // The runtime's streaming server: pipe → plain TCP to the kubelet.
    relays.push(std::thread::spawn(move || {
        let out = TcpStream::connect(kubelet_addr)?;
        relay(pipe_rd, socket(out)?)
    }));
    // The kubelet: plain TCP in, TLS out (it is the TLS server of the apiserver's dial).
    let server = server_tls.clone();
    relays.push(std::thread::spawn(move || {
        let (from_runtime, _) = to_kubelet.accept()?;
        let (apiserver, _) = to_apiserver.accept()?;
        relay(socket(from_runtime)?, tls_server(&server, apiserver)?)
    }));
    // The apiserver: TLS client of the kubelet in, TLS server of the client out.
    let (client, name) = (client_tls.clone(), localhost.clone());
    relays.push(std::thread::spawn(move || {
        let kubelet = tls_client(&client, name, TcpStream::connect(apiserver_addr)?)?;
        let (user, _) = to_client.accept()?;
        relay(kubelet, tls_server(&server_tls, user)?)
    }));

    let received = TcpStream::connect(client_addr)
        .map_err(MeasureError::from)
        .and_then(|tcp| Ok(tls_client(&client_tls, localhost, tcp)?))
        .and_then(|mut from_apiserver| {
            let cpu = CpuMeter::new(&[]);
            let mut buf = vec![0u8; CHUNK];
            let first = read_some(&mut from_apiserver, &mut buf)? as u64;
            let before = cpu.snapshot();
            let started = Instant::now();
            let mut total = first;
            loop {
                let n = read_some(&mut from_apiserver, &mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let elapsed = started.elapsed();
            let used = before.usage_until(&cpu.snapshot(), total - first);
            Ok((total, mb_per_s(total - first, elapsed), used))
        });
    // Every relay ends once the client is gone, whatever happened: join them all.
    let mut relay_error = None;
    for handle in relays {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => relay_error = relay_error.or(Some(e.to_string())),
            Err(_) => relay_error = relay_error.or(Some("a relay panicked".into())),
        }
    }
    let (total, mb_s, cpu) = received?;
    if let Some(e) = relay_error {
        return Err(MeasureError::Unexpected(format!("chain copy relay: {e}")));
    }
    if total != bytes {
        return Err(MeasureError::Unexpected(format!(
            "chain copy carried {total} bytes, expected {bytes}"
        )));
    }
    Ok(ChainCopy { mb_s, cpu })
}

/// Copies `from` to `to` until `from` ends, then closes `to` (TLS: close_notify).
fn relay(mut from: impl Read, mut to: impl Write + Finish) -> io::Result<()> {
    let mut buf = vec![0u8; RELAY_CHUNK];
    loop {
        let n = read_some(&mut from, &mut buf)?;
        if n == 0 {
            return to.finish();
        }
        to.write_all(&buf[..n])?;
    }
}

/// A read where a TLS peer closing without close_notify is the end of the stream too.
fn read_some(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    match from.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// How a relay's output says "no more".
trait Finish {
    fn finish(&mut self) -> io::Result<()>;
}

impl Finish for TcpStream {
    fn finish(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Finish for StreamOwned<ServerConnection, Buffered> {
    fn finish(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()
    }
}

/// A relay's socket: no Nagle delay (as the hops), and a read that waits too long fails.
fn socket(tcp: TcpStream) -> io::Result<TcpStream> {
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(STALL))?;
    Ok(tcp)
}

/// A TLS receiver reads through a buffer as large as the hops' read-ahead
/// (`hop_kit::read_ahead`), since rustls alone asks the socket for 4 KiB at a time.
struct Buffered(BufReader<TcpStream>);

impl Read for Buffered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.get_mut().write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

fn buffered(tcp: TcpStream) -> io::Result<Buffered> {
    Ok(Buffered(BufReader::with_capacity(
        hop_kit::read_ahead::READ_AHEAD_BUFFER,
        socket(tcp)?,
    )))
}

fn tls_server(
    config: &Arc<ServerConfig>,
    tcp: TcpStream,
) -> io::Result<StreamOwned<ServerConnection, Buffered>> {
    let conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    Ok(StreamOwned::new(conn, buffered(tcp)?))
}

fn tls_client(
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> io::Result<StreamOwned<ClientConnection, Buffered>> {
    let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    Ok(StreamOwned::new(conn, buffered(tcp)?))
}

/// A throwaway certificate for `localhost`, and both sides' configs as the hops build them
/// (`hop_kit::tls`: cipher order, ALPN, tickets).
fn self_signed_tls() -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), MeasureError> {
    let failed =
        |e: &dyn std::fmt::Display| MeasureError::Unexpected(format!("chain copy TLS: {e}"));
    let issued =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).map_err(|e| failed(&e))?;
    let cert = issued.cert.der().clone();
    let serving = hop_kit::tls::Pem {
        cert_chain: vec![cert.clone()],
        key: Arc::new(
            PrivateKeyDer::try_from(issued.signing_key.serialize_der()).map_err(|e| failed(&e))?,
        ),
    };
    let server = hop_kit::ServerTls::new(serving, None).map_err(|e| failed(&e))?;
    let client = hop_kit::tls::client_config(vec![cert], None).map_err(|e| failed(&e))?;
    Ok((server.config(), client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn chain_copy_moves_every_byte_and_counts_the_cpu() {
        // Long enough (~70 ms) for /proc/stat's clock ticks to see it: 8 MiB took ~9 ms once
        // AES-GCM got faster, and a window without a tick counted no CPU at all.
        let floor = chain_copy(64 * 1024 * 1024).await.unwrap();
        assert!(floor.mb_s > 0.0, "{floor:?}");
        assert!(floor.cpu.total_ms_per_gib() > 0.0, "{floor:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn loopback_copy_moves_bytes() {
        assert!(loopback_tcp(8 * 1024 * 1024).await.unwrap() > 0.0);
    }
}
