//! `--log-format json|text`: one tracing-subscriber setup for every hop. Text goes to stderr for
//! people; JSON lines (with the current span and its parents, so `session` is on every line of an
//! exec session) are what `execlab` collects into `DIR/logs/<hop>.log`. The level comes from
//! `RUST_LOG` (default `info`). [`init_with`] adds the OTLP span exporter (`--otlp-endpoint`),
//! which sees `info` and above whatever `RUST_LOG` says.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::otlp::OtlpLayer;

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log format {0:?} (expected json or text)")]
pub struct LogFormatError(String);

impl FromStr for LogFormat {
    type Err = LogFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(LogFormatError(other.to_owned())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Installing the global subscriber failed (one is already installed).
#[derive(Debug, thiserror::Error)]
#[error("installing the log subscriber: {0}")]
pub struct LoggingInitError(String);

/// Installs the global subscriber writing to stderr in `format`.
pub fn init(format: LogFormat) -> Result<(), LoggingInitError> {
    init_with(format, None)
}

/// [`init`], plus the OTLP exporter layer when given.
pub fn init_with(format: LogFormat, otlp: Option<OtlpLayer>) -> Result<(), LoggingInitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otlp.map(|layer| layer.with_filter(LevelFilter::INFO)))
        .try_init()
        .map_err(|e| LoggingInitError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag_values() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }
}
