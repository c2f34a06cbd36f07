//! The upgrade client, the splice and the serving TLS against real sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hop_kit::test_pki::TestCa;
use hop_kit::tls::{client_config, ClientCert, PeerIdentity, ServerTls};
use hop_kit::upgrade::{dial_upgrade, splice, UpgradeOutcome, UpgradeRequest};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

const LIMIT: Duration = Duration::from_secs(10);

/// `/upgrade` → 101 then echo; `/redirect` → 302 to `/upgrade`; else 404 like Go's http.NotFound.
async fn backend(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/upgrade" => {
            let protocol = req
                .headers()
                .get("x-stream-protocol-version")
                .cloned()
                .unwrap_or(HeaderValue::from_static("none"));
            let trace = req.headers().get("traceparent").cloned();
            tokio::spawn(async move {
                if let Ok(upgraded) = hyper::upgrade::on(req).await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = io.shutdown().await;
                }
            });
            let mut resp = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "Upgrade")
                .header("upgrade", "SPDY/3.1")
                .header("x-stream-protocol-version", protocol);
            if let Some(trace) = trace {
                resp = resp.header("traceparent", trace);
            }
            Ok(resp.body(Full::default()).expect("response"))
        }
        "/redirect" => Ok(Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "/upgrade")
            .body(Full::default())
            .expect("response")),
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"404 page not found\n")))
            .expect("response")),
    }
}

async fn spawn_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(backend))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

fn upgrade_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    headers
}

#[tokio::test]
async fn switched_connection_carries_bytes_both_ways() {
    let addr = spawn_backend().await;
    let url = Url::parse(&format!("http://{addr}/upgrade?command=sh")).expect("url");
    let outcome = tokio::time::timeout(
        LIMIT,
        dial_upgrade(&url, Method::POST, upgrade_headers(), None),
    )
    .await
    .expect("in time")
    .expect("dial");
    let UpgradeOutcome::Switched { response, mut io } = outcome else {
        panic!("expected 101, got {outcome:?}");
    };
    assert_eq!(
        response.headers["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    io.write_all(b"hello").await.expect("write");
    let mut buf = [0u8; 5];
    tokio::time::timeout(LIMIT, io.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&buf, b"hello");
}

#[tokio::test]
async fn refusal_is_relayed_with_its_body() {
    let addr = spawn_backend().await;
    let url = Url::parse(&format!("http://{addr}/exec/unknowntoken")).expect("url");
    let outcome = dial_upgrade(&url, Method::GET, upgrade_headers(), None)
        .await
        .expect("dial");
    let UpgradeOutcome::Refused { response, body } = outcome else {
        panic!("expected a refusal");
    };
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(&body[..], b"404 page not found\n");
}

#[tokio::test]
async fn redirect_is_not_followed_unless_asked() {
    let addr = spawn_backend().await;
    let url = Url::parse(&format!("http://{addr}/redirect")).expect("url");
    let request = UpgradeRequest::new(url, Method::POST, upgrade_headers());
    let first = request.send().await.expect("dial");
    assert_eq!(first.status(), StatusCode::FOUND);
    let followed = request.send_following_redirect().await.expect("dial");
    assert_eq!(followed.status(), StatusCode::SWITCHING_PROTOCOLS);
}

#[tokio::test]
async fn refused_connection_reads_like_go() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = Url::parse(&format!("http://{addr}/exec/x")).expect("url");
    let err = dial_upgrade(&url, Method::POST, upgrade_headers(), None)
        .await
        .expect_err("nothing listens");
    assert_eq!(
        err.proxy_error_text(),
        format!("error dialing backend: dial tcp {addr}: connect: connection refused")
    );
}

/// Seed 003: the dial lands on an app that is not HTTP (a Dubbo telnet port); the proxy's text
/// must be what Go's http.ReadResponse says, not hyper's wording.
#[tokio::test]
async fn non_http_answer_reads_like_go() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut request = vec![0u8; 4096];
        let _ = conn.read(&mut request).await;
        let _ = conn.write_all(b"Unsupported command: POST\r\ndubbo>").await;
        let _ = conn.shutdown().await;
    });
    let url = Url::parse(&format!("http://{addr}/exec/x")).expect("url");
    let err = tokio::time::timeout(
        LIMIT,
        dial_upgrade(&url, Method::POST, upgrade_headers(), None),
    )
    .await
    .expect("bounded")
    .expect_err("not HTTP");
    assert_eq!(
        err.proxy_error_text(),
        "malformed HTTP status code \"command:\""
    );
}

#[tokio::test]
async fn splice_relays_until_both_sides_end() {
    let backend = spawn_backend().await;
    let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front_addr = front.local_addr().expect("addr");
    let proxy = tokio::spawn(async move {
        let (mut client, _) = front.accept().await.expect("accept");
        let url = Url::parse(&format!("http://{backend}/upgrade")).expect("url");
        let UpgradeOutcome::Switched { mut io, .. } =
            dial_upgrade(&url, Method::POST, upgrade_headers(), None)
                .await
                .expect("dial")
        else {
            panic!("no 101");
        };
        splice(&mut client, &mut io).await.expect("splice")
    });
    let mut client = tokio::net::TcpStream::connect(front_addr)
        .await
        .expect("connect");
    let payload = vec![7u8; 1 << 20];
    client.write_all(&payload).await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    tokio::time::timeout(LIMIT, client.read_to_end(&mut echoed))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(echoed.len(), payload.len());
    let (up, down) = tokio::time::timeout(LIMIT, proxy)
        .await
        .expect("in time")
        .expect("join");
    assert_eq!((up, down), (1 << 20, 1 << 20));
}

/// TLS server that reports each connection's client-certificate verdict.
async fn spawn_tls_server(tls: ServerTls) -> (SocketAddr, tokio::sync::mpsc::Receiver<ClientCert>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok((stream, verdict)) = tls.accept(tcp).await {
                    let _ = tx.send(verdict).await;
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(backend))
                        .with_upgrades()
                        .await;
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn client_certificates_are_judged_after_a_completed_handshake() {
    let ca = TestCa::new("execlab-ca").expect("ca");
    let other_ca = TestCa::new("other-ca").expect("ca");
    let serving = ca
        .issue_server(&["127.0.0.1", "localhost"])
        .expect("server cert");
    let tls = ServerTls::new(serving.pem().expect("pem"), Some(vec![ca.cert_der()])).expect("tls");
    let (addr, mut verdicts) = spawn_tls_server(tls).await;
    let url = Url::parse(&format!("https://{addr}/upgrade")).expect("url");

    let good = ca
        .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
        .expect("client cert");
    let stranger = other_ca
        .issue_client("mallory", Some("system:masters"))
        .expect("client cert");
    let cases = [
        (
            Some(good.pem().expect("pem")),
            ClientCert::Verified(PeerIdentity {
                user: "kube-apiserver-kubelet-client".into(),
                groups: vec!["system:masters".into()],
            }),
        ),
        (None, ClientCert::Absent),
    ];
    for (identity, expected) in cases {
        let config = client_config(vec![ca.cert_der()], identity).expect("client config");
        let outcome = dial_upgrade(&url, Method::POST, upgrade_headers(), Some(config))
            .await
            .expect("handshake completes");
        assert_eq!(outcome.status(), StatusCode::SWITCHING_PROTOCOLS);
        let verdict = tokio::time::timeout(LIMIT, verdicts.recv())
            .await
            .expect("in time");
        assert_eq!(verdict, Some(expected));
    }

    // A certificate from another CA: Go clients only send one matching the server's CA hints,
    // rustls sends it anyway; either way the handshake must complete and the verdict be negative.
    let config =
        client_config(vec![ca.cert_der()], Some(stranger.pem().expect("pem"))).expect("config");
    let outcome = dial_upgrade(&url, Method::POST, upgrade_headers(), Some(config))
        .await
        .expect("handshake completes");
    assert_eq!(outcome.status(), StatusCode::SWITCHING_PROTOCOLS);
    let verdict = tokio::time::timeout(LIMIT, verdicts.recv())
        .await
        .expect("in time")
        .expect("verdict");
    assert!(matches!(verdict, ClientCert::Rejected(_)), "{verdict:?}");
}

#[tokio::test]
async fn untrusted_server_certificate_reads_like_go() {
    let ca = TestCa::new("execlab-ca").expect("ca");
    let other_ca = TestCa::new("other-ca").expect("ca");
    let serving = other_ca.issue_server(&["127.0.0.1"]).expect("server cert");
    let tls = ServerTls::new(serving.pem().expect("pem"), None).expect("tls");
    let (addr, _verdicts) = spawn_tls_server(tls).await;
    let url = Url::parse(&format!("https://{addr}/upgrade")).expect("url");
    let config: Arc<_> = client_config(vec![ca.cert_der()], None).expect("config");
    let err = dial_upgrade(&url, Method::POST, upgrade_headers(), Some(config))
        .await
        .expect_err("untrusted");
    assert_eq!(
        err.proxy_error_text(),
        "error dialing backend: x509: certificate signed by unknown authority"
    );
}

/// A stream whose reads fail at once and whose writes succeed.
struct Broken;

impl tokio::io::AsyncRead for Broken {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
    }
}

impl tokio::io::AsyncWrite for Broken {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn splice_ends_both_directions_on_the_first_error() {
    // The other side stays silent and open: only the error can end the splice.
    let (mut quiet, _peer) = tokio::io::duplex(1024);
    let err = tokio::time::timeout(LIMIT, splice(&mut Broken, &mut quiet))
        .await
        .expect("in time")
        .expect_err("the read error");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}
