//! The HTTP/1.1 upgrade client every proxying hop uses, and the byte splice after the 101.
//!
//! A hop opens its own upgrade request to the next hop (`dial_upgrade`), relays the answer to its
//! client, and once both sides switched protocols, copies raw bytes both ways (`splice`): SPDY and
//! WebSocket negotiation stay end to end, as with upstream's upgrade-aware proxy.
//!
//! Behaviour checked against kubernetes `staging/src/k8s.io/apimachinery/pkg/util/proxy/upgradeaware.go`
//! and `dial.go` (dial errors wrapped as `error dialing backend: %v`, request write errors as
//! `error sending request: %v`, response read errors passed as is; a non-101 answer is relayed
//! with its body) and `apimachinery/pkg/util/net/http.go` ConnectWithRedirects (only 302 is
//! followed, and the follow-up request is a GET without body). Error texts follow Go's `net`
//! package (`dial tcp 127.0.0.1:41234: connect: connection refused`, `... i/o timeout`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST, LOCATION};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use crate::long_target::TargetWriter;
use crate::read_ahead::ReadAhead;
use crate::request_head::{LONG_TARGET_STAND_IN, MAX_HYPER_TARGET};
use crate::response_head::{go_read_response_error, HeadRecorder, RecordedHead};
use crate::tls::go_tls_io_error_text;

/// The connection after a 101, as a tokio stream.
pub type UpgradedIo = TokioIo<hyper::upgrade::Upgraded>;

/// Largest non-101 body relayed (error texts and Status JSON are far smaller).
pub const MAX_REFUSED_BODY: usize = 1 << 20;

/// Buffer size of each splice direction: big enough that a busy exec stream moves in few syscalls.
pub const SPLICE_BUFFER: usize = 128 * 1024;

/// What the next hop answered to an upgrade request.
pub enum UpgradeOutcome {
    /// 101 Switching Protocols: `io` is the raw connection from here on.
    Switched {
        response: http::response::Parts,
        io: UpgradedIo,
    },
    /// Any other status, with its (bounded) body.
    Refused {
        response: http::response::Parts,
        body: Bytes,
    },
}

impl fmt::Debug for UpgradeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Switched { response, .. } => f
                .debug_struct("Switched")
                .field("status", &response.status)
                .finish_non_exhaustive(),
            Self::Refused { response, body } => f
                .debug_struct("Refused")
                .field("status", &response.status)
                .field("body", body)
                .finish(),
        }
    }
}

impl UpgradeOutcome {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Switched { response, .. } | Self::Refused { response, .. } => response.status,
        }
    }
}

/// An upgrade request failed before any HTTP answer. `Display` reads like Go's error text; see
/// [`DialError::proxy_error_text`] for what an upgrade-aware proxy writes to its client.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("unknown scheme: {0}")]
    UnknownScheme(String),
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("dial tcp: lookup {host}: {reason}")]
    Lookup { host: String, reason: String },
    #[error("dial tcp {addr}: connect: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("dial tcp {addr}: i/o timeout")]
    Timeout { addr: SocketAddr },
    /// TLS handshake failure (`remote error: tls: ...`, `x509: ...`).
    #[error("{0}")]
    Tls(String),
    /// Writing the request failed.
    #[error("{0}")]
    Send(String),
    /// The answer was not a readable HTTP response (`unexpected EOF`, timeout).
    #[error("{0}")]
    Response(String),
}

impl DialError {
    /// True for failures to reach the backend at all (connect, lookup, TLS, URL).
    pub fn is_dial(&self) -> bool {
        !matches!(self, Self::Send(_) | Self::Response(_))
    }

    /// The text upstream's upgrade-aware proxy answers with (500, `text/plain`):
    /// `error dialing backend: <err>` for dial failures, `error sending request: <err>` for
    /// write failures, the bare error for an unreadable response.
    pub fn proxy_error_text(&self) -> String {
        match self {
            Self::Send(_) => format!("error sending request: {self}"),
            Self::Response(_) => self.to_string(),
            _ => format!("error dialing backend: {self}"),
        }
    }
}

/// Everything about one upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    pub url: Url,
    pub method: Method,
    /// Sent as given (Connection, Upgrade, X-Stream-Protocol-Version, Sec-WebSocket-*,
    /// traceparent, ...), except `Host`, which comes from `url`.
    pub headers: HeaderMap,
    /// Used for `https` URLs; `None` there means "no TLS config" and fails.
    pub tls: Option<Arc<ClientConfig>>,
    /// TCP connect (per address) and, separately, TLS handshake limit.
    pub connect_timeout: Duration,
    /// Limit for writing the request and reading the response head and a non-101 body.
    pub response_timeout: Duration,
}

impl UpgradeRequest {
    pub fn new(url: Url, method: Method, headers: HeaderMap) -> Self {
        Self {
            url,
            method,
            headers,
            tls: None,
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
        }
    }

    pub fn with_tls(mut self, tls: Option<Arc<ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends the request and returns the 101 connection or the refusal.
    pub async fn send(&self) -> Result<UpgradeOutcome, DialError> {
        let target = Target::from_url(&self.url)?;
        let tcp = connect(&target, self.connect_timeout).await?;
        let _ = tcp.set_nodelay(true);
        let (request, long_target) = self.build_request(&target)?;
        let timeout = self.response_timeout;
        match target.tls {
            false => exchange(tcp, request, long_target, timeout).await,
            true => {
                let config = self.tls.clone().ok_or_else(|| {
                    DialError::Tls("tls: no client TLS configuration for https backend".into())
                })?;
                let server_name = target.server_name()?;
                let connector = tokio_rustls::TlsConnector::from(config);
                // rustls reads 4 KiB at a time: buffer the socket under it.
                let tcp = ReadAhead::new(tcp);
                let stream =
                    tokio::time::timeout(self.connect_timeout, connector.connect(server_name, tcp))
                        .await
                        .map_err(|_| DialError::Tls("net/http: TLS handshake timeout".into()))?
                        .map_err(|e| DialError::Tls(tls_io_error_text(&e)))?;
                exchange(stream, request, long_target, timeout).await
            }
        }
    }

    /// Like [`send`](Self::send), but a 302 answer is followed once with a GET to its
    /// `Location` (as the apiserver follows a kubelet in redirect mode).
    pub async fn send_following_redirect(&self) -> Result<UpgradeOutcome, DialError> {
        let first = self.send().await?;
        follow_redirect(first, self).await
    }

    /// The request hyper writes, and the target to write in place of its stand-in when it is
    /// too long for hyper.
    fn build_request(
        &self,
        target: &Target,
    ) -> Result<(Request<Empty<Bytes>>, Option<String>), DialError> {
        let mut path = self.url.path().to_owned();
        if let Some(query) = self.url.query() {
            path.push('?');
            path.push_str(query);
        }
        let (uri, long_target) = match path.len() > MAX_HYPER_TARGET {
            true => (LONG_TARGET_STAND_IN.to_owned(), Some(path)),
            false => (path, None),
        };
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .body(Empty::new())
            .map_err(|e| DialError::InvalidUrl {
                url: self.url.to_string(),
                reason: e.to_string(),
            })?;
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        let host = HeaderValue::from_str(&target.authority).map_err(|e| DialError::InvalidUrl {
            url: self.url.to_string(),
            reason: e.to_string(),
        })?;
        headers.insert(HOST, host);
        Ok((request, long_target))
    }
}

/// Sends an upgrade request (no redirects followed; default timeouts).
pub async fn dial_upgrade(
    url: &Url,
    method: Method,
    headers: HeaderMap,
    tls: Option<Arc<ClientConfig>>,
) -> Result<UpgradeOutcome, DialError> {
    UpgradeRequest::new(url.clone(), method, headers)
        .with_tls(tls)
        .send()
        .await
}

/// If `first` is a 302 with a `Location`, dials that location (resolved against
/// `original.url`) once with GET and the same headers; otherwise returns `first`.
pub async fn follow_redirect(
    first: UpgradeOutcome,
    original: &UpgradeRequest,
) -> Result<UpgradeOutcome, DialError> {
    let location = match &first {
        UpgradeOutcome::Refused { response, .. } if response.status == StatusCode::FOUND => {
            match response.headers.get(LOCATION) {
                Some(location) => location.clone(),
                None => return Ok(first),
            }
        }
        _ => return Ok(first),
    };
    let next = location
        .to_str()
        .ok()
        .and_then(|l| original.url.join(l).ok())
        .ok_or_else(|| {
            DialError::Response(format!(
                "malformed Location header: {:?}",
                String::from_utf8_lossy(location.as_bytes())
            ))
        })?;
    tracing::debug!(location = %next, "following redirect");
    let mut request = original.clone();
    request.url = next;
    request.method = Method::GET;
    request.send().await
}

/// Copies bytes both ways until both directions reached EOF, propagating each half-close
/// (EOF from one side becomes a write shutdown on the other). Returns (a→b, b→a) byte counts.
/// The first error in either direction ends both.
///
/// Each direction's buffer starts at 1 KiB and grows while reads fill it, up to
/// [`SPLICE_BUFFER`]: an idle exec session (most of them) holds 2 KiB here instead of two
/// 128 KiB buffers, which allocators often hand out already touched.
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut a_rd, mut a_wr) = tokio::io::split(a);
    let (mut b_rd, mut b_wr) = tokio::io::split(b);
    tokio::try_join!(
        copy_one_way(&mut a_rd, &mut b_wr),
        copy_one_way(&mut b_rd, &mut a_wr)
    )
}

/// One direction of [`splice`]: copies until EOF, then shuts `to`'s write side down.
async fn copy_one_way<R, W>(from: &mut R, to: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let mut buf = k8s_stream::exec::PumpBuffer::new(SPLICE_BUFFER);
    let mut total = 0u64;
    loop {
        let chunk = buf.read_from(from).await?;
        if chunk.is_empty() {
            to.shutdown().await?;
            return Ok(total);
        }
        to.write_all(chunk).await?;
        // A TLS writer may keep records it could not write yet: push them out before the
        // next read waits.
        to.flush().await?;
        total += chunk.len() as u64;
    }
}

/// Where to connect, from a URL.
struct Target {
    host: String,
    port: u16,
    /// `Host` header value: host, plus the port when the URL names one.
    authority: String,
    tls: bool,
}

impl Target {
    fn from_url(url: &Url) -> Result<Self, DialError> {
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(DialError::UnknownScheme(other.to_owned())),
        };
        let invalid = |reason: &str| DialError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_owned(),
        };
        let host = url.host_str().ok_or_else(|| invalid("missing host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("missing port"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        // `host_str` keeps IPv6 brackets; sockets and SNI want the bare address.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            host,
            port,
            authority,
            tls,
        })
    }

    fn server_name(&self) -> Result<ServerName<'static>, DialError> {
        ServerName::try_from(self.host.clone())
            .map_err(|e| DialError::Tls(format!("tls: invalid server name {:?}: {e}", self.host)))
    }
}

async fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|_| DialError::Lookup {
                host: target.host.clone(),
                reason: "no such host".into(),
            })?
            .collect(),
    };
    let mut last = DialError::Lookup {
        host: target.host.clone(),
        reason: "no such host".into(),
    };
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => {
                last = DialError::Connect {
                    addr,
                    reason: errno_text(&err),
                }
            }
            Err(_) => last = DialError::Timeout { addr },
        }
    }
    Err(last)
}

/// HTTP/1.1 exchange on an established connection.
async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
    long_target: Option<String>,
    timeout: Duration,
) -> Result<UpgradeOutcome, DialError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, head) = HeadRecorder::new(TargetWriter::new(io, long_target));
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| DialError::Send(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(error = %err, "upgrade client connection ended");
        }
    });
    let response = tokio::time::timeout(timeout, sender.send_request(request))
        .await
        .map_err(|_| DialError::Response("net/http: timeout awaiting response headers".into()))?
        .map_err(|e| hyper_error(&e, &head))?;
    let mut response = response;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let on_upgrade = hyper::upgrade::on(&mut response);
        let (parts, _body) = response.into_parts();
        let upgraded = on_upgrade.await.map_err(|e| hyper_error(&e, &head))?;
        return Ok(UpgradeOutcome::Switched {
            response: parts,
            io: TokioIo::new(upgraded),
        });
    }
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(timeout, Limited::new(body, MAX_REFUSED_BODY).collect())
        .await
        .map_err(|_| DialError::Response("i/o timeout".into()))?
        .map_err(|e| DialError::Response(e.to_string()))?
        .to_bytes();
    Ok(UpgradeOutcome::Refused {
        response: parts,
        body,
    })
}

/// hyper's failure to read the answer, worded as Go's `http.ReadResponse` words it for the same
/// bytes (production's text), hyper's own words only where Go's check would have passed.
fn hyper_error(err: &hyper::Error, head: &RecordedHead) -> DialError {
    if err.is_incomplete_message() || err.is_parse() {
        let go_text = go_read_response_error(&head.bytes());
        DialError::Response(go_text.unwrap_or_else(|| {
            if err.is_incomplete_message() {
                "unexpected EOF".to_owned()
            } else {
                format!("malformed HTTP response: {err}")
            }
        }))
    } else {
        DialError::Send(err.to_string())
    }
}

/// `Connection refused (os error 111)` → `connection refused`, as Go's syscall.Errno prints.
pub fn errno_text(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn tls_io_error_text(err: &io::Error) -> String {
    if let Some(text) = go_tls_io_error_text(err) {
        return text;
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof => "EOF".into(),
        _ => errno_text(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_matches_go() {
        let err = io::Error::from_raw_os_error(111);
        assert_eq!(errno_text(&err), "connection refused");
    }

    #[test]
    fn proxy_texts_carry_the_upstream_prefixes() {
        let err = DialError::Connect {
            addr: "127.0.0.1:41234".parse().expect("addr"),
            reason: "connection refused".into(),
        };
        assert_eq!(
            err.proxy_error_text(),
            "error dialing backend: dial tcp 127.0.0.1:41234: connect: connection refused"
        );
        let err = DialError::Timeout {
            addr: "10.0.0.1:10250".parse().expect("addr"),
        };
        assert_eq!(err.to_string(), "dial tcp 10.0.0.1:10250: i/o timeout");
        assert_eq!(
            DialError::UnknownScheme("ws".into()).proxy_error_text(),
            "error dialing backend: unknown scheme: ws"
        );
    }

    #[test]
    fn target_from_url() {
        let url = Url::parse("http://127.0.0.1:8080/exec/abc?x=1").expect("url");
        let t = Target::from_url(&url).expect("target");
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str(), t.tls),
            ("127.0.0.1", 8080, "127.0.0.1:8080", false)
        );
        let url = Url::parse("https://[::1]/x").expect("url");
        let t = Target::from_url(&url).expect("target");
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str(), t.tls),
            ("::1", 443, "[::1]", true)
        );
    }
}
