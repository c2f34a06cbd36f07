//! Test doubles around a real kubelet-stream: a fake CRI runtime (tonic over a unix socket), a
//! tiny streaming server that answers upgrades with 101 and echoes, a throwaway PKI, and a
//! harness running the kubelet in-process.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cri::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use cri_api::runtime::v1 as cri;
use hop_kit::test_pki::{IssuedCert, TestCa};
use hop_kit::tls::{client_config, ServerTls};
use hop_kit::upgrade::{UpgradeOutcome, UpgradeRequest};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kubelet_stream::streaming::StreamingMode;
use kubelet_stream::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::oneshot;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

pub const LIMIT: Duration = Duration::from_secs(15);

pub const WEB_MANIFEST: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "sleep 3600"]
"#;

/// What the fake runtime holds and has seen.
#[derive(Debug, Default)]
pub struct FakeState {
    pub sandboxes: Vec<cri::PodSandbox>,
    pub containers: Vec<cri::Container>,
    pub exec_requests: Vec<cri::ExecRequest>,
    pub exec_traceparents: Vec<String>,
    /// ListContainers calls looking for one container by name (an exec's lookup, not the pod
    /// sync's), and how many there had been when each Exec was accepted.
    pub lookups: usize,
    pub lookups_at_exec: Vec<usize>,
    /// Base URL of the streaming server handed out by Exec/Attach.
    pub stream_base: String,
    pub next_id: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FakeRuntime {
    pub state: Arc<Mutex<FakeState>>,
}

fn matches_labels(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    pub fn set_stream_base(&self, base: &str) {
        self.lock().stream_base = base.to_owned();
    }

    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    pub fn container_count(&self) -> usize {
        self.lock().containers.len()
    }

    /// Waits (bounded by [`LIMIT`]) until `n` containers were created; `what` names the wait.
    pub async fn wait_containers(&self, n: usize, what: &str) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while self.container_count() < n {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Marks every container exited (as if its process died).
    pub fn exit_all_containers(&self) {
        for c in &mut self.lock().containers {
            c.state = cri::ContainerState::ContainerExited as i32;
        }
    }

    /// Every sandbox not ready and every container exited, as after a killed shim.
    pub fn lose_all_sandboxes(&self) {
        let mut state = self.lock();
        for s in &mut state.sandboxes {
            s.state = cri::PodSandboxState::SandboxNotready as i32;
        }
        for c in &mut state.containers {
            c.state = cri::ContainerState::ContainerExited as i32;
        }
    }

    /// The attempt numbers of the containers created, in order.
    pub fn container_attempts(&self) -> Vec<u32> {
        self.lock()
            .containers
            .iter()
            .map(|c| c.metadata.as_ref().map_or(0, |m| m.attempt))
            .collect()
    }

    pub fn exec_requests(&self) -> Vec<cri::ExecRequest> {
        self.lock().exec_requests.clone()
    }

    /// For each Exec accepted, how many container lookups had been made before it.
    pub fn lookups_at_exec(&self) -> Vec<usize> {
        self.lock().lookups_at_exec.clone()
    }

    pub fn exec_traceparents(&self) -> Vec<String> {
        self.lock().exec_traceparents.clone()
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(1)
}

#[tonic::async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(
        &self,
        _: GrpcRequest<cri::VersionRequest>,
    ) -> Result<GrpcResponse<cri::VersionResponse>, Status> {
        Ok(GrpcResponse::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: GrpcRequest<cri::RunPodSandboxRequest>,
    ) -> Result<GrpcResponse<cri::RunPodSandboxResponse>, Status> {
        let config = request.into_inner().config.unwrap_or_default();
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("sandbox{}", state.next_id);
        state.sandboxes.push(cri::PodSandbox {
            id: id.clone(),
            metadata: config.metadata,
            state: cri::PodSandboxState::SandboxReady as i32,
            created_at: now_ns(),
            labels: config.labels,
            annotations: config.annotations,
            runtime_handler: String::new(),
        });
        Ok(GrpcResponse::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: GrpcRequest<cri::ListPodSandboxRequest>,
    ) -> Result<GrpcResponse<cri::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let items = self
            .lock()
            .sandboxes
            .iter()
            .filter(|s| matches_labels(&s.labels, &filter.label_selector))
            .cloned()
            .collect();
        Ok(GrpcResponse::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: GrpcRequest<cri::CreateContainerRequest>,
    ) -> Result<GrpcResponse<cri::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let config = request.config.unwrap_or_default();
        let mut state = self.lock();
        if !state
            .sandboxes
            .iter()
            .any(|s| s.id == request.pod_sandbox_id)
        {
            return Err(Status::not_found("sandbox not found"));
        }
        // containerd reserves `<container>_<pod>_<namespace>_<uid>_<attempt>` until the
        // container is removed, whichever sandbox it was in (pkg/cri/server/helpers.go
        // makeContainerName; container_create.go).
        let name_of = |meta: Option<&cri::ContainerMetadata>, labels: &HashMap<String, String>| {
            format!(
                "{}_{}_{}",
                meta.map_or("", |m| m.name.as_str()),
                labels
                    .get("io.kubernetes.pod.uid")
                    .map_or("", String::as_str),
                meta.map_or(0, |m| m.attempt)
            )
        };
        let name = name_of(config.metadata.as_ref(), &config.labels);
        if let Some(holder) = state
            .containers
            .iter()
            .find(|c| name_of(c.metadata.as_ref(), &c.labels) == name)
        {
            return Err(Status::unknown(format!(
                "failed to reserve container name {name:?}: name {name:?} is reserved for {:?}",
                holder.id
            )));
        }
        state.next_id += 1;
        let id = format!("container{}", state.next_id);
        state.containers.push(cri::Container {
            id: id.clone(),
            pod_sandbox_id: request.pod_sandbox_id,
            metadata: config.metadata,
            image: config.image,
            state: cri::ContainerState::ContainerCreated as i32,
            created_at: now_ns(),
            labels: config.labels,
            ..Default::default()
        });
        Ok(GrpcResponse::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: GrpcRequest<cri::StartContainerRequest>,
    ) -> Result<GrpcResponse<cri::StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let mut state = self.lock();
        let container = state
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))?;
        container.state = cri::ContainerState::ContainerRunning as i32;
        Ok(GrpcResponse::new(cri::StartContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: GrpcRequest<cri::ListContainersRequest>,
    ) -> Result<GrpcResponse<cri::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let mut state = self.lock();
        if filter
            .label_selector
            .contains_key(kubelet_stream::runtime::LABEL_CONTAINER_NAME)
        {
            state.lookups += 1;
        }
        let containers = state
            .containers
            .iter()
            .filter(|c| {
                filter.pod_sandbox_id.is_empty() || c.pod_sandbox_id == filter.pod_sandbox_id
            })
            .filter(|c| filter.state.as_ref().is_none_or(|s| s.state == c.state))
            .filter(|c| matches_labels(&c.labels, &filter.label_selector))
            .cloned()
            .collect();
        Ok(GrpcResponse::new(cri::ListContainersResponse {
            containers,
        }))
    }

    async fn exec(
        &self,
        request: GrpcRequest<cri::ExecRequest>,
    ) -> Result<GrpcResponse<cri::ExecResponse>, Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let exec = request.into_inner();
        let mut state = self.lock();
        let Some(container) = state.containers.iter().find(|c| c.id == exec.container_id) else {
            return Err(Status::not_found(format!(
                "container {:?} not found",
                exec.container_id
            )));
        };
        // As cri-streaming and containerd refuse it.
        if container.state != cri::ContainerState::ContainerRunning as i32 {
            return Err(Status::unknown("container is in CONTAINER_EXITED state"));
        }
        let lookups = state.lookups;
        state.lookups_at_exec.push(lookups);
        state.exec_requests.push(exec);
        state.exec_traceparents.push(traceparent);
        let url = format!("{}/exec/Ab3_xY9-", state.stream_base);
        Ok(GrpcResponse::new(cri::ExecResponse { url }))
    }
}

/// The fake runtime served on `socket`; dropping the handle stops it.
pub struct RuntimeHandle {
    pub runtime: FakeRuntime,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeHandle {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(LIMIT, &mut self.task).await;
    }
}

impl Drop for RuntimeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn serve_runtime(runtime: FakeRuntime, socket: &Path) -> RuntimeHandle {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).expect("bind CRI socket");
    let (stop, stopped) = oneshot::channel::<()>();
    let service = RuntimeServiceServer::new(runtime.clone());
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    RuntimeHandle {
        runtime,
        stop: Some(stop),
        task,
    }
}

/// What the streaming server saw on its last upgrade.
#[derive(Debug, Default, Clone)]
pub struct StreamSeen {
    pub path: String,
    pub traceparent: Option<String>,
}

/// `/exec/Ab3_xY9-` → 101 (protocol = first offered) then echo; any other path → 404.
pub async fn spawn_streaming_server() -> (SocketAddr, Arc<Mutex<Vec<StreamSeen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(streaming_answer(req, &log)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

fn streaming_answer(req: Request<Incoming>, log: &Mutex<Vec<StreamSeen>>) -> Response<Full<Bytes>> {
    log.lock().expect("log").push(StreamSeen {
        path: req.uri().path().to_owned(),
        traceparent: req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    if req.uri().path() != "/exec/Ab3_xY9-" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"404 page not found\n")))
            .expect("response");
    }
    let protocol = req
        .headers()
        .get("x-stream-protocol-version")
        .cloned()
        .unwrap_or(HeaderValue::from_static("v4.channel.k8s.io"));
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = vec![0u8; 8192];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = io.shutdown().await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", protocol)
        .body(Full::default())
        .expect("response")
}

/// CA, kubelet serving cert, and client identities.
pub struct Pki {
    pub ca: TestCa,
    pub serving: IssuedCert,
    pub apiserver: IssuedCert,
    pub jane: IssuedCert,
    pub stranger: IssuedCert,
}

impl Pki {
    pub fn new() -> Self {
        let ca = TestCa::new("execlab-ca").expect("ca");
        let other = TestCa::new("someone-else").expect("ca");
        Self {
            serving: ca
                .issue_server(&["127.0.0.1", "localhost"])
                .expect("serving"),
            apiserver: ca
                .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
                .expect("client"),
            jane: ca.issue_client("jane", Some("devs")).expect("client"),
            stranger: other
                .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
                .expect("client"),
            ca,
        }
    }

    pub fn server_tls(&self) -> ServerTls {
        ServerTls::new(
            self.serving.pem().expect("pem"),
            Some(vec![self.ca.cert_der()]),
        )
        .expect("tls")
    }

    pub fn client(&self, identity: Option<&IssuedCert>) -> Arc<rustls::ClientConfig> {
        client_config(
            vec![self.ca.cert_der()],
            identity.map(|i| i.pem().expect("pem")),
        )
        .expect("client config")
    }
}

/// A kubelet running in-process against the fake runtime.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub socket: PathBuf,
    pub manifests: PathBuf,
}

impl Lab {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        std::fs::write(manifests.join("web.yaml"), WEB_MANIFEST).expect("manifest");
        Self {
            socket: dir.path().join("cri.sock"),
            manifests,
            pki: Pki::new(),
            dir,
        }
    }

    pub fn config(&self, mode: StreamingMode) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            addr_file: Some(self.dir.path().join("addr").join("kubelet-stream")),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            client_ca: PathBuf::new(),
            allow_exec: vec!["system:masters".into()],
            runtime_endpoint: format!("unix://{}", self.socket.display()),
            pod_manifests: Some(self.manifests.clone()),
            node_name: "node1".into(),
            streaming_mode: mode,
            resync_period: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(1),
            limits: hop_kit::ConnectionLimits::KUBELET,
        }
    }

    pub async fn start_kubelet(&self, mode: StreamingMode) -> KubeletHandle {
        self.start_kubelet_with(self.config(mode)).await
    }

    pub async fn start_kubelet_with(&self, config: Config) -> KubeletHandle {
        let server = config
            .bind_with_tls(self.pki.server_tls())
            .await
            .expect("bind kubelet");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        KubeletHandle {
            addr,
            stop: Some(stop),
            task,
        }
    }
}

pub struct KubeletHandle {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl KubeletHandle {
    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(LIMIT, &mut self.task)
            .await
            .expect("kubelet stops in time")
            .expect("kubelet task");
        started.elapsed()
    }

    pub fn url(&self, path_and_query: &str) -> url::Url {
        url::Url::parse(&format!("https://{}{}", self.addr, path_and_query)).expect("url")
    }
}

impl Drop for KubeletHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The headers kubectl 1.20 (SPDY) sends on an exec upgrade.
pub fn spdy_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
    headers.append(
        "x-stream-protocol-version",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    headers.append(
        "x-stream-protocol-version",
        HeaderValue::from_static("v3.channel.k8s.io"),
    );
    headers
}

/// One request to the kubelet; returns the outcome (a non-101 answer carries its body).
pub async fn request(
    kubelet: &KubeletHandle,
    tls: Arc<rustls::ClientConfig>,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
) -> UpgradeOutcome {
    let request =
        UpgradeRequest::new(kubelet.url(path_and_query), method, headers).with_tls(Some(tls));
    tokio::time::timeout(LIMIT, request.send())
        .await
        .expect("answer in time")
        .expect("request reaches the kubelet")
}

/// Status and body text of a non-101 answer.
pub fn refused(outcome: UpgradeOutcome) -> (StatusCode, String, HeaderMap) {
    match outcome {
        UpgradeOutcome::Refused { response, body } => (
            response.status,
            String::from_utf8_lossy(&body).into_owned(),
            response.headers,
        ),
        UpgradeOutcome::Switched { response, .. } => {
            panic!("unexpected 101: {:?}", response.headers)
        }
    }
}

/// Polls `/pods` until the pod `web` is Running.
pub async fn wait_running(
    kubelet: &KubeletHandle,
    tls: Arc<rustls::ClientConfig>,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (status, body, _) =
            refused(request(kubelet, tls.clone(), Method::GET, "/pods", HeaderMap::new()).await);
        assert_eq!(status, StatusCode::OK, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).expect("PodList JSON");
        if list["items"][0]["status"]["phase"] == "Running" {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod never Running: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write");
}
