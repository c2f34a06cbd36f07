//! A lab for cri-streaming integration tests: a busybox rootfs, the real `cri-streaming` binary
//! (optionally inside a private mount namespace) driving the real `shim-exec` and runc, a CRI
//! client over the unix socket, and an exec client over SPDY or WebSocket.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::runtime::v1::runtime_service_client::RuntimeServiceClient;
use cri_api::runtime::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecRequest, ImageSpec,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
};
use http::Method;
use hyper_util::rt::TokioIo;
use k8s_stream::exec::{connect, ClientStreams};
use k8s_stream::remotecommand::{
    spdy_request_headers, validate_spdy_response, validate_websocket_response,
    websocket_request_headers, ExecOptions, ProtocolVersion, RemoteError, StreamProtocol,
    WsProtocol,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint, Uri};

pub type Cri = RuntimeServiceClient<Channel>;

/// Where cargo put our binaries (`target/debug`).
fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cri-streaming"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

/// The shim-exec binary, built on demand.
pub fn shim_binary() -> PathBuf {
    let path = bin_dir().join("shim-exec");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "shim-exec", "--bin", "shim-exec"])
            .status()
            .expect("cargo build shim-exec");
        assert!(status.success(), "building shim-exec failed");
    }
    path
}

#[derive(Default)]
pub struct LabOptions {
    pub token_ttl: Option<&'static str>,
    pub idle_timeout: Option<&'static str>,
    /// Run inside `unshare -m` with the shim runtime dir on a tmpfs of this size.
    pub tiny_runtime_tmpfs: Option<&'static str>,
    /// runc binary for the shims (`EXECLAB_RUNC`), instead of the one on PATH.
    pub runc: Option<PathBuf>,
    /// `--kill-exec-on-disconnect`: a vanished client's exec process is killed.
    pub kill_exec_on_disconnect: bool,
    /// `--request-header-timeout` of the streaming server.
    pub request_header_timeout: Option<&'static str>,
}

pub struct Lab {
    pub root: tempfile::TempDir,
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub stream_addr: String,
}

impl Lab {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub async fn start(opts: LabOptions) -> Lab {
        let root = tempfile::Builder::new()
            .prefix("cri-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let p = |rel: &str| root.path().join(rel);
        oci_bundle::prepare_busybox_rootfs(&p("rootfs"), Path::new("/bin/busybox"))
            .expect("rootfs");
        for d in ["run", "xdg", "state", "addr"] {
            std::fs::create_dir_all(p(d)).expect("mkdir");
        }
        let socket = p("run/cri.sock");
        let addr_file = p("addr/cri-streaming");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("unix://{}", socket.display()),
            "--state-dir".into(),
            p("state").display().to_string(),
            "--image".into(),
            format!("busybox={}", p("rootfs").display()),
            "--shim-binary".into(),
            shim_binary().display().to_string(),
            "--shim-socket-dir".into(),
            p("run").display().to_string(),
            "--shim-runtime-dir".into(),
            p("xdg").display().to_string(),
            "--runc-root".into(),
            p("state/runc").display().to_string(),
            "--addr-file".into(),
            addr_file.display().to_string(),
        ];
        if let Some(ttl) = opts.token_ttl {
            args.push("--stream-token-ttl".into());
            args.push(ttl.into());
        }
        if let Some(idle) = opts.idle_timeout {
            args.push("--stream-idle-timeout".into());
            args.push(idle.into());
        }
        if opts.kill_exec_on_disconnect {
            args.push("--kill-exec-on-disconnect".into());
        }
        if let Some(timeout) = opts.request_header_timeout {
            args.push("--request-header-timeout".into());
            args.push(timeout.into());
        }
        let exe = env!("CARGO_BIN_EXE_cri-streaming");
        let mut cmd = match opts.tiny_runtime_tmpfs {
            None => {
                let mut c = Command::new(exe);
                c.args(&args);
                c
            }
            Some(size) => {
                // The mount exists only in the namespace cri-streaming (and its shims) live in.
                let mut script = format!(
                    "mount -t tmpfs -o size={size} tmpfs {} && exec {exe}",
                    p("xdg").display()
                );
                for a in &args {
                    script.push_str(&format!(" '{a}'"));
                }
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
                c
            }
        };
        // JSON logs of cri-streaming and of the shims it starts (they inherit the environment).
        let log = std::fs::File::create(p("cri.log")).expect("log file");
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("EXECLAB_LOG_FORMAT", "json")
        .env("EXECLAB_SHIM_LOG", p("shim.log"))
        .stdin(Stdio::null())
        .stderr(log);
        if let Some(runc) = &opts.runc {
            cmd.env("EXECLAB_RUNC", runc);
        }
        let child = cmd.spawn().expect("spawn cri-streaming");
        let mut lab = Lab {
            root,
            child: Some(child),
            socket,
            stream_addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                if lab.socket.exists() {
                    lab.stream_addr = addr.trim().to_string();
                    break;
                }
            }
            assert!(Instant::now() < deadline, "cri-streaming did not come up");
            if let Some(status) = lab.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("cri-streaming exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lab
    }

    pub async fn cri(&self) -> Cri {
        RuntimeServiceClient::new(self.channel().await).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// A gRPC channel over the CRI unix socket.
    pub async fn channel(&self) -> Channel {
        let socket = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .expect("connect CRI");
        channel
    }

    /// Runs a pod `name` with container `app` (`sleep`), returns (sandbox id, container id).
    pub async fn run_pod(&self, cri: &mut Cri, name: &str) -> (String, String) {
        let sandbox = self.run_sandbox(cri, name).await;
        let container = self
            .run_container(
                cri,
                &sandbox,
                name,
                ContainerConfig {
                    command: vec!["sh".into(), "-c".into()],
                    args: vec!["echo app started; exec sleep 100000".into()],
                    ..Default::default()
                },
            )
            .await;
        (sandbox, container)
    }

    pub fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: self.path("logs").display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: 2, // NODE
                        pid: 1,     // CONTAINER
                        ipc: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn run_sandbox(&self, cri: &mut Cri, name: &str) -> String {
        cri.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(self.sandbox_config(name)),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id
    }

    /// Creates and starts container `app` of pod `pod` from `config` (metadata, image, labels
    /// and log path filled in as kubelet would).
    pub async fn run_container(
        &self,
        cri: &mut Cri,
        sandbox: &str,
        pod: &str,
        mut config: ContainerConfig,
    ) -> String {
        config.metadata = Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        });
        config.image = Some(ImageSpec {
            image: "busybox:latest".into(),
            ..Default::default()
        });
        config.labels = HashMap::from([
            ("io.kubernetes.pod.name".into(), pod.into()),
            ("io.kubernetes.pod.namespace".into(), "default".into()),
            ("io.kubernetes.pod.uid".into(), format!("uid-{pod}")),
            ("io.kubernetes.container.name".into(), "app".into()),
        ]);
        config.log_path = "app/0.log".into();
        let container = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(self.sandbox_config(pod)),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .expect("StartContainer");
        container
    }

    pub async fn remove_pod(&self, cri: &mut Cri, sandbox: &str) {
        cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.into(),
        })
        .await
        .expect("RemovePodSandbox");
    }

    /// Files left in the exec FIFO directory.
    pub fn exec_dir_entries(&self) -> usize {
        std::fs::read_dir(self.path("state/exec"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// SIGTERM, wait, and check that everything cri-streaming made is gone.
    pub async fn stop(mut self) {
        let mut child = self.child.take().expect("child");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cri-streaming ignored SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "cri-streaming exit: {status}");
        assert!(!self.socket.exists(), "CRI socket left behind");
        for d in ["state/sandboxes", "state/containers", "state/exec"] {
            assert!(!self.path(d).exists(), "{d} left behind");
        }
        let runc = Command::new("runc")
            .arg("--root")
            .arg(self.path("state/runc"))
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        let containers = String::from_utf8_lossy(&runc.stdout);
        assert!(
            containers.trim().is_empty(),
            "runc containers left: {containers}"
        );
        let leftovers = processes_mentioning(self.root.path());
        assert!(leftovers.is_empty(), "processes left: {leftovers:?}");
        let sockets: Vec<_> = std::fs::read_dir(self.path("run"))
            .expect("run dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(sockets.is_empty(), "sockets left: {sockets:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in ["cri.log", "shim.log"] {
                let text = std::fs::read_to_string(self.path(log)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- last lines of {log}:");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        // A failed test: do not leak the server or its shims.
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..200 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in processes_mentioning(self.root.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Pids whose command line mentions `needle` (our lab's shims and anything they left).
pub fn processes_mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Pids whose command line contains `marker` (to find exec'd processes).
pub fn processes_with(marker: &str) -> Vec<i32> {
    processes_mentioning(Path::new(marker))
}

#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Spdy,
    WebSocketV5,
}

/// Dials a streaming URL with the given transport; returns the client streams.
pub async fn dial_exec(url: &str, transport: Transport, opts: &ExecOptions) -> ClientStreams {
    dial_exec_with(url, transport, opts, false).await.0
}

/// Like [`dial_exec`], with the connection relayed through a task whose abort drops the TCP
/// connection at once: a client that vanishes (kubectl killed, network gone).
pub async fn dial_exec_severable(
    url: &str,
    transport: Transport,
    opts: &ExecOptions,
) -> (ClientStreams, tokio::task::AbortHandle) {
    let (streams, relay) = dial_exec_with(url, transport, opts, true).await;
    (streams, relay.expect("relay"))
}

pub trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// The upgraded connection, optionally behind a relay task.
fn maybe_relay(
    io: hop_kit::UpgradedIo,
    relay: bool,
) -> (Box<dyn Duplex>, Option<tokio::task::AbortHandle>) {
    if !relay {
        return (Box::new(io), None);
    }
    let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
    let task = tokio::spawn(async move {
        let mut io = io;
        let _ = tokio::io::copy_bidirectional(&mut io, &mut theirs).await;
    });
    (Box::new(ours), Some(task.abort_handle()))
}

/// Like [`dial_exec`], sending a `traceparent` header.
pub async fn dial_exec_traced(
    url: &str,
    transport: Transport,
    opts: &ExecOptions,
    traceparent: &str,
) -> ClientStreams {
    dial_exec_full(url, transport, opts, false, Some(traceparent))
        .await
        .0
}

async fn dial_exec_with(
    url: &str,
    transport: Transport,
    opts: &ExecOptions,
    relay: bool,
) -> (ClientStreams, Option<tokio::task::AbortHandle>) {
    dial_exec_full(url, transport, opts, relay, None).await
}

async fn dial_exec_full(
    url: &str,
    transport: Transport,
    opts: &ExecOptions,
    relay: bool,
    traceparent: Option<&str>,
) -> (ClientStreams, Option<tokio::task::AbortHandle>) {
    let url = url::Url::parse(url).expect("url");
    let trace_header = |headers: &mut http::HeaderMap| {
        if let Some(t) = traceparent {
            headers.insert("traceparent", t.parse().expect("header value"));
        }
    };
    match transport {
        Transport::Spdy => {
            let mut headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
            trace_header(&mut headers);
            let outcome = hop_kit::dial_upgrade(&url, Method::POST, headers, None)
                .await
                .expect("dial");
            let (response, io) = match outcome {
                hop_kit::UpgradeOutcome::Switched { response, io } => (response, io),
                other => panic!("no upgrade: {other:?}"),
            };
            let version =
                validate_spdy_response(response.status, &response.headers, b"").expect("spdy 101");
            let (io, handle) = maybe_relay(io, relay);
            let streams = connect(io, StreamProtocol::Spdy(version), opts)
                .await
                .expect("spdy connect");
            (streams, handle)
        }
        Transport::WebSocketV5 => {
            let handshake = websocket_request_headers(&[WsProtocol::V5Channel]);
            let mut headers = handshake.headers.clone();
            trace_header(&mut headers);
            let outcome = hop_kit::dial_upgrade(&url, Method::GET, headers, None)
                .await
                .expect("dial");
            let (response, io) = match outcome {
                hop_kit::UpgradeOutcome::Switched { response, io } => (response, io),
                other => panic!("no upgrade: {other:?}"),
            };
            let p =
                validate_websocket_response(&handshake, response.status, &response.headers, b"")
                    .expect("ws 101");
            let (io, handle) = maybe_relay(io, relay);
            let streams = connect(io, StreamProtocol::WebSocket(p), opts)
                .await
                .expect("ws connect");
            (streams, handle)
        }
    }
}

/// A refused dial: (status, content type, body).
pub async fn dial_refused(url: &str) -> (u16, String, String) {
    let url = url::Url::parse(url).expect("url");
    let headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    match hop_kit::dial_upgrade(&url, Method::POST, headers, None)
        .await
        .expect("dial")
    {
        hop_kit::UpgradeOutcome::Refused { response, body } => (
            response.status.as_u16(),
            response
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ),
        other => panic!("expected a refusal: {other:?}"),
    }
}

/// The output of a finished exec.
#[derive(Debug)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub outcome: Result<(), RemoteError>,
}

/// Reads stdout/stderr to their end and awaits the outcome.
pub async fn collect(streams: ClientStreams) -> ExecResult {
    let ClientStreams {
        stdin,
        stdout,
        stderr,
        outcome,
        ..
    } = streams;
    if let Some(mut stdin) = stdin {
        let _ = stdin.shutdown().await;
    }
    let read_all = |r: Option<k8s_stream::exec::BoxRead>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            r.read_to_end(&mut buf).await.expect("read");
        }
        buf
    };
    let (stdout, stderr) = tokio::join!(read_all(stdout), read_all(stderr));
    let outcome = tokio::time::timeout(Duration::from_secs(60), outcome)
        .await
        .expect("outcome in time");
    ExecResult {
        stdout,
        stderr,
        outcome,
    }
}

pub fn exec_request(container: &str, cmd: &[&str], tty: bool, stdin: bool) -> ExecRequest {
    ExecRequest {
        container_id: container.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

pub fn options_of(req: &ExecRequest) -> ExecOptions {
    ExecOptions {
        command: req.cmd.clone(),
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        tty: req.tty,
    }
}

/// The lab's log lines (cri-streaming and shims) that mention `needle`.
pub fn log_lines_with(lab: &Lab, log: &str, needle: &str) -> Vec<String> {
    std::fs::read_to_string(lab.path(log))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// CRI Exec, then dial the URL.
pub async fn exec(cri: &mut Cri, req: ExecRequest, transport: Transport) -> ClientStreams {
    let url = cri.exec(req.clone()).await.expect("Exec").into_inner().url;
    dial_exec(&url, transport, &options_of(&req)).await
}
