//! `execlab trace`: one exec followed across every hop. Each hop logs structured events
//! (`event = "accept" | "authn" | "dial" | "cri_exec" | "token" | "upgrade" | "shim_exec" |
//! "exec" | "spec_file_written" | "runc_started" | "process_started" | "first_byte" | "exit" |
//! "close"`) inside its `exec_session` span, whose `session` is the W3C trace id every hop
//! forwards. This module reads the lab's logs (`DIR/logs/*.log`, and the shims' logs in the
//! sandbox bundles `DIR/state/sandboxes/*/shim.log`), groups the events by session and renders
//! the last (or a chosen) session as a table, a Mermaid sequence diagram and an SVG timeline.

pub mod cli;
pub mod events;
pub mod mermaid;
pub mod svg;
pub mod timeline;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use events::TraceEvent;
use timeline::Timeline;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no exec session events in {0} (no exec yet, or logs from before tracing events)")]
    NoSessions(String),
    #[error("no exec session {wanted:?} in {dir} (sessions: {known})")]
    UnknownSession {
        wanted: String,
        dir: String,
        known: String,
    },
    #[error("writing {path}: {message}")]
    Output { path: String, message: String },
}

/// The log files of the lab in `dir`.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (sub, wanted) in [("logs", None), ("state/sandboxes", Some("shim.log"))] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match wanted {
                None if path.extension().is_some_and(|e| e == "log") => files.push(path),
                Some(name) if path.join(name).is_file() => files.push(path.join(name)),
                _ => {}
            }
        }
    }
    files.sort();
    files
}

/// Every session event in the lab's logs (a line seen twice, e.g. a shim log copied into
/// `logs/`, counts once).
pub fn load_events(dir: &Path) -> Vec<TraceEvent> {
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for file in log_files(dir) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let logged_by = events::hop_of_file(&file);
        for line in text.lines() {
            if let Some(e) = events::parse_line(line, logged_by) {
                if seen.insert(line.to_string()) {
                    events.push(e);
                }
            }
        }
    }
    events
}

/// One session, rendered.
#[derive(Debug, Clone)]
pub struct SessionTrace {
    pub timeline: Timeline,
    pub table: String,
    pub mermaid: String,
}

/// The timeline of session `wanted` (or the last one) in the lab in `dir`.
pub fn trace_session(dir: &Path, wanted: Option<&str>) -> Result<SessionTrace, TraceError> {
    let sessions = events::group_by_session(load_events(dir));
    let id = match wanted {
        Some(w) => {
            events::find_session(&sessions, w).ok_or_else(|| TraceError::UnknownSession {
                wanted: w.to_string(),
                dir: dir.display().to_string(),
                known: known(&sessions),
            })?
        }
        None => events::last_session(&sessions)
            .ok_or_else(|| TraceError::NoSessions(dir.display().to_string()))?,
    };
    let timeline = Timeline::new(id, &sessions[id]);
    Ok(SessionTrace {
        table: timeline.table(),
        mermaid: mermaid::sequence_diagram(&timeline),
        timeline,
    })
}

fn known(sessions: &BTreeMap<String, Vec<TraceEvent>>) -> String {
    let mut ids: Vec<&str> = sessions.keys().map(String::as_str).take(5).collect();
    if sessions.len() > 5 {
        ids.push("…");
    }
    ids.join(", ")
}

/// Writes `trace-<session>.mmd` and `.svg` into `out`; returns their paths.
pub fn write_files(trace: &SessionTrace, out: &Path) -> Result<(PathBuf, PathBuf), TraceError> {
    let output = |path: &Path, message: String| TraceError::Output {
        path: path.display().to_string(),
        message,
    };
    std::fs::create_dir_all(out).map_err(|e| output(out, e.to_string()))?;
    let stem = format!("trace-{}", trace.timeline.session);
    let mmd = out.join(format!("{stem}.mmd"));
    std::fs::write(&mmd, &trace.mermaid).map_err(|e| output(&mmd, e.to_string()))?;
    let svg = out.join(format!("{stem}.svg"));
    svg::write(&trace.timeline, &svg).map_err(|e| output(&svg, e.to_string()))?;
    Ok((mmd, svg))
}
