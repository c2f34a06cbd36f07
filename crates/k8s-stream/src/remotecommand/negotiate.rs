//! Server-side upgrade negotiation, sans-IO: from the request headers to either the 101 response
//! headers and the chosen [`StreamProtocol`], or the exact rejection upstream would send.
//!
//! Checked against: apimachinery `util/httpstream/httpstream.go` (`Handshake`: client preference
//! wins, 403 `unable to upgrade: unable to negotiate protocol: ...` plus one
//! `X-Accepted-Stream-Protocol-Versions` header per server version, a missing header = 400
//! `unable to upgrade: X-Stream-Protocol-Version is required` written by kubelet remotecommand
//! `httpstream.go` `createHTTPStreamStreams`), `util/httpstream/spdy/upgrade.go` (400 `unable to upgrade: missing upgrade headers
//! in request: %#v`, written with `http.Error`, i.e. text/plain and a trailing newline),
//! `util/httpstream/wsstream/conn.go` (`IsWebSocketRequest`, subprotocol choice: first client
//! protocol the server allows, none offered = `""` = `channel.k8s.io`), golang.org/x/net/websocket
//! `hybi.go` (key and version checks, 403 with empty body on a subprotocol mismatch).
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::StatusCode;

use super::version::{ProtocolVersion, StreamProtocol, WsProtocol};

/// `X-Stream-Protocol-Version`: one per offered (request) or the chosen (response) version.
pub const HEADER_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
/// `X-Accepted-Stream-Protocol-Versions`: the server's versions, on a failed negotiation.
pub const HEADER_ACCEPTED_PROTOCOL_VERSIONS: &str = "x-accepted-stream-protocol-versions";
/// `Sec-WebSocket-Protocol`.
pub const HEADER_WEBSOCKET_PROTOCOL: &str = "sec-websocket-protocol";
/// The SPDY `Upgrade` token.
pub const SPDY_31: &str = "SPDY/3.1";

/// The protocols a server accepts; order is only used in error messages (the client's order
/// decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProtocols {
    /// SPDY remote command versions.
    pub spdy: Vec<ProtocolVersion>,
    /// WebSocket subprotocols.
    pub websocket: Vec<WsProtocol>,
}

impl ServerProtocols {
    /// A CRI streaming server: every SPDY version, every WebSocket subprotocol.
    pub fn streaming_server() -> Self {
        Self {
            spdy: ProtocolVersion::NEWEST_FIRST.to_vec(),
            websocket: WsProtocol::ALL.to_vec(),
        }
    }

    /// The apiserver's stream translator: WebSocket `v5.channel.k8s.io` only (SPDY requests are
    /// spliced through to the kubelet, not negotiated here).
    pub fn translator() -> Self {
        Self {
            spdy: Vec::new(),
            websocket: vec![WsProtocol::V5Channel],
        }
    }
}

/// A successful negotiation.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// What the session speaks after the 101.
    pub protocol: StreamProtocol,
    /// Headers of the `101 Switching Protocols` response.
    pub headers: HeaderMap,
}

/// A refused upgrade, as upstream answers it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UpgradeRejection {
    /// Response status.
    pub status: StatusCode,
    /// Response body, exactly.
    pub body: String,
    /// Response headers.
    pub headers: HeaderMap,
    /// The error upstream logs.
    pub message: String,
}

impl UpgradeRejection {
    fn new(status: StatusCode, message: String, body: String, headers: HeaderMap) -> Box<Self> {
        Box::new(Self {
            status,
            body,
            headers,
            message,
        })
    }

    /// `http.Error`: text/plain, nosniff, body = message + newline.
    fn http_error(status: StatusCode, message: String, mut headers: HeaderMap) -> Box<Self> {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        let body = format!("{message}\n");
        Self::new(status, message, body, headers)
    }
}

/// Whether the request asks for a WebSocket (`Connection` has the `upgrade` token and `Upgrade`
/// is `websocket`).
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade_ws =
        first_str(headers, UPGRADE.as_str()).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    connection_upgrade && upgrade_ws
}

/// The subprotocols a WebSocket request offers, in order (all `Sec-WebSocket-Protocol` lines,
/// comma-separated, trimmed).
pub fn websocket_subprotocols(headers: &HeaderMap) -> Vec<String> {
    comma_values(headers, HEADER_WEBSOCKET_PROTOCOL)
}

/// Negotiates an exec upgrade request against what this server accepts.
pub fn negotiate(
    request: &HeaderMap,
    supported: &ServerProtocols,
) -> Result<Upgrade, Box<UpgradeRejection>> {
    if is_websocket_request(request) {
        negotiate_websocket(request, &supported.websocket)
    } else {
        negotiate_spdy(request, &supported.spdy)
    }
}

fn negotiate_spdy(
    request: &HeaderMap,
    supported: &[ProtocolVersion],
) -> Result<Upgrade, Box<UpgradeRejection>> {
    let offered = comma_values(request, HEADER_PROTOCOL_VERSION);
    if offered.is_empty() {
        // `Handshake` returns this error and the streaming server writes it with `http.Error`
        // (remotecommand `createHTTPStreamStreams`), as since Kubernetes 1.18.
        return Err(UpgradeRejection::http_error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required".into(),
            HeaderMap::new(),
        ));
    }
    let chosen = offered
        .iter()
        .find_map(|name| ProtocolVersion::from_wire_name(name).filter(|v| supported.contains(v)));
    let Some(version) = chosen else {
        let mut headers = HeaderMap::new();
        for v in supported {
            headers.append(
                HEADER_ACCEPTED_PROTOCOL_VERSIONS,
                HeaderValue::from_static(v.wire_name()),
            );
        }
        let server: Vec<&str> = supported.iter().map(|v| v.wire_name()).collect();
        let message = format!(
            "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
            offered.join(" "),
            server.join(" ")
        );
        return Err(UpgradeRejection::http_error(
            StatusCode::FORBIDDEN,
            message,
            headers,
        ));
    };
    let connection = first_str(request, CONNECTION.as_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let upgrade = first_str(request, UPGRADE.as_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !connection.contains("upgrade") || !upgrade.contains("spdy/3.1") {
        let message = format!(
            "unable to upgrade: missing upgrade headers in request: {}",
            go_header_dump(request)
        );
        return Err(UpgradeRejection::http_error(
            StatusCode::BAD_REQUEST,
            message,
            HeaderMap::new(),
        ));
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static(SPDY_31));
    headers.insert(
        HEADER_PROTOCOL_VERSION,
        HeaderValue::from_static(version.wire_name()),
    );
    Ok(Upgrade {
        protocol: StreamProtocol::Spdy(version),
        headers,
    })
}

fn negotiate_websocket(
    request: &HeaderMap,
    supported: &[WsProtocol],
) -> Result<Upgrade, Box<UpgradeRejection>> {
    // x/net/websocket writes the status line, a blank line and the error text, nothing else.
    let raw = |status: StatusCode, text: &str, headers: HeaderMap| {
        UpgradeRejection::new(status, text.to_string(), text.to_string(), headers)
    };
    let Some(key) = first_str(request, "sec-websocket-key").filter(|k| !k.is_empty()) else {
        return Err(raw(
            StatusCode::BAD_REQUEST,
            "mismatch challenge/response",
            HeaderMap::new(),
        ));
    };
    if first_str(request, "sec-websocket-version") != Some("13") {
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        return Err(raw(
            StatusCode::BAD_REQUEST,
            "missing or bad WebSocket Version",
            headers,
        ));
    }
    let mut offered = websocket_subprotocols(request);
    if offered.is_empty() {
        offered.push(String::new());
    }
    let chosen = offered.iter().find_map(|name| {
        WsProtocol::from_wire_name(name)
            .filter(|p| supported.contains(p))
            .map(|p| (p, name))
    });
    let Some((protocol, name)) = chosen else {
        let allowed: Vec<&str> = supported.iter().map(|p| p.wire_name()).collect();
        let message = format!(
            "requested protocol(s) are not supported: [{}]; supports [{}]",
            offered.join(" "),
            allowed.join(" ")
        );
        return Err(UpgradeRejection::new(
            StatusCode::FORBIDDEN,
            message,
            String::new(),
            HeaderMap::new(),
        ));
    };
    let mut headers = HeaderMap::new();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", v);
    }
    if !name.is_empty() {
        headers.insert(
            HEADER_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol.wire_name()),
        );
    }
    Ok(Upgrade {
        protocol: StreamProtocol::WebSocket(protocol),
        headers,
    })
}

fn first_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn comma_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Go's `%#v` of an `http.Header` (keys canonicalised and sorted, Host excluded as Go moves it
/// to `req.Host`).
fn go_header_dump(headers: &HeaderMap) -> String {
    let mut keys: Vec<&HeaderName> = headers.keys().filter(|k| k.as_str() != "host").collect();
    keys.sort_by_key(|k| canonical_key(k.as_str()));
    let entries: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let values: Vec<String> = headers
                .get_all(k)
                .iter()
                .map(|v| crate::go_quote(&String::from_utf8_lossy(v.as_bytes())))
                .collect();
            format!(
                "{}:[]string{{{}}}",
                crate::go_quote(&canonical_key(k.as_str())),
                values.join(", ")
            )
        })
        .collect();
    format!("http.Header{{{}}}", entries.join(", "))
}

fn canonical_key(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}
