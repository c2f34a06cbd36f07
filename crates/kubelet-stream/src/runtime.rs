//! The kubelet's CRI client: a lazily connected gRPC channel over the runtime's unix socket, the
//! few RuntimeService calls the lab kubelet makes, and runtime errors in the text and HTTP status
//! upstream shows for them.
//!
//! Checked against kubernetes `pkg/kubelet/cri/remote/remote_runtime.go` (errors returned as the
//! gRPC status), `staging/src/k8s.io/kubelet/pkg/cri/streaming/errors.go` (WriteError: NotFound →
//! 404, ResourceExhausted → 429, else 500, body = the error text), grpc-go `status.Error`
//! (`rpc error: code = %s desc = %s`) and `pkg/kubelet/kuberuntime/labels.go` (the
//! `io.kubernetes.*` labels a container is found by).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cri::runtime_service_client::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use hop_kit::session_id::{TraceParent, TRACEPARENT};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Deadline of one CRI call (RunPodSandbox may start a shim and a pause process).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A CRI call failed; `Display` reads like grpc-go's error text.
#[derive(Debug, thiserror::Error)]
#[error("{}", go_status_text(.0))]
pub struct RuntimeError(#[source] pub tonic::Status);

impl RuntimeError {
    pub fn code(&self) -> tonic::Code {
        self.0.code()
    }

    /// The HTTP status the kubelet answers a streaming request with for this error.
    pub fn http_status(&self) -> http::StatusCode {
        match self.0.code() {
            tonic::Code::NotFound => http::StatusCode::NOT_FOUND,
            tonic::Code::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<tonic::Status> for RuntimeError {
    fn from(status: tonic::Status) -> Self {
        Self(status)
    }
}

/// grpc-go's code names (`Canceled` with one l, unlike tonic's Debug).
fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "Canceled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// `rpc error: code = Unavailable desc = ...`; a failed dial of the socket reads as grpc-go's
/// `connection error: desc = "transport: Error while dialing: dial unix ...: connect: ..."`.
fn go_status_text(status: &tonic::Status) -> String {
    let code = go_code_name(status.code());
    if status.code() == tonic::Code::Unavailable {
        if let Some(dial) = dial_error_in(status) {
            return format!(
                "rpc error: code = {code} desc = connection error: desc = \"transport: Error while dialing: {dial}\""
            );
        }
    }
    format!("rpc error: code = {code} desc = {}", status.message())
}

fn dial_error_in(status: &tonic::Status) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        let text = err.to_string();
        if text.starts_with("dial unix ") {
            return Some(text);
        }
        source = err.source();
    }
    None
}

/// The socket path of a `--runtime-endpoint` (`unix:///run/x.sock`, `unix:/run/x.sock` or a path).
pub fn socket_path(endpoint: &str) -> PathBuf {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    PathBuf::from(path)
}

/// The stream flags of a CRI Exec/Attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamFlags {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A RuntimeService client. Cheap to clone; the connection is made on first use and remade after
/// the runtime restarts.
#[derive(Debug, Clone)]
pub struct RuntimeClient {
    client: RuntimeServiceClient<Channel>,
    socket: PathBuf,
}

impl RuntimeClient {
    /// A client for `endpoint` (no connection attempt yet, so the kubelet starts without a runtime).
    pub fn lazy(endpoint: &str) -> Self {
        let socket = socket_path(endpoint);
        let path = socket.clone();
        // The URI is required by the API but unused: the connector dials the socket.
        let channel = Endpoint::from_static("http://cri.sock")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                let path = path.clone();
                async move { dial_unix(&path).await.map(TokioIo::new) }
            }));
        Self {
            client: RuntimeServiceClient::new(channel),
            socket,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn request<T>(message: T, trace: Option<&TraceParent>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        if let Some(trace) = trace {
            if let Ok(value) = trace.to_string().parse() {
                request.metadata_mut().insert(TRACEPARENT, value);
            }
        }
        request
    }

    pub async fn version(&self) -> Result<cri::VersionResponse, RuntimeError> {
        let request = Self::request(
            cri::VersionRequest {
                version: "v1".into(),
            },
            None,
        );
        Ok(self.client.clone().version(request).await?.into_inner())
    }

    /// Sandboxes carrying all of `labels`.
    pub async fn list_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let request = Self::request(
            cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            },
            None,
        );
        Ok(self
            .client
            .clone()
            .list_pod_sandbox(request)
            .await?
            .into_inner()
            .items)
    }

    pub async fn run_pod_sandbox(
        &self,
        config: cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let request = Self::request(
            cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            },
            None,
        );
        Ok(self
            .client
            .clone()
            .run_pod_sandbox(request)
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    /// Containers matching `filter`.
    pub async fn list_containers(
        &self,
        filter: cri::ContainerFilter,
        trace: Option<&TraceParent>,
    ) -> Result<Vec<cri::Container>, RuntimeError> {
        let request = Self::request(
            cri::ListContainersRequest {
                filter: Some(filter),
            },
            trace,
        );
        Ok(self
            .client
            .clone()
            .list_containers(request)
            .await?
            .into_inner()
            .containers)
    }

    pub async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let request = Self::request(
            cri::CreateContainerRequest {
                pod_sandbox_id: pod_sandbox_id.to_owned(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            },
            None,
        );
        Ok(self
            .client
            .clone()
            .create_container(request)
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        let request = Self::request(
            cri::StartContainerRequest {
                container_id: container_id.to_owned(),
            },
            None,
        );
        self.client.clone().start_container(request).await?;
        Ok(())
    }

    pub async fn container_status(
        &self,
        container_id: &str,
    ) -> Result<Option<cri::ContainerStatus>, RuntimeError> {
        let request = Self::request(
            cri::ContainerStatusRequest {
                container_id: container_id.to_owned(),
                verbose: false,
            },
            None,
        );
        Ok(self
            .client
            .clone()
            .container_status(request)
            .await?
            .into_inner()
            .status)
    }

    /// CRI Exec: the streaming URL to upgrade to.
    pub async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        flags: StreamFlags,
        trace: Option<&TraceParent>,
    ) -> Result<String, RuntimeError> {
        let request = Self::request(
            cri::ExecRequest {
                container_id: container_id.to_owned(),
                cmd,
                tty: flags.tty,
                stdin: flags.stdin,
                stdout: flags.stdout,
                stderr: flags.stderr,
            },
            trace,
        );
        Ok(self.client.clone().exec(request).await?.into_inner().url)
    }

    /// CRI Attach: the streaming URL to upgrade to.
    pub async fn attach(
        &self,
        container_id: &str,
        flags: StreamFlags,
        trace: Option<&TraceParent>,
    ) -> Result<String, RuntimeError> {
        let request = Self::request(
            cri::AttachRequest {
                container_id: container_id.to_owned(),
                stdin: flags.stdin,
                tty: flags.tty,
                stdout: flags.stdout,
                stderr: flags.stderr,
            },
            trace,
        );
        Ok(self.client.clone().attach(request).await?.into_inner().url)
    }
}

async fn dial_unix(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(path).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!(
                "dial unix {}: connect: {}",
                path.display(),
                hop_kit::upgrade::errno_text(&err)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            socket_path("unix:///run/cri.sock"),
            Path::new("/run/cri.sock")
        );
        assert_eq!(
            socket_path("unix:/run/cri.sock"),
            Path::new("/run/cri.sock")
        );
        assert_eq!(socket_path("/run/cri.sock"), Path::new("/run/cri.sock"));
    }

    #[test]
    fn status_text_and_http_mapping_follow_upstream() {
        let err = RuntimeError(tonic::Status::not_found("container \"x\" not found"));
        assert_eq!(
            err.to_string(),
            "rpc error: code = NotFound desc = container \"x\" not found"
        );
        assert_eq!(err.http_status(), http::StatusCode::NOT_FOUND);
        let err = RuntimeError(tonic::Status::resource_exhausted(
            "maximum number of in-flight requests exceeded",
        ));
        assert_eq!(err.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
        let err = RuntimeError(tonic::Status::cancelled("x"));
        assert_eq!(err.to_string(), "rpc error: code = Canceled desc = x");
        assert_eq!(err.http_status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn unreachable_runtime_reads_like_grpc_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("cri.sock");
        let client = RuntimeClient::lazy(&format!("unix://{}", socket.display()));
        let err = client.version().await.expect_err("no runtime");
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(
            err.to_string(),
            format!(
                "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix {}: connect: no such file or directory\"",
                socket.display()
            )
        );
    }
}
