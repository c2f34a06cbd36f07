//! The lab PKI: one cluster CA and the certificates and bearer tokens of every party.
//!
//! Mirrors what kubeadm makes for a cluster (checked against kubernetes
//! `cmd/kubeadm/app/constants/constants.go` and `cmd/kubeadm/app/phases/certs/certlist.go`): the
//! API server's serving certificate, its kubelet client certificate
//! `CN=kube-apiserver-kubelet-client, O=system:masters`, the kubelet's serving certificate, and an
//! admin client certificate `CN=admin, O=system:masters`. Users are named by the certificate's CN
//! and their groups by its O entries, as the API server's x509 authenticator reads them. The token
//! file has the `--token-auth-file` format: `token,user,uid,"group1,group2"`.
//!
//! Keys are ECDSA P-256 (fast to make, so `execlab up` stays quick). A fault lab can make a
//! second, unrelated [`CertificateAuthority`] to produce certificates nobody trusts.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::LabError;
use crate::layout::write_atomically;

/// Who a client certificate says it is: CN = user, one O per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

impl ClientIdentity {
    pub fn new(user: &str, groups: &[&str]) -> Self {
        Self {
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes `NAME.crt` and `NAME.key` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<CertFiles, LabError> {
        let files = CertFiles::in_dir(dir, name);
        write_atomically(&files.cert, self.cert_pem.as_bytes(), 0o644)?;
        write_atomically(&files.key, self.key_pem.as_bytes(), 0o600)?;
        Ok(files)
    }
}

/// Where a certificate and its key are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

/// A certificate authority that can issue serving and client certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl CertificateAuthority {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, LabError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<CertFiles, LabError> {
        IssuedCert {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
        .write(dir, name)
    }

    /// A TLS serving certificate for `common_name`, valid for 127.0.0.1, localhost and
    /// `extra_dns` names.
    pub fn issue_serving(
        &self,
        common_name: &str,
        extra_dns: &[&str],
    ) -> Result<IssuedCert, LabError> {
        let mut names = vec!["localhost".to_owned()];
        names.extend(extra_dns.iter().map(|n| (*n).to_owned()));
        let mut params = CertificateParams::new(names)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A TLS client certificate carrying `identity` (CN = user, O = groups).
    pub fn issue_client(&self, identity: &ClientIdentity) -> Result<IssuedCert, LabError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, identity.user.as_str());
        for group in &identity.groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<IssuedCert, LabError> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The identities of the lab, by role.
pub mod identities {
    use super::ClientIdentity;

    /// The API server's identity toward kubelets (kubeadm's `apiserver-kubelet-client`).
    pub fn apiserver_kubelet_client() -> ClientIdentity {
        ClientIdentity::new("kube-apiserver-kubelet-client", &["system:masters"])
    }
    /// The lab's administrator: may do everything, through the `system:masters` group.
    pub fn admin() -> ClientIdentity {
        ClientIdentity::new("admin", &["system:masters"])
    }
    /// A user who may read pods but not exec into them (the authz labs).
    pub fn jane() -> ClientIdentity {
        ClientIdentity::new("jane", &["execlab:developers"])
    }
}

/// One line of the token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerToken {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl BearerToken {
    fn random(user: &str, groups: &[&str]) -> Self {
        let bytes: [u8; 16] = rand::random();
        Self {
            token: hex::encode(bytes),
            user: user.to_owned(),
            uid: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// The `--token-auth-file` line: `token,user,uid,"group1,group2"`.
    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},\"{}\"",
            self.token,
            self.user,
            self.uid,
            self.groups.join(",")
        )
    }
}

/// The paths of every PKI file of a lab (`DIR/pki/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub ca: CertFiles,
    pub apiserver: CertFiles,
    pub apiserver_kubelet_client: CertFiles,
    pub kubelet: CertFiles,
    pub admin: CertFiles,
    pub jane: CertFiles,
    pub tokens_csv: PathBuf,
}

impl PkiPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: CertFiles::in_dir(dir, "ca"),
            apiserver: CertFiles::in_dir(dir, "apiserver"),
            apiserver_kubelet_client: CertFiles::in_dir(dir, "apiserver-kubelet-client"),
            kubelet: CertFiles::in_dir(dir, "kubelet"),
            admin: CertFiles::in_dir(dir, "admin"),
            jane: CertFiles::in_dir(dir, "jane"),
            tokens_csv: dir.join("tokens.csv"),
        }
    }
}

/// The lab's PKI as written to disk.
#[derive(Debug, Clone)]
pub struct LabPki {
    pub paths: PkiPaths,
    /// Bearer token of `admin` (group `system:masters`).
    pub admin_token: BearerToken,
    /// Bearer token of `viewer`, who may only get and list pods.
    pub viewer_token: BearerToken,
}

impl LabPki {
    /// Makes a fresh CA and every certificate and token of the lab into `dir`.
    /// `node_name` goes into the kubelet's serving certificate as a DNS name.
    pub fn generate(dir: &Path, node_name: &str) -> Result<Self, LabError> {
        fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
        let paths = PkiPaths::in_dir(dir);
        let ca = CertificateAuthority::generate("execlab-ca")?;
        ca.write(dir, "ca")?;
        ca.issue_serving("kube-apiserver", &["kubernetes", "kubernetes.default"])?
            .write(dir, "apiserver")?;
        ca.issue_client(&identities::apiserver_kubelet_client())?
            .write(dir, "apiserver-kubelet-client")?;
        ca.issue_serving(node_name, &[node_name])?
            .write(dir, "kubelet")?;
        ca.issue_client(&identities::admin())?.write(dir, "admin")?;
        ca.issue_client(&identities::jane())?.write(dir, "jane")?;

        let admin_token = BearerToken::random("admin", &["system:masters"]);
        let viewer_token = BearerToken::random("viewer", &["execlab:viewers"]);
        let csv = format!("{}\n{}\n", admin_token.csv_line(), viewer_token.csv_line());
        write_atomically(&paths.tokens_csv, csv.as_bytes(), 0o600)?;
        Ok(Self {
            paths,
            admin_token,
            viewer_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_have_the_token_auth_file_format() {
        let token = BearerToken {
            token: "abc".into(),
            user: "viewer".into(),
            uid: "viewer".into(),
            groups: vec!["g1".into(), "g2".into()],
        };
        assert_eq!(token.csv_line(), "abc,viewer,viewer,\"g1,g2\"");
    }

    #[test]
    fn random_tokens_differ() {
        let a = BearerToken::random("a", &[]);
        let b = BearerToken::random("a", &[]);
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 32);
    }
}
