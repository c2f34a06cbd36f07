//! The hops' JSON log lines, sans-IO: each line with an `event` field inside an `exec_session`
//! span becomes a [`TraceEvent`] (hop, time, event, session, the line's other fields), and events
//! are grouped by session.
//!
//! The line format is tracing-subscriber's JSON formatter with the current span and the span
//! list, as hop-kit's logging sets it up (crates/hop-kit/src/logging.rs): `timestamp` (RFC 3339,
//! UTC), `target` (the crate's module path, which names the hop), `fields` (with `message` and
//! `event`), `span` / `spans` (with `session`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::Hop;

/// One event of one exec session at one hop.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    pub at: SystemTime,
    pub hop: Hop,
    pub event: String,
    pub session: String,
    pub message: String,
    /// The line's other fields, `key=value`, for the table's detail column.
    pub detail: String,
}

/// The hop a log line comes from, by its tracing target.
fn hop_of(target: &str) -> Option<Hop> {
    let krate = target.split("::").next()?;
    match krate {
        "apiserver_proxy" => Some(Hop::ApiserverProxy),
        "kubelet_stream" => Some(Hop::KubeletStream),
        "cri_streaming" => Some(Hop::CriStreaming),
        "shim_exec" => Some(Hop::ShimExec),
        _ => None,
    }
}

/// The `session` of the innermost span that has one.
fn session_of(line: &Value) -> Option<String> {
    if let Some(s) = line["span"]["session"].as_str() {
        return Some(s.to_string());
    }
    line["spans"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|s| s["session"].as_str().map(str::to_string))
}

/// The hop whose log file this is (`logs/<hop>.log`; a shim's `shim.log`).
pub fn hop_of_file(path: &std::path::Path) -> Option<Hop> {
    if path.file_name().is_some_and(|n| n == "shim.log") {
        return Some(Hop::ShimExec);
    }
    let stem = path.file_stem()?.to_str()?;
    Hop::CHAIN.into_iter().find(|h| h.name() == stem)
}

/// Parses one log line; `None` for anything that is not a session event (plain text lines,
/// lines without `event` or outside an exec session). Events of the shared libraries
/// (`k8s_stream`, `hop_kit`) belong to the hop whose log (`logged_by`) holds them.
pub fn parse_line(text: &str, logged_by: Option<Hop>) -> Option<TraceEvent> {
    let text = text.trim();
    if !text.starts_with('{') {
        return None;
    }
    let line: Value = serde_json::from_str(text).ok()?;
    let fields = line.get("fields")?;
    let event = fields.get("event")?.as_str()?.to_string();
    let session = session_of(&line)?;
    let target = line["target"].as_str()?;
    let shared = ["k8s_stream", "hop_kit"].contains(&target.split("::").next()?);
    let hop = hop_of(target).or(logged_by.filter(|_| shared))?;
    let at = humantime::parse_rfc3339(line["timestamp"].as_str()?).ok()?;
    let message = fields["message"].as_str().unwrap_or("").to_string();
    let detail = fields
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| *k != "event" && *k != "message")
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some(TraceEvent {
        at,
        hop,
        event,
        session,
        message,
        detail,
    })
}

/// Events by session, each session's events in time order (ties keep chain order: the hop
/// nearer the client first).
pub fn group_by_session(
    events: impl IntoIterator<Item = TraceEvent>,
) -> BTreeMap<String, Vec<TraceEvent>> {
    let mut sessions: BTreeMap<String, Vec<TraceEvent>> = BTreeMap::new();
    for e in events {
        sessions.entry(e.session.clone()).or_default().push(e);
    }
    for events in sessions.values_mut() {
        events.sort_by(|a, b| a.at.cmp(&b.at).then(a.hop.cmp(&b.hop)));
    }
    sessions
}

/// The session whose first event is the latest: the last exec.
pub fn last_session(sessions: &BTreeMap<String, Vec<TraceEvent>>) -> Option<&str> {
    sessions
        .iter()
        .filter_map(|(id, events)| Some((id, events.first()?.at)))
        .max_by_key(|(_, at)| *at)
        .map(|(id, _)| id.as_str())
}

/// The session `wanted` names: exactly, or as the only one starting with it.
pub fn find_session<'a>(
    sessions: &'a BTreeMap<String, Vec<TraceEvent>>,
    wanted: &str,
) -> Option<&'a str> {
    let wanted = wanted.trim().to_ascii_lowercase();
    if let Some((id, _)) = sessions.get_key_value(&wanted) {
        return Some(id.as_str());
    }
    let mut matching = sessions.keys().filter(|id| id.starts_with(&wanted));
    match (matching.next(), matching.next()) {
        (Some(id), None) => Some(id.as_str()),
        _ => None,
    }
}

/// Time of `e` since `start`, in milliseconds.
pub fn ms_since(start: SystemTime, e: SystemTime) -> f64 {
    e.duration_since(start)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
        * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-11-23T19:45:36.072845Z","level":"INFO","fields":{"message":"exec","event":"exec","id":"b45f","terminal":false},"target":"shim_exec::service","span":{"method":"Exec","session":"95ff3fc3aa","name":"exec_session"},"spans":[{"method":"Exec","session":"95ff3fc3aa","name":"exec_session"}]}"#;

    #[test]
    fn parses_a_session_event() {
        let e = parse_line(LINE, None).expect("an event");
        assert_eq!(e.hop, Hop::ShimExec);
        assert_eq!(e.event, "exec");
        assert_eq!(e.session, "95ff3fc3aa");
        assert_eq!(e.detail, "id=b45f terminal=false");
        let since =
            e.at.duration_since(humantime::parse_rfc3339("2026-11-23T19:45:36Z").expect("time"))
                .expect("later");
        assert_eq!(since, Duration::from_micros(72845));
    }

    #[test]
    fn skips_lines_that_are_not_session_events() {
        assert!(parse_line("execlab: lab ready in 0.36 s", None).is_none());
        let no_event = LINE.replace(r#""event":"exec","#, "");
        assert!(parse_line(&no_event, None).is_none());
        let no_session = r#"{"timestamp":"2026-11-23T19:45:36Z","fields":{"event":"x"},"target":"shim_exec::service"}"#;
        assert!(parse_line(no_session, None).is_none());
        let other_crate = LINE.replace("shim_exec::service", "hyper::proto");
        assert!(parse_line(&other_crate, Some(Hop::ShimExec)).is_none());
    }

    #[test]
    fn shared_library_events_belong_to_the_hop_that_logged_them() {
        let library = LINE.replace("shim_exec::service", "k8s_stream::translate");
        assert!(parse_line(&library, None).is_none());
        let e = parse_line(&library, Some(Hop::ApiserverProxy)).expect("an event");
        assert_eq!(e.hop, Hop::ApiserverProxy);
        let path = std::path::Path::new("/lab/logs/apiserver-proxy.log");
        assert_eq!(hop_of_file(path), Some(Hop::ApiserverProxy));
        let shim = std::path::Path::new("/lab/state/sandboxes/x/shim.log");
        assert_eq!(hop_of_file(shim), Some(Hop::ShimExec));
        assert_eq!(
            hop_of_file(std::path::Path::new("/lab/logs/execlab.log")),
            None
        );
    }

    #[test]
    fn groups_orders_and_finds_sessions() {
        let a = parse_line(LINE, None).expect("event");
        let mut b = a.clone();
        b.session = "77aa".into();
        b.at += Duration::from_millis(5);
        let mut c = a.clone();
        c.at -= Duration::from_millis(1);
        c.hop = Hop::ApiserverProxy;
        let sessions = group_by_session([a.clone(), b, c]);
        assert_eq!(sessions["95ff3fc3aa"][0].hop, Hop::ApiserverProxy);
        assert_eq!(last_session(&sessions), Some("77aa"));
        assert_eq!(find_session(&sessions, "95ff"), Some("95ff3fc3aa"));
        assert_eq!(find_session(&sessions, "zz"), None);
    }
}
