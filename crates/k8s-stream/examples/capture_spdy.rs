//! Records what a real kubectl sends over SPDY, for the fixtures in `tests/fixtures/spdy/`.
//!
//! A tiny plain-HTTP stand-in for the API server on 127.0.0.1: just enough discovery and a
//! Running pod `web` (container `app`) for `kubectl exec` to get going; the WebSocket attempt
//! gets 400 so kubectl falls back to SPDY; the SPDY upgrade (POST .../exec) gets 101 with the
//! first protocol version kubectl offered. Then a server [`Session`] accepts the streams,
//! writes `hi\n` on stdout, a v4 success Status on the error stream, goes away, and every byte
//! kubectl sent after the upgrade request is written to `<out>/<name>.bin` (the request head
//! to `<out>/<name>.request.txt`). Handles one exec, then exits.
//!
//! ```text
//! cargo run -p k8s-stream --example capture_spdy -- OUT_DIR NAME PORT_FILE
//! ```
//! The listening port is written to PORT_FILE; point a kubeconfig at `http://127.0.0.1:PORT`.
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use k8s_stream::spdy::session::{header, Role, Session, SessionConfig, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The socket, with bytes read past the request head replayed first and every byte read
/// from the client also appended to `log`.
struct Recorded {
    io: TcpStream,
    replay: Vec<u8>,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = buf.filled()[before..].to_vec();
            self.log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&new);
        }
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

struct Request {
    head: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads one request head; returns it and the bytes read past it.
async fn read_request(
    io: &mut TcpStream,
    mut buf: Vec<u8>,
) -> io::Result<Option<(Request, Vec<u8>)>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8_lossy(&buf).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next().unwrap_or_default().split(' ');
            let method = first.next().unwrap_or_default().to_string();
            let path = first.next().unwrap_or_default().to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            return Ok(Some((
                Request {
                    head,
                    method,
                    path,
                    headers,
                },
                rest,
            )));
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn discovery(path: &str, port: u16) -> Option<String> {
    let path = path.split('?').next().unwrap_or_default();
    Some(match path {
        "/version" => r#"{"major":"1","minor":"32","gitVersion":"v1.32.0","platform":"linux/amd64"}"#.into(),
        "/api" => format!(
            r#"{{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:{port}"}}]}}"#
        ),
        "/apis" => r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#.into(),
        "/api/v1" => r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]}]}"#.into(),
        "/api/v1/namespaces/default/pods/web" => r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","namespace":"default","uid":"00000000-0000-0000-0000-000000000001"},"spec":{"containers":[{"name":"app","image":"busybox"}]},"status":{"phase":"Running","containerStatuses":[{"name":"app","ready":true,"restartCount":0,"image":"busybox","imageID":"","state":{"running":{}}}]}}"#.into(),
        _ => return None,
    })
}

async fn respond(io: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    io.write_all(msg.as_bytes()).await
}

/// Serves one client connection; returns Some(..) once it has handled an exec.
async fn serve(mut io: TcpStream, port: u16, out: &str, name: &str) -> io::Result<bool> {
    let mut pending = Vec::new();
    loop {
        let Some((req, rest)) = read_request(&mut io, pending).await? else {
            return Ok(false);
        };
        pending = rest;
        eprintln!("capture: {} {}", req.method, req.path);
        let upgrade = req.header_values("Upgrade").join(",").to_ascii_lowercase();
        if req.path.contains("/exec") && upgrade.contains("spdy/3.1") {
            std::fs::write(format!("{out}/{name}.request.txt"), &req.head)?;
            let offered = req.header_values("X-Stream-Protocol-Version");
            let chosen = offered
                .first()
                .map(|v| v.split(',').next().unwrap_or(v).trim().to_string())
                .unwrap_or_default();
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {chosen}\r\n\r\n"
            );
            io.write_all(reply.as_bytes()).await?;
            run_exec(io, pending, &req.path, out, name).await?;
            return Ok(true);
        }
        if req.path.contains("/exec") {
            respond(&mut io, "400 Bad Request", r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"upgrade not offered here","reason":"BadRequest","code":400}"#).await?;
            continue;
        }
        match discovery(&req.path, port) {
            Some(body) => respond(&mut io, "200 OK", &body).await?,
            None => respond(&mut io, "404 Not Found", r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#).await?,
        }
    }
}

async fn run_exec(
    io: TcpStream,
    replay: Vec<u8>,
    path: &str,
    out: &str,
    name: &str,
) -> io::Result<()> {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let flag = |k: &str| {
        query
            .split('&')
            .any(|kv| kv == format!("{k}=true") || kv == format!("{k}=1"))
    };
    let tty = flag("tty");
    let expected = 1
        + usize::from(flag("stdin"))
        + usize::from(flag("stdout"))
        + usize::from(flag("stderr") && !tty)
        + usize::from(tty);
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorded = Recorded {
        io,
        replay: replay.clone(),
        log: Arc::clone(&log),
    };
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend_from_slice(&replay);
    let (session, mut incoming) = Session::new(recorded, Role::Server, SessionConfig::default());
    let mut streams: Vec<(String, Stream)> = Vec::new();
    while streams.len() < expected {
        let next = tokio::time::timeout(Duration::from_secs(30), incoming.next()).await;
        let Ok(Some(pending)) = next else {
            return Err(io::Error::other("client did not create all streams"));
        };
        let kind = header(pending.headers(), "streamtype")
            .unwrap_or_default()
            .to_string();
        eprintln!(
            "capture: stream {} {kind} {:?}",
            pending.id(),
            pending.headers()
        );
        streams.push((kind, pending.accept().await.map_err(io::Error::other)?));
    }
    let mut stdin_bytes = Vec::new();
    for (kind, stream) in &mut streams {
        if kind == "stdin" {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut stdin_bytes))
                    .await;
        }
    }
    eprintln!("capture: stdin {:?}", String::from_utf8_lossy(&stdin_bytes));
    for (kind, stream) in &mut streams {
        match kind.as_str() {
            "stdout" => {
                stream.write_all(b"hi\n").await?;
                stream.shutdown().await?;
            }
            "stderr" => stream.shutdown().await?,
            _ => {}
        }
    }
    for (kind, stream) in &mut streams {
        if kind == "error" {
            stream
                .write_all(br#"{"metadata":{},"status":"Success"}"#)
                .await?;
            stream.shutdown().await?;
        }
    }
    // As the kubelet does when an exec ends: reset what is left, then GOAWAY.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (_, stream) in &streams {
        stream.reset(k8s_stream::spdy::RstStatus::Cancel);
    }
    drop(streams);
    let _ = session.goaway().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), session.closed()).await;
    let bytes = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    std::fs::write(format!("{out}/{name}.bin"), &bytes)?;
    eprintln!(
        "capture: wrote {} client bytes to {out}/{name}.bin",
        bytes.len()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, name, port_file] = &args[..] else {
        eprintln!("usage: capture_spdy OUT_DIR NAME PORT_FILE");
        std::process::exit(2);
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    std::fs::write(port_file, port.to_string())?;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<io::Result<bool>>(4);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (io, _) = accepted?;
                let (out, name, tx) = (out.clone(), name.clone(), done_tx.clone());
                tokio::spawn(async move { let _ = tx.send(serve(io, port, &out, &name).await).await; });
            }
            Some(done) = done_rx.recv() => {
                match done {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
