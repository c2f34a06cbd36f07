//! The async SPDY/3.1 session (API published first; implementation in progress).
use std::time::Duration;

use super::frame::RstStatus;

mod stream;
pub use stream::{Stream, StreamReader, StreamWriter};

/// Which end of the connection we are: decides stream and ping id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd stream ids (1, 3, ...), expects even ones from the peer.
    Client,
    /// Opens even stream ids (2, 4, ...), expects odd ones from the peer.
    Server,
}

/// Tunables of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Send a PING this often (client-go and the apiserver use 5 s; kubelet none).
    pub ping_period: Option<Duration>,
    /// Bytes buffered per stream before the session stops reading the connection.
    pub stream_buffer_bytes: usize,
    /// Largest frame payload accepted (at most 16 MiB − 1).
    pub max_frame_len: usize,
    /// How long `open_stream` waits for SYN_REPLY (client-go: 30 s).
    pub reply_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ping_period: None,
            stream_buffer_bytes: 1024 * 1024,
            max_frame_len: crate::spdy::frame::MAX_PAYLOAD_LEN,
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// Stream headers as sent on the wire (names lower-case; a repeated name is one pair each).
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (compared case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a session or stream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("connection closed")]
    Closed,
    #[error("connection lost: {0}")]
    Io(String),
    #[error("session has gone away")]
    GoneAway,
    #[error("stream {0} reset by peer: {1}")]
    Reset(u32, RstStatus),
    #[error("timed out waiting for SYN_REPLY on stream {0}")]
    ReplyTimeout(u32),
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A handle on one SPDY connection; clones share it.
#[derive(Clone)]
pub struct Session {
    _private: (),
}

impl Session {
    /// Starts the session's driver tasks on the current tokio runtime.
    pub fn new<T>(io: T, role: Role, cfg: SessionConfig) -> (Session, Incoming)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let _ = (io, role, cfg);
        (Session { _private: () }, Incoming { _private: () })
    }

    /// Sends SYN_STREAM with `headers` and waits (reply_timeout) for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, SessionError> {
        let _ = headers;
        Err(SessionError::Closed)
    }

    /// Sends GOAWAY; the connection is flushed and closed once every stream is done.
    pub async fn goaway(&self) -> Result<(), SessionError> {
        Ok(())
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {}
}

/// Streams the peer opens, in arrival order.
pub struct Incoming {
    _private: (),
}

impl Incoming {
    /// The next peer-opened stream; `None` once the connection ended or went away.
    pub async fn next(&mut self) -> Option<IncomingStream> {
        None
    }
}

/// A peer-opened stream not yet answered: accept (SYN_REPLY) or reset it.
pub struct IncomingStream {
    headers: Headers,
}

impl IncomingStream {
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Sends SYN_REPLY; data the peer sent before it was dropped (as spdystream does).
    pub async fn accept(self) -> Result<Stream, SessionError> {
        Err(SessionError::Closed)
    }

    /// Refuses the stream with RST_STREAM CANCEL.
    pub fn reset(self) {}
}
