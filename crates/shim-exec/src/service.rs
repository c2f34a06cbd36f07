//! The shim v2 task API (`containerd.task.v2.Task`) over runc: one shim serves every container
//! of a pod, each container a task, each exec a process of that task.
//!
//! Behaviour checked against containerd `cmd/containerd-shim-runc-v2/task/service.go` and
//! `process/{init.go,exec.go}`: Create runs `runc create` with `<bundle>/init.pid`; Exec only
//! records the process; Start with an exec id runs `runc exec --detach` through a
//! [`ProcessSpecFile`] (the go-runc path) with `<bundle>/<exec_id>.pid`; failures are
//! `OCI runtime <op> failed: <runc's last logged error, else the shim-side error>` with ttrpc
//! code Unknown (see [`crate::error`] for where `: unknown` is added). Deliberate differences:
//! no events are published (`-publish-binary` is accepted, unused); Delete of a task
//! force-deletes a running container; Pause/Resume/Checkpoint/Update/Stats are unimplemented.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PidsRequest, PidsResponse,
    ProcessInfo, ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, Status, WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::Task;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tracing::Instrument;
use ttrpc::r#async::TtrpcContext;

use crate::config::ShimConfig;
use crate::console::{set_window_size, ConsoleSocket};
use crate::error::TaskError;
use crate::process::{Exit, Process, ProcessStatus, FAILED_START_STATUS};
use crate::process_spec_file::ProcessSpecFile;
use crate::reaper::{ExitEvent, Reaper, Subscription};
use crate::rootfs::{mount_rootfs, unmount_rootfs};
use crate::runc::{last_error, parse_ps, Runc};
use crate::stdio::{console_io, pipe_io, register, set_nonblocking, StdioPaths};

/// How long runc may take to send a pty master after it exited successfully.
const CONSOLE_WAIT: Duration = Duration::from_secs(5);
/// How long Delete waits for a force-deleted init to be reaped.
const DELETE_WAIT: Duration = Duration::from_secs(10);
/// How long Delete lets an exited exec's output copy finish (containerd's runc shim waits
/// 2 s for its copiers).
const IO_DRAIN_WAIT: Duration = Duration::from_secs(2);

struct Container {
    bundle: PathBuf,
    /// Create mounted containerd's `rootfs` mounts on `<bundle>/rootfs`; Delete unmounts.
    mounted_rootfs: bool,
    init: Process,
    execs: HashMap<String, Process>,
}

impl Container {
    fn process(&self, exec_id: &str) -> Result<&Process, TaskError> {
        if exec_id.is_empty() {
            Ok(&self.init)
        } else {
            self.execs
                .get(exec_id)
                .ok_or_else(|| TaskError::process_not_found(exec_id))
        }
    }

    fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process, TaskError> {
        if exec_id.is_empty() {
            Ok(&mut self.init)
        } else {
            self.execs
                .get_mut(exec_id)
                .ok_or_else(|| TaskError::process_not_found(exec_id))
        }
    }
}

/// The task service; clone freely (shared state).
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    config: ShimConfig,
    runc: Runc,
    reaper: Reaper,
    containers: Mutex<HashMap<String, Container>>,
    shutdown: Arc<Notify>,
}

/// What one runc invocation ended with.
struct RuncRun {
    exit: ExitEvent,
    /// Still subscribed: exits of processes runc started may be waiting here.
    exits: Subscription,
    master: Option<OwnedFd>,
}

impl TaskService {
    /// A service using `reaper` (already installed); `shutdown` is notified when Shutdown
    /// finds no tasks left.
    pub fn new(config: ShimConfig, reaper: Reaper, shutdown: Arc<Notify>) -> TaskService {
        let runc = Runc {
            binary: config.runc_binary.clone(),
            root: config.runc_root.clone(),
        };
        let service = TaskService {
            inner: Arc::new(Inner {
                config,
                runc,
                reaper,
                containers: Mutex::new(HashMap::new()),
                shutdown,
            }),
        };
        service.spawn_exit_monitor();
        service
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.inner
            .containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Matches every reaped pid against the live processes of all tasks.
    fn spawn_exit_monitor(&self) {
        let mut exits = self.inner.reaper.subscribe();
        let service = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = exits.recv().await {
                service.record_exit(ev);
            }
        });
    }

    fn record_exit(&self, ev: ExitEvent) {
        let pid = ev.pid as u32;
        let exit = Exit {
            status: ev.status,
            at: ev.at,
        };
        let mut containers = self.containers();
        for (id, c) in containers.iter_mut() {
            if c.init.is_live_pid(pid) {
                tracing::info!(id, pid, status = ev.status, "init exited");
                c.init.record_exit(exit);
                return;
            }
            for (exec_id, p) in c.execs.iter_mut() {
                if p.is_live_pid(pid) {
                    tracing::info!(id, exec_id, pid, status = ev.status, "exec exited");
                    p.record_exit(exit);
                    return;
                }
            }
        }
    }

    /// Spawns runc with `args` and `stdio`, waits for it through the reaper and, with a
    /// console socket, collects the pty master it sends.
    async fn run_runc(
        &self,
        args: Vec<OsString>,
        stdio: Option<crate::stdio::RuncStdio>,
        console: Option<&ConsoleSocket>,
    ) -> Result<RuncRun, io::Error> {
        let mut cmd = self.inner.runc.command(args);
        match stdio {
            Some(s) => cmd.stdin(s.stdin).stdout(s.stdout).stderr(s.stderr),
            None => cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        };
        let (child, mut exits) = self.inner.reaper.spawn(&mut cmd)?;
        // The shim's copies of the stdio fds must close now, or the FIFOs never see EOF.
        drop(cmd);
        let pid = child.id();
        drop(child);
        let Some(console) = console else {
            let exit = exits.wait_for(pid).await?;
            return Ok(RuncRun {
                exit,
                exits,
                master: None,
            });
        };
        let receive = console.receive_master();
        tokio::pin!(receive);
        let mut master = None;
        let exit = loop {
            tokio::select! {
                exit = exits.wait_for(pid) => break exit?,
                m = &mut receive, if master.is_none() => master = Some(m),
            }
        };
        if master.is_none() && exit.status == 0 {
            master = Some(
                tokio::time::timeout(CONSOLE_WAIT, receive)
                    .await
                    .unwrap_or_else(|_| {
                        Err(crate::console::ConsoleError::Receive(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "runc sent no pty master",
                        )))
                    }),
            );
        }
        let master = match master {
            Some(Ok(fd)) => Some(fd),
            Some(Err(e)) if exit.status == 0 => return Err(io::Error::other(e.to_string())),
            _ => None,
        };
        Ok(RuncRun {
            exit,
            exits,
            master,
        })
    }

    /// `<what> failed: <runc's last error>` or, without one, the go-runc error text.
    fn runc_failure(&self, what: &str, log: &Path, status: u32) -> TaskError {
        let logged = fs::read_to_string(log).ok().and_then(|l| last_error(&l));
        let reason = logged.unwrap_or_else(|| {
            format!(
                "{} did not terminate successfully: exit status {status}",
                self.inner.runc.binary.display()
            )
        });
        TaskError::Runtime(format!("{what}: {reason}"))
    }

    async fn create(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse, TaskError> {
        validate_id(&req.id)?;
        if self.containers().contains_key(&req.id) {
            return Err(TaskError::AlreadyExists(format!(
                "container {}: already exists",
                req.id
            )));
        }
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.is_absolute() {
            return Err(TaskError::InvalidArgument(format!(
                "bundle {:?} is not an absolute path",
                req.bundle
            )));
        }
        mount_rootfs(&bundle, &req.rootfs).map_err(|e| TaskError::Runtime(e.to_string()))?;
        let mounted_rootfs = !req.rootfs.is_empty();
        let created = self
            .create_on_rootfs(&req, bundle.clone(), mounted_rootfs)
            .await;
        if created.is_err() && mounted_rootfs {
            if let Err(e) = unmount_rootfs(&bundle) {
                tracing::warn!(id = req.id, "{e}");
            }
        }
        created
    }

    /// Create once the rootfs is in place.
    async fn create_on_rootfs(
        &self,
        req: &CreateTaskRequest,
        bundle: PathBuf,
        mounted_rootfs: bool,
    ) -> Result<CreateTaskResponse, TaskError> {
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let pid_file = bundle.join("init.pid");
        let log = bundle.join("log.json");
        let console = if stdio.terminal {
            Some(
                ConsoleSocket::new(&self.inner.config.runtime_dir)
                    .map_err(|e| TaskError::Runtime(e.to_string()))?,
            )
        } else {
            None
        };
        let (runc_stdio, io) = if stdio.terminal {
            (None, None)
        } else {
            let (s, io) = pipe_io(&stdio)
                .await
                .map_err(|e| TaskError::Runtime(format!("failed to create stdio: {e}")))?;
            (Some(s), Some(io))
        };
        let args = self.inner.runc.create_args(
            &req.id,
            &bundle,
            &pid_file,
            console.as_ref().map(ConsoleSocket::path),
            &log,
        );
        let run = self
            .run_runc(args, runc_stdio, console.as_ref())
            .await
            .map_err(|e| TaskError::Runtime(format!("OCI runtime create failed: {e}")))?;
        drop(console);
        if run.exit.status != 0 {
            return Err(self.runc_failure("OCI runtime create failed", &log, run.exit.status));
        }
        let pid = read_pid_file(&pid_file)
            .map_err(|e| TaskError::Runtime(format!("OCI runtime create failed: {e}")))?;
        let mut init = Process::new(stdio.clone(), Vec::new());
        init.pid = pid;
        if let Some(master) = run.master {
            let master = wrap_master(master)?;
            init.io = console_io(master.clone(), &stdio)
                .await
                .map_err(|e| TaskError::Runtime(format!("failed to copy console: {e}")))?;
            init.console = Some(master);
        } else if let Some(mut io) = io {
            // runc succeeded: what reaches the stderr pipe from now on is the process's.
            io.start_output_copy();
            init.io = io;
        }
        self.register(
            &req.id,
            "",
            pid,
            run.exits,
            Some(Container {
                bundle,
                mounted_rootfs,
                init,
                execs: HashMap::new(),
            }),
        );
        tracing::info!(id = req.id, pid, "created");
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Makes `pid` known (inserting `container` if given) and catches an exit that happened
    /// before, while runc still ran.
    fn register(
        &self,
        id: &str,
        exec_id: &str,
        pid: u32,
        mut exits: Subscription,
        container: Option<Container>,
    ) {
        let mut containers = self.containers();
        if let Some(c) = container {
            containers.insert(id.to_string(), c);
        }
        let Some(c) = containers.get_mut(id) else {
            return;
        };
        let Ok(p) = c.process_mut(exec_id) else {
            return;
        };
        p.pid = pid;
        if let Some(ev) = exits.take_exit_of(pid) {
            p.record_exit(Exit {
                status: ev.status,
                at: ev.at,
            });
        }
    }

    async fn start(&self, req: StartRequest) -> Result<StartResponse, TaskError> {
        if !req.exec_id.is_empty() {
            return self.start_exec(&req.id, &req.exec_id).await;
        }
        let (bundle, pid) = {
            let mut containers = self.containers();
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| TaskError::container_not_found(&req.id))?;
            if c.init.started {
                return Err(TaskError::FailedPrecondition(format!(
                    "container {} is already started",
                    req.id
                )));
            }
            c.init.started = true;
            (c.bundle.clone(), c.init.pid)
        };
        let log = bundle.join("log.json");
        let run = self
            .run_runc(self.inner.runc.start_args(&req.id, &log), None, None)
            .await
            .map_err(|e| TaskError::Runtime(format!("OCI runtime start failed: {e}")))?;
        if run.exit.status != 0 {
            return Err(self.runc_failure("OCI runtime start failed", &log, run.exit.status));
        }
        tracing::info!(id = req.id, pid, "started");
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    /// The go-runc exec path.
    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<StartResponse, TaskError> {
        let (bundle, stdio, spec) = {
            let mut containers = self.containers();
            let c = containers
                .get_mut(id)
                .ok_or_else(|| TaskError::container_not_found(id))?;
            let bundle = c.bundle.clone();
            let p = c.process_mut(exec_id)?;
            if p.started {
                return Err(TaskError::FailedPrecondition(format!(
                    "process {exec_id} is already started"
                )));
            }
            p.started = true;
            (bundle, p.stdio.clone(), std::mem::take(&mut p.spec))
        };
        match self.run_exec(id, exec_id, &bundle, &stdio, &spec).await {
            Ok(pid) => {
                tracing::info!(event = "process_started", id, exec_id, pid, "exec started");
                // Setup as the shim sees it: ExecProcess accepted → runc exec started the process.
                if let Some(metered) = self
                    .containers()
                    .get_mut(id)
                    .and_then(|c| c.execs.get_mut(exec_id))
                    .and_then(|p| p.metered.as_mut())
                {
                    metered.set_up();
                }
                Ok(StartResponse {
                    pid,
                    ..Default::default()
                })
            }
            Err(e) => {
                tracing::warn!(id, exec_id, error = %e, "exec failed");
                if let Some(p) = self
                    .containers()
                    .get_mut(id)
                    .and_then(|c| c.execs.get_mut(exec_id))
                {
                    p.record_exit(Exit {
                        status: FAILED_START_STATUS,
                        at: SystemTime::now(),
                    });
                }
                Err(e)
            }
        }
    }

    async fn run_exec(
        &self,
        id: &str,
        exec_id: &str,
        bundle: &Path,
        stdio: &StdioPaths,
        spec: &[u8],
    ) -> Result<u32, TaskError> {
        const FAILED: &str = "OCI runtime exec failed";
        let runtime_dir = &self.inner.config.runtime_dir;
        // Same order as containerd's shim: console socket, then the process spec file.
        let console = if stdio.terminal {
            Some(ConsoleSocket::new(runtime_dir).map_err(|e| TaskError::Runtime(e.to_string()))?)
        } else {
            None
        };
        let (runc_stdio, io) = if stdio.terminal {
            (None, None)
        } else {
            let (s, io) = pipe_io(stdio)
                .await
                .map_err(|e| TaskError::Runtime(format!("failed to create stdio: {e}")))?;
            (Some(s), Some(io))
        };
        let spec_file = ProcessSpecFile::create(runtime_dir, spec)
            .map_err(|e| TaskError::Runtime(format!("{FAILED}: {e}")))?;
        tracing::info!(event = "spec_file_written", path = %spec_file.path().display(), "process spec written");
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        // containerd's place for every runc call of a container, execs too (`NewRunc`'s `Log`).
        let log = bundle.join("log.json");
        let args = self.inner.runc.exec_args(
            id,
            spec_file.path(),
            &pid_file,
            console.as_ref().map(ConsoleSocket::path),
            &log,
        );
        tracing::info!(event = "runc_started", "running runc exec");
        let run = self.run_runc(args, runc_stdio, console.as_ref()).await;
        // runc has returned (or never ran): the spec file and console socket go now.
        drop(spec_file);
        drop(console);
        let failure = match &run {
            Ok(r) if r.exit.status == 0 => None,
            Ok(r) => Some(self.runc_failure(FAILED, &log, r.exit.status)),
            Err(e) => Some(TaskError::Runtime(format!("{FAILED}: {e}"))),
        };
        if let Some(f) = failure {
            return Err(f);
        }
        let run = run.map_err(|e| TaskError::Runtime(format!("{FAILED}: {e}")))?;
        let pid =
            read_pid_file(&pid_file).map_err(|e| TaskError::Runtime(format!("{FAILED}: {e}")))?;
        let (process_io, console) = match run.master {
            Some(master) => {
                let master = wrap_master(master)?;
                let io = console_io(master.clone(), stdio)
                    .await
                    .map_err(|e| TaskError::Runtime(format!("failed to copy console: {e}")))?;
                (Some(io), Some(master))
            }
            None => (
                io.map(|mut io| {
                    // runc succeeded: what reaches the stderr pipe from now on is the process's.
                    io.start_output_copy();
                    io
                }),
                None,
            ),
        };
        {
            let mut containers = self.containers();
            if let Some(p) = containers
                .get_mut(id)
                .and_then(|c| c.execs.get_mut(exec_id))
            {
                if let Some(io) = process_io {
                    p.io = io;
                }
                p.console = console;
            }
        }
        self.register(id, exec_id, pid, run.exits, None);
        Ok(pid)
    }

    fn exec(&self, req: ExecProcessRequest) -> Result<(), TaskError> {
        validate_id(&req.exec_id)?;
        let spec_any = req
            .spec
            .as_ref()
            .ok_or_else(|| TaskError::InvalidArgument("exec spec is required".into()))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&spec_any.value).map_err(|e| {
            TaskError::InvalidArgument(format!("exec spec is not OCI process JSON: {e}"))
        })?;
        if !spec.is_object() {
            return Err(TaskError::InvalidArgument(
                "exec spec is not a JSON object".into(),
            ));
        }
        spec["terminal"] = serde_json::Value::Bool(req.terminal);
        let spec = serde_json::to_vec(&spec)
            .map_err(|e| TaskError::InvalidArgument(format!("exec spec: {e}")))?;
        let mut containers = self.containers();
        let c = containers
            .get_mut(&req.id)
            .ok_or_else(|| TaskError::container_not_found(&req.id))?;
        if c.execs.contains_key(&req.exec_id) {
            return Err(TaskError::AlreadyExists(format!(
                "id {}: already exists",
                req.exec_id
            )));
        }
        let stdio = StdioPaths {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        let mut process = Process::new(stdio, spec);
        process.metered = Some(hop_kit::metrics::global().session_opened());
        c.execs.insert(req.exec_id, process);
        Ok(())
    }

    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse, TaskError> {
        let mut watch = {
            let containers = self.containers();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| TaskError::container_not_found(&req.id))?;
            c.process(&req.exec_id)?.exit_watch()
        };
        let exit = watch
            .wait_for(Option::is_some)
            .await
            .map_err(|_| TaskError::process_not_found(&req.exec_id))?
            .ok_or_else(|| TaskError::process_not_found(&req.exec_id))?;
        tracing::info!(
            event = "exit",
            exec_id = req.exec_id,
            status = exit.status,
            "waited"
        );
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..Default::default()
        })
    }

    async fn kill(&self, req: KillRequest) -> Result<(), TaskError> {
        let signal = i32::try_from(req.signal)
            .map_err(|_| TaskError::InvalidArgument(format!("bad signal {}", req.signal)))?;
        let bundle = {
            let containers = self.containers();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| TaskError::container_not_found(&req.id))?;
            let p = c.process(&req.exec_id)?;
            if p.exit().is_some() {
                return Err(TaskError::NotFound(
                    "process already finished: not found".into(),
                ));
            }
            if !req.exec_id.is_empty() {
                if p.pid == 0 {
                    return Err(TaskError::FailedPrecondition(format!(
                        "process {} not started",
                        req.exec_id
                    )));
                }
                // SAFETY: plain syscall; the pid is live (not yet reaped), so not reused.
                if unsafe { libc::kill(p.pid as i32, signal) } < 0 {
                    let e = io::Error::last_os_error();
                    return Err(TaskError::Runtime(format!("kill {}: {e}", p.pid)));
                }
                return Ok(());
            }
            c.bundle.clone()
        };
        let log = bundle.join("log.json");
        let run = self
            .run_runc(
                self.inner
                    .runc
                    .kill_args(&req.id, req.signal, req.all, &log),
                None,
                None,
            )
            .await
            .map_err(|e| TaskError::Runtime(format!("OCI runtime kill failed: {e}")))?;
        if run.exit.status != 0 {
            return Err(self.runc_failure("OCI runtime kill failed", &log, run.exit.status));
        }
        Ok(())
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, TaskError> {
        if !req.exec_id.is_empty() {
            let (bundle, mut p) = {
                let mut containers = self.containers();
                let c = containers
                    .get_mut(&req.id)
                    .ok_or_else(|| TaskError::container_not_found(&req.id))?;
                let p = c.process(&req.exec_id)?;
                if p.status() == ProcessStatus::Running {
                    return Err(TaskError::FailedPrecondition(
                        "cannot delete running exec: failed precondition".into(),
                    ));
                }
                let bundle = c.bundle.clone();
                let Some(p) = c.execs.remove(&req.exec_id) else {
                    return Err(TaskError::process_not_found(&req.exec_id));
                };
                (bundle, p)
            };
            p.io.drain_then_abort(IO_DRAIN_WAIT).await;
            let _ = fs::remove_file(bundle.join(format!("{}.pid", req.exec_id)));
            return Ok(delete_response(&p));
        }
        let (bundle, mut watch) = {
            let containers = self.containers();
            let c = containers
                .get(&req.id)
                .ok_or_else(|| TaskError::container_not_found(&req.id))?;
            (c.bundle.clone(), c.init.exit_watch())
        };
        let log = bundle.join("log.json");
        let run = self
            .run_runc(self.inner.runc.delete_args(&req.id, true, &log), None, None)
            .await
            .map_err(|e| TaskError::Runtime(format!("OCI runtime delete failed: {e}")))?;
        // A container runc no longer knows (e.g. removed by `shim-exec delete`) is fine to
        // drop once its init has been reaped.
        if run.exit.status != 0 && watch.borrow().is_none() {
            return Err(self.runc_failure("OCI runtime delete failed", &log, run.exit.status));
        }
        drop(run);
        // The killed init is reaped asynchronously; wait (bounded) so the response carries it.
        let _ = tokio::time::timeout(DELETE_WAIT, watch.wait_for(Option::is_some)).await;
        let Some(mut c) = self.containers().remove(&req.id) else {
            return Err(TaskError::container_not_found(&req.id));
        };
        for (exec_id, mut p) in c.execs.drain() {
            p.io.abort();
            let _ = fs::remove_file(bundle.join(format!("{exec_id}.pid")));
        }
        c.init.io.abort();
        let _ = fs::remove_file(bundle.join("init.pid"));
        if c.mounted_rootfs {
            unmount_rootfs(&bundle).map_err(|e| TaskError::Runtime(e.to_string()))?;
        }
        tracing::info!(id = req.id, "deleted");
        Ok(delete_response(&c.init))
    }

    fn state(&self, req: StateRequest) -> Result<StateResponse, TaskError> {
        let containers = self.containers();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| TaskError::container_not_found(&req.id))?;
        let p = c.process(&req.exec_id)?;
        let status = match p.status() {
            ProcessStatus::Created => Status::CREATED,
            ProcessStatus::Running => Status::RUNNING,
            ProcessStatus::Stopped => Status::STOPPED,
        };
        let exit = p.exit();
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: c.bundle.display().to_string(),
            pid: p.pid,
            status: status.into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map_or_else(MessageField::none, |e| timestamp(e.at)),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    fn resize_pty(&self, req: ResizePtyRequest) -> Result<(), TaskError> {
        let containers = self.containers();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| TaskError::container_not_found(&req.id))?;
        let p = c.process(&req.exec_id)?;
        // As containerd: resizing a process without a terminal is a no-op.
        let Some(master) = &p.console else {
            return Ok(());
        };
        let dim = |v: u32| {
            u16::try_from(v).map_err(|_| TaskError::InvalidArgument(format!("bad size {v}")))
        };
        set_window_size(
            master.get_ref().as_raw_fd(),
            dim(req.width)?,
            dim(req.height)?,
        )
        .map_err(|e| TaskError::Runtime(format!("resize pty: {e}")))
    }

    fn close_io(&self, req: CloseIORequest) -> Result<(), TaskError> {
        let containers = self.containers();
        let c = containers
            .get(&req.id)
            .ok_or_else(|| TaskError::container_not_found(&req.id))?;
        let p = c.process(&req.exec_id)?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(())
    }

    async fn pids(&self, req: PidsRequest) -> Result<PidsResponse, TaskError> {
        let bundle = {
            let containers = self.containers();
            containers
                .get(&req.id)
                .ok_or_else(|| TaskError::container_not_found(&req.id))?
                .bundle
                .clone()
        };
        let log = bundle.join("log.json");
        let mut cmd = self
            .inner
            .runc
            .command(self.inner.runc.ps_args(&req.id, &log));
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| TaskError::Runtime(format!("pipe: {e}")))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::null());
        let (child, mut exits) = self
            .inner
            .reaper
            .spawn(&mut cmd)
            .map_err(|e| TaskError::Runtime(format!("OCI runtime ps failed: {e}")))?;
        drop(cmd);
        let pid = child.id();
        drop(child);
        let output = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut out = Vec::new();
            fs::File::from(read_end).read_to_end(&mut out).map(|_| out)
        });
        let exit = exits
            .wait_for(pid)
            .await
            .map_err(|e| TaskError::Runtime(format!("OCI runtime ps failed: {e}")))?;
        let output = output
            .await
            .map_err(|e| TaskError::Runtime(format!("OCI runtime ps failed: {e}")))?
            .map_err(|e| TaskError::Runtime(format!("OCI runtime ps failed: {e}")))?;
        if exit.status != 0 {
            return Err(self.runc_failure("OCI runtime ps failed", &log, exit.status));
        }
        let pids = parse_ps(&output)
            .map_err(|e| TaskError::Runtime(format!("OCI runtime ps failed: {e}")))?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn connect(&self, req: ConnectRequest) -> ConnectResponse {
        let task_pid = self.containers().get(&req.id).map_or(0, |c| c.init.pid);
        ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }
    }

    fn shutdown(&self) {
        if !self.containers().is_empty() {
            tracing::info!("shutdown requested with tasks left; staying up");
            return;
        }
        let notify = self.inner.shutdown.clone();
        tokio::spawn(async move {
            // Let the reply go out first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            notify.notify_one();
        });
    }
}

fn validate_id(id: &str) -> Result<(), TaskError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(TaskError::InvalidArgument(format!("invalid id {id:?}")))
    }
}

fn read_pid_file(path: &Path) -> io::Result<u32> {
    let text = fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad pid file {}", path.display()),
        )
    })
}

fn wrap_master(master: OwnedFd) -> Result<Arc<AsyncFd<OwnedFd>>, TaskError> {
    set_nonblocking(master.as_raw_fd(), true)
        .and_then(|()| register(master))
        .map(Arc::new)
        .map_err(|e| TaskError::Runtime(format!("pty master: {e}")))
}

fn timestamp(at: SystemTime) -> MessageField<Timestamp> {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    MessageField::some(Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    })
}

fn delete_response(p: &Process) -> DeleteResponse {
    let exit = p.exit();
    DeleteResponse {
        pid: p.pid,
        exit_status: exit.map_or(0, |e| e.status),
        exited_at: exit.map_or_else(MessageField::none, |e| timestamp(e.at)),
        ..Default::default()
    }
}

/// A tracing span for one request: `exec_session` with the trace id when the caller sent a
/// `traceparent`.
fn request_span(ctx: &TtrpcContext, method: &'static str) -> tracing::Span {
    match hop_kit::TraceParent::from_metadata(&ctx.metadata) {
        Some(trace) => tracing::info_span!("exec_session", session = %trace.session(), method),
        None => tracing::info_span!("task", method),
    }
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let _g = request_span(ctx, "State").entered();
        Ok(TaskService::state(self, req)?)
    }

    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        Ok(TaskService::create(self, req)
            .instrument(request_span(ctx, "Create"))
            .await?)
    }

    async fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        Ok(TaskService::start(self, req)
            .instrument(request_span(ctx, "Start"))
            .await?)
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        Ok(TaskService::delete(self, req)
            .instrument(request_span(ctx, "Delete"))
            .await?)
    }

    async fn pids(&self, ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        Ok(TaskService::pids(self, req)
            .instrument(request_span(ctx, "Pids"))
            .await?)
    }

    async fn kill(&self, ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        TaskService::kill(self, req)
            .instrument(request_span(ctx, "Kill"))
            .await?;
        Ok(Empty::new())
    }

    async fn exec(&self, ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let _g = request_span(ctx, "Exec").entered();
        tracing::info!(
            event = "exec",
            id = req.id,
            exec_id = req.exec_id,
            terminal = req.terminal,
            "exec"
        );
        TaskService::exec(self, req)?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let _g = request_span(ctx, "ResizePty").entered();
        TaskService::resize_pty(self, req)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let _g = request_span(ctx, "CloseIO").entered();
        TaskService::close_io(self, req)?;
        Ok(Empty::new())
    }

    async fn wait(&self, ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Ok(TaskService::wait(self, req)
            .instrument(request_span(ctx, "Wait"))
            .await?)
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        Ok(TaskService::connect(self, req))
    }

    async fn shutdown(&self, ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        let _g = request_span(ctx, "Shutdown").entered();
        TaskService::shutdown(self);
        Ok(Empty::new())
    }
}
