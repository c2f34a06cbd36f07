//! The `execlab` command line: `up`, `down`, `status` (a contract: scripts and lab guides
//! depend on these names, flags and exit codes).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::error::{log_tail, LabError};
use crate::kubeconfig::{CONTEXT_JANE, CONTEXT_VIEWER};
use crate::lab::{down, ensure_not_running, Lab, LabConfig, LabRuntime};
use crate::layout::LabLayout;
use crate::progress::ProgressMode;
use crate::record::LabRecord;
use crate::status::lab_status;

/// Where scripts/setup.sh puts kubectl 1.20 (SPDY only), aside from the system's kubectl.
pub const KUBECTL_120: &str = "/opt/execlab/kubectl-1.20/usr/bin/kubectl";

#[derive(Debug, Parser)]
#[command(
    name = "execlab",
    version,
    about = "The kubectl exec streaming chain, hop by hop: apiserver-proxy → kubelet-stream → cri-streaming → shim-exec → runc"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Make the PKI, rootfs and manifests, start every hop, wait until all are healthy and the
    /// pod runs, then write DIR/kubeconfig. Stays in the foreground until Ctrl-C, SIGTERM or
    /// SIGHUP, then stops everything, removes what it made and exits 0.
    Up(UpArgs),
    /// Stop the lab in DIR (from any shell) and remove what it made.
    Down(DirArg),
    /// Show each hop of the lab in DIR: pid, address, health. Exit 0 when the lab is ready and
    /// every hop healthy, 1 when not, 3 when there is no lab in DIR.
    Status(DirArg),
    /// Measure each hop's cost: setup latency, throughput, tty round trip and idle sessions on
    /// every path from raw runc exec up to the whole chain; writes OUT/bench.json and SVG plots.
    Bench(crate::bench::cli::BenchArgs),
    /// Reproduce a production failure of kubectl exec in a lab of its own and say whether
    /// kubectl printed what production printed (exit 0) or not (exit 1); --list lists them.
    Fault(crate::fault::cli::FaultArgs),
    /// Show one exec (the last, or --session) across every hop as a timeline: a table, a
    /// Mermaid sequence diagram and an SVG, from the lab's logs.
    Trace(crate::trace::cli::TraceArgs),
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The lab directory.
    #[arg(long, env = "EXECLAB_DIR", default_value = "lab")]
    pub dir: PathBuf,
}

/// `--runtime`, shared by `up` and `fault`.
#[derive(Debug, Clone, Copy, Args)]
pub struct RuntimeArg {
    /// The runtime under kubelet-stream: execlab's cri-streaming + shim-exec, or a private
    /// Debian containerd in the lab dir, with its own runc shim or with shim-exec.
    /// `execlab fault`: the runtimes `--list` names for the fault.
    #[arg(long, value_enum, default_value_t = LabRuntime::Execlab)]
    pub runtime: LabRuntime,
}

impl RuntimeArg {
    /// The flag as it is written on a command line (`--runtime NAME`).
    pub fn to_args(self) -> [String; 2] {
        ["--runtime".into(), self.runtime.name()]
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// kubelet-stream answers exec with a 302 to the runtime's streaming server instead of
    /// proxying it.
    #[arg(long)]
    pub redirect_container_streaming: bool,
    /// Return once the lab is ready; it keeps running until `execlab down --dir DIR`.
    #[arg(long)]
    pub detach: bool,
    /// Give up if the lab is not ready after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    #[command(flatten)]
    pub runtime: RuntimeArg,
    /// Every hop (and the shims) exports its exec_session spans to this OTLP/HTTP collector
    /// (`--otlp-endpoint`; JSON, `POST URL/v1/traces`).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// cri-streaming SIGKILLs an exec's process when its client goes away
    /// (`--kill-exec-on-disconnect`). Default: the process runs to its end, as under
    /// containerd 1.6 (`--runtime execlab` only).
    #[arg(long)]
    pub kill_exec_on_disconnect: bool,
}

/// Runs the command; the exit code to return.
pub fn run(cli: Cli) -> Result<ExitCode, LabError> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(LabError::Runtime)
    };
    match cli.command {
        LabCommand::Up(args) if args.detach => up_detached(&args),
        LabCommand::Up(args) => runtime()?.block_on(up_foreground(&args)),
        LabCommand::Down(args) => down_command(&args.dir),
        LabCommand::Status(args) => runtime()?.block_on(status_command(&args.dir)),
        LabCommand::Bench(args) => {
            bench_runtime()?.block_on(crate::bench::cli::bench_command(&args))
        }
        LabCommand::Fault(args) => crate::fault::cli::fault_command(&args),
        LabCommand::Trace(args) => crate::trace::cli::trace_command(&args),
    }
}

/// The bench's own: its client is the measuring instrument, and on one thread its tasks hand
/// data to each other without waking a second thread each time (a fifth of its CPU per GiB
/// moved, which the hops it measures would otherwise not get on a small machine).
fn bench_runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LabError::Runtime)
}

fn lab_config(args: &UpArgs, progress: ProgressMode) -> LabConfig {
    let mut config = LabConfig::new(&args.dir.dir);
    config.redirect_container_streaming = args.redirect_container_streaming;
    config.runtime = args.runtime.runtime;
    config.ready_timeout = Duration::from_secs(args.timeout);
    config.progress = progress;
    if let Some(url) = &args.otlp_endpoint {
        for hop in crate::Hop::STARTED {
            config
                .hop_flags
                .push(crate::lab::HopFlag::new(hop, "--otlp-endpoint", url));
        }
    }
    if args.kill_exec_on_disconnect {
        config.hop_flags.push(crate::lab::HopFlag::new(
            crate::Hop::CriStreaming,
            "--kill-exec-on-disconnect",
            "true",
        ));
    }
    config
}

/// The signals that stop a foreground command: Ctrl-C, SIGTERM, and SIGHUP (a closed terminal
/// must not leave the hops running: they have their own process groups).
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    pub fn new() -> Result<Self, LabError> {
        let listen = |kind| signal(kind).map_err(LabError::Signals);
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// The next of them.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

async fn up_foreground(args: &UpArgs) -> Result<ExitCode, LabError> {
    let mut signals = StopSignals::new()?;
    let config = lab_config(args, ProgressMode::Stderr);
    eprintln!(
        "execlab: starting a lab in {}",
        LabLayout::new(&config.dir)?.root().display()
    );
    // A signal while starting drops the start future, and with it the half-started lab, which
    // stops what it started.
    let mut lab = tokio::select! {
        lab = Lab::start(config) => lab?,
        () = signals.recv() => return Ok(interrupted_while_starting()),
    };
    println!("{}", ready_message(&lab, false));
    let mut reported = std::collections::BTreeSet::new();
    let mut orphaned = false;
    loop {
        tokio::select! {
            () = signals.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if !lab.still_owns_dir() {
                    eprintln!(
                        "execlab: {} no longer names this lab (was {} removed?); stopping the lab",
                        lab.layout().lab_record().display(),
                        lab.dir().display()
                    );
                    orphaned = true;
                    break;
                }
                for exit in lab.exited() {
                    let (who, text) = describe_exit(&exit);
                    if reported.insert(who) {
                        eprintln!("execlab: {text}\nexeclab: the lab keeps running without it; Ctrl-C stops everything");
                    }
                }
            }
        }
    }
    eprintln!("execlab: stopping the lab");
    let dir = lab.dir().to_path_buf();
    let report = lab.stop()?;
    for (hop, ending) in &report.hops {
        tracing::info!(%hop, ?ending, "stopped");
    }
    if orphaned {
        eprintln!("execlab: stopped; nothing left behind");
    } else {
        eprintln!(
            "execlab: stopped; nothing left behind in {} (logs kept in {})",
            dir.display(),
            dir.join("logs").display()
        );
    }
    // Not stopped on request: a script waiting on `up` learns that the lab went away.
    Ok(if orphaned {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Who exited (each is reported once) and what to say: a hop that was ready exited while the
/// lab ran, not "before it was ready" as the start-up error says.
fn describe_exit(exit: &LabError) -> (String, String) {
    match exit {
        LabError::HopExited {
            hop,
            status,
            log,
            tail,
        } => (
            hop.to_string(),
            format!(
                "{hop} exited ({status}) while the lab was running; its log {}:\n{tail}",
                log.display()
            ),
        ),
        // containerd's exit: reported once by its own text.
        other => (other.to_string(), other.to_string()),
    }
}

fn interrupted_while_starting() -> ExitCode {
    eprintln!("execlab: interrupted while starting; stopped what was started");
    ExitCode::SUCCESS
}

/// Starts `execlab up` as a detached supervisor (own session, output into DIR/logs/execlab.log)
/// and returns once its kubeconfig appears.
fn up_detached(args: &UpArgs) -> Result<ExitCode, LabError> {
    let layout = ensure_not_running(&args.dir.dir)?;
    let started = Instant::now();
    std::fs::create_dir_all(layout.logs_dir()).map_err(|e| LabError::io(layout.logs_dir(), e))?;
    let _ = std::fs::remove_file(layout.kubeconfig());
    let log_path = layout.supervisor_log();
    let log = std::fs::File::create(&log_path).map_err(|e| LabError::io(&log_path, e))?;
    let log_err = log.try_clone().map_err(|e| LabError::io(&log_path, e))?;
    let exe = std::env::current_exe().map_err(|e| LabError::io("current executable", e))?;
    let mut command = Command::new(exe);
    command
        .arg("up")
        .arg("--dir")
        .arg(layout.root())
        .arg("--timeout")
        .arg(args.timeout.to_string());
    if args.redirect_container_streaming {
        command.arg("--redirect-container-streaming");
    }
    if let Some(url) = &args.otlp_endpoint {
        command.arg("--otlp-endpoint").arg(url);
    }
    if args.kill_exec_on_disconnect {
        command.arg("--kill-exec-on-disconnect");
    }
    command.args(args.runtime.to_args());
    command.stdin(Stdio::null()).stdout(log).stderr(log_err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(|e| LabError::io("execlab up", e))?;
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!(
            "starting the lab in {} (detached)",
            layout.root().display()
        ));
        bar.enable_steady_tick(Duration::from_millis(80));
        bar
    });
    let limit = Duration::from_secs(args.timeout + 15);
    let result = loop {
        if layout.kubeconfig().exists() {
            break Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(LabError::SupervisorExited {
                status: status.to_string(),
                log: log_path.clone(),
                tail: log_tail(&log_path, 30),
            });
        }
        if started.elapsed() > limit {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            break Err(LabError::NotReady {
                what: "the detached lab".into(),
                waited: started.elapsed(),
                last: log_tail(&log_path, 5),
                log: log_path.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    result?;
    let record = LabRecord::read(&layout.lab_record())?;
    let ready_ms = record.as_ref().and_then(|r| r.ready_ms).unwrap_or_default();
    println!(
        "{}",
        ready_text(
            layout.root(),
            Duration::from_millis(ready_ms),
            child.id(),
            true
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn down_command(dir: &Path) -> Result<ExitCode, LabError> {
    let report = down(dir, "runc")?;
    let layout = LabLayout::new(dir)?;
    if !report.found {
        println!("execlab: no lab record in {}", layout.root().display());
    }
    if let Some(ending) = &report.supervisor {
        println!("execlab: lab supervisor {ending}");
    }
    for (hop, ending) in &report.hops {
        println!("execlab: {hop} outlived its supervisor: {ending}");
    }
    let sweep = &report.sweep;
    for id in &sweep.runc_containers_deleted {
        println!("execlab: deleted leftover runc container {id}");
    }
    for process in &sweep.processes_killed {
        println!("execlab: killed leftover process {process}");
    }
    for mount in &sweep.unmounted {
        println!("execlab: unmounted {}", mount.display());
    }
    if report.leftovers.is_empty() {
        println!("execlab: lab in {} is down", layout.root().display());
        Ok(ExitCode::SUCCESS)
    } else {
        Err(LabError::Leftovers {
            dir: layout.root().to_path_buf(),
            leftovers: report.leftovers,
        })
    }
}

async fn status_command(dir: &Path) -> Result<ExitCode, LabError> {
    let layout = LabLayout::new(dir)?;
    match lab_status(&layout).await? {
        None => {
            println!("execlab: no lab in {}", layout.root().display());
            Ok(ExitCode::from(3))
        }
        Some(status) => {
            print!("{status}");
            Ok(if status.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn ready_message(lab: &Lab, detached: bool) -> String {
    ready_text(lab.dir(), lab.ready_in(), std::process::id(), detached)
}

/// What to do with a ready lab.
fn ready_text(dir: &Path, ready_in: Duration, supervisor: u32, detached: bool) -> String {
    let kubeconfig = dir.join("kubeconfig");
    let stop = if detached {
        format!("execlab down --dir {}", dir.display())
    } else {
        format!("Ctrl-C here, or execlab down --dir {}", dir.display())
    };
    let mut text = format!(
        "execlab: lab ready in {:.2} s (execlab pid {supervisor})\n\n  export KUBECONFIG={}\n  kubectl exec -it web -c app -- sh\n\n",
        ready_in.as_secs_f64(),
        kubeconfig.display()
    );
    if Path::new(KUBECTL_120).is_file() {
        text.push_str(&format!(
            "  SPDY-only kubectl 1.20:  {KUBECTL_120} exec -it web -c app -- sh\n"
        ));
    }
    text.push_str(&format!(
        "  force SPDY on 1.32:      KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false kubectl exec web -c app -- date\n  other users:             kubectl --context {CONTEXT_VIEWER} get pods; kubectl --context {CONTEXT_JANE} exec web -- true\n  hop logs:                {}/<hop>.log\n  status:                  execlab status --dir {}\n  stop:                    {stop}",
        dir.join("logs").display(),
        dir.display()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn a_hop_that_exits_while_the_lab_runs_is_not_said_to_have_died_starting() {
        let exit = LabError::HopExited {
            hop: crate::Hop::KubeletStream,
            status: "exit code 0".into(),
            log: PathBuf::from("/lab/logs/kubelet-stream.log"),
            tail: "last line".into(),
        };
        let (who, text) = describe_exit(&exit);
        assert_eq!(who, "kubelet-stream");
        assert_eq!(
            text,
            "kubelet-stream exited (exit code 0) while the lab was running; its log /lab/logs/kubelet-stream.log:\nlast line"
        );
    }

    /// `up --detach` and `fault` (in its namespace) pass `--runtime` on by `to_args`: each
    /// runtime must come back the same from both commands' parsers.
    #[test]
    fn runtime_args_round_trip_through_up_and_fault() {
        for &runtime in LabRuntime::value_variants() {
            let flag = RuntimeArg { runtime }.to_args();
            let up =
                Cli::try_parse_from(["execlab", "up", flag[0].as_str(), flag[1].as_str()]).unwrap();
            let LabCommand::Up(up) = up.command else {
                panic!("not up")
            };
            assert_eq!(up.runtime.runtime, runtime);
            let fault = Cli::try_parse_from([
                "execlab",
                "fault",
                "enospc",
                flag[0].as_str(),
                flag[1].as_str(),
            ])
            .unwrap();
            let LabCommand::Fault(fault) = fault.command else {
                panic!("not fault")
            };
            assert_eq!(fault.runtime.runtime, runtime);
        }
    }
}
