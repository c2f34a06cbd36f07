//! `execlab fault NAME | --list`: the flags, the namespace wrapping, the printed report and the
//! exit code (0 reproduced, 1 not).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{isolate, netns, run_here, FaultOptions, Isolation, Scenario, SCENARIOS};
use crate::cli::RuntimeArg;
use crate::error::LabError;

#[derive(Debug, Args)]
pub struct FaultArgs {
    /// The fault to reproduce (see --list).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// List the faults.
    #[arg(long)]
    pub list: bool,
    /// Directory for the scenario's labs; their logs stay there afterwards. Default: a temp
    /// dir, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up if a lab is not ready after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    // The lab's runtime, as `execlab up --runtime`; `--list` names each fault's runtimes.
    #[command(flatten)]
    pub runtime: RuntimeArg,
}

/// Runs `execlab fault`.
pub fn fault_command(args: &FaultArgs) -> Result<ExitCode, LabError> {
    if args.list {
        print!("{}", list());
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.name.as_deref().unwrap_or_default();
    let Some(scenario) = Scenario::find(name) else {
        eprintln!("execlab: unknown fault {name:?}\n\n{}", list());
        return Ok(ExitCode::FAILURE);
    };
    let runtime = args.runtime.runtime;
    if !scenario.runtimes.contains(&runtime) {
        eprintln!(
            "execlab: fault {} does not run with --runtime {}; it runs with: {}",
            scenario.name,
            runtime.name(),
            runtime_names(scenario)
        );
        return Ok(ExitCode::FAILURE);
    }
    let code = match scenario.isolation {
        Isolation::MountNamespace if !isolate::is_inner_run(scenario.name) => {
            eprintln!(
                "execlab: running {} in a private mount namespace",
                scenario.name
            );
            status_code(isolate::rerun_inside(
                scenario.name,
                &["unshare", "--mount", "--propagation", "private", "--"],
                &[],
            ))
        }
        Isolation::NetworkNamespace if !isolate::is_inner_run(scenario.name) => {
            match netns::run_outer(scenario.name) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("execlab: fault {}: {e}", scenario.name);
                    1
                }
            }
        }
        _ => run_inner(scenario, args),
    };
    Ok(ExitCode::from(code))
}

fn run_inner(scenario: &Scenario, args: &FaultArgs) -> u8 {
    let options = FaultOptions {
        dir: args.dir.clone(),
        bin_dir: None,
        ready_timeout: Duration::from_secs(args.timeout),
        runtime: args.runtime.runtime,
    };
    match run_here(scenario.name, options) {
        Ok(report) => {
            print!("{}", report.render());
            if report.reproduced() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            println!(
                "execlab fault {}: could not run: {e}\n\nverdict: NOT REPRODUCED",
                scenario.name
            );
            1
        }
    }
}

fn status_code(status: Result<std::process::ExitStatus, super::FaultError>) -> u8 {
    match status {
        Ok(status) => status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            eprintln!("execlab: {e}");
            1
        }
    }
}

/// The `--list` table.
pub fn list() -> String {
    let mut out = String::from("FAULT               SEED / WHAT / --runtime\n");
    for s in SCENARIOS {
        out.push_str(&format!(
            "{:<19} {}\n{:<19} {}\n{:<19} --runtime {}\n",
            s.name,
            s.summary,
            "",
            s.seed,
            "",
            runtime_names(s)
        ));
    }
    out
}

/// The runtimes `scenario` runs with, `|`-separated.
fn runtime_names(scenario: &Scenario) -> String {
    scenario
        .runtimes
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join("|")
}
