//! X.509 v1 client certificates as Go accepts them, which rustls-webpki refuses outright
//! (`Error::UnsupportedCertVersion`, in the certificate's parser, so even the handshake signature
//! cannot be checked against one).
//!
//! Go's crypto/x509 parses v1 certificates (`parseCertificate` in `parser.go` reads the version
//! as optional, default v1) and `Certificate.Verify` takes one as a leaf: only an intermediate
//! must be a v3 CA (`isValid` in `verify.go`). So a v1 leaf is judged here as Go judges it:
//! issued by a trust anchor (issuer = the anchor's subject, the anchor allowed to sign
//! certificates as `CheckSignatureFrom` requires), its signature made with the anchor's key,
//! `now` within its validity. v1 has no extensions, so nothing else (key usage, EKU, names)
//! applies. Signatures are checked with the crypto provider's algorithms; DER is read just as far
//! as needed, with x509-parser for the TBSCertificate fields.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::{CertificateError, DigitallySignedStruct, PeerMisbehaved};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Version;

/// Why a v1 certificate does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1Error {
    #[error("not an X.509 v1 certificate")]
    NotV1,
    #[error("malformed certificate")]
    Malformed,
    #[error("certificate is not valid yet")]
    NotValidYet,
    #[error("certificate has expired")]
    Expired,
    #[error("certificate signed by unknown authority")]
    UnknownIssuer,
    #[error("no supported signature algorithm for the key")]
    UnsupportedSignatureAlgorithm {
        /// The key's AlgorithmIdentifier contents.
        public_key_algorithm_id: Vec<u8>,
    },
    #[error("signature verification failed")]
    BadSignature,
}

impl From<V1Error> for rustls::Error {
    /// The rustls error webpki gives a v3 certificate with the same fault, so that callers (and
    /// `go_tls_error_text`) cannot tell the two paths apart.
    fn from(err: V1Error) -> Self {
        let cert = match err {
            V1Error::NotV1 | V1Error::Malformed => CertificateError::BadEncoding,
            V1Error::NotValidYet => CertificateError::NotValidYet,
            V1Error::Expired => CertificateError::Expired,
            V1Error::UnknownIssuer => CertificateError::UnknownIssuer,
            V1Error::UnsupportedSignatureAlgorithm {
                public_key_algorithm_id,
            } => CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: Vec::new(),
                public_key_algorithm_id,
            },
            V1Error::BadSignature => CertificateError::BadSignature,
        };
        rustls::Error::InvalidCertificate(cert)
    }
}

/// One DER element: (tag, contents, rest). Definite lengths up to 4 bytes only, which is all
/// a certificate uses.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const INTEGER: u8 = 0x02;
const VERSION_TAG: u8 = 0xa0;

/// True if `der` is a v1 certificate: no explicit version (or, as Go also reads it, an explicit
/// `[0] INTEGER 0`). A few byte compares, cheap enough to run on every handshake.
pub fn is_v1(der: &[u8]) -> bool {
    let Some((SEQUENCE, cert, _)) = tlv(der) else {
        return false;
    };
    let Some((SEQUENCE, tbs, _)) = tlv(cert) else {
        return false;
    };
    match tlv(tbs) {
        Some((INTEGER, _, _)) => true,
        Some((VERSION_TAG, version, _)) => version == [INTEGER, 1, 0],
        _ => false,
    }
}

/// The contents of a BIT STRING without unused bits (keys and signatures are whole bytes).
fn whole_bytes(bits: &[u8]) -> Option<&[u8]> {
    match bits.split_first() {
        Some((0, bytes)) => Some(bytes),
        _ => None,
    }
}

/// Verifies `signature` over `message` with the key in `spki` (DER SubjectPublicKeyInfo), by the
/// first of `algs` whose key algorithm is the key's and, if given, whose signature algorithm is
/// `signature_alg` (an AlgorithmIdentifier's contents). Both match byte for byte, as in webpki.
fn verify_with_spki(
    algs: &[&dyn SignatureVerificationAlgorithm],
    signature_alg: Option<&[u8]>,
    spki: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), V1Error> {
    let (SEQUENCE, spki, _) = tlv(spki).ok_or(V1Error::Malformed)? else {
        return Err(V1Error::Malformed);
    };
    let (SEQUENCE, key_alg, rest) = tlv(spki).ok_or(V1Error::Malformed)? else {
        return Err(V1Error::Malformed);
    };
    let (BIT_STRING, key, _) = tlv(rest).ok_or(V1Error::Malformed)? else {
        return Err(V1Error::Malformed);
    };
    let key = whole_bytes(key).ok_or(V1Error::Malformed)?;
    let alg = algs
        .iter()
        .find(|alg| {
            alg.public_key_alg_id().as_ref() == key_alg
                && signature_alg.is_none_or(|sig| alg.signature_alg_id().as_ref() == sig)
        })
        .ok_or_else(|| V1Error::UnsupportedSignatureAlgorithm {
            public_key_algorithm_id: key_alg.to_vec(),
        })?;
    alg.verify_signature(key, message, signature)
        .map_err(|_| V1Error::BadSignature)
}

/// A client CA as a v1 leaf's possible issuer.
#[derive(Debug, Clone)]
struct Anchor {
    subject: Vec<u8>,
    spki: Vec<u8>,
    /// Go's `CheckSignatureFrom`: a v3 parent must have basicConstraints CA:true, and a key
    /// usage, if it has one, must include keyCertSign.
    may_sign: bool,
}

/// The client CAs a v1 leaf may be issued by.
#[derive(Debug, Clone, Default)]
pub struct V1Anchors {
    anchors: Vec<Anchor>,
}

impl V1Anchors {
    /// From the client CA certificates; one that does not parse is left out (webpki refused it
    /// already when the root store was built).
    pub fn new(cas: &[CertificateDer<'_>]) -> Self {
        let anchors = cas
            .iter()
            .filter_map(|der| {
                let (_, ca) = x509_parser::parse_x509_certificate(der).ok()?;
                let constraints_ok = match ca.basic_constraints() {
                    Ok(Some(bc)) => bc.value.ca,
                    Ok(None) => ca.version() != X509Version::V3,
                    Err(_) => false,
                };
                let key_usage_ok = match ca.key_usage() {
                    Ok(Some(ku)) => ku.value.key_cert_sign(),
                    Ok(None) => true,
                    Err(_) => false,
                };
                Some(Anchor {
                    subject: ca.subject().as_raw().to_vec(),
                    spki: ca.public_key().raw.to_vec(),
                    may_sign: constraints_ok && key_usage_ok,
                })
            })
            .collect();
        Self { anchors }
    }

    /// Verifies the v1 certificate `leaf` as Go's `Certificate.Verify` does a leaf issued
    /// straight by a trust anchor, with `algs` (the provider's `signature_verification_algorithms.all`).
    pub fn verify_leaf(
        &self,
        leaf: &[u8],
        now: UnixTime,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> Result<(), V1Error> {
        if !is_v1(leaf) {
            return Err(V1Error::NotV1);
        }
        let (_, cert) =
            x509_parser::parse_x509_certificate(leaf).map_err(|_| V1Error::Malformed)?;
        check_validity(&cert, now)?;
        let (tbs, signature_alg, signature) = signed_parts(leaf).ok_or(V1Error::Malformed)?;
        let issuer = cert.issuer().as_raw();
        // As Go's buildChains: every anchor with the issuer's name is a candidate, and when none
        // signed it (wrong key, unsupported algorithm, not a CA) it is an unknown authority.
        let signed = self.anchors.iter().any(|anchor| {
            anchor.subject == issuer
                && anchor.may_sign
                && verify_with_spki(algs, Some(signature_alg), &anchor.spki, tbs, signature).is_ok()
        });
        if signed {
            Ok(())
        } else {
            Err(V1Error::UnknownIssuer)
        }
    }
}

/// Go's `isValid`: `now` before NotBefore or after NotAfter fails (both ends inclusive).
fn check_validity(cert: &X509Certificate<'_>, now: UnixTime) -> Result<(), V1Error> {
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(V1Error::NotValidYet);
    }
    if now > validity.not_after.timestamp() {
        return Err(V1Error::Expired);
    }
    Ok(())
}

/// (TBSCertificate element, signatureAlgorithm contents, signature bytes) of a certificate.
fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs_contents, rest) = tlv(cert)? else {
        return None;
    };
    let tbs = &cert[..cert.len() - rest.len()];
    debug_assert!(tbs.ends_with(tbs_contents));
    let (SEQUENCE, signature_alg, rest) = tlv(rest)? else {
        return None;
    };
    let (BIT_STRING, signature, _) = tlv(rest)? else {
        return None;
    };
    Some((tbs, signature_alg, whole_bytes(signature)?))
}

/// The DER SubjectPublicKeyInfo of a certificate (any version).
pub fn spki(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.public_key().raw.to_vec())
}

/// [`spki`] for a handshake signature check.
fn leaf_spki(der: &[u8]) -> Result<Vec<u8>, rustls::Error> {
    spki(der).ok_or_else(|| V1Error::Malformed.into())
}

/// The TLS 1.2 CertificateVerify check for a v1 certificate: every algorithm the provider maps
/// the scheme to is tried, as rustls' `verify_tls12_signature` does for a v3 certificate.
pub fn verify_tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    supported: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    // A scheme the provider does not map (unknown, or not a signature) is refused as rustls does.
    let unadvertised =
        || rustls::Error::from(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme);
    let algs = supported
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or_else(unadvertised)?;
    let spki = leaf_spki(cert)?;
    verify_with_spki(algs, None, &spki, message, dss.signature())?;
    Ok(HandshakeSignatureValid::assertion())
}

/// The TLS 1.3 CertificateVerify check for a v1 certificate: rustls' raw-public-key check on
/// its SubjectPublicKeyInfo, which is what `verify_tls13_signature` does after parsing a v3 one.
pub fn verify_tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    supported: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let spki = leaf_spki(cert)?;
    rustls::crypto::verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(spki),
        dss,
        supported,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_reads_short_and_long_lengths_and_refuses_truncation() {
        assert_eq!(
            tlv(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[5u8][..], &[0xffu8][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(
            tlv(&long).map(|(_, c, r)| (c.len(), r.len())),
            Some((0x80, 0))
        );
        assert_eq!(tlv(&[0x04, 0x02, 0x00]), None);
        assert_eq!(tlv(&[0x04, 0x85, 0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn version_is_read_as_go_reads_it() {
        // Certificate { TBS { <first element> ... } ... }, only the first element matters.
        let cert = |first: &[u8]| {
            let mut tbs = vec![SEQUENCE, first.len() as u8];
            tbs.extend(first);
            let mut cert = vec![SEQUENCE, tbs.len() as u8];
            cert.extend(tbs);
            cert
        };
        assert!(is_v1(&cert(&[INTEGER, 1, 9])), "no version: v1");
        assert!(
            is_v1(&cert(&[VERSION_TAG, 3, INTEGER, 1, 0])),
            "explicit v1"
        );
        assert!(!is_v1(&cert(&[VERSION_TAG, 3, INTEGER, 1, 2])), "v3");
        assert!(!is_v1(&[0x30]));
    }
}
