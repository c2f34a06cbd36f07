//! The exec-session id carried as ttrpc metadata `traceparent` (W3C Trace Context:
//! `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), see docs/architecture.md.

use std::collections::HashMap;

pub const METADATA_KEY: &str = "traceparent";

/// The trace id of a well-formed version-00 `traceparent`, lower-case; `None` otherwise
/// (including the all-zero ids the spec declares invalid).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.next().is_some()
        || version != "00"
        || !hex(trace, 32)
        || !hex(parent, 16)
        || !hex(flags, 2)
        || trace.bytes().all(|b| b == b'0')
        || parent.bytes().all(|b| b == b'0')
    {
        return None;
    }
    Some(trace.to_ascii_lowercase())
}

/// The trace id from ttrpc request metadata, if a valid `traceparent` is present.
pub fn from_metadata(metadata: &HashMap<String, Vec<String>>) -> Option<String> {
    metadata
        .get(METADATA_KEY)
        .and_then(|values| values.iter().find_map(|v| trace_id(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid() {
        assert_eq!(
            trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("00-4bf92f-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("garbage"), None);
        let md = HashMap::from([(
            METADATA_KEY.to_string(),
            vec!["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()],
        )]);
        assert!(from_metadata(&md).is_some());
    }
}
