//! Test harness: a lab in a temp dir (rootfs, runc root, socket dir, XDG dir), a shim started
//! through the binary contract, busybox containers, FIFO readers, and cleanup checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    ConnectRequest, CreateTaskRequest, DeleteRequest, ExecProcessRequest, ShutdownRequest,
    StartRequest, WaitRequest,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::TaskClient;
use oci_bundle::{prepare_busybox_rootfs, write_bundle, ContainerSpec};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_shim-exec");
pub const NAMESPACE: &str = "execlab-test";
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(TIMEOUT)
}

pub struct Lab {
    pub dir: TempDir,
    pub rootfs: PathBuf,
    pub socket_dir: PathBuf,
    pub runc_root: PathBuf,
    pub xdg: PathBuf,
    pub fifos: PathBuf,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("shim-exec-test")
            .tempdir()
            .expect("tempdir");
        let p = dir.path().to_path_buf();
        let lab = Lab {
            rootfs: p.join("rootfs"),
            socket_dir: p.join("run"),
            runc_root: p.join("runc"),
            xdg: p.join("xdg"),
            fifos: p.join("fifos"),
            dir,
        };
        for d in [&lab.socket_dir, &lab.xdg, &lab.fifos] {
            fs::create_dir_all(d).expect("mkdir");
        }
        prepare_busybox_rootfs(&lab.rootfs, Path::new("/bin/busybox")).expect("rootfs");
        lab
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join("bundles").join(id)
    }

    /// The environment the shim runs with.
    pub fn env(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("EXECLAB_SHIM_SOCKET_DIR".into(), self.socket_dir.clone()),
            ("EXECLAB_RUNC_ROOT".into(), self.runc_root.clone()),
            ("XDG_RUNTIME_DIR".into(), self.xdg.clone()),
        ]
    }

    /// A command running the shim binary with the contract's flags for `id` and `action`.
    /// With `mount_xdg`, the shim runs in a private mount namespace with that tmpfs setup
    /// script (sh) run first; `$XDG` names the runtime dir.
    pub fn shim_command(&self, id: &str, action: &str, mount_xdg: Option<&str>) -> Command {
        let bundle = self.bundle(id);
        fs::create_dir_all(&bundle).expect("bundle dir");
        let flags = [
            "-namespace",
            NAMESPACE,
            "-address",
            "/run/containerd/containerd.sock.ttrpc",
            "-publish-binary",
            "/bin/true",
            "-id",
            id,
            action,
        ];
        let mut cmd = match mount_xdg {
            None => {
                let mut c = Command::new(BIN);
                c.args(flags);
                c
            }
            Some(script) => {
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-ec"])
                    .arg(format!("{script}\nexec \"$0\" \"$@\""))
                    .arg(BIN)
                    .args(flags);
                c
            }
        };
        cmd.current_dir(&bundle)
            .envs(self.env())
            .env("XDG", &self.xdg);
        cmd
    }

    /// Starts (or finds) the shim for pod `id`.
    pub async fn start_shim(&self, id: &str, mount_xdg: Option<&str>) -> Shim {
        self.start_shim_with(id, mount_xdg, &[]).await
    }

    /// As [`Lab::start_shim`], with extra environment for the shim (and so for runc).
    pub async fn start_shim_with(
        &self,
        id: &str,
        mount_xdg: Option<&str>,
        env: &[(&str, &Path)],
    ) -> Shim {
        let mut cmd = self.shim_command(id, "start", mount_xdg);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run shim start");
        assert!(
            out.status.success(),
            "shim start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string();
        let client = ttrpc::r#async::Client::connect(&address)
            .await
            .expect("connect");
        let task = TaskClient::new(client);
        let resp = task
            .connect(ctx(), &ConnectRequest::new())
            .await
            .expect("Connect");
        Shim {
            address,
            pid: resp.shim_pid,
            task,
            runc_root: self.runc_root.clone(),
            containers: Vec::new(),
        }
    }

    pub fn fifo(&self, name: &str) -> PathBuf {
        let p = self.fifos.join(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        p
    }

    /// An exec's stdin and stdout FIFOs, `ID.in` and `ID.out`.
    pub fn stdio_fifos(&self, exec_id: &str) -> (PathBuf, PathBuf) {
        (
            self.fifo(&format!("{exec_id}.in")),
            self.fifo(&format!("{exec_id}.out")),
        )
    }
}

pub struct Shim {
    pub address: String,
    pub pid: u32,
    pub task: TaskClient,
    pub runc_root: PathBuf,
    pub containers: Vec<String>,
}

impl Shim {
    /// Creates and starts a busybox container running `sleep 3600`; returns its pid.
    pub async fn run_sleeper(&mut self, lab: &Lab, id: &str) -> u32 {
        let bundle = lab.bundle(id);
        let spec = ContainerSpec {
            args: vec!["sleep".into(), "3600".into()],
            rootfs: lab.rootfs.clone(),
            readonly_rootfs: true,
            hostname: Some(id.to_string()),
            annotations: BTreeMap::new(),
            ..Default::default()
        };
        write_bundle(&bundle, &spec).expect("bundle");
        let created = self
            .task
            .create(
                ctx(),
                &CreateTaskRequest {
                    id: id.into(),
                    bundle: bundle.display().to_string(),
                    ..Default::default()
                },
            )
            .await
            .expect("Create");
        self.containers.push(id.to_string());
        let started = self
            .task
            .start(
                ctx(),
                &StartRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("Start");
        assert_eq!(created.pid, started.pid);
        started.pid
    }

    /// Exec then Start of `req`'s process; returns its pid.
    pub async fn exec_and_start(&self, req: &ExecProcessRequest) -> u32 {
        self.task.exec(ctx(), req).await.expect("Exec");
        self.task
            .start(
                ctx(),
                &StartRequest {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("Start")
            .pid
    }

    pub fn exec_request(
        id: &str,
        exec_id: &str,
        args: &[&str],
        terminal: bool,
        stdio: [&Path; 3],
    ) -> ExecProcessRequest {
        let spec = serde_json::json!({
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true,
        });
        let path = |p: &Path| p.display().to_string();
        ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            terminal,
            stdin: path(stdio[0]),
            stdout: path(stdio[1]),
            stderr: path(stdio[2]),
            spec: MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(&spec).expect("json"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn wait(&self, id: &str, exec_id: &str) -> u32 {
        self.task
            .wait(
                ctx(),
                &WaitRequest {
                    id: id.into(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("Wait")
            .exit_status
    }

    pub async fn delete_exec(&self, id: &str, exec_id: &str) {
        self.task
            .delete(
                ctx(),
                &DeleteRequest {
                    id: id.into(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("Delete exec");
    }

    /// Deletes every container, shuts the shim down and checks it is gone.
    pub async fn teardown(mut self) {
        for id in std::mem::take(&mut self.containers) {
            self.task
                .delete(
                    ctx(),
                    &DeleteRequest {
                        id: id.clone(),
                        ..Default::default()
                    },
                )
                .await
                .expect("Delete task");
        }
        let _ = self.task.shutdown(ctx(), &ShutdownRequest::new()).await;
        let deadline = Instant::now() + TIMEOUT;
        while process_alive(self.pid) {
            assert!(Instant::now() < deadline, "shim {} did not exit", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "containers left"
        );
        self.pid = 0;
    }
}

impl Drop for Shim {
    /// Safety net for a failed test: force-delete containers and kill the shim.
    fn drop(&mut self) {
        for id in &self.containers {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force", id])
                .output();
        }
        if self.pid != 0 && process_alive(self.pid) {
            // SAFETY: plain syscall.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

/// True if the pid exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Pids whose parent is `ppid`, with their command names.
pub fn children_of(ppid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head
            .split_once('(')
            .map(|(_, c)| c.to_string())
            .unwrap_or_default();
        let parent = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(ppid) {
            out.push((pid, comm));
        }
    }
    out
}

pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

/// Reads a FIFO to EOF in a thread. The read end is opened now (non-blocking, so the shim's
/// writer can open), and read only when poll reports data or a writer's hang-up.
pub fn read_fifo(path: &Path) -> JoinHandle<Vec<u8>> {
    read_fifo_paced(path, Duration::ZERO)
}

/// [`read_fifo`] by a slow reader: `pause` after every read of at most 8 KiB.
pub fn read_fifo_paced(path: &Path, pause: Duration) -> JoinHandle<Vec<u8>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open fifo");
    std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            assert!(Instant::now() < deadline, "fifo read timed out");
            let mut pfd = libc::pollfd {
                fd: file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 200) };
            if n <= 0 {
                continue;
            }
            // SAFETY: buf is valid for its length.
            let r = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match r {
                0 => return out,
                n if n > 0 => {
                    out.extend_from_slice(&buf[..n as usize]);
                    std::thread::sleep(pause);
                }
                _ => {
                    let e = std::io::Error::last_os_error();
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "read fifo: {e}");
                }
            }
        }
    })
}

/// Opens a FIFO's write end once the shim has opened its read end (bounded wait).
pub fn open_fifo_writer(path: &Path) -> fs::File {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// The (code, message) of a ttrpc status error.
pub fn status_of(err: ttrpc::Error) -> (ttrpc::Code, String) {
    match err {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a status: {other:?}"),
    }
}
