//! The start-up display: one line per stage (PKI, rootfs, each hop, the pod) with a spinner
//! while it waits (indicatif) on a terminal, plain lines otherwise (CI logs), nothing for tests.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Nothing (library use, tests).
    #[default]
    Quiet,
    /// Spinners on a terminal, plain lines when stderr is not one.
    Stderr,
}

pub struct Progress {
    mode: ProgressMode,
    bars: Option<MultiProgress>,
}

/// One stage being waited for.
pub struct Stage {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let bars = (mode == ProgressMode::Stderr && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { mode, bars }
    }

    pub fn stage(&self, name: &str, waiting_for: &str) -> Stage {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<16} {msg} {elapsed_precise}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_owned());
            bar.set_message(waiting_for.to_owned());
            bar.enable_steady_tick(Duration::from_millis(80));
            bar
        });
        Stage {
            name: name.to_owned(),
            started: Instant::now(),
            bar,
            plain: self.mode == ProgressMode::Stderr && self.bars.is_none(),
        }
    }
}

impl Stage {
    /// Marks the stage done with a detail (an address, a pid).
    pub fn done(self, detail: &str) -> Duration {
        let took = self.started.elapsed();
        let line = format!(
            "{:<16} ready in {:>6.3} s  {detail}",
            self.name,
            took.as_secs_f64()
        );
        if let Some(bar) = &self.bar {
            bar.set_style(
                ProgressStyle::with_template("✔ {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.finish_with_message(line);
        } else if self.plain {
            eprintln!("execlab: {line}");
        }
        took
    }

    pub fn failed(self, why: &str) {
        if let Some(bar) = &self.bar {
            bar.abandon_with_message(format!("FAILED: {why}"));
        } else if self.plain {
            eprintln!("execlab: {:<16} FAILED: {why}", self.name);
        }
    }
}
