//! Protocol versions of the `channel.k8s.io` family and the WebSocket subprotocols that carry it.
//!
//! Checked against: apimachinery `util/remotecommand/constants.go` (version names),
//! kubelet `cri/streaming/remotecommand/{httpstream,websocket}.go` (which version gets which
//! handler: SPDY v5 behaves as v4; WebSocket `channel.k8s.io`/`base64.channel.k8s.io` write a text
//! error, the `v4.*` ones a JSON Status), apimachinery `httpstream/wsstream/conn.go` (v5 CLOSE).
use std::fmt;

/// One version of the remote command protocol, as negotiated through `X-Stream-Protocol-Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// `channel.k8s.io`: the original; cannot signal stdin EOF, error stream is text.
    V1,
    /// `v2.channel.k8s.io`: v1 with its stream handling fixed.
    V2,
    /// `v3.channel.k8s.io`: adds the terminal resize stream.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a JSON `Status` with the exit code.
    V4,
    /// `v5.channel.k8s.io`: adds the CLOSE signal (WebSocket only; over SPDY it is v4).
    V5,
}

impl ProtocolVersion {
    /// Every version, most preferred first (the order client-go offers them in).
    pub const NEWEST_FIRST: [ProtocolVersion; 5] =
        [Self::V5, Self::V4, Self::V3, Self::V2, Self::V1];

    /// The name on the wire.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::V1 => "channel.k8s.io",
            Self::V2 => "v2.channel.k8s.io",
            Self::V3 => "v3.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
            Self::V5 => "v5.channel.k8s.io",
        }
    }

    /// Parses a wire name (exact match, as upstream compares strings).
    pub fn from_wire_name(name: &str) -> Option<Self> {
        Self::NEWEST_FIRST
            .into_iter()
            .find(|v| v.wire_name() == name)
    }

    /// Whether a tty session has a `resize` stream (v3 and later).
    pub fn supports_resize(self) -> bool {
        self >= Self::V3
    }

    /// Whether the error stream carries a JSON `Status` (v4 and later) rather than text.
    pub fn status_is_json(self) -> bool {
        self >= Self::V4
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// A WebSocket subprotocol (`Sec-WebSocket-Protocol`) of the channel protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsProtocol {
    /// `channel.k8s.io` (also what an absent subprotocol means): binary frames, text errors.
    Channel,
    /// `base64.channel.k8s.io`: text frames, `'0'+channel` then base64; text errors.
    Base64Channel,
    /// `v4.channel.k8s.io`: binary frames, JSON Status on the error channel.
    V4Channel,
    /// `v4.base64.channel.k8s.io`: base64 text frames, JSON Status.
    V4Base64Channel,
    /// `v5.channel.k8s.io`: binary frames, JSON Status, CLOSE signal `[0xFF, channel]`.
    V5Channel,
}

impl WsProtocol {
    /// Every subprotocol, newest first.
    pub const ALL: [WsProtocol; 5] = [
        Self::V5Channel,
        Self::V4Base64Channel,
        Self::V4Channel,
        Self::Base64Channel,
        Self::Channel,
    ];

    /// The subprotocol name on the wire.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Channel => "channel.k8s.io",
            Self::Base64Channel => "base64.channel.k8s.io",
            Self::V4Channel => "v4.channel.k8s.io",
            Self::V4Base64Channel => "v4.base64.channel.k8s.io",
            Self::V5Channel => "v5.channel.k8s.io",
        }
    }

    /// Parses a subprotocol name; the empty string is the legacy `channel.k8s.io`.
    pub fn from_wire_name(name: &str) -> Option<Self> {
        if name.is_empty() {
            return Some(Self::Channel);
        }
        Self::ALL.into_iter().find(|p| p.wire_name() == name)
    }

    /// Whether frames are base64 text rather than binary.
    pub fn is_base64(self) -> bool {
        matches!(self, Self::Base64Channel | Self::V4Base64Channel)
    }

    /// Whether the `[0xFF, channel]` CLOSE signal exists.
    pub fn supports_close(self) -> bool {
        self == Self::V5Channel
    }

    /// The remote command version whose error-stream format this subprotocol uses.
    pub fn version(self) -> ProtocolVersion {
        match self {
            // The legacy WebSocket server writes text errors like SPDY v2/v3 and always has a
            // resize channel; v2 is the closest SPDY equivalent for decoding.
            Self::Channel | Self::Base64Channel => ProtocolVersion::V2,
            Self::V4Channel | Self::V4Base64Channel => ProtocolVersion::V4,
            Self::V5Channel => ProtocolVersion::V5,
        }
    }
}

impl fmt::Display for WsProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// The transport and version an exec session was upgraded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamProtocol {
    /// SPDY/3.1 with one stream per `StreamType`.
    Spdy(ProtocolVersion),
    /// WebSocket with one channel byte per message.
    WebSocket(WsProtocol),
}

impl StreamProtocol {
    /// The remote command version semantics (error format, resize) of this protocol.
    pub fn version(self) -> ProtocolVersion {
        match self {
            Self::Spdy(v) => v,
            Self::WebSocket(p) => p.version(),
        }
    }
}

impl fmt::Display for StreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spdy(v) => write!(f, "SPDY/3.1 {v}"),
            Self::WebSocket(p) => write!(f, "WebSocket {p}"),
        }
    }
}
