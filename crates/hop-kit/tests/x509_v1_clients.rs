//! X.509 v1 client certificates through real rustls handshakes against a hop's `ServerTls`:
//! Go's crypto/x509 takes a v1 leaf issued by a trust anchor, webpki refuses every v1
//! certificate, which used to abort the handshake itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hop_kit::test_pki::{certificate_pem, IssuedCert, TestCa};
use hop_kit::tls::{client_config, provider, ClientCert, PeerIdentity, ServerTls};
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const HOUR: Duration = Duration::from_secs(3600);

fn valid_now() -> std::ops::Range<SystemTime> {
    let now = SystemTime::now();
    now - HOUR..now + HOUR
}

fn server(ca: &TestCa) -> ServerTls {
    let serving = ca.issue_server(&["localhost"]).expect("serving cert");
    ServerTls::new(serving.pem().expect("pem"), Some(vec![ca.cert_der()])).expect("server tls")
}

/// A client presenting `cert` with the private key `key` (PEM), without rustls' key check, so
/// that a certificate can be presented with a key that is not its own.
fn client(
    ca: &TestCa,
    cert: &IssuedCert,
    key: &IssuedCert,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der()).expect("root");
    let chain = cert.pem().expect("pem").cert_chain;
    let key = provider
        .key_provider
        .load_private_key(key.pem().expect("pem").key.clone_key())
        .expect("key");
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            chain, key,
        ))));
    Arc::new(config)
}

/// One handshake over an in-memory pipe and a byte each way; the server's verdict, or its
/// handshake error.
async fn handshake(tls: &ServerTls, client: Arc<ClientConfig>) -> Result<ClientCert, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor: TlsAcceptor = tls.acceptor();
    let server = async move {
        let mut stream = acceptor
            .accept(server_io)
            .await
            .map_err(|e| e.to_string())?;
        let verdict = tls.client_cert(stream.get_ref().1.peer_certificates());
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(&byte).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(verdict)
    };
    let client = async move {
        let name = ServerName::try_from("localhost").expect("name");
        let mut stream = TlsConnector::from(client).connect(name, client_io).await?;
        stream.write_all(b"x").await?;
        stream.flush().await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(())
    };
    let (verdict, _client) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(server, client)
    })
    .await
    .expect("in time");
    verdict
}

const BOTH: [&[&SupportedProtocolVersion]; 2] =
    [&[&rustls::version::TLS13], &[&rustls::version::TLS12]];

#[tokio::test]
async fn a_v1_leaf_from_the_client_ca_is_verified_with_its_identity() {
    let ca = TestCa::new("execlab-ca").expect("ca");
    let tls = server(&ca);
    let v1 = ca
        .issue_client_v1("jane", Some("system:masters"), valid_now())
        .expect("v1 cert");
    let leaf = v1.pem().expect("pem").cert_chain[0].clone();
    assert!(hop_kit::x509_v1::is_v1(&leaf), "the test certificate is v1");
    for versions in BOTH {
        let verdict = handshake(&tls, client(&ca, &v1, &v1, versions))
            .await
            .expect("handshake completes");
        assert_eq!(
            verdict,
            ClientCert::Verified(PeerIdentity {
                user: "jane".into(),
                groups: vec!["system:masters".into()],
            }),
            "{versions:?}"
        );
    }
    // hop-kit's own client config presents a v1 certificate too (as the apiserver's kubelet
    // client would), which rustls' key check used to refuse.
    let config = client_config(vec![ca.cert_der()], Some(v1.pem().expect("pem"))).expect("config");
    let verdict = handshake(&tls, config).await.expect("handshake");
    assert!(
        matches!(verdict, ClientCert::Verified(ref id) if id.user == "jane"),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn an_invalid_v1_leaf_is_rejected_after_the_handshake_as_a_v3_one_is() {
    let ca = TestCa::new("execlab-ca").expect("ca");
    let tls = server(&ca);
    let unknown = "x509: certificate signed by unknown authority";

    // Issued by another CA: the same verdict as a v3 certificate from that CA gets.
    let other = TestCa::new("other-ca").expect("ca");
    let v3 = other
        .issue_client("mallory", Some("system:masters"))
        .expect("v3");
    let v1 = other
        .issue_client_v1("mallory", Some("system:masters"), valid_now())
        .expect("v1");
    let v3_verdict = handshake(&tls, client(&ca, &v3, &v3, BOTH[0]))
        .await
        .expect("v3");
    assert_eq!(v3_verdict, ClientCert::Rejected(unknown.into()));
    for versions in BOTH {
        let verdict = handshake(&tls, client(&ca, &v1, &v1, versions))
            .await
            .expect("v1");
        assert_eq!(verdict, v3_verdict, "{versions:?}");
    }

    // A CA of the same name with another key: Go reports an unknown authority.
    let impostor = TestCa::new("execlab-ca").expect("ca");
    let v1 = impostor
        .issue_client_v1("mallory", None, valid_now())
        .expect("v1");
    let verdict = handshake(&tls, client(&ca, &v1, &v1, BOTH[0]))
        .await
        .expect("v1");
    assert_eq!(verdict, ClientCert::Rejected(unknown.into()));

    // A broken signature (last byte of ECDSA's s flipped).
    let good = ca.issue_client_v1("jane", None, valid_now()).expect("v1");
    let mut der = good.pem().expect("pem").cert_chain[0].to_vec();
    *der.last_mut().expect("byte") ^= 1;
    let tampered = IssuedCert {
        cert_pem: certificate_pem(&der),
        key_pem: good.key_pem.clone(),
    };
    let verdict = handshake(&tls, client(&ca, &tampered, &good, BOTH[0]))
        .await
        .expect("handshake");
    assert_eq!(verdict, ClientCert::Rejected(unknown.into()));

    // Expired, and not valid yet.
    let now = SystemTime::now();
    for valid in [now - 2 * HOUR..now - HOUR, now + HOUR..now + 2 * HOUR] {
        let v1 = ca.issue_client_v1("jane", None, valid).expect("v1");
        let verdict = handshake(&tls, client(&ca, &v1, &v1, BOTH[0]))
            .await
            .expect("v1");
        assert_eq!(
            verdict,
            ClientCert::Rejected("x509: certificate has expired or is not yet valid".into())
        );
    }
}

#[tokio::test]
async fn a_v1_leaf_presented_without_its_key_fails_the_handshake() {
    let ca = TestCa::new("execlab-ca").expect("ca");
    let tls = server(&ca);
    let v1 = ca.issue_client_v1("jane", None, valid_now()).expect("v1");
    let other_key = ca.issue_client("jane", None).expect("another key");
    for versions in BOTH {
        let err = handshake(&tls, client(&ca, &v1, &other_key, versions))
            .await
            .expect_err("the CertificateVerify signature is checked against the v1 key");
        assert!(err.contains("ignature"), "{versions:?}: {err}");
    }
    // hop-kit's client config refuses the mismatch up front, as rustls does for v3.
    let mismatched = IssuedCert {
        cert_pem: v1.cert_pem.clone(),
        key_pem: other_key.key_pem.clone(),
    };
    assert!(client_config(vec![ca.cert_der()], Some(mismatched.pem().expect("pem"))).is_err());
}
