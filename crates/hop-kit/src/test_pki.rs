//! A throwaway certificate authority for tests (feature `test-pki`): serving certificates with
//! IP/DNS SANs and client certificates whose CN/O carry the user and group, the way the lab PKI
//! and kubeadm issue them.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

use crate::tls::{Pem, TlsError};

/// Creating a test certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum TestPkiError {
    #[error("generating certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedCert {
    pub fn pem(&self) -> Result<Pem, TlsError> {
        Pem::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// Writes `<dir>/<name>.crt` and `<dir>/<name>.key`; returns both paths.
    pub fn write(
        &self,
        dir: &std::path::Path,
        name: &str,
    ) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// A self-signed CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self, TestPkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A serving certificate for `sans` (IP addresses or DNS names).
    pub fn issue_server(&self, sans: &[&str]) -> Result<IssuedCert, TestPkiError> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "execlab-test-server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params)
    }

    /// A client certificate for `user` (CN) in `group` (O).
    pub fn issue_client(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> Result<IssuedCert, TestPkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params)
    }

    /// An X.509 v1 client certificate for `user` (CN) in `group` (O), valid over `valid`.
    /// rcgen writes only v3, so the DER is put together here (no extensions, as v1 has none)
    /// and signed with the CA's key.
    pub fn issue_client_v1(
        &self,
        user: &str,
        group: Option<&str>,
        valid: std::ops::Range<std::time::SystemTime>,
    ) -> Result<IssuedCert, TestPkiError> {
        use rcgen::{PublicKeyData, SigningKey};
        // TestCa keys are KeyPair::generate()'s: ECDSA P-256 with SHA-256.
        const ECDSA_WITH_SHA256: &[u8] = &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ];
        let ca_der = self.cert_der();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
        let key = KeyPair::generate()?;
        let mut subject = der_name_entry(&[0x55, 0x04, 0x03], user);
        if let Some(group) = group {
            subject.extend(der_name_entry(&[0x55, 0x04, 0x0a], group));
        }
        let tbs = der(
            0x30,
            &[
                der(0x02, &[vec![0x01]]),
                ECDSA_WITH_SHA256.to_vec(),
                ca.subject().as_raw().to_vec(),
                der(0x30, &[der_time(valid.start), der_time(valid.end)]),
                der(0x30, &[subject]),
                key.subject_public_key_info(),
            ],
        );
        let signature = self.issuer.key().sign(&tbs)?;
        let mut bits = vec![0];
        bits.extend(signature);
        let cert = der(0x30, &[tbs, ECDSA_WITH_SHA256.to_vec(), der(0x03, &[bits])]);
        Ok(IssuedCert {
            cert_pem: certificate_pem(&cert),
            key_pem: key.serialize_pem(),
        })
    }

    fn sign(&self, params: CertificateParams) -> Result<IssuedCert, TestPkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A DER element of `tag` around the concatenated `parts`.
fn der(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut out = vec![tag];
    match body.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend(body);
    out
}

/// One RDN: SET { SEQUENCE { OID, UTF8String } }.
fn der_name_entry(oid: &[u8], value: &str) -> Vec<u8> {
    let attr = der(
        0x30,
        &[
            der(0x06, &[oid.to_vec()]),
            der(0x0c, &[value.as_bytes().to_vec()]),
        ],
    );
    der(0x31, &[attr])
}

/// UTCTime for 1950..2050, GeneralizedTime otherwise (RFC 5280 4.1.2.5).
fn der_time(t: std::time::SystemTime) -> Vec<u8> {
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let clock = format!(
        "{month:02}{day:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if (1950..2050).contains(&year) {
        der(0x17, &[format!("{:02}{clock}", year % 100).into_bytes()])
    } else {
        der(0x18, &[format!("{year:04}{clock}").into_bytes()])
    }
}

/// A DER certificate as PEM (for certificates made or altered by hand).
pub fn certificate_pem(der: &[u8]) -> String {
    let label = "CERTIFICATE";
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
