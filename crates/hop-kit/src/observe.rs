//! The flags every network hop shares for being watched: `--log-format`, `--metrics-listen`,
//! `--metrics-addr-file` and `--otlp-endpoint` (each also read from its `EXECLAB_*` variable),
//! flattened into each hop's command line, and the one start-up that applies them.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::logging::{self, LogFormat, LoggingInitError};
use crate::metrics::{self, MetricsServerError};
use crate::otlp::{OtlpError, OtlpLayer};

#[derive(Debug, Clone, clap::Args)]
pub struct ObserveArgs {
    /// Serve Prometheus metrics (`GET /metrics`) on this address (port 0 = OS-chosen); no
    /// metrics server when absent.
    #[arg(long, env = "EXECLAB_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where to write the metrics server's actual address once it listens.
    #[arg(long, env = "EXECLAB_METRICS_ADDR_FILE")]
    pub metrics_addr_file: Option<PathBuf>,
    /// Export exec_session spans to this OTLP/HTTP collector (JSON, `POST URL/v1/traces`).
    #[arg(long, env = "EXECLAB_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log format: text (stderr) or json.
    #[arg(long, env = "EXECLAB_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("--otlp-endpoint: {0}")]
    Otlp(#[from] OtlpError),
    #[error("initialising logging: {0}")]
    Logging(#[from] LoggingInitError),
    #[error("--metrics-listen: {0}")]
    Metrics(#[from] MetricsServerError),
}

impl ObserveArgs {
    /// Sets up logging (with the OTLP exporter when asked) and starts the metrics server;
    /// `hop` names the process in spans and metrics.
    pub async fn start(&self, hop: &'static str) -> Result<(), ObserveError> {
        let otlp = self
            .otlp_endpoint
            .as_deref()
            .map(|endpoint| OtlpLayer::start(endpoint, hop))
            .transpose()?;
        logging::init_with(self.log_format, otlp)?;
        if let Some(listen) = self.metrics_listen {
            metrics::start_server(listen, self.metrics_addr_file.as_deref(), hop).await?;
        }
        Ok(())
    }
}
