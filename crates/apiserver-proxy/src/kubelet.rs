//! The apiserver's view of its kubelets: the `--node NAME=HOST:PORT` table, the mTLS client
//! config (`--kubelet-client-cert/--kubelet-client-key`, `--kubelet-ca`) and `GET /pods`.
//!
//! Upstream's apiserver knows pods from etcd and only asks the kubelet for streams; this lab has
//! no etcd, so pods are read from each kubelet's `/pods` (kubelet `pkg/kubelet/server/server.go`
//! `getPods`: a `v1.PodList` of the pods bound to that node).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde_json::Value;
use tokio::net::TcpStream;
use url::Url;

/// Largest `/pods` answer accepted.
const MAX_POD_LIST: usize = 16 << 20;

/// `--node NAME=HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub name: String,
    /// `HOST:PORT` as given (an IP or a DNS name; IPv6 in brackets).
    pub address: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid --node {0:?}: expected NAME=HOST:PORT")]
pub struct NodeAddressError(String);

impl std::str::FromStr for NodeAddress {
    type Err = NodeAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NodeAddressError(s.to_string());
        let (name, address) = s.split_once('=').ok_or_else(err)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(err)?;
        if name.is_empty() || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(err());
        }
        Ok(NodeAddress {
            name: name.to_string(),
            address: address.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: kubelet answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("GET {url}: decoding pod list: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// How the apiserver reaches kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    nodes: BTreeMap<String, String>,
    tls: Arc<ClientConfig>,
    pub timeout: Duration,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl KubeletClient {
    pub fn new(nodes: Vec<NodeAddress>, tls: Arc<ClientConfig>) -> Self {
        KubeletClient {
            nodes: nodes.into_iter().map(|n| (n.name, n.address)).collect(),
            tls,
            timeout: Duration::from_secs(5),
        }
    }

    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The client TLS config (client cert + kubelet CA) for streaming dials.
    pub fn tls(&self) -> Arc<ClientConfig> {
        self.tls.clone()
    }

    /// `https://HOST:PORT` + `path_and_query` for a node.
    pub fn url(&self, node: &str, path_and_query: &str) -> Result<Url, KubeletError> {
        let address = self
            .nodes
            .get(node)
            .ok_or_else(|| KubeletError::UnknownNode(node.to_string()))?;
        Url::parse(&format!("https://{address}{path_and_query}")).map_err(|e| {
            KubeletError::Request {
                url: format!("https://{address}{path_and_query}"),
                reason: e.to_string(),
            }
        })
    }

    /// The pods the kubelet of `node` runs (its `GET /pods`), as JSON objects.
    pub async fn pods(&self, node: &str) -> Result<Vec<Value>, KubeletError> {
        let url = self.url(node, "/pods")?;
        let body = tokio::time::timeout(self.timeout, self.get(&url))
            .await
            .map_err(|_| KubeletError::Request {
                url: url.to_string(),
                reason: "timeout".into(),
            })??;
        let list: Value = serde_json::from_slice(&body).map_err(|source| KubeletError::Decode {
            url: url.to_string(),
            source,
        })?;
        Ok(match list.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    async fn get(&self, url: &Url) -> Result<Bytes, KubeletError> {
        let fail = |reason: String| KubeletError::Request {
            url: url.to_string(),
            reason,
        };
        let host = url
            .host_str()
            .ok_or_else(|| fail("missing host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| fail(format!("dial tcp {host}:{port}: connect: {e}")))?;
        let server_name = ServerName::try_from(host.clone()).map_err(|e| fail(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| fail(format!("tls: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "kubelet connection ended");
            }
        });
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let request = Request::builder()
            .method(Method::GET)
            .uri(url.path())
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_POD_LIST)
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(KubeletError::Status {
                url: url.to_string(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(body)
    }
}
