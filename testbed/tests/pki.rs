//! The lab PKI: every certificate verifies against the lab CA for its purpose (TLS server or
//! client), carries the identity the hops read (CN = user, O = groups), and nothing from another
//! CA passes.

use std::path::Path;
use std::sync::Arc;

use execlab::pki::{CertFiles, CertificateAuthority, ClientIdentity, LabPki};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use x509_parser::prelude::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(ca)).unwrap();
    Arc::new(roots)
}

fn verify_server(ca: &Path, files: &CertFiles, name: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&cert(&files.cert), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_client(ca: &Path, files: &CertFiles) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&cert(&files.cert), &[], UnixTime::now())
        .map(|_| ())
}

/// (CN, [O...]) of a PEM certificate.
fn subject(path: &Path) -> (String, Vec<String>) {
    let der = cert(path);
    let (_, parsed) = X509Certificate::from_der(der.as_ref()).unwrap();
    let subject = parsed.subject();
    let cn = subject
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(",");
    let orgs = subject
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    (cn, orgs)
}

#[test]
fn serving_certs_verify_for_loopback_names() {
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(dir.path(), "execlab-node").unwrap();
    let ca = &pki.paths.ca.cert;
    for files in [&pki.paths.apiserver, &pki.paths.kubelet] {
        verify_server(ca, files, "127.0.0.1").unwrap();
        verify_server(ca, files, "localhost").unwrap();
        assert!(verify_server(ca, files, "example.com").is_err());
        // A serving certificate is no client certificate.
        assert!(verify_client(ca, files).is_err());
    }
    verify_server(ca, &pki.paths.kubelet, "execlab-node").unwrap();
}

#[test]
fn client_certs_carry_the_lab_identities() {
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(dir.path(), "execlab-node").unwrap();
    let ca = &pki.paths.ca.cert;
    let cases = [
        (
            &pki.paths.apiserver_kubelet_client,
            "kube-apiserver-kubelet-client",
            vec!["system:masters"],
        ),
        (&pki.paths.admin, "admin", vec!["system:masters"]),
        (&pki.paths.jane, "jane", vec!["execlab:developers"]),
    ];
    for (files, cn, groups) in cases {
        verify_client(ca, files).unwrap();
        assert!(verify_server(ca, files, "127.0.0.1").is_err());
        let (got_cn, got_groups) = subject(&files.cert);
        assert_eq!(got_cn, cn);
        assert_eq!(got_groups, groups);
    }
}

#[test]
fn keys_are_private_and_tokens_are_in_token_file_format() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(dir.path(), "n").unwrap();
    for key in [
        &pki.paths.ca.key,
        &pki.paths.admin.key,
        &pki.paths.kubelet.key,
    ] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let csv = std::fs::read_to_string(&pki.paths.tokens_csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{},admin,admin,\"system:masters\"", pki.admin_token.token),
            format!(
                "{},viewer,viewer,\"execlab:viewers\"",
                pki.viewer_token.token
            ),
        ]
    );
}

#[test]
fn another_ca_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(dir.path(), "n").unwrap();
    let rogue = CertificateAuthority::generate("rogue-ca").unwrap();
    let files = rogue
        .issue_client(&ClientIdentity::new(
            "kube-apiserver-kubelet-client",
            &["system:masters"],
        ))
        .unwrap()
        .write(dir.path(), "rogue-client")
        .unwrap();
    assert!(verify_client(&pki.paths.ca.cert, &files).is_err());
    // Each lab makes its own CA.
    let other = tempfile::tempdir().unwrap();
    let other_pki = LabPki::generate(other.path(), "n").unwrap();
    assert!(verify_client(&other_pki.paths.ca.cert, &pki.paths.admin).is_err());
}
