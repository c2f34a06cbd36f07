//! `execlab fault NAME`: production failures of `kubectl exec` rebuilt in a lab.
//!
//! Each scenario starts a lab of its own (in its own directory) configured for one fault, runs
//! real kubectl against it, and holds what kubectl printed against the text production printed
//! (from docs/failures.md, an upstream source file, or a seed story), client by client. The
//! report says, per check, `expected:` (with its source), `observed:` and a verdict; the
//! scenario is REPRODUCED when every check that ran matched. Expected texts are exact except for
//! the parts production cannot fix in advance (ports, ids, temp-file suffixes: [`expect`]).
//!
//! Faults that need the kernel's help run in namespaces the scenario makes and removes: the
//! full tmpfs of `enospc` in a private mount namespace ([`isolate`]), the NodePort DNAT of
//! `nodeport-collision` in network namespaces ([`netns`]). Nothing is installed on the host's
//! mount table or netfilter tables, and every scenario removes its labs, processes, mounts and
//! namespaces before it returns.

pub mod cli;
pub mod dubbo;
pub mod expect;
pub mod isolate;
pub mod kubectl;
pub mod netns;
pub mod report;
mod scenarios;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::LabError;
use crate::lab::{Lab, LabConfig, LabRuntime};

pub use report::{Check, Expected, FaultReport, Verdict};
pub use scenarios::SCENARIOS;

use kubectl::{Client, KubectlOutput, KUBECTL_LIMIT};

/// What a scenario needs from the kernel besides a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Runs as it is.
    None,
    /// Runs in a private mount namespace (its tmpfs never reaches the host's mount table).
    MountNamespace,
    /// Runs inside a network namespace the scenario makes (see [`netns`]).
    NetworkNamespace,
}

/// One fault scenario.
pub struct Scenario {
    pub name: &'static str,
    /// The seed story or failures.md row it rebuilds.
    pub seed: &'static str,
    pub summary: &'static str,
    pub isolation: Isolation,
    /// The runtimes its lab can run (`--runtime`).
    pub runtimes: &'static [LabRuntime],
    pub(crate) run: fn(&FaultRun) -> Result<FaultReport, FaultError>,
}

impl Scenario {
    pub fn find(name: &str) -> Option<&'static Scenario> {
        SCENARIOS.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("unknown fault {0:?}; `execlab fault --list` lists them")]
    Unknown(String),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

impl FaultError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where and how a scenario runs.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    /// The scenario's own directory: its labs go into subdirectories. `None`: a fresh temp dir,
    /// removed afterwards. A given directory keeps each lab's `logs/` for reading.
    pub dir: Option<PathBuf>,
    /// Where the hop binaries are (default: next to the running executable).
    pub bin_dir: Option<PathBuf>,
    /// Per-lab start limit.
    pub ready_timeout: Duration,
    /// The runtime the scenario's labs run (one of the scenario's `runtimes`).
    pub runtime: LabRuntime,
}

impl Default for FaultOptions {
    fn default() -> Self {
        Self {
            dir: None,
            bin_dir: None,
            ready_timeout: Duration::from_secs(30),
            runtime: LabRuntime::Execlab,
        }
    }
}

/// A scenario's run: its directory and a runtime for the lab's async parts.
pub struct FaultRun {
    root: PathBuf,
    options: FaultOptions,
    runtime: tokio::runtime::Runtime,
}

impl FaultRun {
    fn new(root: PathBuf, options: FaultOptions) -> Result<Self, FaultError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| FaultError::io("tokio runtime", e))?;
        Ok(Self {
            root,
            options,
            runtime,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The runtime the scenario's labs run.
    pub fn runtime(&self) -> LabRuntime {
        self.options.runtime
    }

    /// A lab configuration in `ROOT/<name>`.
    pub fn lab_config(&self, name: &str) -> LabConfig {
        let mut config = LabConfig::new(self.root.join(name));
        config.bin_dir = self.options.bin_dir.clone();
        config.ready_timeout = self.options.ready_timeout;
        config.runtime = self.options.runtime;
        config
    }

    pub fn start_lab(&self, config: LabConfig) -> Result<Lab, FaultError> {
        Ok(self.runtime.block_on(Lab::start(config))?)
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Stops a lab; anything it left behind is an error.
    pub fn stop_lab(&self, lab: Lab) -> Result<(), FaultError> {
        lab.stop()?;
        Ok(())
    }
}

/// Runs kubectl `args` against `lab` with each client of `expected` and adds one check per
/// client to `report`.
pub fn kubectl_checks(
    report: &mut FaultReport,
    lab: &Lab,
    title: &str,
    args: &[&str],
    expected: &[(Client, Expected)],
) -> Result<Vec<KubectlOutput>, FaultError> {
    let mut outputs = Vec::new();
    for (client, expect) in expected {
        if !client.available() {
            report.checks.push(Check::skipped(title, *client, expect));
            continue;
        }
        let output = kubectl::run(*client, &lab.kubeconfig(), args, KUBECTL_LIMIT)
            .map_err(|e| FaultError::io(format!("running {}", client.binary().display()), e))?;
        report
            .checks
            .push(Check::kubectl(title, *client, args, expect, &output));
        outputs.push(output);
    }
    Ok(outputs)
}

/// Runs scenario `name` in this process (already in whatever namespace it needs): makes its
/// directory, runs it, removes the directory (or, for a given `--dir`, everything but the labs'
/// logs).
pub fn run_here(name: &str, options: FaultOptions) -> Result<FaultReport, FaultError> {
    let scenario = Scenario::find(name).ok_or_else(|| FaultError::Unknown(name.to_owned()))?;
    if !scenario.runtimes.contains(&options.runtime) {
        return Err(FaultError::Setup(format!(
            "fault {name} does not run with --runtime {}",
            options.runtime.name()
        )));
    }
    let (root, temp) = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| FaultError::io(format!("creating {}", dir.display()), e))?;
            (
                crate::layout::LabLayout::new(dir)?.root().to_path_buf(),
                None,
            )
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("execlab-fault-{}-", scenario.name))
                .tempdir_in("/tmp")
                .map_err(|e| FaultError::io("making the scenario's temp dir", e))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let run = FaultRun::new(root, options)?;
    let result = (scenario.run)(&run);
    drop(run);
    if let Some(temp) = temp {
        temp.close()
            .map_err(|e| FaultError::io("removing the scenario's temp dir", e))?;
    }
    result
}
