//! The async SPDY/3.1 session: streams over one connection, client or server role.
//!
//! A thin driver around the sans-IO [`frame`](crate::spdy::frame) and
//! [`header_block`](crate::spdy::header_block) code: one task reads and applies frames
//! (`recv.rs`), one writes queued frames (`send.rs`), an optional one sends PINGs; handles share
//! the stream table (`shared.rs`). Behaviour checked against moby/spdystream `connection.go`
//! and `stream.go`: odd/even ids by role, SYN_REPLY awaited before a stream is used, PINGs of
//! the peer's parity echoed, GOAWAY then close once streams are done, no flow control (we never
//! wait for WINDOW_UPDATE and never send one).
//!
//! Must be created inside a tokio runtime. The connection is closed (GOAWAY first) when
//! `goaway()` is called and streams are done, when the peer sends GOAWAY and streams are done,
//! on EOF or error, or when every handle (session, incoming, streams) has been dropped.
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::frame::{RstStatus, StreamId, SynReply, SynStream};

mod recv;
mod send;
mod send_queue;
mod shared;
mod stream;

use shared::{RecvEnd, Shared, StreamSlot, Wakeups};
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
    /// Send a PING this often (client-go and the apiserver use 5 s; the kubelet none).
    pub ping_period: Option<Duration>,
    /// Bytes buffered per stream before the session stops reading the connection. A single
    /// frame is always accepted into an empty buffer, so the bound per stream is
    /// `max(stream_buffer_bytes, max_frame_len)`.
    pub stream_buffer_bytes: usize,
    /// Largest frame payload accepted (at most 16 MiB − 1, the 24-bit maximum).
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

/// Stream headers as on the wire (names lower-case; each value of a name is its own pair).
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
    #[error("stream {0} reset: {1}")]
    Reset(u32, RstStatus),
    #[error("timed out waiting for SYN_REPLY on stream {0}")]
    ReplyTimeout(u32),
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Counters for tests and the lab's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Streams in the table (open, or done but still held).
    pub streams: usize,
    /// Received bytes buffered in streams, not yet read.
    pub recv_buffered: usize,
    /// DATA payload bytes queued for the connection, not yet written.
    pub send_queued: usize,
}

/// Held by every user-facing handle; when the last one goes, the session goes away.
pub(crate) struct HandleToken {
    pub(crate) shared: Arc<Shared>,
}

impl Drop for HandleToken {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        tracing::debug!("spdy: every handle dropped, going away");
        self.shared.go_away(&mut inner);
    }
}

/// A handle on one SPDY connection; clones share it.
#[derive(Clone)]
pub struct Session {
    token: Arc<HandleToken>,
}

impl Session {
    /// Starts the session's tasks on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`).
    pub fn new<T>(io: T, role: Role, cfg: SessionConfig) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let ping_period = cfg.ping_period;
        let shared = Shared::new(role, cfg, incoming_tx);
        // The token must exist before the reader runs: bytes already buffered after the 101
        // may hold a SYN_STREAM, and an incoming stream needs the token to be handed out.
        let token = Arc::new(HandleToken {
            shared: Arc::clone(&shared),
        });
        shared.set_token(&token);
        let (rd, wr) = tokio::io::split(io);
        let reader = tokio::spawn(recv::run(Arc::clone(&shared), rd));
        let writer = tokio::spawn(send::run(Arc::clone(&shared), wr));
        let pinger = ping_period
            .filter(|p| !p.is_zero())
            .map(|p| tokio::spawn(send::ping_every(Arc::clone(&shared), p)));
        let watcher = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = reader.await;
            let _ = writer.await;
            watcher.stop_tx.send_replace(true);
            if let Some(pinger) = pinger {
                let _ = pinger.await;
            }
            {
                let mut wake = Wakeups::default();
                let mut inner = watcher.lock();
                watcher.fail_all(&mut inner, SessionError::Closed, &mut wake);
            }
            watcher.closed_tx.send_replace(true);
        });
        (
            Session {
                token: Arc::clone(&token),
            },
            Incoming {
                rx: incoming_rx,
                _token: token,
            },
        )
    }

    pub fn role(&self) -> Role {
        self.token.shared.role
    }

    /// Sends SYN_STREAM with `headers` and waits (reply_timeout) for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, SessionError> {
        let shared = &self.token.shared;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = shared.lock();
            if let Some(err) = Shared::send_gone(&inner) {
                return Err(err);
            }
            if inner.goaway_sent || inner.goaway_received {
                return Err(SessionError::GoneAway);
            }
            let id = inner.next_stream_id;
            if id > StreamId::MAX.get() {
                return Err(SessionError::StreamIdsExhausted);
            }
            inner.next_stream_id = id + 2;
            let mut slot = StreamSlot::new(false);
            slot.reply_tx = Some(tx);
            inner.streams.insert(id, slot);
            let sent = shared.send_with_headers(&mut inner, &headers, |block, dst| {
                SynStream {
                    stream_id: StreamId::new(id),
                    associated_to: StreamId::ZERO,
                    priority: 0,
                    slot: 0,
                    fin: false,
                    unidirectional: false,
                    header_block: block,
                }
                .encode(dst)
            });
            if let Err(e) = sent {
                inner.streams.remove(&id);
                return Err(e);
            }
            id
        };
        // From here on the stream handle owns the slot (its drop cleans up).
        let stream = Stream::new(Arc::clone(&self.token), id, headers);
        match tokio::time::timeout(shared.cfg.reply_timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(stream),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(SessionError::Closed),
            Err(_) => {
                stream.reset(RstStatus::Cancel);
                Err(SessionError::ReplyTimeout(id))
            }
        }
    }

    /// Sends GOAWAY (last good = the last stream the peer opened) and returns once it is
    /// written; the connection is closed as soon as every stream is done.
    pub async fn goaway(&self) -> Result<(), SessionError> {
        let shared = &self.token.shared;
        let seq = {
            let mut inner = shared.lock();
            if inner.goaway_sent {
                return Ok(());
            }
            if let Some(err) = Shared::send_gone(&inner) {
                return Err(err);
            }
            shared.go_away(&mut inner);
            inner.queue.enqueued_seq
        };
        std::future::poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.queue.written_seq >= seq {
                return std::task::Poll::Ready(Ok(()));
            }
            if let Some(err) = Shared::send_gone(&inner) {
                return std::task::Poll::Ready(Err(err));
            }
            inner.queue.wait(cx.waker());
            std::task::Poll::Pending
        })
        .await
    }

    /// Resolves when the connection has ended (both directions closed or failed).
    pub async fn closed(&self) {
        let mut rx = self.token.shared.closed_tx.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.token.shared.closed_tx.borrow()
    }

    /// Buffer and stream counters.
    pub fn stats(&self) -> SessionStats {
        let inner = self.token.shared.lock();
        SessionStats {
            streams: inner.streams.len(),
            recv_buffered: inner.streams.values().map(|s| s.recv.len()).sum(),
            send_queued: inner.queue.queued_data_bytes(),
        }
    }
}

/// Streams the peer opens, in arrival order.
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<IncomingStream>,
    _token: Arc<HandleToken>,
}

impl Incoming {
    /// The next peer-opened stream; `None` once the connection ended or either side went away.
    pub async fn next(&mut self) -> Option<IncomingStream> {
        self.rx.recv().await
    }
}

/// A peer-opened stream not yet answered: accept it (SYN_REPLY) or reset it. Dropping it
/// resets it (RST_STREAM CANCEL).
pub struct IncomingStream {
    token: Arc<HandleToken>,
    id: u32,
    headers: Headers,
    answered: bool,
}

impl IncomingStream {
    pub(crate) fn new(token: Arc<HandleToken>, id: u32, headers: Headers) -> Self {
        IncomingStream {
            token,
            id,
            headers,
            answered: false,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Sends SYN_REPLY (no headers, as Kubernetes does). DATA the peer sent before this was
    /// dropped, as spdystream does.
    pub async fn accept(mut self) -> Result<Stream, SessionError> {
        let shared = Arc::clone(&self.token.shared);
        let id = self.id;
        let mut inner = shared.lock();
        if let Some(err) = Shared::send_gone(&inner) {
            return Err(err);
        }
        let Some(slot) = inner.streams.get_mut(&id) else {
            return Err(SessionError::Closed);
        };
        if let Some(RecvEnd::Reset(status)) = &slot.recv_end {
            return Err(SessionError::Reset(id, *status));
        }
        slot.replied = true;
        let fin = false;
        shared.send_with_headers(&mut inner, &Vec::new(), |block, dst| {
            SynReply {
                stream_id: StreamId::new(id),
                fin,
                header_block: block,
            }
            .encode(dst)
        })?;
        drop(inner);
        self.answered = true;
        Ok(Stream::new(
            Arc::clone(&self.token),
            id,
            std::mem::take(&mut self.headers),
        ))
    }

    /// Refuses the stream with RST_STREAM CANCEL (what Kubernetes does to unwanted streams).
    pub fn reset(self) {
        self.refuse(RstStatus::Cancel);
    }

    pub(crate) fn refuse(mut self, status: RstStatus) {
        self.answer_with_rst(status);
    }

    fn answer_with_rst(&mut self, status: RstStatus) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let shared = &self.token.shared;
        let mut inner = shared.lock();
        if let Some(slot) = inner.streams.get_mut(&self.id) {
            slot.reader_alive = false;
            slot.writer_alive = false;
            slot.send_end = true;
        }
        shared.send_rst(&mut inner, StreamId::new(self.id), status);
        shared.maybe_remove(&mut inner, self.id);
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        self.answer_with_rst(RstStatus::Cancel);
    }
}
