//! execlab's own exec client: one way to open an exec session per measured path, all handing
//! back the same [`Session`] (stdin, stdout, and a future for the end), so the figures hold no
//! client start-up and every path is timed by the same code.
//!
//! - runc: `runc --root R exec ID ARGV` with the bench's pipes as the process's stdio.
//! - shim: shim-exec's task API over ttrpc — `Exec{spec = OCI Process JSON, FIFOs}`, `Start`,
//!   `Wait`, `Delete` — as cri-streaming drives it (crates/cri-streaming/src/shim.rs), with
//!   FIFOs the bench makes and reads itself.
//! - cri: CRI `Exec` over the unix socket, then an upgrade to the streaming URL it returns.
//! - kubelet / apiserver: an HTTPS upgrade with a client certificate, SPDY (v5..v1 offered, as
//!   kubectl) or WebSocket (`v5.channel.k8s.io`, as kubectl 1.32), then `k8s_stream::exec`.
//!
//! Every session sends a fresh W3C `traceparent` (HTTP header, gRPC and ttrpc metadata), so a
//! bench exec can be followed with `execlab trace`.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::api::{DeleteRequest, ExecProcessRequest, StartRequest, WaitRequest};
use containerd_shim_protos::shim_async::TaskClient;
use cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
use cri_api::runtime::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ExecRequest, ListContainersRequest,
};
use hop_kit::{TraceParent, UpgradeOutcome, UpgradeRequest};
use http::Method;
use hyper_util::rt::TokioIo;
use k8s_stream::exec::{BoxRead, BoxWrite, ClientStreams};
use k8s_stream::remotecommand::{
    spdy_request_headers, validate_spdy_response, validate_websocket_response,
    websocket_request_headers, ExecOptions, ProtocolVersion, StreamProtocol, WsProtocol,
};
use nix::sys::stat::Mode;
use tokio::net::unix::pipe;
use tonic::transport::Channel;
use url::Url;

/// The type URL containerd gives an OCI `Process` packed into an `Any`.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// Limit of one ttrpc call that does not wait for the process.
const SHIM_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session could not be opened or did not end well.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("dial: {0}")]
    Dial(#[from] hop_kit::DialError),
    #[error("upgrade refused: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("upgrade: {0}")]
    Upgrade(#[from] k8s_stream::remotecommand::UpgradeError),
    #[error("exec streams: {0}")]
    Streams(#[from] k8s_stream::exec::ExecError),
    #[error("CRI: {0}")]
    Cri(String),
    #[error("shim: {0}")]
    Shim(String),
    #[error("the command failed: {0}")]
    Remote(String),
    #[error("{0} is not measured on this path")]
    Unsupported(&'static str),
}

impl ClientError {
    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { what, source }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecCommand {
    pub argv: Vec<String>,
    pub stdin: bool,
    pub tty: bool,
}

impl ExecCommand {
    /// `sh -c SCRIPT`.
    pub fn shell(script: &str, stdin: bool) -> Self {
        Self {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            stdin,
            tty: false,
        }
    }

    pub fn argv(argv: &[&str]) -> Self {
        Self {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: false,
            tty: false,
        }
    }

    fn options(&self) -> ExecOptions {
        ExecOptions {
            command: self.argv.clone(),
            stdin: self.stdin,
            stdout: true,
            stderr: !self.tty,
            tty: self.tty,
        }
    }
}

/// Resolves once the remote process ended (and its session is closed).
pub type Done = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// An open exec session.
pub struct Session {
    /// Dropping (after `shutdown`) is the process's stdin EOF.
    pub stdin: Option<BoxWrite>,
    pub stdout: BoxRead,
    pub done: Done,
    /// The session id the hops log.
    pub session: String,
}

/// How a path is dialled.
pub enum Dialer {
    Runc(RuncDialer),
    Shim(ShimDialer),
    Cri(CriDialer),
    Http(HttpDialer),
}

impl Dialer {
    /// Starts `cmd`; returns once the session is open (not necessarily once output flows).
    pub async fn open(&self, cmd: &ExecCommand) -> Result<Session, ClientError> {
        let trace = TraceParent::new_root();
        match self {
            Dialer::Runc(d) => d.open(cmd, &trace),
            Dialer::Shim(d) => d.open(cmd, &trace).await,
            Dialer::Cri(d) => d.open(cmd, &trace).await,
            Dialer::Http(d) => d.open(cmd, &trace).await,
        }
    }
}

/// Raw `runc exec`.
pub struct RuncDialer {
    pub runc: String,
    pub root: PathBuf,
    pub container: String,
}

impl RuncDialer {
    fn open(&self, cmd: &ExecCommand, trace: &TraceParent) -> Result<Session, ClientError> {
        if cmd.tty {
            return Err(ClientError::Unsupported("a tty"));
        }
        let mut command = tokio::process::Command::new(&self.runc);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("exec")
            .arg(&self.container)
            .args(&cmd.argv)
            .stdin(if cmd.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(ClientError::io("runc exec"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or(ClientError::Unsupported("runc without stdout"))?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as BoxWrite);
        let done = Box::pin(async move {
            let status = child.wait().await.map_err(ClientError::io("runc exec"))?;
            match status.success() {
                true => Ok(()),
                false => Err(ClientError::Remote(format!("runc exec: {status}"))),
            }
        });
        Ok(Session {
            stdin,
            stdout: Box::new(stdout),
            done,
            session: trace.session(),
        })
    }
}

/// shim-exec's task API.
pub struct ShimDialer {
    tasks: TaskClient,
    container: String,
    process: serde_json::Value,
    fifo_dir: PathBuf,
}

impl ShimDialer {
    pub async fn connect(
        socket: &Path,
        container: &str,
        process: serde_json::Value,
        fifo_dir: PathBuf,
    ) -> Result<Self, ClientError> {
        let address = format!("unix://{}", socket.display());
        let client = ttrpc::asynchronous::Client::connect(&address)
            .await
            .map_err(|e| ClientError::Shim(format!("connect {address}: {e}")))?;
        std::fs::create_dir_all(&fifo_dir).map_err(ClientError::io("FIFO dir"))?;
        Ok(Self {
            tasks: TaskClient::new(client),
            container: container.to_string(),
            process,
            fifo_dir,
        })
    }

    async fn open(&self, cmd: &ExecCommand, trace: &TraceParent) -> Result<Session, ClientError> {
        if cmd.tty {
            return Err(ClientError::Unsupported("a tty"));
        }
        let exec_id = hex::encode(rand::random::<[u8; 32]>());
        let fifos = FifoDir::create(self.fifo_dir.join(&exec_id[..16]), cmd.stdin)?;
        // Our ends first: the shim's open of the stdout writer waits for a reader.
        let stdout = pipe::OpenOptions::new()
            .open_receiver(&fifos.stdout)
            .map_err(ClientError::io("stdout FIFO"))?;
        let stdin = match &fifos.stdin {
            Some(path) => Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(path)
                    .map_err(ClientError::io("stdin FIFO"))?,
            ),
            None => None,
        };
        let spec = oci_bundle::exec_process_spec(&self.process, &cmd.argv, false)
            .map_err(|e| ClientError::Shim(format!("process spec: {e}")))?;
        let request = ExecProcessRequest {
            id: self.container.clone(),
            exec_id: exec_id.clone(),
            stdin: fifos.stdin_arg(),
            stdout: fifos.stdout.to_string_lossy().into_owned(),
            spec: Some(protobuf::well_known_types::any::Any {
                type_url: PROCESS_TYPE_URL.into(),
                value: spec,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let tasks = self.tasks.clone();
        tasks
            .exec(shim_context(trace, Some(SHIM_CALL_TIMEOUT)), &request)
            .await
            .map_err(|e| ClientError::Shim(format!("Exec: {e}")))?;
        let (id, trace) = (self.container.clone(), *trace);
        let start = StartRequest {
            id: id.clone(),
            exec_id: exec_id.clone(),
            ..Default::default()
        };
        if let Err(e) = tasks
            .start(shim_context(&trace, Some(SHIM_CALL_TIMEOUT)), &start)
            .await
        {
            delete_exec(&tasks, &id, &exec_id, &trace).await;
            return Err(ClientError::Shim(format!("Start: {e}")));
        }
        let done = Box::pin(async move {
            let wait = WaitRequest {
                id: id.clone(),
                exec_id: exec_id.clone(),
                ..Default::default()
            };
            let status = tasks.wait(shim_context(&trace, None), &wait).await;
            delete_exec(&tasks, &id, &exec_id, &trace).await;
            drop(fifos);
            match status {
                Ok(r) if r.exit_status == 0 => Ok(()),
                Ok(r) => Err(ClientError::Remote(format!(
                    "exit status {}",
                    r.exit_status
                ))),
                Err(e) => Err(ClientError::Shim(format!("Wait: {e}"))),
            }
        });
        Ok(Session {
            stdin: stdin.map(|s| Box::new(s) as BoxWrite),
            stdout: Box::new(stdout),
            done,
            session: trace.session(),
        })
    }
}

fn shim_context(trace: &TraceParent, timeout: Option<Duration>) -> ttrpc::context::Context {
    let mut ctx = match timeout {
        Some(t) => ttrpc::context::with_duration(t),
        None => ttrpc::context::with_timeout(0),
    };
    ctx.add(hop_kit::TRACEPARENT.to_string(), trace.child().to_string());
    ctx
}

async fn delete_exec(tasks: &TaskClient, id: &str, exec_id: &str, trace: &TraceParent) {
    let request = DeleteRequest {
        id: id.to_string(),
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    if let Err(e) = tasks
        .delete(shim_context(trace, Some(SHIM_CALL_TIMEOUT)), &request)
        .await
    {
        tracing::debug!(%exec_id, error = %e, "deleting bench exec");
    }
}

/// One exec's FIFOs, removed on drop.
struct FifoDir {
    dir: PathBuf,
    stdin: Option<PathBuf>,
    stdout: PathBuf,
}

impl FifoDir {
    fn create(dir: PathBuf, stdin: bool) -> Result<Self, ClientError> {
        std::fs::create_dir(&dir).map_err(ClientError::io("FIFO dir"))?;
        let set = Self {
            stdin: stdin.then(|| dir.join("stdin")),
            stdout: dir.join("stdout"),
            dir,
        };
        for path in [set.stdin.as_ref(), Some(&set.stdout)]
            .into_iter()
            .flatten()
        {
            nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
                .map_err(|e| ClientError::io("mkfifo")(e.into()))?;
        }
        Ok(set)
    }

    fn stdin_arg(&self) -> String {
        self.stdin
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for FifoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CRI `Exec`, then the streaming server.
pub struct CriDialer {
    client: RuntimeServiceClient<Channel>,
    container: String,
}

/// The CRI client over the runtime's unix socket.
pub async fn cri_client(socket: &Path) -> Result<RuntimeServiceClient<Channel>, ClientError> {
    let socket = socket.to_path_buf();
    // The URI is a placeholder: the connector dials the unix socket whatever it says.
    let channel = tonic::transport::Endpoint::from_static("http://cri.sock")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .map_err(|e| ClientError::Cri(e.to_string()))?;
    Ok(RuntimeServiceClient::new(channel))
}

/// The running container of a pod, found as the kubelet finds it (labels, state RUNNING).
pub struct FoundContainer {
    pub container_id: String,
    pub sandbox_id: String,
}

pub async fn find_container(
    socket: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<FoundContainer, ClientError> {
    let mut client = cri_client(socket).await?;
    let labels = HashMap::from([
        ("io.kubernetes.pod.name".to_string(), pod.to_string()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            namespace.to_string(),
        ),
        (
            "io.kubernetes.container.name".to_string(),
            container.to_string(),
        ),
    ]);
    let request = ListContainersRequest {
        filter: Some(ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            label_selector: labels,
            ..Default::default()
        }),
    };
    let containers = client
        .list_containers(request)
        .await
        .map_err(|s| ClientError::Cri(s.message().to_string()))?
        .into_inner()
        .containers;
    let c = containers.into_iter().next().ok_or_else(|| {
        ClientError::Cri(format!(
            "no running container {container} in pod {namespace}/{pod}"
        ))
    })?;
    Ok(FoundContainer {
        container_id: c.id,
        sandbox_id: c.pod_sandbox_id,
    })
}

impl CriDialer {
    pub async fn connect(socket: &Path, container: &str) -> Result<Self, ClientError> {
        Ok(Self {
            client: cri_client(socket).await?,
            container: container.to_string(),
        })
    }

    async fn open(&self, cmd: &ExecCommand, trace: &TraceParent) -> Result<Session, ClientError> {
        let mut request = tonic::Request::new(ExecRequest {
            container_id: self.container.clone(),
            cmd: cmd.argv.clone(),
            tty: cmd.tty,
            stdin: cmd.stdin,
            stdout: true,
            stderr: !cmd.tty,
        });
        if let Ok(value) = trace.child().to_string().parse() {
            request.metadata_mut().insert(hop_kit::TRACEPARENT, value);
        }
        let url = self
            .client
            .clone()
            .exec(request)
            .await
            .map_err(|s| ClientError::Cri(s.message().to_string()))?
            .into_inner()
            .url;
        let url = Url::parse(&url).map_err(|e| ClientError::Cri(format!("URL {url}: {e}")))?;
        upgrade(url, None, Transport::Spdy, false, cmd, trace).await
    }
}

/// SPDY or WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Spdy,
    WebSocket,
}

/// How the exec URL's query is spelled.
#[derive(Debug, Clone)]
pub enum HttpStyle {
    /// `/exec/{ns}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=1`
    Kubelet,
    /// `/api/v1/namespaces/{ns}/pods/{pod}/exec?container=..&command=..&stdin=true...`
    Apiserver { container: String },
}

/// An exec over HTTPS (kubelet or apiserver).
pub struct HttpDialer {
    /// The exec URL without a query.
    pub url: Url,
    pub style: HttpStyle,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub transport: Transport,
    /// Follow a 302 (kubelet redirect mode), as the apiserver does.
    pub follow_redirect: bool,
}

impl HttpDialer {
    fn url_for(&self, cmd: &ExecCommand) -> Url {
        let mut url = self.url.clone();
        {
            let mut query = url.query_pairs_mut();
            match &self.style {
                HttpStyle::Kubelet => {
                    for arg in &cmd.argv {
                        query.append_pair("command", arg);
                    }
                    if cmd.stdin {
                        query.append_pair("input", "1");
                    }
                    query.append_pair("output", "1");
                    if cmd.tty {
                        query.append_pair("tty", "1");
                    } else {
                        query.append_pair("error", "1");
                    }
                }
                HttpStyle::Apiserver { container } => {
                    query.append_pair("container", container);
                    for arg in &cmd.argv {
                        query.append_pair("command", arg);
                    }
                    if cmd.stdin {
                        query.append_pair("stdin", "true");
                    }
                    query.append_pair("stdout", "true");
                    if cmd.tty {
                        query.append_pair("tty", "true");
                    } else {
                        query.append_pair("stderr", "true");
                    }
                }
            }
        }
        url
    }

    async fn open(&self, cmd: &ExecCommand, trace: &TraceParent) -> Result<Session, ClientError> {
        let url = self.url_for(cmd);
        upgrade(
            url,
            self.tls.clone(),
            self.transport,
            self.follow_redirect,
            cmd,
            trace,
        )
        .await
    }
}

/// The upgrade request, its validation, and the typed streams after the 101.
async fn upgrade(
    url: Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    transport: Transport,
    follow_redirect: bool,
    cmd: &ExecCommand,
    trace: &TraceParent,
) -> Result<Session, ClientError> {
    let ws = websocket_request_headers(&[WsProtocol::V5Channel]);
    let (method, mut headers) = match transport {
        // kubectl POSTs SPDY upgrades and GETs WebSocket ones.
        Transport::Spdy => (
            Method::POST,
            spdy_request_headers(&ProtocolVersion::NEWEST_FIRST),
        ),
        Transport::WebSocket => (Method::GET, ws.headers.clone()),
    };
    headers.insert(hop_kit::TRACEPARENT, trace.header_value());
    let request = UpgradeRequest::new(url, method, headers).with_tls(tls);
    let outcome = match follow_redirect {
        true => request.send_following_redirect().await?,
        false => request.send().await?,
    };
    let (response, io) = match outcome {
        UpgradeOutcome::Switched { response, io } => (response, io),
        UpgradeOutcome::Refused { response, body } => {
            return Err(ClientError::Refused {
                status: response.status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
    };
    let protocol = match transport {
        Transport::Spdy => StreamProtocol::Spdy(validate_spdy_response(
            response.status,
            &response.headers,
            b"",
        )?),
        Transport::WebSocket => StreamProtocol::WebSocket(validate_websocket_response(
            &ws,
            response.status,
            &response.headers,
            b"",
        )?),
    };
    let streams = k8s_stream::exec::connect(io, protocol, &cmd.options()).await?;
    into_session(streams, trace)
}

fn into_session(streams: ClientStreams, trace: &TraceParent) -> Result<Session, ClientError> {
    let ClientStreams {
        stdin,
        stdout,
        stderr,
        outcome,
        ..
    } = streams;
    let stdout = stdout.ok_or(ClientError::Unsupported("a session without stdout"))?;
    // Nothing the bench runs writes to stderr, but an unread stream must never stall the session.
    let drain = stderr.map(|mut stderr| {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        })
    });
    let done = Box::pin(async move {
        let result = outcome.await;
        if let Some(drain) = drain {
            let _ = drain.await;
        }
        result.map_err(|e| ClientError::Remote(e.to_string()))
    });
    Ok(Session {
        stdin,
        stdout,
        done,
        session: trace.session(),
    })
}
