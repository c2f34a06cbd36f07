//! The shim v2 binary contract (containerd `pkg/shim/shim.go` `run`, and
//! `cmd/containerd-shim-runc-v2/manager/manager_linux.go` `Start`/`Stop`):
//!
//! * `start`: if a shim already listens on the socket for `<namespace>/<id>`, print its address;
//!   otherwise bind the socket, re-execute this binary without an action word as the daemon
//!   (new session, stdin/stdout on /dev/null, stderr appended to the log file, the listener as
//!   fd 3), wait until it answers a ttrpc `Connect`, print `unix://<socket>` and exit 0.
//! * `delete`: `runc delete --force <id>`, unmount `<bundle>/rootfs`, remove the bundle's pid files, remove the socket
//!   (and the metrics address file) if no shim answers on it, print a `DeleteResponse` (exit
//!   status 128+SIGKILL, as containerd's runc shim reports it) in protobuf on stdout.
//! * no action: serve on fd 3 (see [`crate::server`]).
//!
//! Log file: `$EXECLAB_SHIM_LOG`, else `shim.log` in the bundle (the working directory).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::api::{ConnectRequest, DeleteResponse};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::TaskClient;

use crate::cli::ShimArgs;
use crate::config::{socket_address, ShimConfig};
use crate::runc::Runc;

/// The descriptor the daemon finds its listening socket on.
pub const LISTENER_FD: i32 = 3;
const READY_WAIT: Duration = Duration::from_secs(10);
const BIND_ATTEMPTS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum ShimBinaryError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim daemon did not come up within {READY_WAIT:?} (see {log})")]
    NotReady { log: String },
    #[error("socket {0} is in use by something that is not a shim")]
    SocketBusy(PathBuf),
    #[error("fd {LISTENER_FD} is not a listening unix socket: {0}")]
    NoListener(#[source] io::Error),
    #[error("encode response: {0}")]
    Encode(String),
    #[error("runtime: {0}")]
    Runtime(#[source] io::Error),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ShimBinaryError + 'a {
    move |source| ShimBinaryError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The bundle directory: `-bundle`, else the working directory.
pub fn bundle_dir(args: &ShimArgs) -> PathBuf {
    args.bundle
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the daemon's log goes.
pub fn log_path(args: &ShimArgs) -> PathBuf {
    std::env::var_os("EXECLAB_SHIM_LOG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| bundle_dir(args).join("shim.log"))
}

/// `start`: returns the address to print.
pub fn start(args: &ShimArgs, config: &ShimConfig) -> Result<String, ShimBinaryError> {
    let socket = config.socket_path(&args.namespace, &args.id);
    let address = socket_address(&socket);
    fs::create_dir_all(&config.socket_dir).map_err(io_err("mkdir", &config.socket_dir))?;
    for _ in 0..BIND_ATTEMPTS {
        match UnixStream::connect(&socket) {
            // Someone listens: an existing (or just starting) shim for this id.
            Ok(_) => return Ok(address),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // A dead shim's socket file.
                let _ = fs::remove_file(&socket);
            }
            Err(_) => {}
        }
        match UnixListener::bind(&socket) {
            Ok(listener) => {
                spawn_daemon(args, &listener)?;
                drop(listener);
                wait_ready(&socket, &log_path(args))?;
                return Ok(address);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io_err("listen", &socket)(e)),
        }
    }
    Err(ShimBinaryError::SocketBusy(socket))
}

fn spawn_daemon(args: &ShimArgs, listener: &UnixListener) -> Result<(), ShimBinaryError> {
    let exe = std::env::current_exe().map_err(io_err("locate", Path::new("/proc/self/exe")))?;
    let log = log_path(args);
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io_err("open", &log))?;
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(&exe);
    cmd.args(args.serve_args())
        .current_dir(bundle_dir(args))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    // SAFETY: the closure only makes async-signal-safe syscalls (setsid, dup2, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if fd == LISTENER_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTENER_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io_err("spawn", &exe))?;
    tracing::debug!(pid = child.id(), "shim daemon spawned");
    Ok(())
}

fn wait_ready(socket: &Path, log: &Path) -> Result<(), ShimBinaryError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ShimBinaryError::Runtime)?;
    let address = socket_address(socket);
    let deadline = Instant::now() + READY_WAIT;
    rt.block_on(async {
        while Instant::now() < deadline {
            if let Ok(client) = ttrpc::r#async::Client::connect(&address).await {
                let task = TaskClient::new(client);
                let ctx = ttrpc::context::with_timeout(Duration::from_secs(2).as_nanos() as i64);
                if task.connect(ctx, &ConnectRequest::new()).await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(ShimBinaryError::NotReady {
            log: log.display().to_string(),
        })
    })
}

/// `delete`: returns the encoded `DeleteResponse` to print.
pub fn delete(args: &ShimArgs, config: &ShimConfig) -> Result<Vec<u8>, ShimBinaryError> {
    let bundle = bundle_dir(args);
    let runc = Runc {
        binary: config.runc_binary.clone(),
        root: config.runc_root.clone(),
    };
    let log = bundle.join("log.json");
    match runc
        .command(runc.delete_args(&args.id, true, &log))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if !s.success() => tracing::warn!(id = args.id, %s, "runc delete"),
        Ok(_) => {}
        Err(e) => tracing::warn!(id = args.id, error = %e, "runc delete"),
    }
    // containerd's rootfs mounts stay behind when the daemon died; they come off here.
    if let Err(e) = crate::rootfs::unmount_rootfs(&bundle) {
        tracing::warn!(id = args.id, "{e}");
    }
    let pid = fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if let Ok(entries) = fs::read_dir(&bundle) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".pid") || name.ends_with(".exec-log.json") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    let socket = config.socket_path(&args.namespace, &args.id);
    let shim_gone = matches!(
        UnixStream::connect(&socket),
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound)
    );
    if shim_gone {
        let _ = fs::remove_file(&socket);
        // A killed daemon could not remove its metrics address file; nothing serves there.
        if let Some(dir) = std::env::var_os(METRICS_DIR_ENV).filter(|d| !d.is_empty()) {
            let _ = fs::remove_file(metrics_addr_file(Path::new(&dir), &args.id));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let response = DeleteResponse {
        pid,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanos: now.subsec_nanos() as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    response
        .write_to_bytes()
        .map_err(|e| ShimBinaryError::Encode(e.to_string()))
}

/// The daemon: serve on the listener inherited as fd 3.
pub fn serve(args: &ShimArgs, config: ShimConfig) -> Result<(), ShimBinaryError> {
    // SAFETY: fd 3 was set up by `start` for us; we check it is a socket before trusting it.
    let listener = unsafe { UnixListener::from_raw_fd(LISTENER_FD) };
    listener.local_addr().map_err(ShimBinaryError::NoListener)?;
    let socket = config.socket_path(&args.namespace, &args.id);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ShimBinaryError::Runtime)?;
    let metrics_file = std::env::var_os(METRICS_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(|dir| metrics_addr_file(Path::new(&dir), &args.id));
    if let Some(file) = &metrics_file {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        if let Err(e) = rt.block_on(hop_kit::metrics::start_server(
            listen,
            Some(file),
            "shim-exec",
        )) {
            tracing::warn!(error = %e, "no metrics server");
        }
    }
    let served = rt
        .block_on(crate::server::serve(listener, Some(socket), config))
        .map_err(|e| ShimBinaryError::Runtime(io::Error::other(e.to_string())));
    if let Some(file) = &metrics_file {
        let _ = fs::remove_file(file);
    }
    served
}

/// `EXECLAB_SHIM_METRICS_DIR`: when set, the daemon serves Prometheus metrics on an OS-chosen
/// loopback port and writes the address to [`metrics_addr_file`] in that directory (one shim
/// per pod sandbox, so one file per shim id; removed when the shim exits).
pub const METRICS_DIR_ENV: &str = "EXECLAB_SHIM_METRICS_DIR";

/// `DIR/shim-exec.<id>.metrics`.
pub fn metrics_addr_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("shim-exec.{id}.metrics"))
}
