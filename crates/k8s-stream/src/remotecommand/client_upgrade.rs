//! Client side of the upgrade, sans-IO: the request headers to send and the validation of the
//! server's answer, with client-go's error texts.
//!
//! Checked against: apimachinery `util/httpstream/spdy/roundtripper.go` (`NewConnection`: 101 +
//! `Connection` containing `upgrade` + `Upgrade` containing `spdy/3.1`, otherwise a Status body
//! becomes a `StatusError`, anything else `unable to upgrade connection: <trimmed body>`),
//! client-go `tools/remotecommand/spdy.go` (offers v5..v1; empty chosen version = v1),
//! client-go `transport/websocket/roundtripper.go` (`websocket: bad handshake (<status>)`, Status
//! body or `: <body>`, `UpgradeFailureError` = `unable to upgrade streaming request: ...`,
//! `invalid protocol, expected one of %q, got %q`), gorilla/websocket `client.go` (101,
//! `Upgrade`/`Connection` tokens and `Sec-WebSocket-Accept` checked as part of the handshake).
use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::StatusCode;

use super::negotiate::{HEADER_PROTOCOL_VERSION, HEADER_WEBSOCKET_PROTOCOL, SPDY_31};
use super::status::Status;
use super::version::{ProtocolVersion, WsProtocol};
use crate::go_quote;

/// Why a client's upgrade failed; `Display` is client-go's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// SPDY: the server answered with a `metav1.Status` body (`StatusError`: its message).
    #[error("{}", .0.message)]
    Status(Box<Status>),
    /// SPDY: any other non-upgrade answer.
    #[error("unable to upgrade connection: {0}")]
    Spdy(String),
    /// WebSocket: an `UpgradeFailureError` (kubectl falls back to SPDY on these).
    #[error("unable to upgrade streaming request: {0}")]
    WebSocket(String),
    /// WebSocket: an `UpgradeFailureError` whose cause is a Status body.
    #[error("unable to upgrade streaming request: {}", .0.message)]
    WebSocketStatus(Box<Status>),
}

impl UpgradeError {
    /// client-go's `httpstream.IsUpgradeFailure`: the WebSocket attempt may fall back to SPDY.
    pub fn is_upgrade_failure(&self) -> bool {
        matches!(self, Self::WebSocket(_) | Self::WebSocketStatus(_))
    }

    /// The Status carried by this error, if the server sent one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Status(s) | Self::WebSocketStatus(s) => Some(s),
            _ => None,
        }
    }
}

/// Request headers of an SPDY exec upgrade offering `versions` in order (one header line each).
pub fn spdy_request_headers(versions: &[ProtocolVersion]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static(SPDY_31));
    for v in versions {
        headers.append(
            HEADER_PROTOCOL_VERSION,
            HeaderValue::from_static(v.wire_name()),
        );
    }
    headers
}

/// A WebSocket upgrade request in the making: its headers and the key to check the answer with.
#[derive(Debug, Clone)]
pub struct WsClientHandshake {
    /// Headers to send (`Connection`, `Upgrade`, `Sec-WebSocket-{Version,Key,Protocol}`).
    pub headers: HeaderMap,
    /// The `Sec-WebSocket-Key` sent.
    pub key: String,
    /// The subprotocols offered, in order.
    pub offered: Vec<WsProtocol>,
}

/// Request headers of a WebSocket exec upgrade offering `protocols` (client-go offers only v5).
pub fn websocket_request_headers(protocols: &[WsProtocol]) -> WsClientHandshake {
    let key = tungstenite::handshake::client::generate_key();
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        headers.insert("sec-websocket-key", v);
    }
    let list: Vec<&str> = protocols.iter().map(|p| p.wire_name()).collect();
    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
        headers.insert(HEADER_WEBSOCKET_PROTOCOL, v);
    }
    WsClientHandshake {
        headers,
        key,
        offered: protocols.to_vec(),
    }
}

fn header_has(headers: &HeaderMap, name: impl http::header::AsHeaderName, needle: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains(needle))
}

/// Validates the answer to an SPDY upgrade; on success, the negotiated version.
pub fn validate_spdy_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ProtocolVersion, UpgradeError> {
    if status != StatusCode::SWITCHING_PROTOCOLS
        || !header_has(headers, CONNECTION, "upgrade")
        || !header_has(headers, UPGRADE, "spdy/3.1")
    {
        if let Some(s) = Status::from_api_body(body) {
            return Err(UpgradeError::Status(Box::new(s)));
        }
        return Err(UpgradeError::Spdy(
            String::from_utf8_lossy(body).trim().to_string(),
        ));
    }
    let chosen = headers
        .get(HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Empty (or, as client-go's switch does, unknown) means the legacy v1 protocol.
    Ok(ProtocolVersion::from_wire_name(chosen).unwrap_or(ProtocolVersion::V1))
}

/// Validates the answer to a WebSocket upgrade; on success, the negotiated subprotocol.
pub fn validate_websocket_response(
    handshake: &WsClientHandshake,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WsProtocol, UpgradeError> {
    let status_line = format!(
        "{} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let upgrade_ok = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let connection_ok = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let expected_accept = tungstenite::handshake::derive_accept_key(handshake.key.as_bytes());
    let accept_ok = headers
        .get("sec-websocket-accept")
        .and_then(|v| v.to_str().ok())
        == Some(expected_accept.as_str());
    if status != StatusCode::SWITCHING_PROTOCOLS || !upgrade_ok || !connection_ok || !accept_ok {
        let mut cause = format!("websocket: bad handshake ({})", status_line.trim_end());
        if !body.is_empty() {
            if let Some(s) = Status::from_api_body(body) {
                return Err(UpgradeError::WebSocketStatus(Box::new(s)));
            }
            cause = format!("{cause}: {}", String::from_utf8_lossy(body));
        }
        return Err(UpgradeError::WebSocket(cause));
    }
    let got = headers
        .get(HEADER_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match handshake.offered.iter().find(|p| p.wire_name() == got) {
        Some(p) => Ok(*p),
        None => {
            let offered: Vec<String> = handshake
                .offered
                .iter()
                .map(|p| go_quote(p.wire_name()))
                .collect();
            Err(UpgradeError::WebSocket(format!(
                "invalid protocol, expected one of [{}], got {}",
                offered.join(" "),
                go_quote(got)
            )))
        }
    }
}
