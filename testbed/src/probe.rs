//! Health probes of the hops, as `execlab up` and `execlab status` ask them: CRI `Version` over
//! the runtime's unix socket, `GET /healthz` over TLS for the kubelet and the API server, and the
//! phase of a pod as the API server reports it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};

use crate::pki::CertFiles;

/// How long one probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("TLS set-up from {path}: {message}")]
    TlsConfig { path: PathBuf, message: String },
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("CRI: {0}")]
    Grpc(String),
    #[error("no answer within {:.1} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// A TLS client that trusts one CA and optionally presents a client certificate.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    /// The hops' own client config (`hop_kit::tls`), so a probe speaks TLS as they do.
    pub fn new(ca: &Path, identity: Option<&CertFiles>) -> Result<Self, ProbeError> {
        let config = hop_kit::tls::client_config_from_files(
            ca,
            identity.map(|files| (files.cert.as_path(), files.key.as_path())),
        )
        .map_err(|e| ProbeError::TlsConfig {
            path: ca.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self { config })
    }

    /// `GET path` on `https://addr`; the status and body, whatever the status.
    pub async fn get(&self, addr: &str, path: &str) -> Result<(u16, Bytes), ProbeError> {
        within(PROBE_TIMEOUT, self.get_inner(addr, path)).await
    }

    async fn get_inner(&self, addr: &str, path: &str) -> Result<(u16, Bytes), ProbeError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(ProbeError::Connect)?;
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| ProbeError::Http(format!("server name {host}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(ProbeError::Handshake)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let request = http::Request::get(path)
            .header(http::header::HOST, addr)
            .header(http::header::ACCEPT, "application/json, */*")
            .header(http::header::USER_AGENT, "execlab")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?
            .to_bytes();
        driver.abort();
        Ok((status, body))
    }

    /// `GET /healthz` must answer 200 `ok`.
    pub async fn healthz(&self, addr: &str) -> Result<(), ProbeError> {
        let (status, body) = self.get(addr, "/healthz").await?;
        if status != 200 {
            return Err(ProbeError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(())
    }

    /// The `status.phase` of a pod, from the API server.
    pub async fn pod_phase(
        &self,
        addr: &str,
        namespace: &str,
        pod: &str,
    ) -> Result<String, ProbeError> {
        let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}");
        let (status, body) = self.get(addr, &path).await?;
        if status != 200 {
            return Err(ProbeError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let pod: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ProbeError::Unexpected(format!("pod JSON: {e}")))?;
        pod["status"]["phase"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ProbeError::Unexpected("pod without status.phase".into()))
    }
}

/// CRI `Version` over the runtime's unix socket: `"<runtime name> <runtime version>"`.
pub async fn cri_version(socket: &Path) -> Result<String, ProbeError> {
    within(PROBE_TIMEOUT, cri_version_inner(socket.to_path_buf())).await
}

async fn cri_version_inner(socket: PathBuf) -> Result<String, ProbeError> {
    use cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
    use cri_api::runtime::v1::VersionRequest;

    // The URI is a placeholder: the connector dials the unix socket whatever it says.
    let channel = tonic::transport::Endpoint::from_static("http://cri.sock")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| ProbeError::Grpc(error_chain(&e)))?;
    let response = RuntimeServiceClient::new(channel)
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(|status| ProbeError::Grpc(status.message().to_owned()))?
        .into_inner();
    Ok(format!(
        "{} {}",
        response.runtime_name, response.runtime_version
    ))
}

async fn within<T>(
    limit: Duration,
    probe: impl std::future::Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(limit, probe)
        .await
        .unwrap_or(Err(ProbeError::Timeout(limit)))
}

/// An error and its sources on one line (tonic's transport errors hide the cause otherwise).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
