//! The `streamType` header that names each SPDY stream of an exec session, and the matching
//! WebSocket channel numbers.
//!
//! Checked against: k8s.io/api `core/v1/types.go` (StreamType constants), kubelet
//! `cri/streaming/remotecommand/websocket.go` (channel numbers 0–4).

/// The SPDY header carrying the stream type (`streamtype` once lower-cased on the wire).
pub const STREAM_TYPE_HEADER: &str = "streamType";

/// One logical stream of an exec session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// Server → client: the final status (text before v4, JSON `Status` from v4).
    Error,
    /// Client → server: the process's stdin.
    Stdin,
    /// Server → client: the process's stdout.
    Stdout,
    /// Server → client: the process's stderr (never with a tty).
    Stderr,
    /// Client → server: JSON `TerminalSize` values (v3+, tty only).
    Resize,
}

impl StreamType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Stdin => "stdin",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Resize => "resize",
        }
    }

    /// Parses a header value (exact, as upstream compares).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "error" => Some(Self::Error),
            "stdin" => Some(Self::Stdin),
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            "resize" => Some(Self::Resize),
            _ => None,
        }
    }

    /// The WebSocket channel number carrying this stream.
    pub fn channel(self) -> u8 {
        match self {
            Self::Stdin => 0,
            Self::Stdout => 1,
            Self::Stderr => 2,
            Self::Error => 3,
            Self::Resize => 4,
        }
    }

    /// The stream type of a WebSocket channel number.
    pub fn from_channel(channel: u8) -> Option<Self> {
        match channel {
            0 => Some(Self::Stdin),
            1 => Some(Self::Stdout),
            2 => Some(Self::Stderr),
            3 => Some(Self::Error),
            4 => Some(Self::Resize),
            _ => None,
        }
    }
}
