//! Per-hop exec metrics in the Prometheus text exposition format (version 0.0.4): sessions
//! open, sessions started, bytes per stream (where a hop sees stdin/stdout/stderr), bytes per
//! direction (where a hop only splices an upgraded connection), and a histogram of session setup
//! time. Counting is lock-free: one relaxed atomic add per read or write chunk ([`Counted`]),
//! never per byte. Rendering is a pure function of a snapshot; [`start_server`] binds
//! `--metrics-listen`, writes `--metrics-addr-file` and answers `GET /metrics`.
//!
//! Format checked against the Prometheus exposition format documentation (`# HELP`, `# TYPE`,
//! `_bucket{le="..."}` cumulative with a final `le="+Inf"`, `_sum`, `_count`).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

/// Upper bounds of the setup-duration histogram, in seconds.
pub const SETUP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
];

/// Which byte stream of an exec session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

impl Stream {
    const ALL: [Stream; 3] = [Stream::Stdin, Stream::Stdout, Stream::Stderr];

    fn name(self) -> &'static str {
        match self {
            Stream::Stdin => "stdin",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Which way bytes went through a hop that splices an upgraded connection without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client towards the next hop (stdin and the client's frames).
    ToBackend,
    /// From the next hop back to the client (stdout, stderr, status).
    ToClient,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::ToBackend, Direction::ToClient];

    fn name(self) -> &'static str {
        match self {
            Direction::ToBackend => "to_backend",
            Direction::ToClient => "to_client",
        }
    }
}

/// A byte counter; adding is one relaxed atomic operation.
#[derive(Debug, Default)]
pub struct ByteCounter(AtomicU64);

impl ByteCounter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One hop's exec metrics.
#[derive(Debug, Default)]
pub struct ExecMetrics {
    open: AtomicI64,
    started: AtomicU64,
    bytes: [ByteCounter; 3],
    spliced: [ByteCounter; 2],
    buckets: [AtomicU64; SETUP_BUCKETS.len()],
    setup_count: AtomicU64,
    setup_sum_micros: AtomicU64,
}

/// Counts a session as open until dropped, and remembers when its request was accepted so
/// [`OpenSession::set_up`] can observe the setup time.
#[derive(Debug)]
pub struct OpenSession {
    metrics: &'static ExecMetrics,
    accepted: Instant,
    set_up: bool,
}

impl OpenSession {
    /// The session is set up (upgrade answered, process started: whatever this hop sees last
    /// before bytes flow). Observed once; later calls do nothing.
    pub fn set_up(&mut self) {
        if !std::mem::replace(&mut self.set_up, true) {
            self.metrics.observe_setup(self.accepted.elapsed());
        }
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.metrics.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's metrics.
pub fn global() -> &'static ExecMetrics {
    static METRICS: OnceLock<ExecMetrics> = OnceLock::new();
    METRICS.get_or_init(ExecMetrics::default)
}

impl ExecMetrics {
    /// A session's request was accepted now; it counts as open until the guard is dropped.
    pub fn session_opened(&'static self) -> OpenSession {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenSession {
            metrics: self,
            accepted: Instant::now(),
            set_up: false,
        }
    }

    pub fn add_bytes(&self, stream: Stream, n: u64) {
        self.stream(stream).add(n);
    }

    /// The counter of one exec stream.
    pub fn stream(&self, stream: Stream) -> &ByteCounter {
        let i = Stream::ALL.iter().position(|s| *s == stream).unwrap_or(0);
        &self.bytes[i]
    }

    /// The counter of one splice direction.
    pub fn direction(&self, direction: Direction) -> &ByteCounter {
        let i = Direction::ALL
            .iter()
            .position(|d| *d == direction)
            .unwrap_or(0);
        &self.spliced[i]
    }

    /// Request → session set up (as this hop sees it).
    pub fn observe_setup(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = SETUP_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.setup_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.setup_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition text, every series labelled `hop="<hop>"`.
    pub fn render(&self, hop: &str) -> String {
        let mut t = String::new();
        let l = format!("hop=\"{}\"", hop.replace(['"', '\\', '\n'], "_"));
        let _ = writeln!(
            t,
            "# HELP execlab_exec_sessions_open Exec sessions open now."
        );
        let _ = writeln!(t, "# TYPE execlab_exec_sessions_open gauge");
        let open = self.open.load(Ordering::Relaxed);
        let _ = writeln!(t, "execlab_exec_sessions_open{{{l}}} {open}");
        let _ = writeln!(
            t,
            "# HELP execlab_exec_sessions_total Exec sessions started."
        );
        let _ = writeln!(t, "# TYPE execlab_exec_sessions_total counter");
        let started = self.started.load(Ordering::Relaxed);
        let _ = writeln!(t, "execlab_exec_sessions_total{{{l}}} {started}");
        let _ = writeln!(
            t,
            "# HELP execlab_exec_bytes_total Bytes carried, per stream."
        );
        let _ = writeln!(t, "# TYPE execlab_exec_bytes_total counter");
        for (i, s) in Stream::ALL.iter().enumerate() {
            let n = self.bytes[i].get();
            let _ = writeln!(
                t,
                "execlab_exec_bytes_total{{{l},stream=\"{}\"}} {n}",
                s.name()
            );
        }
        let _ = writeln!(
            t,
            "# HELP execlab_exec_spliced_bytes_total Bytes of upgraded connections spliced through, per direction."
        );
        let _ = writeln!(t, "# TYPE execlab_exec_spliced_bytes_total counter");
        for (i, d) in Direction::ALL.iter().enumerate() {
            let n = self.spliced[i].get();
            let _ = writeln!(
                t,
                "execlab_exec_spliced_bytes_total{{{l},direction=\"{}\"}} {n}",
                d.name()
            );
        }
        let _ = writeln!(
            t,
            "# HELP execlab_exec_setup_seconds Time from the exec request to the session being set up."
        );
        let _ = writeln!(t, "# TYPE execlab_exec_setup_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in SETUP_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                t,
                "execlab_exec_setup_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.setup_count.load(Ordering::Relaxed);
        let _ = writeln!(
            t,
            "execlab_exec_setup_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let sum = self.setup_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(t, "execlab_exec_setup_seconds_sum{{{l}}} {sum}");
        let _ = writeln!(t, "execlab_exec_setup_seconds_count{{{l}}} {count}");
        let _ = writeln!(
            t,
            "# HELP execlab_otlp_spans_dropped_total Spans not exported (queue full or export failed)."
        );
        let _ = writeln!(t, "# TYPE execlab_otlp_spans_dropped_total counter");
        let dropped = crate::otlp::dropped_spans();
        let _ = writeln!(t, "execlab_otlp_spans_dropped_total{{{l}}} {dropped}");
        t
    }
}

/// An I/O object whose reads and/or writes add to byte counters: one relaxed atomic add per
/// chunk, so wrapping a data path costs nothing measurable.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    reads: Option<&'static ByteCounter>,
    writes: Option<&'static ByteCounter>,
}

impl<T> Counted<T> {
    /// Counts nothing yet; add counters with [`count_reads`](Self::count_reads) and
    /// [`count_writes`](Self::count_writes).
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            reads: None,
            writes: None,
        }
    }

    pub fn count_reads(mut self, counter: &'static ByteCounter) -> Self {
        self.reads = Some(counter);
        self
    }

    pub fn count_writes(mut self, counter: &'static ByteCounter) -> Self {
        self.writes = Some(counter);
        self
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(counter)) = (&polled, self.reads) {
            counter.add((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(counter)) = (&polled, self.writes) {
            counter.add(*n as u64);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(counter)) = (&polled, self.writes) {
            counter.add(*n as u64);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `--metrics-listen ADDR` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("metrics listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("writing metrics address file {path}: {source}")]
    AddrFile {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Binds `listen` (port 0 = OS-chosen), writes the actual address to `addr_file` (as
/// `--addr-file` does) and serves [`global`]'s metrics on a spawned task. Returns the address.
pub async fn start_server(
    listen: SocketAddr,
    addr_file: Option<&Path>,
    hop: &'static str,
) -> Result<SocketAddr, MetricsServerError> {
    let bind_err = |source| MetricsServerError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    if let Some(path) = addr_file {
        crate::addr_file::write_addr_file(path, addr).map_err(|source| {
            MetricsServerError::AddrFile {
                path: path.display().to_string(),
                source,
            }
        })?;
    }
    tracing::info!(%addr, "serving metrics on /metrics");
    tokio::spawn(serve(listener, hop, global()));
    Ok(addr)
}

/// Answers `GET /metrics` with `metrics.render(hop)` (404 for anything else) until the task is
/// dropped.
pub async fn serve(listener: TcpListener, hop: &'static str, metrics: &'static ExecMetrics) {
    let hop: Arc<str> = Arc::from(hop);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let hop = hop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let hop = hop.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &hop, metrics)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, hop: &str, metrics: &ExecMetrics) -> Response<Full<Bytes>> {
    let mut resp = if req.uri().path() == "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from(metrics.render(hop))));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    } else {
        Response::new(Full::new(Bytes::from_static(b"404 page not found\n")))
    };
    if req.uri().path() != "/metrics" {
        *resp.status_mut() = StatusCode::NOT_FOUND;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_counters_and_a_cumulative_histogram() {
        let m: &'static ExecMetrics = Box::leak(Box::default());
        let a = m.session_opened();
        let b = m.session_opened();
        drop(a);
        m.add_bytes(Stream::Stdout, 1000);
        m.add_bytes(Stream::Stdin, 7);
        m.observe_setup(Duration::from_millis(3));
        m.observe_setup(Duration::from_millis(40));
        m.observe_setup(Duration::from_secs(2));
        let text = m.render("kubelet-stream");
        assert!(text.contains("execlab_exec_sessions_open{hop=\"kubelet-stream\"} 1\n"));
        assert!(text.contains("execlab_exec_sessions_total{hop=\"kubelet-stream\"} 2\n"));
        assert!(text
            .contains("execlab_exec_bytes_total{hop=\"kubelet-stream\",stream=\"stdout\"} 1000\n"));
        assert!(text.contains("le=\"0.0025\"} 0\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("execlab_exec_setup_seconds_sum{hop=\"kubelet-stream\"} 2.043\n"));
        assert!(text.contains("execlab_exec_setup_seconds_count{hop=\"kubelet-stream\"} 3\n"));
        drop(b);
        assert!(m
            .render("x")
            .contains("execlab_exec_sessions_open{hop=\"x\"} 0\n"));
    }

    #[test]
    fn setup_is_observed_once_and_open_sessions_end_with_their_guard() {
        let m: &'static ExecMetrics = Box::leak(Box::default());
        let mut s = m.session_opened();
        s.set_up();
        s.set_up();
        assert!(m
            .render("h")
            .contains("execlab_exec_setup_seconds_count{hop=\"h\"} 1\n"));
        assert!(m
            .render("h")
            .contains("execlab_exec_sessions_open{hop=\"h\"} 1\n"));
        drop(s);
        assert!(m
            .render("h")
            .contains("execlab_exec_sessions_open{hop=\"h\"} 0\n"));
        assert!(m
            .render("h")
            .contains("execlab_exec_sessions_total{hop=\"h\"} 1\n"));
    }

    #[tokio::test]
    async fn counted_io_adds_reads_and_writes_to_their_counters() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m: &'static ExecMetrics = Box::leak(Box::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = Counted::new(a)
            .count_reads(m.direction(Direction::ToBackend))
            .count_writes(m.direction(Direction::ToClient));
        b.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        a.read_exact(&mut buf).await.expect("read");
        a.write_all(b"0123456789").await.expect("write");
        let text = m.render("kubelet-stream");
        assert!(text.contains(
            "execlab_exec_spliced_bytes_total{hop=\"kubelet-stream\",direction=\"to_backend\"} 5\n"
        ));
        assert!(text.contains(
            "execlab_exec_spliced_bytes_total{hop=\"kubelet-stream\",direction=\"to_client\"} 10\n"
        ));
    }

    #[tokio::test]
    async fn start_server_writes_the_address_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("addr").join("cri-streaming.metrics");
        let addr = start_server(
            "127.0.0.1:0".parse().expect("addr"),
            Some(&file),
            "cri-streaming",
        )
        .await
        .expect("serve");
        assert_ne!(addr.port(), 0);
        assert_eq!(crate::read_addr_file(&file).expect("addr file"), addr);
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, "apiserver-proxy", global()));
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("text/plain; version=0.0.4"));
        assert!(reply.contains("execlab_exec_sessions_open{hop=\"apiserver-proxy\"}"));
        server.abort();
    }
}
