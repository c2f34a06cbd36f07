//! `execlab bench [--quick] [--out DIR] [--dir LAB]`: the flags and the one call into
//! [`super::run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{run, BenchConfig, PathName};
use crate::error::LabError;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer samples, 64 MiB transfers and up to 100 sessions (about two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Where bench.json, the SVG plots and the bench labs' logs go.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Measure the running lab in this directory instead of starting one (a second lab is still
    /// started for the other kubelet mode).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// kubectl to time as well; `none` skips it. Default: /usr/bin/kubectl when present.
    #[arg(long, env = "EXECLAB_KUBECTL")]
    pub kubectl: Option<String>,
    /// runc binary (raw runc exec is the floor).
    #[arg(long, default_value = "runc")]
    pub runc: String,
    /// Measure only this path (repeat for several); the `runc` floor is always measured. Idle
    /// sessions and kubectl are measured with `apiserver-ws`. Default: every path.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<PathName>,
}

/// Runs the bench and prints its table; failures are printed here (exit code 1).
pub async fn bench_command(args: &BenchArgs) -> Result<ExitCode, LabError> {
    let mut config = BenchConfig::new(&args.out);
    config.quick = args.quick;
    config.dir = args.dir.clone();
    config.runc = args.runc.clone();
    config.paths = args.paths.iter().copied().collect();
    config.kubectl = match args.kubectl.as_deref() {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(Path::new("/usr/bin/kubectl"))
            .filter(|p| p.is_file())
            .map(Path::to_path_buf),
    };
    // A signal drops the run, and with it the labs and temp dirs it made, which clean up.
    let mut signals = crate::cli::StopSignals::new()?;
    let outcome = tokio::select! {
        outcome = run(&config) => outcome,
        () = signals.recv() => {
            eprintln!("execlab: bench interrupted; the labs it started are stopped and removed");
            return Ok(ExitCode::from(130));
        }
    };
    match outcome {
        Ok(report) => {
            print!("{}", report.table());
            println!(
                "wrote {}/bench.json, setup.svg, throughput.svg, concurrency.svg",
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("execlab: bench failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
