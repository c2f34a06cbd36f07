//! A session's timeline as a Mermaid sequence diagram (text), sans-IO: the client, the four hops
//! and the process as participants; each event an arrow between the hops it joins (or a note
//! on its hop), labelled with its time since the start.

use std::fmt::Write as _;

use super::timeline::{Step, Timeline};
use crate::Hop;

/// Participant ids.
const CLIENT: &str = "C";
const PROCESS: &str = "P";

fn participant(hop: Hop) -> &'static str {
    match hop {
        Hop::ApiserverProxy => "A",
        Hop::KubeletStream => "K",
        Hop::CriStreaming => "R",
        Hop::ShimExec => "S",
    }
}

/// (from, arrow, to, label) for the events the hops log; `None` becomes a note.
fn arrow(step: &Step) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    let here = participant(step.hop);
    Some(match (step.hop, step.event.as_str()) {
        (Hop::ApiserverProxy, "accept") => (CLIENT, "->>", here, "exec request"),
        (Hop::ApiserverProxy, "dial") => (here, "->>", "K", "dial kubelet"),
        (Hop::ApiserverProxy, "upgrade") => (here, "-->>", CLIENT, "101, streams"),
        (Hop::ApiserverProxy, "first_byte") => (here, "-->>", CLIENT, "first stdout byte"),
        (Hop::ApiserverProxy, "close") => (here, "-->>", CLIENT, "status, close"),
        (Hop::KubeletStream, "dial") => (here, "->>", "R", "dial streaming server"),
        (Hop::KubeletStream, "upgrade") => (here, "-->>", "A", "101"),
        (Hop::KubeletStream, "close") => (here, "-->>", "A", "close"),
        (Hop::KubeletStream, "cri_exec") => ("R", "-->>", here, "streaming URL"),
        (Hop::CriStreaming, "cri_exec") => ("K", "->>", here, "CRI Exec"),
        (Hop::CriStreaming, "upgrade") => (here, "-->>", "K", "101"),
        (Hop::CriStreaming, "shim_exec") => (here, "->>", "S", "ttrpc Exec, Start"),
        (Hop::CriStreaming, "process_started") => ("S", "-->>", here, "Start → pid"),
        (Hop::CriStreaming, "first_byte") => (PROCESS, "-->>", here, "first byte (FIFO)"),
        (Hop::CriStreaming, "exit") => ("S", "-->>", here, "Wait → exit code"),
        (Hop::CriStreaming, "close") => (here, "-->>", "K", "status, close"),
        (Hop::ShimExec, "runc_started") => (here, "->>", PROCESS, "runc exec"),
        (Hop::ShimExec, "process_started") => (PROCESS, "-->>", here, "running (pid)"),
        (Hop::ShimExec, "exit") => (PROCESS, "-->>", here, "exited"),
        _ => return None,
    })
}

/// The diagram, ready for a ```mermaid block or mermaid.live.
pub fn sequence_diagram(timeline: &Timeline) -> String {
    let mut m = String::from("sequenceDiagram\n");
    let _ = writeln!(m, "    participant {CLIENT} as client");
    for hop in Hop::CHAIN {
        let _ = writeln!(m, "    participant {} as {}", participant(hop), hop.name());
    }
    let _ = writeln!(m, "    participant {PROCESS} as process (runc)");
    for step in &timeline.steps {
        let time = format!("+{:.2} ms", step.at_ms);
        match arrow(step) {
            Some((from, arrow, to, label)) => {
                let _ = writeln!(m, "    {from}{arrow}{to}: {label} ({time})");
            }
            None => {
                let _ = writeln!(
                    m,
                    "    Note over {}: {} ({time})",
                    participant(step.hop),
                    step.event.replace(['#', ';', ':'], " ")
                );
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(hop: Hop, event: &str, at_ms: f64) -> Step {
        Step {
            hop,
            event: event.into(),
            at_ms,
            delta_ms: 0.0,
            detail: String::new(),
        }
    }

    #[test]
    fn arrows_and_notes() {
        let t = Timeline {
            session: "s".into(),
            steps: vec![
                step(Hop::ApiserverProxy, "accept", 0.0),
                step(Hop::ApiserverProxy, "authn", 0.1),
                step(Hop::CriStreaming, "shim_exec", 4.0),
                step(Hop::ShimExec, "spec_file_written", 5.25),
            ],
            hops: Default::default(),
        };
        let m = sequence_diagram(&t);
        assert!(m.starts_with("sequenceDiagram\n"));
        assert!(m.contains("participant S as shim-exec"));
        assert!(m.contains("    C->>A: exec request (+0.00 ms)\n"), "{m}");
        assert!(m.contains("    Note over A: authn (+0.10 ms)\n"), "{m}");
        assert!(
            m.contains("    R->>S: ttrpc Exec, Start (+4.00 ms)\n"),
            "{m}"
        );
        assert!(
            m.contains("    Note over S: spec_file_written (+5.25 ms)\n"),
            "{m}"
        );
    }
}
