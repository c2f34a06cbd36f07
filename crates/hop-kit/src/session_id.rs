//! The exec-session id that ties one `kubectl exec` together across hops: a W3C Trace Context
//! `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`). Each hop takes it
//! from the incoming request (or starts one), logs under an `exec_session` span whose
//! `session` field is the trace id, and forwards a child (same trace id, new parent id).
//!
//! Format rules checked against the W3C Trace Context recommendation, §3.2 (traceparent):
//! lowercase hex, version `ff` invalid, all-zero trace id / parent id invalid, and a future
//! version may append fields after a `-`.

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;

/// Header (HTTP) and metadata key (gRPC, ttrpc) carrying the session id.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent has the wrong length or layout")]
    Layout,
    #[error("traceparent contains a non-lowercase-hex digit")]
    NotHex,
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
    #[error("traceparent has an all-zero trace id or parent id")]
    ZeroId,
}

impl TraceParent {
    /// A new session: random trace id and parent id, sampled flag set.
    pub fn new_root() -> Self {
        let mut trace_id: [u8; 16] = rand::random();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Self {
            trace_id,
            parent_id: random_span_id(),
            flags: 0x01,
        }
    }

    /// The id this hop forwards: same trace, new parent id.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_span_id(),
            ..*self
        }
    }

    /// The incoming `traceparent` header if present and valid, otherwise a new root.
    pub fn from_headers_or_new(headers: &HeaderMap) -> Self {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(Self::new_root)
    }

    /// The first valid `traceparent` among ttrpc request metadata (cri-streaming -> shim).
    pub fn from_metadata(
        metadata: &std::collections::HashMap<String, Vec<String>>,
    ) -> Option<Self> {
        metadata
            .get(TRACEPARENT)?
            .iter()
            .find_map(|value| value.parse().ok())
    }

    /// The 32-hex-digit trace id: the value of the `session` log field.
    pub fn session(&self) -> String {
        hex(&self.trace_id)
    }

    /// The header value (`00-...-...-..`).
    pub fn header_value(&self) -> http::HeaderValue {
        // Only hex digits and '-': always a valid header value.
        http::HeaderValue::from_str(&self.to_string()).unwrap_or_else(|_| {
            http::HeaderValue::from_static(
                "00-00000000000000000000000000000001-0000000000000001-01",
            )
        })
    }
}

fn random_span_id() -> [u8; 8] {
    let mut id: [u8; 8] = rand::random();
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], TraceParentError> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return Err(TraceParentError::Layout);
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn nibble(c: u8) -> Result<u8, TraceParentError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(TraceParentError::NotHex),
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        // version(2) '-' trace-id(32) '-' parent-id(16) '-' flags(2) = 55 bytes.
        if value.len() < 55 || !value.is_ascii() {
            return Err(TraceParentError::Layout);
        }
        let version = parse_hex::<1>(&value[0..2])?[0];
        if version == 0xff {
            return Err(TraceParentError::InvalidVersion);
        }
        let rest = &value[55..];
        let layout_ok = (version == 0 && rest.is_empty())
            || (version != 0 && (rest.is_empty() || rest.starts_with('-')));
        let dashes = [2, 35, 52].iter().all(|&i| value.as_bytes()[i] == b'-');
        if !layout_ok || !dashes {
            return Err(TraceParentError::Layout);
        }
        let trace_id = parse_hex::<16>(&value[3..35])?;
        let parent_id = parse_hex::<8>(&value[36..52])?;
        let flags = parse_hex::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceParentError::ZeroId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

/// The span every hop opens around one exec session (`session` = trace id).
pub fn exec_session_span(trace: &TraceParent) -> tracing::Span {
    tracing::info_span!("exec_session", session = %trace.session())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_spec_example() {
        let tp: TraceParent = SAMPLE.parse().expect("valid");
        assert_eq!(tp.session(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.to_string(), SAMPLE);
    }

    #[test]
    fn ttrpc_metadata_gives_its_first_valid_traceparent() {
        let metadata = std::collections::HashMap::from([(
            TRACEPARENT.to_owned(),
            vec!["garbage".to_owned(), SAMPLE.to_owned()],
        )]);
        let tp = TraceParent::from_metadata(&metadata).expect("valid one");
        assert_eq!(tp.to_string(), SAMPLE);
        assert_eq!(TraceParent::from_metadata(&Default::default()), None);
    }

    #[test]
    fn child_keeps_the_trace_and_changes_the_parent() {
        let tp: TraceParent = SAMPLE.parse().expect("valid");
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.parent_id, tp.parent_id);
        assert_eq!(child.to_string().parse::<TraceParent>(), Ok(child));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad:?} accepted");
        }
        // A future version may carry more fields.
        assert!("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz"
            .parse::<TraceParent>()
            .is_ok());
    }

    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_inside_the_span_carry_the_session() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_writer(move || writer.clone())
            .finish();
        let tp: TraceParent = SAMPLE.parse().expect("valid");
        tracing::subscriber::with_default(subscriber, || {
            let _entered = exec_session_span(&tp).entered();
            tracing::info!("inside");
        });
        let text = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf8");
        assert!(
            text.contains(r#""session":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "{text}"
        );
        assert!(text.contains(r#""name":"exec_session""#), "{text}");
    }

    #[test]
    fn missing_or_bad_header_starts_a_new_session() {
        let mut headers = HeaderMap::new();
        let a = TraceParent::from_headers_or_new(&headers);
        let b = TraceParent::from_headers_or_new(&headers);
        assert_ne!(a.trace_id, b.trace_id);
        headers.insert(TRACEPARENT, http::HeaderValue::from_static(SAMPLE));
        assert_eq!(
            TraceParent::from_headers_or_new(&headers).to_string(),
            SAMPLE
        );
    }
}
