//! TLS for the hops: PEM loading, a server config that *asks* for client certificates
//! without letting a bad one abort the handshake, a client config, and the identity
//! (`CN` = user, `O` = groups) of a verified client certificate.
//!
//! Behaviour checked against kubernetes `staging/src/k8s.io/apiserver/pkg/authentication/request/x509/x509.go`
//! (CommonNameUserConversion: user from the subject CN, groups from the O values) and the
//! kubelet/apiserver serving setup, which requests but does not require a client certificate
//! (`tls.RequestClientCert`) so that an unverifiable certificate ends as an HTTP 401 rather than a
//! TLS alert. X.509 v1 client certificates, which webpki cannot parse and Go takes as leaves,
//! are judged by [`crate::x509_v1`]; every other certificate by webpki.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::read_ahead::ReadAhead;
use crate::verified_chains::VerifiedChains;
use crate::x509_v1::{self, V1Anchors};

/// ALPN protocol every hop speaks: upgrades (SPDY, WebSocket) only exist in HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Loading or assembling TLS material failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("parsing {what}: {source}")]
    PemData {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificates found in {0}")]
    NoCertificates(String),
    #[error("invalid CA certificate in {what}: {source}")]
    BadCa { what: String, source: rustls::Error },
    #[error("building TLS config: {0}")]
    Config(#[from] rustls::Error),
    #[error("building client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The process-wide crypto provider of every hop (aws-lc-rs), with AES-128-GCM preferred.
///
/// AES-GCM is the largest CPU item of the TLS hops: stdout is sealed and opened twice on its
/// way (kubelet → apiserver → client). aws-lc has AES-GCM code for VAES/AVX-512 CPUs that seals
/// a GiB in about half the time ring takes (52 against 111 ms measured here, both AES-128).
/// Its default order puts TLS13_AES_256_GCM_SHA384 first; Go's crypto/tls (every upstream
/// component, kubectl included) prefers TLS_AES_128_GCM_SHA256 on CPUs with AES hardware
/// (`defaultCipherSuitesTLS13` in `crypto/tls/cipher_suites.go`), which also costs fewer AES
/// rounds per byte.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: only the TLS 1.3 AES-128-GCM suite moves (to the front).
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Certificate chain from a PEM file (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            what: "certificate",
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates(path.display().to_string()));
    }
    Ok(certs)
}

/// Certificate chain from PEM bytes.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::PemData {
            what: "certificate",
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates("PEM data".into()));
    }
    Ok(certs)
}

/// Private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        what: "private key",
        path: path.to_owned(),
        source,
    })
}

/// Private key from PEM bytes.
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsError::PemData {
        what: "private key",
        source,
    })
}

fn root_store(certs: Vec<CertificateDer<'static>>, what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            what: what.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// PEM material for a TLS endpoint, from files or from memory (tests, the lab PKI).
#[derive(Clone)]
pub struct Pem {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl Pem {
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert_chain: load_certs(cert)?,
            key: Arc::new(load_private_key(key)?),
        })
    }

    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            cert_chain: parse_certs(cert)?,
            key: Arc::new(parse_private_key(key)?),
        })
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem")
            .field("cert_chain", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// Who a client certificate says the peer is: `CN` is the user, each `O` a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

impl PeerIdentity {
    /// Reads CN and O values from a DER certificate. `None` if it does not parse or has no CN
    /// (upstream rejects a certificate without a common name).
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let user = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| !cn.is_empty())?
            .to_owned();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(str::to_owned)
            .collect();
        Some(Self { user, groups })
    }
}

/// What the client presented in the handshake, judged against the client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// No certificate (or the server does not ask for one).
    Absent,
    /// A certificate that does not chain to the client CA (or has no CN); the text says why.
    Rejected(String),
    /// A certificate signed by the client CA.
    Verified(PeerIdentity),
}

/// The client CA: webpki's verifier for v3 certificates, and the same CAs as issuers of v1
/// leaves, which webpki refuses to parse (see [`crate::x509_v1`]).
#[derive(Debug, Clone)]
struct ClientCa {
    webpki: Arc<dyn ClientCertVerifier>,
    v1: Arc<V1Anchors>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCa {
    fn new(
        ca: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let v1 = Arc::new(V1Anchors::new(&ca));
        let algs = provider.signature_verification_algorithms;
        let roots = Arc::new(root_store(ca, "client CA")?);
        let webpki = WebPkiClientVerifier::builder_with_provider(roots, provider).build()?;
        Ok(Self { webpki, v1, algs })
    }

    /// Verifies a client chain: a v1 leaf against the CAs directly, anything else with webpki.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if x509_v1::is_v1(end_entity) {
            return Ok(self.v1.verify_leaf(end_entity, now, self.algs.all)?);
        }
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ())
    }
}

/// Accepts any client certificate during the handshake (after checking the handshake
/// signature against it) so that the HTTP layer can answer 401 for a bad one. The verdict is
/// given after the handshake by [`ServerTls::client_cert`]; a chain verified here is
/// remembered ([`VerifiedChains`]), so that one is not verified twice.
#[derive(Debug)]
struct RequestClientCert {
    ca: ClientCa,
    verified: Arc<VerifiedChains>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain: Vec<CertificateDer<'_>> = std::iter::once(end_entity.clone())
            .chain(intermediates.iter().cloned())
            .collect();
        let verdict = self.verified.verify(&chain, now, || {
            self.ca.verify(end_entity, intermediates, now)
        });
        if let Err(err) = verdict {
            tracing::debug!(error = %err, "client certificate not verified; left to the HTTP layer");
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // webpki cannot parse a v1 certificate, not even for its key.
        if x509_v1::is_v1(cert) {
            return x509_v1::verify_tls12_signature(message, cert, dss, &self.ca.algs);
        }
        self.ca.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if x509_v1::is_v1(cert) {
            return x509_v1::verify_tls13_signature(message, cert, dss, &self.ca.algs);
        }
        self.ca.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.webpki.supported_verify_schemes()
    }
}

/// A hop's serving TLS: the rustls config plus the client-CA verifier used to judge the
/// presented certificate after the handshake.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    client_ca: Option<ClientCa>,
    verified: Arc<VerifiedChains>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Serving cert + key, and optionally the CA whose client certificates identify users.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let client_ca = client_ca.map(load_certs).transpose()?;
        Self::new(Pem::from_files(cert, key)?, client_ca)
    }

    /// Same from in-memory material; `client_ca` is the CA chain (DER) for client certificates.
    pub fn new(
        serving: Pem,
        client_ca: Option<Vec<CertificateDer<'static>>>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let verified = Arc::new(VerifiedChains::default());
        let verifier = client_ca
            .map(|ca| ClientCa::new(ca, provider.clone()))
            .transpose()?;
        let builder =
            ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
        let builder = match &verifier {
            Some(ca) => builder.with_client_cert_verifier(Arc::new(RequestClientCert {
                ca: ca.clone(),
                verified: verified.clone(),
            })),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_single_cert(serving.cert_chain, (*serving.key).clone_key())?;
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // One TLS 1.3 session ticket per handshake, as Go's crypto/tls server sends: enough
        // for a client to resume, and each one costs a stored session and a record.
        config.send_tls13_tickets = 1;
        Ok(Self {
            config: Arc::new(config),
            client_ca: verifier,
            verified,
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// How many client certificate chains were verified; a chain verified once is not verified
    /// again until its leaf expires (see [`VerifiedChains`]).
    pub fn chain_verifications(&self) -> u64 {
        self.verified.verifications()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// Judges the certificate chain the peer presented (as from `ServerConnection::peer_certificates`).
    pub fn client_cert(&self, peer_certificates: Option<&[CertificateDer<'static>]>) -> ClientCert {
        let Some((end_entity, intermediates)) = peer_certificates.and_then(|c| c.split_first())
        else {
            return ClientCert::Absent;
        };
        let Some(verifier) = &self.client_ca else {
            return ClientCert::Rejected("no client CA configured".into());
        };
        let chain = peer_certificates.unwrap_or_default();
        let now = UnixTime::now();
        let verdict = self.verified.verify(chain, now, || {
            verifier.verify(end_entity, intermediates, now)
        });
        if let Err(err) = verdict {
            return ClientCert::Rejected(go_tls_error_text(&err));
        }
        match PeerIdentity::from_certificate(end_entity) {
            Some(identity) => ClientCert::Verified(identity),
            None => ClientCert::Rejected("client certificate has no common name".into()),
        }
    }

    /// TLS handshake on an accepted TCP connection (reads buffered, see [`ReadAhead`]), then
    /// the client certificate's verdict.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> io::Result<(TlsStream<ReadAhead<TcpStream>>, ClientCert)> {
        let tls = self.acceptor().accept(ReadAhead::new(tcp)).await?;
        let verdict = self.client_cert(tls.get_ref().1.peer_certificates());
        Ok((tls, verdict))
    }
}

/// A client config trusting `ca` (DER chain), optionally presenting `identity`.
pub fn client_config(
    ca: Vec<CertificateDer<'static>>,
    identity: Option<Pem>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let roots = Arc::new(root_store(ca, "CA")?);
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier);
    let mut config = match identity {
        Some(pem) if pem.cert_chain.first().is_some_and(|c| x509_v1::is_v1(c)) => builder
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(v1_identity(
                &provider, pem,
            )?))),
        Some(pem) => builder.with_client_auth_cert(pem.cert_chain, (*pem.key).clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A v1 client certificate with its key. rustls' own check that the two match parses the
/// certificate with webpki, which refuses v1; Go's `tls.X509KeyPair` takes it, so the public
/// keys are compared here.
fn v1_identity(provider: &CryptoProvider, pem: Pem) -> Result<CertifiedKey, TlsError> {
    let key = provider
        .key_provider
        .load_private_key((*pem.key).clone_key())?;
    let leaf_spki = pem.cert_chain.first().and_then(|c| x509_v1::spki(c));
    match (key.public_key(), leaf_spki) {
        (Some(key_spki), Some(leaf_spki)) if key_spki.as_ref() != leaf_spki.as_slice() => {
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch).into())
        }
        // As rustls: a key that cannot tell its public half is not taken for a mismatch.
        _ => Ok(CertifiedKey::new(pem.cert_chain, key)),
    }
}

/// [`client_config`] from files: CA bundle, and optionally a client cert + key.
pub fn client_config_from_files(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let identity = identity
        .map(|(cert, key)| Pem::from_files(cert, key))
        .transpose()?;
    client_config(load_certs(ca)?, identity)
}

/// A rustls error in the words Go's crypto/tls and crypto/x509 use, since the hops
/// reproduce upstream's user-visible texts (`remote error: tls: bad certificate`,
/// `x509: certificate signed by unknown authority`).
pub fn go_tls_error_text(err: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::AlertReceived(alert) => {
            format!("remote error: tls: {}", go_alert_text(*alert))
        }
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "x509: certificate signed by unknown authority".into(),
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => {
                "x509: certificate has expired or is not yet valid".into()
            }
            C::NotValidForNameContext {
                expected,
                presented,
            } => {
                let wanted = server_name_text(expected);
                if presented.is_empty() {
                    format!("x509: certificate is not valid for any names, but wanted to match {wanted}")
                } else {
                    format!(
                        "x509: certificate is valid for {}, not {wanted}",
                        presented.join(", ")
                    )
                }
            }
            C::NotValidForName => "x509: certificate is not valid for the requested name".into(),
            C::BadSignature => "x509: signature verification failed".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "x509: certificate specifies an incompatible key usage".into()
            }
            other => format!("x509: {other:?}"),
        },
        other => format!("tls: {other}"),
    }
}

fn server_name_text(name: &rustls::pki_types::ServerName<'_>) -> String {
    match name {
        rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_owned(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// Go's crypto/tls alert strings (alert.go).
fn go_alert_text(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let text = match alert {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::DecryptionFailed => "decryption failed",
        A::RecordOverflow => "record overflow",
        A::DecompressionFailure => "decompression failure",
        A::HandshakeFailure => "handshake failure",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown certificate authority",
        A::AccessDenied => "access denied",
        A::DecodeError => "error decoding message",
        A::DecryptError => "error decrypting message",
        A::ExportRestriction => "export restriction",
        A::ProtocolVersion => "protocol version not supported",
        A::InsufficientSecurity => "insufficient security level",
        A::InternalError => "internal error",
        A::InappropriateFallback => "inappropriate fallback",
        A::UserCanceled => "user canceled",
        A::NoRenegotiation => "no renegotiation",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::CertificateUnobtainable => "certificate unobtainable",
        A::UnrecognisedName => "unrecognized name",
        A::BadCertificateStatusResponse => "bad certificate status response",
        A::BadCertificateHashValue => "bad certificate hash value",
        A::UnknownPSKIdentity => "unknown PSK identity",
        A::CertificateRequired => "certificate required",
        A::NoApplicationProtocol => "no application protocol",
        A::EncryptedClientHelloRequired => "encrypted client hello required",
        other => return format!("alert({})", u8::from(other)),
    };
    text.to_owned()
}

/// The Go-style text of an I/O error that wraps a rustls error, if it does.
pub fn go_tls_io_error_text(err: &io::Error) -> Option<String> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(go_tls_error_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_gcm_is_preferred_as_go_prefers_it() {
        let suites: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(suites[1], rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        assert_eq!(
            suites.len(),
            rustls::crypto::aws_lc_rs::default_provider()
                .cipher_suites
                .len()
        );
    }

    #[test]
    fn alert_texts_read_like_go() {
        let err = rustls::Error::AlertReceived(rustls::AlertDescription::InternalError);
        assert_eq!(go_tls_error_text(&err), "remote error: tls: internal error");
        let err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            go_tls_error_text(&err),
            "x509: certificate signed by unknown authority"
        );
    }
}
