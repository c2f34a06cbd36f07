//! The state one session's tasks and handles share: the stream table, the send queue and the
//! header compressor, all behind one lock so id order, compression order and queue order agree.
//!
//! Stream lifecycle as in moby/spdystream `connection.go`/`stream.go`: a stream is done once our
//! side is finished (FIN or RST sent, or RST received) and the peer's side is finished (FIN or
//! RST received) or nobody reads it any more; after GOAWAY (either way) the connection is
//! closed as soon as every stream is done.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::send_queue::SendQueue;
use super::{HandleToken, Headers, IncomingStream, Role, SessionConfig, SessionError};
use crate::spdy::frame::{GoAway, GoAwayStatus, RstStatus, RstStream, StreamId};
use crate::spdy::header_block::{HeaderBlockError, HeaderEncoder};

/// Streams the peer may have open at once before new ones are refused.
pub(crate) const MAX_PEER_STREAMS: usize = 1024;

/// How the peer's half of a stream ended.
#[derive(Debug, Clone)]
pub(crate) enum RecvEnd {
    Fin,
    Reset(RstStatus),
    /// We reset the stream ourselves.
    LocalReset(RstStatus),
    /// The connection ended first (its cause stays with the session).
    Lost,
}

pub(crate) struct StreamSlot {
    /// SYN_REPLY sent (peer-opened) or received (ours); DATA before it is dropped.
    pub(crate) replied: bool,
    pub(crate) reply_tx: Option<oneshot::Sender<Result<(), SessionError>>>,
    /// Received payload not yet read. Copied in from the read buffer (so that buffer's memory
    /// is reused instead of page-faulting fresh allocations) and kept as one reusable region.
    pub(crate) recv: BytesMut,
    pub(crate) recv_end: Option<RecvEnd>,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) reader_alive: bool,
    /// Our half is finished (FIN or RST sent, or reset by the peer).
    pub(crate) send_end: bool,
    /// Why writes fail once `send_end` is set by something other than our own shutdown.
    pub(crate) send_error: Option<SessionError>,
    pub(crate) writer_alive: bool,
    /// The connection reader is waiting for room in `recv`.
    pub(crate) reader_task_waiting: bool,
}

impl StreamSlot {
    pub(crate) fn new(replied: bool) -> Self {
        StreamSlot {
            replied,
            reply_tx: None,
            recv: BytesMut::new(),
            recv_end: None,
            read_waker: None,
            reader_alive: true,
            send_end: false,
            send_error: None,
            writer_alive: true,
            reader_task_waiting: false,
        }
    }

    fn is_done(&self) -> bool {
        self.send_end && (self.recv_end.is_some() || !self.reader_alive)
    }

    fn has_handles(&self) -> bool {
        self.reader_alive || self.writer_alive
    }
}

pub(crate) struct Inner {
    pub(crate) streams: HashMap<u32, StreamSlot>,
    /// Our next stream id and ping id.
    pub(crate) next_stream_id: u32,
    pub(crate) next_ping_id: u32,
    /// Lowest id the peer may open next, and the last one it opened.
    pub(crate) next_peer_id: u32,
    pub(crate) last_peer_id: u32,
    pub(crate) goaway_sent: bool,
    pub(crate) goaway_received: bool,
    /// Set once the connection failed or ended; every later operation reports it.
    pub(crate) conn_error: Option<SessionError>,
    /// Set once writing failed; nothing more is sent, but the reader goes on draining what the
    /// peer already sent (its final Status often follows a close we can no longer write to).
    pub(crate) write_error: Option<SessionError>,
    /// The writer should write what is queued, shut the socket down and stop.
    pub(crate) close_requested: bool,
    pub(crate) incoming_tx: Option<mpsc::UnboundedSender<IncomingStream>>,
    pub(crate) encoder: HeaderEncoder,
    pub(crate) queue: SendQueue,
    /// Scratch for compressed header blocks.
    block: Vec<u8>,
}

pub(crate) struct Shared {
    pub(crate) role: Role,
    pub(crate) cfg: SessionConfig,
    inner: Mutex<Inner>,
    /// Wakes the connection writer (frames queued or close requested).
    pub(crate) writer_wake: Notify,
    /// Wakes the connection reader when a full stream buffer drained.
    pub(crate) room_freed: Notify,
    /// Tells the reader and ping tasks to stop.
    pub(crate) stop_tx: watch::Sender<bool>,
    /// True once the connection ended and both tasks stopped.
    pub(crate) closed_tx: watch::Sender<bool>,
    /// The user handles' shared token; the reader hands it to new incoming streams.
    token: OnceLock<Weak<HandleToken>>,
}

/// Wakers collected under the lock, woken after it is released.
#[derive(Default)]
pub(crate) struct Wakeups(Vec<Waker>);

impl Wakeups {
    pub(crate) fn add(&mut self, waker: Option<Waker>) {
        self.0.extend(waker);
    }
    pub(crate) fn extend(&mut self, wakers: Vec<Waker>) {
        self.0.extend(wakers);
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

impl Shared {
    pub(crate) fn new(
        role: Role,
        cfg: SessionConfig,
        incoming_tx: mpsc::UnboundedSender<IncomingStream>,
    ) -> Arc<Shared> {
        let (own, peer) = match role {
            Role::Client => (1, 2),
            Role::Server => (2, 1),
        };
        Arc::new(Shared {
            role,
            cfg,
            inner: Mutex::new(Inner {
                streams: HashMap::new(),
                next_stream_id: own,
                next_ping_id: own,
                next_peer_id: peer,
                last_peer_id: 0,
                goaway_sent: false,
                goaway_received: false,
                conn_error: None,
                write_error: None,
                close_requested: false,
                incoming_tx: Some(incoming_tx),
                encoder: HeaderEncoder::new(),
                queue: SendQueue::default(),
                block: Vec::new(),
            }),
            writer_wake: Notify::new(),
            room_freed: Notify::new(),
            stop_tx: watch::Sender::new(false),
            closed_tx: watch::Sender::new(false),
            token: OnceLock::new(),
        })
    }

    pub(crate) fn set_token(&self, token: &Arc<HandleToken>) {
        let _ = self.token.set(Arc::downgrade(token));
    }

    /// The user handles' token, unless every handle is gone.
    pub(crate) fn token(&self) -> Option<Arc<HandleToken>> {
        self.token.get().and_then(Weak::upgrade)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters more than losing the session, so keep going with the data.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an already encoded control frame and wakes the writer.
    pub(crate) fn send_control(&self, inner: &mut Inner, frame: BytesMut) -> u64 {
        if inner.write_error.is_some() {
            // The writer is gone: a queued frame would only pile up.
            return inner.queue.enqueued_seq;
        }
        let seq = inner.queue.push_control(frame);
        self.writer_wake.notify_one();
        seq
    }

    /// Queues RST_STREAM for `id`.
    pub(crate) fn send_rst(&self, inner: &mut Inner, id: StreamId, status: RstStatus) {
        if Self::send_gone(inner).is_some() {
            return;
        }
        let mut buf = BytesMut::with_capacity(16);
        RstStream {
            stream_id: id,
            status,
        }
        .encode(&mut buf);
        self.send_control(inner, buf);
    }

    /// Compresses `headers` and queues the frame `build` makes around the block, in one step so
    /// compression order is wire order.
    pub(crate) fn send_with_headers(
        &self,
        inner: &mut Inner,
        headers: &Headers,
        build: impl FnOnce(Bytes, &mut BytesMut),
    ) -> Result<u64, SessionError> {
        let mut block = std::mem::take(&mut inner.block);
        block.clear();
        let encoded = inner.encoder.encode(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &mut block,
        );
        let result = encoded.map_err(|e: HeaderBlockError| SessionError::Protocol(e.to_string()));
        let seq = result.map(|()| {
            let mut frame = BytesMut::with_capacity(block.len() + 32);
            build(Bytes::copy_from_slice(&block), &mut frame);
            self.send_control(inner, frame)
        });
        inner.block = block;
        seq
    }

    /// Sends GOAWAY once (last good = last peer stream accepted) and closes when streams are done.
    pub(crate) fn go_away(&self, inner: &mut Inner) {
        if !inner.goaway_sent && inner.conn_error.is_none() {
            inner.goaway_sent = true;
            let mut buf = BytesMut::with_capacity(16);
            GoAway {
                last_good: StreamId::new(inner.last_peer_id),
                status: GoAwayStatus::Ok,
            }
            .encode(&mut buf);
            self.send_control(inner, buf);
        }
        inner.incoming_tx = None;
        self.maybe_close(inner);
    }

    /// After GOAWAY either way, asks the writer to close once every stream is done.
    pub(crate) fn maybe_close(&self, inner: &mut Inner) {
        if (inner.goaway_sent || inner.goaway_received)
            && !inner.close_requested
            && inner.streams.values().all(StreamSlot::is_done)
        {
            tracing::debug!("spdy: all streams done after GOAWAY, closing connection");
            self.request_close(inner);
        }
    }

    pub(crate) fn request_close(&self, inner: &mut Inner) {
        inner.close_requested = true;
        self.writer_wake.notify_one();
    }

    /// Drops a stream's slot once it is done and no handle refers to it.
    pub(crate) fn maybe_remove(&self, inner: &mut Inner, id: u32) {
        if let Some(slot) = inner.streams.get(&id) {
            if slot.is_done() && !slot.has_handles() {
                inner.streams.remove(&id);
            }
        }
        self.maybe_close(inner);
    }

    /// Ends the connection: every stream and waiter learns `err`, the writer stops.
    pub(crate) fn fail_all(&self, inner: &mut Inner, err: SessionError, wake: &mut Wakeups) {
        if inner.conn_error.is_none() {
            tracing::debug!(error = %err, "spdy: connection ended");
            inner.conn_error = Some(err.clone());
        }
        inner.incoming_tx = None;
        for slot in inner.streams.values_mut() {
            if slot.recv_end.is_none() {
                slot.recv_end = Some(RecvEnd::Lost);
            }
            if !slot.send_end {
                slot.send_end = true;
                slot.send_error = Some(err.clone());
            }
            if let Some(tx) = slot.reply_tx.take() {
                let _ = tx.send(Err(err.clone()));
            }
            wake.add(slot.read_waker.take());
        }
        inner.streams.retain(|_, slot| slot.has_handles());
        wake.extend(inner.queue.take_waiters());
        self.request_close(inner);
        self.room_freed.notify_one();
    }

    /// Ends only the sending direction after a write error: every stream's send side and every
    /// waiter learns `err`; receive sides stay open until the reader ends.
    pub(crate) fn fail_send(&self, inner: &mut Inner, err: SessionError, wake: &mut Wakeups) {
        if inner.write_error.is_none() {
            tracing::debug!(error = %err, "spdy: writing failed, draining the read side");
            inner.write_error = Some(err.clone());
        }
        for slot in inner.streams.values_mut() {
            if !slot.send_end {
                slot.send_end = true;
                slot.send_error = Some(err.clone());
            }
            if let Some(tx) = slot.reply_tx.take() {
                let _ = tx.send(Err(err.clone()));
            }
        }
        wake.extend(inner.queue.take_waiters());
    }

    /// The error a sending operation reports: the connection is gone or can no longer be written.
    pub(crate) fn send_gone(inner: &Inner) -> Option<SessionError> {
        inner
            .conn_error
            .clone()
            .or_else(|| inner.write_error.clone())
    }
}
