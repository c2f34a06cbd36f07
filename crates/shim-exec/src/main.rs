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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let level = if args.debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The daemon logs JSON lines into its log file; start/delete talk to a human or containerd.
    let json = args.action == Action::Serve
        && std::env::var("EXECLAB_LOG_FORMAT").map_or(true, |f| f != "text");
    let fmt = if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        fmt.boxed()
    };
    // `EXECLAB_OTLP_ENDPOINT` (set by cri-streaming's --otlp-endpoint): the daemon exports its
    // exec_session spans like the other hops.
    let otlp = match std::env::var("EXECLAB_OTLP_ENDPOINT") {
        Ok(endpoint) if args.action == Action::Serve && !endpoint.is_empty() => {
            match hop_kit::otlp::OtlpLayer::start(&endpoint, "shim-exec") {
                Ok(layer) => Some(layer),
                Err(e) => {
                    eprintln!("shim-exec: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otlp.map(|l| l.with_filter(tracing_subscriber::filter::LevelFilter::INFO)))
        .init();
}
