//! `execlab trace --dir DIR [--session ID] [--out DIR]`: the flags and the call into
//! [`super::trace_session`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::error::LabError;

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The lab directory (its logs are read; the lab need not run).
    #[arg(long, env = "EXECLAB_DIR", default_value = "lab")]
    pub dir: PathBuf,
    /// The session (trace id, or a unique prefix of it); default: the last exec.
    #[arg(long)]
    pub session: Option<String>,
    /// Where trace-<session>.mmd and .svg go; default: DIR/logs.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints the table and the Mermaid diagram, writes the files; failures exit 1.
pub fn trace_command(args: &TraceArgs) -> Result<ExitCode, LabError> {
    let trace = match super::trace_session(&args.dir, args.session.as_deref()) {
        Ok(trace) => trace,
        Err(e) => {
            eprintln!("execlab: trace: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    print!("{}", trace.table);
    println!("\n```mermaid\n{}```", trace.mermaid);
    let out = args.out.clone().unwrap_or_else(|| args.dir.join("logs"));
    match super::write_files(&trace, &out) {
        Ok((mmd, svg)) => {
            println!("wrote {} and {}", mmd.display(), svg.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("execlab: trace: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
