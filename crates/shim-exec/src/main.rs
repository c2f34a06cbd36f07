//! `shim-exec`: the containerd shim v2 binary contract (Go-style flags, see `cli`).

use std::io::Write;

use anyhow::Context;
use shim_exec::cli::{Action, ShimArgs};
use shim_exec::Outcome;

fn main() -> anyhow::Result<()> {
    let args = ShimArgs::parse(std::env::args().skip(1)).context("parse arguments")?;
    init_tracing(&args);
    match shim_exec::run(&args)
        .with_context(|| format!("shim {:?} for {}", args.action, args.id))?
    {
        Outcome::Address(address) => println!("{address}"),
        Outcome::DeleteResponse(bytes) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes).context("write DeleteResponse")?;
            out.flush().context("flush stdout")?;
        }
        Outcome::Served => {}
    }
    Ok(())
}

fn init_tracing(args: &ShimArgs) {
    let level = if args.debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The daemon logs JSON lines into its log file; start/delete talk to a human or containerd.
    let json = args.action == Action::Serve
        && std::env::var("EXECLAB_LOG_FORMAT").map_or(true, |f| f != "text");
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }
}
