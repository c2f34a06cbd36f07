//! One shim per pod sandbox: starting it through the shim v2 binary contract, the ttrpc task
//! client, the `delete` cleanup call, and noticing that a shim died ([`ShimWatch`]).
//!
//! Checked against containerd `core/runtime/v2/shim.go` / `binary.go` (`<shim> -namespace NS
//! -address ADDR -publish-binary BIN -id ID start`, cwd = bundle, the ttrpc address printed on
//! stdout; `delete` after the shim is gone) and the task API in containerd `api/runtime/task/v2/
//! shim.proto` (as compiled by containerd-shim-protos).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use containerd_shim_protos::api::{
    CloseIORequest, CreateTaskRequest, DeleteRequest, DeleteResponse, ExecProcessRequest,
    KillRequest, ResizePtyRequest, ShutdownRequest, StartRequest, WaitRequest,
};
use containerd_shim_protos::shim_async::TaskClient;
use hop_kit::TraceParent;
use protobuf::well_known_types::any::Any;
use protobuf::Message;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::errdefs::{client_error_text, ErrorClass};

/// containerd's namespace for CRI-managed containers.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// How long `start` / `delete` of the shim binary may take.
const BINARY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of task calls that do not wait for a process (Wait has none).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The type URL containerd gives an OCI `Process` packed into an `Any` (typeurl registration of
/// runtime-spec's `specs.Process`).
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// A failed shim operation, worded as containerd's client reports it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShimError {
    /// The shim binary could not be run, or `start` failed.
    #[error("failed to start shim: {0}")]
    Launch(String),
    /// The shim answered with an error status.
    #[error("{}", client_error_text(*class, message))]
    Rpc { class: ErrorClass, message: String },
    /// The connection to the shim failed or closed (e.g. the shim died).
    #[error("{}", client_error_text(ErrorClass::Unknown, message))]
    Transport { message: String },
    /// The binary's `delete` printed something that is no `DeleteResponse`.
    #[error("failed to decode delete response: {0}")]
    Decode(String),
}

impl ShimError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Rpc { class, .. } => *class,
            Self::Launch(_) | Self::Transport { .. } | Self::Decode(_) => ErrorClass::Unknown,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.class() == ErrorClass::NotFound
    }

    /// The shim is gone (connection closed), as opposed to an answered error.
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport { .. })
    }
}

/// How the ttrpc crate words a call whose connection's send queue closed.
const SEND_QUEUE_CLOSED: &str = "reserve channel capacity failed";

impl From<ttrpc::Error> for ShimError {
    fn from(e: ttrpc::Error) -> Self {
        match e {
            ttrpc::Error::RpcStatus(status) => Self::Rpc {
                class: ErrorClass::from_grpc_code(status.code.value()),
                message: status.message,
            },
            // containerd's ttrpc client reports a dropped connection as `ttrpc: closed`. The
            // Rust client also reports it as a send queue that closed under a call
            // (`reserve channel capacity failed: channel closed`, ttrpc security_extension.rs).
            ttrpc::Error::Socket(_)
            | ttrpc::Error::RemoteClosed
            | ttrpc::Error::LocalClosed
            | ttrpc::Error::Eof => Self::Transport {
                message: "ttrpc: closed".to_string(),
            },
            ttrpc::Error::Others(m) if m.starts_with(SEND_QUEUE_CLOSED) => Self::Transport {
                message: "ttrpc: closed".to_string(),
            },
            other => Self::Transport {
                message: other.to_string(),
            },
        }
    }
}

/// How shims are started: the binary and what it is told about its environment.
#[derive(Debug, Clone)]
pub struct ShimLauncher {
    pub binary: PathBuf,
    pub namespace: String,
    /// The `-address` argument (containerd's own socket; here the CRI socket path).
    pub address: String,
    /// The `-publish-binary` argument (containerd's binary; here our own executable).
    pub publish_binary: PathBuf,
    /// `EXECLAB_SHIM_SOCKET_DIR`.
    pub socket_dir: PathBuf,
    /// `XDG_RUNTIME_DIR`: where the shim's runc-process files go.
    pub runtime_dir: PathBuf,
    /// `EXECLAB_RUNC_ROOT`.
    pub runc_root: PathBuf,
    /// `EXECLAB_SHIM_METRICS_DIR`, when shims should serve metrics.
    pub metrics_dir: Option<PathBuf>,
    /// `EXECLAB_OTLP_ENDPOINT`, when shims should export their spans.
    pub otlp_endpoint: Option<String>,
}

impl ShimLauncher {
    fn command(&self, id: &str, bundle: &Path, action: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-namespace")
            .arg(&self.namespace)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .arg("-id")
            .arg(id);
        if action == "delete" {
            cmd.arg("-bundle").arg(bundle);
        }
        if let Some(dir) = &self.metrics_dir {
            cmd.env("EXECLAB_SHIM_METRICS_DIR", dir);
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            cmd.env("EXECLAB_OTLP_ENDPOINT", endpoint);
        }
        cmd.arg(action)
            .current_dir(bundle)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("EXECLAB_SHIM_SOCKET_DIR", &self.socket_dir)
            .env("EXECLAB_RUNC_ROOT", &self.runc_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `<shim> ... -id ID start` in `bundle` and connects to the address it prints.
    pub async fn start(&self, id: &str, bundle: &Path) -> Result<Shim, ShimError> {
        let output = run_binary(self.command(id, bundle, "start")).await?;
        let address = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| ShimError::Launch(format!("no address printed: {}", output.stderr)))?
            .to_string();
        if !address.starts_with("unix://") {
            return Err(ShimError::Launch(format!("unexpected address {address:?}")));
        }
        let shim = Shim::connect(&address, id).await?;
        tracing::debug!(%id, %address, "shim started");
        Ok(shim)
    }

    /// Runs `<shim> ... -id ID -bundle DIR delete` (cleanup after the shim is gone) and returns
    /// what it reports of the task.
    pub async fn delete(&self, id: &str, bundle: &Path) -> Result<DeletedTask, ShimError> {
        let output = run_binary(self.command(id, bundle, "delete")).await?;
        if !output.stderr.is_empty() {
            // containerd logs it as "cleanup warnings" (runtime/v2/binary.go Delete).
            tracing::warn!(%id, stderr = %output.stderr, "cleanup warnings");
        }
        DeletedTask::decode(&output.stdout)
    }
}

/// The task as the binary's `delete` reports it: its `DeleteResponse` (protobuf on stdout).
/// containerd publishes these figures as the task's exit (runtime/v2 `cleanupAfterDeadShim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedTask {
    pub pid: u32,
    pub exit_status: u32,
    /// Nanoseconds since the epoch.
    pub exited_at: i64,
}

impl DeletedTask {
    /// What containerd publishes when `delete` itself failed: status 255, now, pid 0.
    pub fn unknown_now() -> Self {
        Self {
            pid: 0,
            exit_status: 255,
            exited_at: crate::store::now_nanos(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ShimError> {
        let response = DeleteResponse::parse_from_bytes(bytes)
            .map_err(|e| ShimError::Decode(e.to_string()))?;
        let exited_at = match response.exited_at.as_ref() {
            Some(t) => t
                .seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.nanos)),
            None => crate::store::now_nanos(),
        };
        Ok(Self {
            pid: response.pid,
            exit_status: response.exit_status,
            exited_at,
        })
    }
}

struct BinaryOutput {
    /// Raw: `delete` prints protobuf.
    stdout: Vec<u8>,
    stderr: String,
}

async fn run_binary(mut cmd: Command) -> Result<BinaryOutput, ShimError> {
    let mut child = cmd
        .spawn()
        .map_err(|e| ShimError::Launch(format!("run {:?}: {e}", cmd.as_std().get_program())))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        // Read stdout only up to the binary's exit: a daemonized shim might keep an inherited
        // descriptor open, and waiting for EOF would then hang.
        let mut out = Vec::new();
        let status = match stdout.as_mut() {
            Some(pipe) => {
                let (status, _) = tokio::join!(child.wait(), pipe.read_to_end(&mut out));
                status
            }
            None => child.wait().await,
        };
        (status, out)
    };
    let (status, out) = tokio::time::timeout(BINARY_TIMEOUT, run)
        .await
        .map_err(|_| ShimError::Launch("shim binary timed out".to_string()))?;
    let status = status.map_err(|e| ShimError::Launch(e.to_string()))?;
    let mut err = Vec::new();
    if let Some(pipe) = stderr.as_mut() {
        let _ = tokio::time::timeout(Duration::from_millis(200), pipe.read_to_end(&mut err)).await;
    }
    let stderr = String::from_utf8_lossy(&err).trim().to_string();
    if !status.success() {
        return Err(ShimError::Launch(format!("{status}: {stderr}")));
    }
    Ok(BinaryOutput {
        stdout: out,
        stderr,
    })
}

/// A second, idle connection to a shim's socket, made to learn when the shim is gone: it reads
/// EOF once the shim's end closes (the process died, or shut down). containerd learns this from
/// its ttrpc client's `WithOnClose` callback; the Rust ttrpc client offers no such hook.
pub struct ShimWatch {
    stream: tokio::net::UnixStream,
}

impl ShimWatch {
    /// Connects to the shim listening at `address` (`unix://…`).
    pub async fn connect(address: &str) -> std::io::Result<Self> {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let stream = tokio::net::UnixStream::connect(path).await?;
        Ok(Self { stream })
    }

    /// The shim's pid, as the kernel knows the socket's peer.
    pub fn pid(&self) -> Option<i32> {
        self.stream.peer_cred().ok().and_then(|c| c.pid())
    }

    /// Resolves once the shim's end of the connection closed.
    pub async fn closed(mut self) {
        // The shim never writes on a connection that sends no request; whatever comes is dropped.
        let mut buf = [0u8; 256];
        while let Ok(n) = self.stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

/// The task API of one running shim.
#[derive(Clone)]
pub struct Shim {
    tasks: TaskClient,
    address: String,
    id: String,
}

/// The stdio and terminal settings of a task or exec process.
#[derive(Debug, Clone, Default)]
pub struct ProcessIo {
    pub terminal: bool,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

fn context(trace: Option<&TraceParent>, timeout: Option<Duration>) -> ttrpc::context::Context {
    let mut ctx = match timeout {
        Some(t) => ttrpc::context::with_duration(t),
        None => ttrpc::context::with_timeout(0),
    };
    if let Some(trace) = trace {
        ctx.add(hop_kit::TRACEPARENT.to_string(), trace.child().to_string());
    }
    ctx
}

/// Runs one ttrpc call in a task of its own and waits for its answer. The ttrpc client closes
/// the whole connection when a call is dropped while its request is being written
/// (`connection closed after a request was cancelled during write`): with hundreds of sessions
/// on one shim, a client going away (which drops its Wait) cut every exec of the pod. Dropping
/// the caller now only stops the waiting; the call itself completes.
async fn detached<Req, T, F, Fut>(
    tasks: TaskClient,
    ctx: ttrpc::context::Context,
    req: Req,
    call: F,
) -> Result<T, ShimError>
where
    Req: Send + 'static,
    T: Send + 'static,
    F: FnOnce(TaskClient, ttrpc::context::Context, Req) -> Fut,
    Fut: std::future::Future<Output = Result<T, ttrpc::Error>> + Send + 'static,
{
    match tokio::spawn(call(tasks, ctx, req)).await {
        Ok(answer) => answer.map_err(ShimError::from),
        Err(e) => Err(ShimError::Transport {
            message: format!("ttrpc call: {e}"),
        }),
    }
}

/// `self.tasks.$method(ctx, &req)` through [`detached`].
macro_rules! shim_call {
    ($shim:ident, $method:ident, $ctx:expr, $req:expr) => {
        detached(
            $shim.tasks.clone(),
            $ctx,
            $req,
            |tasks, ctx, req| async move { tasks.$method(ctx, &req).await },
        )
    };
}

impl Shim {
    /// A task API client on the shim listening at `address` (`unix://…`).
    pub async fn connect(address: &str, id: &str) -> Result<Shim, ShimError> {
        let client = ttrpc::asynchronous::Client::connect(address)
            .await
            .map_err(|e| ShimError::Launch(format!("connect {address}: {e}")))?;
        Ok(Shim {
            tasks: TaskClient::new(client),
            address: address.to_string(),
            id: id.to_string(),
        })
    }

    /// `unix://...` address of the shim's ttrpc socket.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The id the shim was started for (the sandbox id).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Create a task from an OCI bundle; returns its pid.
    pub async fn create(&self, id: &str, bundle: &Path, io: &ProcessIo) -> Result<u32, ShimError> {
        let req = CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.to_string_lossy().into_owned(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            ..Default::default()
        };
        let resp = shim_call!(self, create, context(None, Some(CALL_TIMEOUT)), req).await?;
        Ok(resp.pid)
    }

    /// Start a task (`exec_id` empty) or an exec process; returns its pid.
    pub async fn start(
        &self,
        id: &str,
        exec_id: &str,
        trace: Option<&TraceParent>,
    ) -> Result<u32, ShimError> {
        let req = StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = shim_call!(self, start, context(trace, Some(CALL_TIMEOUT)), req).await?;
        Ok(resp.pid)
    }

    /// Add an exec process to task `id`; `spec_json` is an OCI `Process` in JSON.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        io: &ProcessIo,
        spec_json: Vec<u8>,
        trace: Option<&TraceParent>,
    ) -> Result<(), ShimError> {
        let spec = Any {
            type_url: PROCESS_TYPE_URL.to_string(),
            value: spec_json,
            ..Default::default()
        };
        let req = ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            spec: Some(spec).into(),
            ..Default::default()
        };
        shim_call!(self, exec, context(trace, Some(CALL_TIMEOUT)), req).await?;
        Ok(())
    }

    /// Waits for a task or exec process to exit; returns its exit status.
    pub async fn wait(
        &self,
        id: &str,
        exec_id: &str,
        trace: Option<&TraceParent>,
    ) -> Result<u32, ShimError> {
        let req = WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = shim_call!(self, wait, context(trace, None), req).await?;
        Ok(resp.exit_status)
    }

    pub async fn kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        trace: Option<&TraceParent>,
    ) -> Result<(), ShimError> {
        let req = KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all: exec_id.is_empty(),
            ..Default::default()
        };
        shim_call!(self, kill, context(trace, Some(CALL_TIMEOUT)), req).await?;
        Ok(())
    }

    pub async fn delete(
        &self,
        id: &str,
        exec_id: &str,
        trace: Option<&TraceParent>,
    ) -> Result<(), ShimError> {
        let req = DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        shim_call!(self, delete, context(trace, Some(CALL_TIMEOUT)), req).await?;
        Ok(())
    }

    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
        trace: Option<&TraceParent>,
    ) -> Result<(), ShimError> {
        let req = ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        shim_call!(self, resize_pty, context(trace, Some(CALL_TIMEOUT)), req).await?;
        Ok(())
    }

    /// Closes the process's stdin.
    pub async fn close_stdin(
        &self,
        id: &str,
        exec_id: &str,
        trace: Option<&TraceParent>,
    ) -> Result<(), ShimError> {
        let req = CloseIORequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        shim_call!(self, close_io, context(trace, Some(CALL_TIMEOUT)), req).await?;
        Ok(())
    }

    /// Asks the shim process to exit (it refuses while tasks remain unless `now`).
    pub async fn shutdown(&self, now: bool) -> Result<(), ShimError> {
        let req = ShutdownRequest {
            id: self.id.clone(),
            now,
            ..Default::default()
        };
        match shim_call!(self, shutdown, context(None, Some(CALL_TIMEOUT)), req).await {
            Ok(_) => Ok(()),
            // The shim exits while answering: a closed connection is success here.
            Err(ShimError::Transport { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call dropped while its request is still being written (a slow shim, a big request)
    /// must not close the connection the pod's other execs share.
    #[tokio::test]
    async fn a_call_dropped_mid_write_still_sends_its_whole_request() {
        use tokio::io::AsyncReadExt;
        const SPEC: usize = 2 * 1024 * 1024;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shim.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        // A shim that reads slowly and never answers.
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            while total < SPEC {
                tokio::time::sleep(Duration::from_millis(2)).await;
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        let shim = Shim::connect(&format!("unix://{}", path.display()), "pod")
            .await
            .expect("connect");
        let io = ProcessIo::default();
        let call = shim.exec("ctr", "exec", &io, vec![b'x'; SPEC], None);
        assert!(
            tokio::time::timeout(Duration::from_millis(30), call)
                .await
                .is_err(),
            "the call was to be dropped while writing"
        );
        let read = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("server bounded")
            .expect("server task");
        assert!(
            read >= SPEC,
            "the shim got {read} of {SPEC} bytes: connection cut"
        );
    }

    #[test]
    fn delete_responses_decode_to_the_tasks_exit() {
        use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
        let response = DeleteResponse {
            pid: 4242,
            exit_status: 137,
            exited_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let bytes = response.write_to_bytes().expect("encode");
        assert_eq!(
            DeletedTask::decode(&bytes).expect("decode"),
            DeletedTask {
                pid: 4242,
                exit_status: 137,
                exited_at: 1_700_000_000_000_000_005,
            }
        );
        // No exit time: the cleanup's own time, as the runc shim reports it.
        let before = crate::store::now_nanos();
        let bare = DeleteResponse {
            exit_status: 137,
            ..Default::default()
        };
        let decoded = DeletedTask::decode(&bare.write_to_bytes().expect("encode")).expect("decode");
        assert!(decoded.exited_at >= before, "{decoded:?}");
        let err = DeletedTask::decode(b"\xff\xff\xff").expect_err("not a DeleteResponse");
        assert!(
            err.to_string()
                .starts_with("failed to decode delete response"),
            "{err}"
        );
    }

    /// The watch resolves when the shim's end closes, and not before.
    #[tokio::test]
    async fn a_watch_resolves_when_the_shim_end_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shim.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let address = format!("unix://{}", path.display());
        let (watch, accepted) = tokio::join!(ShimWatch::connect(&address), listener.accept());
        let watch = watch.expect("connect");
        let (conn, _) = accepted.expect("accept");
        assert_eq!(watch.pid(), i32::try_from(std::process::id()).ok());
        let closed = tokio::spawn(watch.closed());
        tokio::task::yield_now().await;
        assert!(
            !closed.is_finished(),
            "resolved while the shim's end is open"
        );
        drop(conn);
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("resolved once the shim's end closed")
            .expect("task");
    }

    #[test]
    fn every_way_the_connection_goes_reads_ttrpc_closed() {
        for e in [
            ttrpc::Error::RemoteClosed,
            ttrpc::Error::LocalClosed,
            ttrpc::Error::Eof,
            ttrpc::Error::Others("reserve channel capacity failed: channel closed".to_string()),
        ] {
            let shim = ShimError::from(e);
            assert!(shim.is_transport());
            assert_eq!(shim.to_string(), "ttrpc: closed: unknown");
        }
        let other = ShimError::from(ttrpc::Error::Others("something else".into()));
        assert!(other.to_string().contains("something else"), "{other}");
    }
}
