//! `execlab up | down | status`: see `execlab --help` and the README.
use std::process::ExitCode;

use clap::Parser;
use execlab::cli::{run, Cli};

fn main() -> ExitCode {
    // The bench client moves GiBs through the same stream code as the hops.
    hop_kit::heap::retain_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXECLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).map_err(anyhow::Error::from) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("execlab: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
