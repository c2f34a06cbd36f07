//! Slow and idle clients (slowloris): every stage of a connection is bounded in time, as
//! kube-apiserver's `ReadHeaderTimeout` bounds them, and a served request is unaffected.
mod common;

use std::time::Duration;

use common::{KubeletMode, Lab};
use http::Method;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;

/// The lab's short bounds, so that the test waits well under a second per case.
const LIMITS: hop_kit::ConnectionLimits = hop_kit::ConnectionLimits {
    tls_handshake_timeout: Duration::from_millis(400),
    request_header_timeout: Duration::from_millis(400),
    ..hop_kit::ConnectionLimits::KUBE_APISERVER
};

/// How long a case may take before the server is judged to hold the connection.
const HELD: Duration = Duration::from_secs(10);

/// Waits until the peer closes `stream`; how long it took.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
    let took = hop_kit::test_io::peer_closed_within(stream, HELD).await;
    took.unwrap_or_else(|| panic!("the server still holds the connection after {HELD:?}"))
}

async fn tls_connect(lab: &Lab) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(lab.api_addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(lab.client_tls())
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_handshakes_is_closed() {
    let lab = Lab::start_with_limits(KubeletMode::Exec, LIMITS).await;
    let mut bare = TcpStream::connect(lab.api_addr).await.expect("connect");
    let took = closed_within(&mut bare).await;
    assert!(
        took >= Duration::from_millis(300),
        "closed after {took:?}, before the bound"
    );

    // Half a ClientHello: a TLS record header announcing more than is ever sent.
    let mut half = TcpStream::connect(lab.api_addr).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .await
        .expect("write");
    closed_within(&mut half).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_closed() {
    let lab = Lab::start_with_limits(KubeletMode::Exec, LIMITS).await;
    // An idle TLS session: no request at all.
    let mut idle = tls_connect(&lab).await;
    closed_within(&mut idle).await;

    // Half a request line, then silence.
    let mut slow = tls_connect(&lab).await;
    slow.write_all(b"GET /api/v1/namespaces/default/po")
        .await
        .expect("write");
    slow.flush().await.expect("flush");
    closed_within(&mut slow).await;

    // A prompt request is served as before.
    let (status, _, body) = lab.request(Method::GET, "/healthz", &[]).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
}
