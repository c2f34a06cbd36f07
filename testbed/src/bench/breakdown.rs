//! Where a path's setup time goes, from the hops' own logs.
//!
//! Each setup sample's session id is on every hop's trace events, so its time splits into
//! runc's part and the rest, which is what the hops themselves add. runc's part runs from
//! shim-exec's `runc_started` to the process's first output (the first `first_byte`, logged
//! by the hop that reads the process's FIFO), or to `process_started` when no hop reads it.
//! `runc exec --detach` returns before the process runs: its parent exits, then `runc init`
//! finishes and execs the process (perf's sched tracepoints show the process's `execve`
//! 0.3–2 ms after runc's exit here), and that time is runc's, not the hops'. Raw `runc exec` varies by
//! several ms from one call to the next. The rest, taken exec by exec, does not carry that
//! variance, so it says what the hops cost far more steadily than a difference of two paths'
//! p50s. The median gap before each event then shows which step of which hop spends it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::stats::{median, round3, Percentiles};
use crate::trace::events::{ms_since, TraceEvent};
use crate::Hop;

/// The gap before one event, over every sample that has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCost {
    pub hop: String,
    pub event: String,
    /// Median time since the session's previous event (any hop).
    pub median_ms: f64,
}

/// One path's setup samples, split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupBreakdown {
    /// Samples whose runc events were found in the logs.
    pub samples: usize,
    /// shim-exec's `runc exec`, from its start to the process running.
    pub runc_ms: Percentiles,
    /// Each sample's setup minus its runc part: what the hops (and the client) add.
    pub without_runc_ms: Percentiles,
    /// Every step outside runc, costliest first.
    pub steps: Vec<StepCost>,
}

impl SetupBreakdown {
    /// The `n` costliest steps, `hop event median` each.
    pub fn costliest(&self, n: usize) -> String {
        self.steps
            .iter()
            .take(n)
            .map(|s| format!("{} {} {:.2}", s.hop, s.event, s.median_ms))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Splits `samples` (setup time, session id) with the sessions' events; `None` when no sample
/// has shim-exec's runc events (a path that does not go through shim-exec, or no logs).
pub fn split(
    sessions: &BTreeMap<String, Vec<TraceEvent>>,
    samples: &[(Duration, String)],
) -> Option<SetupBreakdown> {
    let mut runc = Vec::new();
    let mut rest = Vec::new();
    let mut gaps: BTreeMap<(Hop, String), Vec<f64>> = BTreeMap::new();
    for (setup, session) in samples {
        let Some(events) = sessions.get(session) else {
            continue;
        };
        let at = |hop: Hop, name: &str| {
            events
                .iter()
                .find(|e| e.hop == hop && e.event == name)
                .map(|e| e.at)
        };
        let (Some(started), Some(running)) = (
            at(Hop::ShimExec, "runc_started"),
            at(Hop::ShimExec, "process_started"),
        ) else {
            continue;
        };
        // The setup ends with the first output byte: the last hop's `first_byte` (none when
        // the client reads the FIFOs itself, as on the shim path: then the process running).
        let first_bytes = || {
            events
                .iter()
                .filter(|e| e.event == "first_byte")
                .map(|e| e.at)
        };
        let end = first_bytes().max().unwrap_or(running);
        // runc's part ends once the process has run: its first output, read by the lowest hop.
        let running = first_bytes()
            .min()
            .map_or(running, |first| first.max(running));
        let runc_part = running.duration_since(started).unwrap_or_default();
        runc.push(runc_part);
        rest.push(setup.saturating_sub(runc_part));
        for pair in events.windows(2) {
            let (before, e) = (&pair[0], &pair[1]);
            // While runc runs, what other hops do is off the critical path: runc's part is
            // counted above.
            if (before.at >= started && e.at <= running) || e.at > end {
                continue;
            }
            gaps.entry((e.hop, e.event.clone()))
                .or_default()
                .push(ms_since(before.at, e.at));
        }
    }
    let mut steps: Vec<StepCost> = gaps
        .into_iter()
        .map(|((hop, event), gap)| StepCost {
            hop: hop.to_string(),
            event,
            median_ms: round3(median(gap)),
        })
        .collect();
    steps.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));
    Some(SetupBreakdown {
        samples: runc.len(),
        runc_ms: Percentiles::of(&runc)?.rounded(),
        without_runc_ms: Percentiles::of(&rest)?.rounded(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn event(hop: Hop, name: &str, at_ms: u64) -> TraceEvent {
        TraceEvent {
            at: UNIX_EPOCH + Duration::from_millis(at_ms),
            hop,
            event: name.into(),
            session: "s".into(),
            message: String::new(),
            detail: String::new(),
        }
    }

    fn session(runc_ms: u64) -> Vec<TraceEvent> {
        vec![
            event(Hop::ApiserverProxy, "accept", 0),
            event(Hop::KubeletStream, "accept", 1),
            event(Hop::ShimExec, "runc_started", 3),
            // Another hop logs while runc runs: still runc's time.
            event(Hop::ApiserverProxy, "upgrade", 4),
            event(Hop::ShimExec, "process_started", 3 + runc_ms),
            event(Hop::CriStreaming, "first_byte", 3 + runc_ms),
            event(Hop::ApiserverProxy, "first_byte", 4 + runc_ms),
            // After the first byte: not setup.
            event(Hop::ShimExec, "exit", 9 + runc_ms),
        ]
    }

    #[test]
    fn runc_time_is_taken_out_exec_by_exec() {
        let sessions = BTreeMap::from([
            ("a".to_string(), session(10)),
            ("b".to_string(), session(20)),
            ("c".to_string(), session(12)),
        ]);
        let samples = [
            (Duration::from_millis(15), "a".to_string()),
            (Duration::from_millis(25), "b".to_string()),
            (Duration::from_millis(17), "c".to_string()),
            // No events: not counted.
            (Duration::from_millis(99), "gone".to_string()),
        ];
        let split = split(&sessions, &samples).expect("split");
        assert_eq!(split.samples, 3);
        assert_eq!(split.runc_ms.p50, 12.0);
        // 5 ms outside runc in every sample, whatever runc took.
        assert_eq!(split.without_runc_ms.p50, 5.0);
        assert_eq!(split.without_runc_ms.p99, 5.0);
        let kubelet = split
            .steps
            .iter()
            .find(|s| s.hop == "kubelet-stream")
            .expect("kubelet step");
        assert_eq!(kubelet.median_ms, 1.0);
        assert!(
            split.steps.iter().all(|s| s.median_ms <= 2.0),
            "{:?}",
            split.steps
        );
        assert!(
            split.steps.iter().all(|s| s.event != "exit"),
            "{:?}",
            split.steps
        );
        assert_eq!(split.costliest(1), "shim-exec runc_started 2.00");
    }

    #[test]
    fn runc_time_lasts_until_the_process_first_writes() {
        // runc exec --detach has returned (process_started at 13), but the process writes
        // only at 15, read by cri-streaming; the apiserver passes it on at 16.
        let events = vec![
            event(Hop::ApiserverProxy, "accept", 0),
            event(Hop::ShimExec, "runc_started", 3),
            event(Hop::ShimExec, "process_started", 13),
            event(Hop::CriStreaming, "process_started", 14),
            event(Hop::CriStreaming, "first_byte", 15),
            event(Hop::ApiserverProxy, "first_byte", 16),
        ];
        let sessions = BTreeMap::from([("a".to_string(), events)]);
        let split = split(&sessions, &[(Duration::from_millis(17), "a".into())]).expect("split");
        assert_eq!(split.runc_ms.p50, 12.0);
        assert_eq!(split.without_runc_ms.p50, 5.0);
        let steps: Vec<String> = split.steps.iter().map(|s| s.event.clone()).collect();
        assert_eq!(steps, ["runc_started", "first_byte"], "{:?}", split.steps);
    }

    #[test]
    fn no_runc_events_no_split() {
        let sessions = BTreeMap::from([(
            "a".to_string(),
            vec![event(Hop::ApiserverProxy, "accept", 0)],
        )]);
        assert_eq!(
            split(&sessions, &[(Duration::from_millis(1), "a".into())]),
            None
        );
    }
}
