//! Per-hop exec metrics in the Prometheus text exposition format (version 0.0.4): sessions
//! open, sessions started, bytes per stream, and a histogram of session setup time. Counting is
//! lock-free (atomics); rendering is a pure function of a snapshot, and [`serve`] answers
//! `GET /metrics` on a plain-HTTP listener.
//!
//! Format checked against the Prometheus exposition format documentation (`# HELP`, `# TYPE`,
//! `_bucket{le="..."}` cumulative with a final `le="+Inf"`, `_sum`, `_count`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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

/// One hop's exec metrics.
#[derive(Debug, Default)]
pub struct ExecMetrics {
    open: AtomicI64,
    started: AtomicU64,
    bytes: [AtomicU64; 3],
    buckets: [AtomicU64; SETUP_BUCKETS.len()],
    setup_count: AtomicU64,
    setup_sum_micros: AtomicU64,
}

/// Counts a session as open until dropped.
#[derive(Debug)]
pub struct OpenSession {
    metrics: &'static ExecMetrics,
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
    /// A session started; it counts as open until the guard is dropped.
    pub fn session_opened(&'static self) -> OpenSession {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenSession { metrics: self }
    }

    pub fn add_bytes(&self, stream: Stream, n: u64) {
        let i = Stream::ALL.iter().position(|s| *s == stream).unwrap_or(0);
        self.bytes[i].fetch_add(n, Ordering::Relaxed);
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
            let n = self.bytes[i].load(Ordering::Relaxed);
            let _ = writeln!(
                t,
                "execlab_exec_bytes_total{{{l},stream=\"{}\"}} {n}",
                s.name()
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
        t
    }
}

/// Answers `GET /metrics` with `metrics.render(hop)` (404 for anything else) until the task is
/// dropped.
pub async fn serve(listener: TcpListener, hop: &'static str, metrics: &'static ExecMetrics) {
    let hop: Arc<str> = Arc::from(hop);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
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
