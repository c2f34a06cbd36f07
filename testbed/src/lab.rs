//! A running lab: the PKI, rootfs, manifests and policy made, the hops started in order and
//! healthy, the pod running, the kubeconfig written. [`Lab::stop`] (or dropping the lab) stops
//! every hop and sweeps what is left.
//!
//! Starting is cancel-safe: the lab under construction owns every process it started, so an
//! error or a dropped `start` future stops and sweeps them.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bins::locate_bin_dir;
use crate::containerd::{Containerd, ContainerdOptions};
use crate::error::{log_tail, LabError};
use crate::hop::{binary_path, Hop, HopArgs};
use crate::kubeconfig::Kubeconfig;
use crate::layout::LabLayout;
use crate::manifests::StaticPod;
use crate::pki::LabPki;
use crate::policy::AuthorizationPolicy;
use crate::probe::{self, TlsClient};
use crate::procfs;
use crate::progress::{Progress, ProgressMode};
use crate::record::{HopRecord, LabRecord};
use crate::supervise::{read_addr_file, Ending, HopProcess};
use crate::sweep::{self, SweepReport};

/// How long each hop gets to exit after SIGTERM. cri-streaming stops sandboxes and shims
/// first, so it gets longer.
const GRACE_API: Duration = Duration::from_secs(3);
const GRACE_RUNTIME: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(15);

/// The container runtime under kubelet-stream (`execlab up --runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LabRuntime {
    /// cri-streaming + shim-exec, execlab's own.
    #[default]
    Execlab,
    /// Debian's containerd (a private instance in the lab dir) in place of cri-streaming +
    /// shim-exec.
    Containerd,
    /// containerd driving shim-exec (as `containerd-shim-execlab-v2`, the default runtime
    /// handler) in place of its runc shim (containerd 1.6 calls the task API by its v2 name,
    /// which shim-exec serves besides v3).
    ContainerdShimExec,
}

impl LabRuntime {
    /// The `--runtime` value naming this runtime (clap's name for it: one spelling).
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// What lab to start.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub dir: PathBuf,
    /// The runtime kubelet-stream drives.
    pub runtime: LabRuntime,
    /// kubelet-stream `--redirect-container-streaming`.
    pub redirect_container_streaming: bool,
    pub node_name: String,
    /// Where the hop binaries are; found next to the running executable when `None`.
    pub bin_dir: Option<PathBuf>,
    /// The static pod the kubelet runs.
    pub pod: StaticPod,
    /// kubelet-stream `--allow-exec` (users or groups).
    pub kubelet_allow_exec: Vec<String>,
    /// kubelet-stream `--client-ca`; the cluster CA when `None`.
    pub kubelet_client_ca: Option<PathBuf>,
    /// Extra environment for every hop (and so for the shims).
    pub hop_env: Vec<(String, String)>,
    /// The static busybox the rootfs is made from.
    pub busybox: PathBuf,
    /// runc binary, for the sweep.
    pub runc: String,
    /// Wait for the pod to be Running before declaring the lab ready.
    pub wait_for_pod: bool,
    /// Give up starting after this long.
    pub ready_timeout: Duration,
    pub progress: ProgressMode,
    /// Flags put on a hop's command line after the lab's own, each replacing the first flag of
    /// the same name: a fault lab moves a listener (`--stream-addr`) or pins one (`--listen`).
    pub hop_flags: Vec<HopFlag>,
}

/// One flag of [`LabConfig::hop_flags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopFlag {
    pub hop: Hop,
    /// `--listen`, `--stream-addr`, ...
    pub name: String,
    pub value: String,
}

impl HopFlag {
    pub fn new(hop: Hop, name: &str, value: impl ToString) -> Self {
        Self {
            hop,
            name: name.to_owned(),
            value: value.to_string(),
        }
    }
}

/// `args` with `flags` of `hop` applied: a flag already there gets the new value, others are
/// appended.
fn apply_hop_flags(mut args: Vec<OsString>, hop: Hop, flags: &[HopFlag]) -> Vec<OsString> {
    for flag in flags.iter().filter(|f| f.hop == hop) {
        match args.iter().position(|a| *a == *flag.name) {
            Some(at) if at + 1 < args.len() => args[at + 1] = flag.value.clone().into(),
            _ => {
                args.push(flag.name.clone().into());
                args.push(flag.value.clone().into());
            }
        }
    }
    args
}

impl LabConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            runtime: LabRuntime::Execlab,
            redirect_container_streaming: false,
            node_name: "execlab-node".into(),
            bin_dir: None,
            pod: StaticPod::lab_default(),
            kubelet_allow_exec: vec!["system:masters".into()],
            kubelet_client_ca: None,
            hop_env: Vec::new(),
            busybox: PathBuf::from("/bin/busybox"),
            runc: "runc".into(),
            wait_for_pod: true,
            ready_timeout: Duration::from_secs(30),
            progress: ProgressMode::Quiet,
            hop_flags: Vec::new(),
        }
    }
}

/// What stopping found.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    pub hops: Vec<(Hop, Ending)>,
    pub sweep: SweepReport,
}

/// A running lab.
pub struct Lab {
    config: LabConfig,
    layout: LabLayout,
    bin_dir: PathBuf,
    pki: Option<LabPki>,
    processes: Vec<HopProcess>,
    /// `--runtime containerd`: the private containerd in place of cri-streaming.
    containerd: Option<Containerd>,
    record: LabRecord,
    cri_stream_addr: Option<SocketAddr>,
    kubelet_addr: Option<SocketAddr>,
    apiserver_addr: Option<SocketAddr>,
    ready_in: Duration,
    /// When `start` began: waits report the time since then.
    started: Instant,
    stopped: bool,
}

impl Lab {
    /// Starts a lab and returns once it is ready (the kubeconfig is written).
    pub async fn start(config: LabConfig) -> Result<Self, LabError> {
        let started = Instant::now();
        let deadline = started + config.ready_timeout;
        let layout = LabLayout::new(&config.dir)?;
        refuse_running_lab(&layout)?;
        // Whatever a crashed lab left in this dir goes first.
        let stale = sweep::sweep(&layout, &config.runc);
        if stale.found_anything() {
            tracing::warn!(?stale, "swept what an earlier lab left behind");
        }
        layout.create_dirs()?;
        let bin_dir = match &config.bin_dir {
            Some(dir) => dir.clone(),
            None => locate_bin_dir()?,
        };
        for hop in Hop::CHAIN {
            let path = binary_path(&bin_dir, hop);
            if !path.is_file() {
                return Err(LabError::BinaryNotFound {
                    binary: hop.binary().into(),
                    searched: bin_dir.display().to_string(),
                });
            }
        }
        let progress = Progress::new(config.progress);
        let record = LabRecord {
            dir: layout.root().to_path_buf(),
            supervisor_pid: std::process::id(),
            supervisor_start_time: procfs::start_time(std::process::id()),
            node_name: config.node_name.clone(),
            redirect_container_streaming: config.redirect_container_streaming,
            hops: Vec::new(),
            ready_ms: None,
        };
        record.write(&layout.lab_record())?;
        let mut lab = Lab {
            config,
            layout,
            bin_dir,
            pki: None,
            processes: Vec::new(),
            containerd: None,
            record,
            cri_stream_addr: None,
            kubelet_addr: None,
            apiserver_addr: None,
            ready_in: Duration::ZERO,
            started,
            stopped: false,
        };

        let stage = progress.stage("pki", "making the CA and certificates");
        let pki = LabPki::generate(&lab.layout.pki_dir(), &lab.config.node_name)?;
        stage.done(&lab.layout.pki_dir().display().to_string());
        lab.pki = Some(pki.clone());

        let stage = progress.stage("rootfs", "busybox rootfs, manifests, policy");
        lab.prepare_files()?;
        stage.done(&lab.layout.rootfs().display().to_string());

        if lab.config.runtime != LabRuntime::Execlab {
            let stage = progress.stage("containerd", "starting a private containerd");
            match lab.start_containerd(deadline).await {
                Ok(detail) => {
                    stage.done(&detail);
                }
                Err(e) => {
                    stage.failed(&e.to_string());
                    return Err(e);
                }
            }
        }

        for hop in Hop::STARTED {
            if hop == Hop::CriStreaming && lab.containerd.is_some() {
                continue;
            }
            let stage = progress.stage(hop.name(), "starting");
            match lab.start_hop(hop, &pki, deadline).await {
                Ok(detail) => {
                    stage.done(&detail);
                }
                Err(e) => {
                    stage.failed(&e.to_string());
                    return Err(e);
                }
            }
        }
        if lab.config.wait_for_pod {
            let stage = progress.stage("pod", "waiting for the pod to run");
            match lab.wait_pod_running(&pki, deadline).await {
                Ok(()) => {
                    let shims = sweep::shim_pids(&lab.layout);
                    let pod = &lab.config.pod;
                    let runtime = match &lab.containerd {
                        Some(_) => "under containerd".to_string(),
                        None => format!("shim-exec pid {shims:?}"),
                    };
                    stage.done(&format!(
                        "{}/{} Running; {runtime}",
                        pod.namespace, pod.name
                    ));
                }
                Err(e) => {
                    stage.failed(&e.to_string());
                    return Err(e);
                }
            }
        }

        // The record is complete before the kubeconfig appears: whoever sees the kubeconfig
        // (`up --detach`, `status`) reads a record with the ready time.
        let server = format!("https://{}", lab.apiserver_addr()?);
        lab.ready_in = started.elapsed();
        lab.record.ready_ms = Some(lab.ready_in.as_millis() as u64);
        lab.record.write(&lab.layout.lab_record())?;
        Kubeconfig { server, pki }.write(&lab.layout.kubeconfig())?;
        Ok(lab)
    }

    /// [`Lab::start`] for callers without a tokio runtime.
    pub fn start_blocking(config: LabConfig) -> Result<Self, LabError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LabError::Runtime)?
            .block_on(Self::start(config))
    }

    /// Starts containerd and points kubelet-stream's `--runtime-endpoint` at it.
    async fn start_containerd(&mut self, deadline: Instant) -> Result<String, LabError> {
        let shim = self.config.runtime == LabRuntime::ContainerdShimExec;
        let mut env = self.config.hop_env.clone();
        // Either shim writes each exec's runc-process file (go-runc: os.CreateTemp in
        // $XDG_RUNTIME_DIR, inherited from containerd) into the lab's xdg dir, as shim-exec
        // does under cri-streaming: the enospc fault fills that dir.
        env.push((
            "XDG_RUNTIME_DIR".into(),
            self.layout.xdg_dir().display().to_string(),
        ));
        if shim {
            // shim-exec's sockets and runc state stay in the lab.
            for (name, value) in [
                ("EXECLAB_SHIM_SOCKET_DIR", self.layout.run_dir()),
                ("EXECLAB_RUNC_ROOT", self.layout.runc_root()),
            ] {
                env.push((name.into(), value.display().to_string()));
            }
        }
        let options = ContainerdOptions {
            busybox: self.config.busybox.clone(),
            env,
            execlab_shim: shim.then(|| binary_path(&self.bin_dir, Hop::ShimExec)),
        };
        let containerd = Containerd::start(&self.layout, &options, deadline).await?;
        let endpoint = containerd.paths().endpoint();
        let detail = format!(
            "pid {}  {endpoint}  ({})",
            containerd.pid(),
            containerd.version()
        );
        self.config
            .hop_flags
            .retain(|f| !(f.hop == Hop::KubeletStream && f.name == "--runtime-endpoint"));
        self.config.hop_flags.push(HopFlag::new(
            Hop::KubeletStream,
            "--runtime-endpoint",
            endpoint,
        ));
        self.containerd = Some(containerd);
        Ok(detail)
    }

    /// The lab's private containerd (`--runtime containerd`).
    pub fn containerd(&self) -> Option<&Containerd> {
        self.containerd.as_ref()
    }

    fn prepare_files(&self) -> Result<(), LabError> {
        let rootfs = self.layout.rootfs();
        oci_bundle::prepare_busybox_rootfs(&rootfs, &self.config.busybox).map_err(|e| {
            LabError::Rootfs {
                rootfs: rootfs.clone(),
                message: e.to_string(),
            }
        })?;
        self.config.pod.write(&self.layout.manifests_dir())?;
        AuthorizationPolicy::lab_default().write(&self.layout.policy_file())
    }

    /// Starts `hop`, waits for its address file and its health check; returns a detail line.
    async fn start_hop(
        &mut self,
        hop: Hop,
        pki: &LabPki,
        deadline: Instant,
    ) -> Result<String, LabError> {
        let client_ca = self
            .config
            .kubelet_client_ca
            .clone()
            .unwrap_or_else(|| pki.paths.ca.cert.clone());
        let args = HopArgs {
            layout: &self.layout,
            pki: &pki.paths,
            bin_dir: &self.bin_dir,
            node_name: &self.config.node_name,
            redirect_container_streaming: self.config.redirect_container_streaming,
            kubelet_allow_exec: &self.config.kubelet_allow_exec,
            kubelet_client_ca: &client_ca,
            kubelet_addr: self.kubelet_addr,
        }
        .args(hop);
        let args = apply_hop_flags(args, hop, &self.config.hop_flags);
        let log = self.layout.log_file(hop);
        let process = HopProcess::spawn(
            hop,
            &binary_path(&self.bin_dir, hop),
            &args,
            &log,
            self.layout.root(),
            &self.config.hop_env,
        )?;
        let pid = process.pid();
        self.processes.push(process);
        self.record.hops.push(HopRecord {
            hop,
            pid,
            address: None,
            stream_address: None,
            log,
        });
        self.record.write(&self.layout.lab_record())?;

        let addr_file = self.layout.addr_file(hop);
        let addr = self
            .wait_for(hop, "its --addr-file", deadline, || async {
                match read_addr_file(&addr_file) {
                    Ok(Some(addr)) => Ok(addr),
                    Ok(None) => Err(format!("{} not written yet", addr_file.display())),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await?;

        let detail = match hop {
            Hop::CriStreaming => {
                self.cri_stream_addr = Some(addr);
                let socket = self.layout.cri_socket();
                let version = self
                    .wait_for(hop, "CRI Version", deadline, || async {
                        probe::cri_version(&socket).await.map_err(|e| e.to_string())
                    })
                    .await?;
                self.set_address(hop, self.layout.cri_endpoint(), Some(addr))?;
                format!(
                    "pid {pid}  {}  streaming {addr}  ({version})",
                    self.layout.cri_endpoint()
                )
            }
            Hop::KubeletStream | Hop::ApiserverProxy => {
                let identity = (hop == Hop::ApiserverProxy).then_some(&pki.paths.admin);
                let client = TlsClient::new(&pki.paths.ca.cert, identity)
                    .map_err(|e| self.not_ready(hop, "a TLS client", Duration::ZERO, e))?;
                let target = addr.to_string();
                self.wait_for(hop, "GET /healthz", deadline, || async {
                    client.healthz(&target).await.map_err(|e| e.to_string())
                })
                .await?;
                if hop == Hop::KubeletStream {
                    self.kubelet_addr = Some(addr);
                } else {
                    self.apiserver_addr = Some(addr);
                }
                let url = format!("https://{addr}");
                self.set_address(hop, url.clone(), None)?;
                format!("pid {pid}  {url}")
            }
            Hop::ShimExec => String::new(),
        };
        Ok(detail)
    }

    async fn wait_pod_running(&mut self, pki: &LabPki, deadline: Instant) -> Result<(), LabError> {
        let client = TlsClient::new(&pki.paths.ca.cert, Some(&pki.paths.admin))
            .map_err(|e| self.not_ready(Hop::ApiserverProxy, "a TLS client", Duration::ZERO, e))?;
        let addr = self.apiserver_addr()?.to_string();
        let namespace = self.config.pod.namespace.clone();
        let name = self.config.pod.name.clone();
        self.wait_for(
            Hop::KubeletStream,
            "the pod to be Running",
            deadline,
            || async {
                match client.pod_phase(&addr, &namespace, &name).await {
                    Ok(phase) if phase == "Running" => Ok(()),
                    Ok(phase) => Err(format!("pod {namespace}/{name} is {phase}")),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
    }

    /// Polls `check` until it succeeds, every hop is still running, and the deadline holds.
    async fn wait_for<T, F, Fut>(
        &mut self,
        hop: Hop,
        what: &str,
        deadline: Instant,
        mut check: F,
    ) -> Result<T, LabError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        loop {
            for process in &mut self.processes {
                process.check_running()?;
            }
            let last = match check().await {
                Ok(value) => return Ok(value),
                Err(last) => last,
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(hop, what, self.started.elapsed(), last));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn not_ready(&self, hop: Hop, what: &str, waited: Duration, last: impl ToString) -> LabError {
        LabError::NotReady {
            what: format!("{hop} ({what})"),
            waited,
            last: last.to_string(),
            log: self.layout.log_file(hop),
        }
    }

    fn set_address(
        &mut self,
        hop: Hop,
        address: String,
        stream: Option<SocketAddr>,
    ) -> Result<(), LabError> {
        if let Some(entry) = self.record.hops.iter_mut().find(|h| h.hop == hop) {
            entry.address = Some(address);
            entry.stream_address = stream;
        }
        self.record.write(&self.layout.lab_record())
    }

    pub fn layout(&self) -> &LabLayout {
        &self.layout
    }
    pub fn dir(&self) -> &Path {
        self.layout.root()
    }
    /// The kubeconfig (exists once the lab is ready).
    pub fn kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig()
    }
    pub fn pki(&self) -> Option<&LabPki> {
        self.pki.as_ref()
    }
    pub fn record(&self) -> &LabRecord {
        &self.record
    }
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
    /// Time from `start` to ready.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }
    pub fn apiserver_addr(&self) -> Result<SocketAddr, LabError> {
        self.apiserver_addr.ok_or_else(|| LabError::BadFile {
            path: self.layout.addr_file(Hop::ApiserverProxy),
            message: "apiserver-proxy has no address yet".into(),
        })
    }
    pub fn kubelet_addr(&self) -> Option<SocketAddr> {
        self.kubelet_addr
    }
    /// cri-streaming's streaming server.
    pub fn stream_addr(&self) -> Option<SocketAddr> {
        self.cri_stream_addr
    }
    pub fn cri_socket(&self) -> PathBuf {
        self.layout.cri_socket()
    }
    /// The pid of a hop execlab started.
    pub fn pid(&self, hop: Hop) -> Option<u32> {
        self.processes
            .iter()
            .find(|p| p.hop() == hop)
            .map(HopProcess::pid)
    }
    /// The lab's shim processes: shim-exec started by cri-streaming, or the shims of the lab's
    /// containerd.
    pub fn shim_pids(&self) -> Vec<u32> {
        match self.containerd {
            Some(_) => crate::containerd::shim_pids(&self.layout),
            None => sweep::shim_pids(&self.layout),
        }
    }

    /// The configuration the lab runs with; changes apply to hops started from now on
    /// ([`Lab::restart_hop`]).
    pub fn config_mut(&mut self) -> &mut LabConfig {
        &mut self.config
    }

    /// Stops one hop while the rest of the lab runs on: `crash` kills it with SIGKILL (no
    /// clean-up of its own, as a crashed daemon), otherwise SIGTERM and its grace period.
    pub fn stop_hop(&mut self, hop: Hop, crash: bool) -> Option<Ending> {
        let process = self.processes.iter_mut().find(|p| p.hop() == hop)?;
        Some(if crash {
            process.kill()
        } else {
            let grace = if hop == Hop::CriStreaming {
                GRACE_RUNTIME
            } else {
                GRACE_API
            };
            process.stop(grace)
        })
    }

    /// Starts `hop` again after [`Lab::stop_hop`] (stopping it first if it still runs), with the
    /// lab's current configuration and on the address it had, since the other hops know it by
    /// that address; returns once it is healthy.
    pub async fn restart_hop(&mut self, hop: Hop) -> Result<(), LabError> {
        let pki = self.pki.clone().ok_or_else(|| LabError::BadFile {
            path: self.layout.pki_dir(),
            message: "the lab has no PKI yet".into(),
        })?;
        let _ = self.stop_hop(hop, false);
        self.processes.retain(|p| p.hop() != hop);
        self.record.hops.retain(|h| h.hop != hop);
        let pinned = match hop {
            Hop::KubeletStream => self.kubelet_addr.map(|a| ("--listen", a)),
            Hop::ApiserverProxy => self.apiserver_addr.map(|a| ("--listen", a)),
            Hop::CriStreaming => self.cri_stream_addr.map(|a| ("--stream-addr", a)),
            Hop::ShimExec => None,
        };
        if let Some((name, addr)) = pinned {
            let flags = &mut self.config.hop_flags;
            flags.retain(|f| !(f.hop == hop && f.name == name));
            flags.push(HopFlag::new(hop, name, addr));
        }
        let addr_file = self.layout.addr_file(hop);
        let _ = std::fs::remove_file(&addr_file);
        // The new process starts a fresh log; the old one is kept beside it.
        let log = self.layout.log_file(hop);
        let _ = std::fs::rename(&log, log.with_extension("before-restart.log"));
        let deadline = Instant::now() + self.config.ready_timeout;
        self.start_hop(hop, &pki, deadline).await.map(|_| ())
    }

    /// `Err(HopExited)` for the first hop that is no longer running.
    pub fn check_running(&mut self) -> Result<(), LabError> {
        self.exited().into_iter().next().map_or(Ok(()), Err)
    }

    /// Whether `DIR/lab.json` still names this lab's supervisor. It does not once the directory
    /// was removed (or replaced) under a running lab: the paths to the hops' sockets and to
    /// runc's state went with it, so the lab can no longer work, and nothing else can find it
    /// to stop it.
    pub fn still_owns_dir(&self) -> bool {
        matches!(
            LabRecord::read(&self.layout.lab_record()),
            Ok(Some(record)) if record.supervisor_pid == self.record.supervisor_pid
                && record.supervisor_start_time == self.record.supervisor_start_time
        )
    }

    /// Every process of the lab that has exited (containerd first, then the hops in start
    /// order), again on each call. Each one is polled, so none is left a zombie.
    pub fn exited(&mut self) -> Vec<LabError> {
        let mut exits = Vec::new();
        if let Some(containerd) = &mut self.containerd {
            if let Err(e) = containerd.check_running() {
                exits.push(e.into());
            }
        }
        exits.extend(
            self.processes
                .iter_mut()
                .filter_map(|p| p.check_running().err()),
        );
        exits
    }

    /// Stops every hop (API server first) and sweeps; `Err(Leftovers)` if anything survived.
    pub fn stop(mut self) -> Result<StopReport, LabError> {
        let report = self.stop_inner();
        let left = sweep::leftovers(&self.layout, &self.config.runc);
        if left.is_empty() && report.sweep.problems.is_empty() {
            Ok(report)
        } else {
            let mut leftovers = report.sweep.problems.clone();
            leftovers.extend(left);
            Err(LabError::Leftovers {
                dir: self.layout.root().to_path_buf(),
                leftovers,
            })
        }
    }

    fn stop_inner(&mut self) -> StopReport {
        let mut report = StopReport::default();
        if self.stopped {
            return report;
        }
        self.stopped = true;
        // The lab is no longer ready from the first signal on.
        let _ = std::fs::remove_file(self.layout.kubeconfig());
        for hop in Hop::STOP_ORDER {
            if let Some(process) = self.processes.iter_mut().find(|p| p.hop() == hop) {
                let grace = if hop == Hop::CriStreaming {
                    GRACE_RUNTIME
                } else {
                    GRACE_API
                };
                let ending = process.stop(grace);
                if ending == Ending::Killed {
                    tracing::warn!(%hop, log = %log_tail(process.log(), 5), "killed after the grace period");
                }
                report.hops.push((hop, ending));
            }
        }
        // Below kubelet-stream: containerd removes its pods, then stops.
        let containerd_problems = self
            .containerd
            .take()
            .map(|mut c| c.stop())
            .unwrap_or_default();
        report.sweep = sweep::sweep(&self.layout, &self.config.runc);
        report.sweep.problems.extend(containerd_problems);
        report
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.stopped {
            let report = self.stop_inner();
            if !report.sweep.problems.is_empty() {
                tracing::warn!(problems = ?report.sweep.problems, "lab cleanup incomplete");
            }
        }
    }
}

/// `Err(AlreadyRunning)` when the dir's lab record names a live supervisor other than us.
fn refuse_running_lab(layout: &LabLayout) -> Result<(), LabError> {
    match LabRecord::read(&layout.lab_record()) {
        Ok(Some(record))
            if record.supervisor_alive() && record.supervisor_pid != std::process::id() =>
        {
            Err(LabError::AlreadyRunning {
                dir: layout.root().to_path_buf(),
                pid: record.supervisor_pid,
            })
        }
        _ => Ok(()),
    }
}

/// What `execlab down` did.
#[derive(Debug, Clone, Default)]
pub struct DownReport {
    /// Whether a lab record was found.
    pub found: bool,
    /// How the supervisor (`execlab up`) ended, when one was running.
    pub supervisor: Option<Ending>,
    /// Hops that outlived their supervisor and were stopped here.
    pub hops: Vec<(Hop, Ending)>,
    pub sweep: SweepReport,
    /// What is still there after everything (empty on success).
    pub leftovers: Vec<String>,
}

/// Stops the lab in `dir` from any process: asks its supervisor to stop it (SIGTERM, as Ctrl-C
/// would), stops hops that outlived their supervisor, then sweeps.
pub fn down(dir: &Path, runc: &str) -> Result<DownReport, LabError> {
    let layout = LabLayout::new(dir)?;
    let mut report = DownReport::default();
    let record = LabRecord::read(&layout.lab_record())?;
    if let Some(record) = &record {
        report.found = true;
        if record.supervisor_alive() && record.supervisor_pid != std::process::id() {
            let pid = record.supervisor_pid;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            // The supervisor stops every hop with its own grace periods.
            let limit = GRACE_API * 2 + GRACE_RUNTIME + Duration::from_secs(10);
            let ending = if crate::supervise::wait_gone(pid, limit) {
                Ending::Terminated("after SIGTERM".into())
            } else {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                Ending::Killed
            };
            report.supervisor = Some(ending);
        }
        for hop in Hop::STOP_ORDER {
            if let Some(entry) = record.hop(hop) {
                // Every hop's command line names its address file.
                let expect = layout.addr_file(hop).display().to_string();
                let grace = if hop == Hop::CriStreaming {
                    GRACE_RUNTIME
                } else {
                    GRACE_API
                };
                let ending = crate::supervise::stop_pid(entry.pid, &expect, grace);
                if ending != Ending::Gone {
                    report.hops.push((hop, ending));
                }
            }
        }
    }
    let containerd = crate::containerd::sweep(&layout);
    report.sweep = sweep::sweep(&layout, runc);
    report.sweep.processes_killed.extend(containerd.killed);
    report.sweep.problems.extend(containerd.problems);
    report.leftovers = sweep::leftovers(&layout, runc);
    report
        .leftovers
        .extend(report.sweep.problems.iter().cloned());
    Ok(report)
}

/// `Err(AlreadyRunning)` when a live lab owns `dir`.
pub fn ensure_not_running(dir: &Path) -> Result<LabLayout, LabError> {
    let layout = LabLayout::new(dir)?;
    refuse_running_lab(&layout)?;
    Ok(layout)
}
