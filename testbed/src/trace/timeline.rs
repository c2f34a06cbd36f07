//! One session as a timeline, sans-IO: each event's time since the first, the time since the
//! previous event (where the chain spent it), and each hop's span from its first to its last
//! event; rendered as a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::events::{ms_since, TraceEvent};
use crate::Hop;

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub hop: Hop,
    pub event: String,
    /// Since the session's first event.
    pub at_ms: f64,
    /// Since the previous event (any hop).
    pub delta_ms: f64,
    pub detail: String,
}

/// A session's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub session: String,
    pub steps: Vec<Step>,
    /// Each hop: (first event, last event) in ms since the start.
    pub hops: BTreeMap<Hop, (f64, f64)>,
}

impl Timeline {
    /// From one session's events, in time order.
    pub fn new(session: &str, events: &[TraceEvent]) -> Self {
        let start = events.first().map(|e| e.at);
        let mut steps = Vec::with_capacity(events.len());
        let mut hops: BTreeMap<Hop, (f64, f64)> = BTreeMap::new();
        let mut previous = 0.0;
        for e in events {
            let at_ms = start.map_or(0.0, |s| ms_since(s, e.at));
            steps.push(Step {
                hop: e.hop,
                event: e.event.clone(),
                at_ms,
                delta_ms: at_ms - previous,
                detail: e.detail.clone(),
            });
            previous = at_ms;
            let span = hops.entry(e.hop).or_insert((at_ms, at_ms));
            span.1 = at_ms;
        }
        Self {
            session: session.to_string(),
            steps,
            hops,
        }
    }

    pub fn total_ms(&self) -> f64 {
        self.steps.last().map_or(0.0, |s| s.at_ms)
    }

    /// The step after which the chain waited longest (the largest gap).
    pub fn longest_gap(&self) -> Option<(&Step, &Step)> {
        self.steps
            .windows(2)
            .max_by(|a, b| a[1].delta_ms.total_cmp(&b[1].delta_ms))
            .map(|w| (&w[0], &w[1]))
    }

    /// The text table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "exec session {}: {} events, {:.3} ms from first to last",
            self.session,
            self.steps.len(),
            self.total_ms()
        );
        let _ = writeln!(
            t,
            "{:>10} {:>10}  {:<16} {:<18} detail",
            "t (ms)", "+Δ (ms)", "hop", "event"
        );
        for s in &self.steps {
            let mut detail = s.detail.clone();
            if detail.len() > 60 {
                let cut = (0..=60)
                    .rev()
                    .find(|i| detail.is_char_boundary(*i))
                    .unwrap_or(0);
                detail.truncate(cut);
                detail.push('…');
            }
            let _ = writeln!(
                t,
                "{:>10.3} {:>10.3}  {:<16} {:<18} {}",
                s.at_ms,
                s.delta_ms,
                s.hop.name(),
                s.event,
                detail
            );
        }
        let _ = writeln!(
            t,
            "\n{:<16} {:>10} {:>10} {:>10}",
            "hop", "first", "last", "span (ms)"
        );
        for (hop, (first, last)) in &self.hops {
            let _ = writeln!(
                t,
                "{:<16} {:>10.3} {:>10.3} {:>10.3}",
                hop.name(),
                first,
                last,
                last - first
            );
        }
        if let Some((before, after)) = self.longest_gap() {
            let _ = writeln!(
                t,
                "longest gap: {:.3} ms between {} {} and {} {}",
                after.delta_ms,
                before.hop.name(),
                before.event,
                after.hop.name(),
                after.event
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn event(hop: Hop, name: &str, ms: u64) -> TraceEvent {
        TraceEvent {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            hop,
            event: name.into(),
            session: "s".into(),
            message: String::new(),
            detail: String::new(),
        }
    }

    #[test]
    fn steps_deltas_hop_spans_and_the_longest_gap() {
        let events = [
            event(Hop::ApiserverProxy, "accept", 100),
            event(Hop::KubeletStream, "accept", 102),
            event(Hop::ShimExec, "runc_started", 105),
            event(Hop::ShimExec, "process_started", 135),
            event(Hop::ApiserverProxy, "close", 140),
        ];
        let t = Timeline::new("s", &events);
        let at: Vec<f64> = t.steps.iter().map(|s| s.at_ms).collect();
        assert_eq!(at, [0.0, 2.0, 5.0, 35.0, 40.0]);
        assert_eq!(t.steps[3].delta_ms, 30.0);
        assert_eq!(t.hops[&Hop::ApiserverProxy], (0.0, 40.0));
        assert_eq!(t.hops[&Hop::ShimExec], (5.0, 35.0));
        let (before, after) = t.longest_gap().expect("gap");
        assert_eq!(
            (before.event.as_str(), after.event.as_str()),
            ("runc_started", "process_started")
        );
        let table = t.table();
        assert!(table.contains("process_started"), "{table}");
        assert!(table.contains("longest gap: 30.000 ms"), "{table}");
    }
}
