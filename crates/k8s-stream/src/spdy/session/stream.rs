//! One SPDY stream as a byte pipe: [`Stream`], or its two halves.
//!
//! Reads return what the peer sent, then EOF at its FIN, or an error after RST_STREAM or a lost
//! connection (bytes received before either are still delivered first). Writes become DATA
//! frames of at most 64 KiB; shutdown sends an empty DATA frame with FIN (a half-close, as
//! spdystream's `Stream.Close`). Dropping the writer without shutdown half-closes too; dropping
//! the reader discards whatever the peer still sends on the stream.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::shared::{RecvEnd, Shared, Wakeups};
use super::{HandleToken, Headers, SessionError};
use crate::spdy::frame::{RstStatus, StreamId};

/// An open stream.
pub struct Stream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

/// The receiving half of a [`Stream`].
pub struct StreamReader {
    token: Arc<HandleToken>,
    id: u32,
}

/// The sending half of a [`Stream`].
pub struct StreamWriter {
    token: Arc<HandleToken>,
    id: u32,
    /// Sequence number of the last frame this writer queued (for flush).
    last_seq: u64,
}

impl Stream {
    pub(crate) fn new(token: Arc<HandleToken>, id: u32, headers: Headers) -> Stream {
        Stream {
            headers,
            reader: StreamReader {
                token: Arc::clone(&token),
                id,
            },
            writer: StreamWriter {
                token,
                id,
                last_seq: 0,
            },
        }
    }

    pub fn id(&self) -> u32 {
        self.reader.id
    }

    /// The headers of the SYN_STREAM that opened the stream.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// Sends RST_STREAM with `status`: both directions end at once.
    pub fn reset(&self, status: RstStatus) {
        reset_stream(&self.reader.token.shared, self.reader.id, status);
    }
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends RST_STREAM with `status`: both directions end at once.
    pub fn reset(&self, status: RstStatus) {
        reset_stream(&self.token.shared, self.id, status);
    }
}

pub(crate) fn reset_stream(shared: &Shared, id: u32, status: RstStatus) {
    let mut wake = Wakeups::default();
    let mut inner = shared.lock();
    let Some(slot) = inner.streams.get_mut(&id) else {
        return;
    };
    if slot.send_end && slot.recv_end.is_some() {
        return;
    }
    slot.send_end = true;
    slot.send_error
        .get_or_insert(SessionError::Reset(id, status));
    if slot.recv_end.is_none() {
        slot.recv_end = Some(RecvEnd::LocalReset(status));
    }
    if let Some(tx) = slot.reply_tx.take() {
        let _ = tx.send(Err(SessionError::Reset(id, status)));
    }
    wake.add(slot.read_waker.take());
    shared.send_rst(&mut inner, StreamId::new(id), status);
    shared.maybe_remove(&mut inner, id);
    shared.room_freed.notify_one();
}

fn end_error(end: &RecvEnd) -> Option<io::Error> {
    match end {
        RecvEnd::Fin => None,
        RecvEnd::Reset(status) => Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("stream reset by peer: {status}"),
        )),
        RecvEnd::LocalReset(status) => Some(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("stream reset: {status}"),
        )),
        // spdystream ends every stream's reads with EOF when the connection goes, whatever
        // the cause (connection.go closes the streams' data channels after Serve's read loop).
        // remotecommand depends on it: an error stream ended that way reads as success, which
        // is how an exec cut by a kubelet restart still reports exit 0 (seed 000's lesson).
        // Whoever needs the cause asks the session (`Session::closed`, its stats).
        RecvEnd::Lost => None,
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.token.shared;
        let mut inner = shared.lock();
        let Some(slot) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if slot.recv.is_empty() {
            return match &slot.recv_end {
                None => {
                    slot.read_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                Some(end) => Poll::Ready(end_error(end).map_or(Ok(()), Err)),
            };
        }
        let was_full = slot.reader_task_waiting;
        let n = slot.recv.len().min(buf.remaining());
        buf.put_slice(&slot.recv[..n]);
        slot.recv.advance(n);
        if slot.recv.is_empty() {
            // Start over at the front of the allocation: keeps the buffer's hot part in cache.
            // (reserve reclaims the whole region when the buffer is empty and unshared.)
            slot.recv.reserve(n);
        }
        drop(inner);
        if was_full {
            shared.room_freed.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}

fn write_error(err: &SessionError) -> io::Error {
    let kind = match err {
        SessionError::Reset(..) => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::BrokenPipe,
    };
    io::Error::new(kind, err.to_string())
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        let shared = Arc::clone(&self.token.shared);
        let mut inner = shared.lock();
        let err = match inner.streams.get(&id) {
            None => Some(SessionError::Closed),
            Some(slot) if slot.send_end => Some(slot.send_error.clone().unwrap_or(
                SessionError::Protocol(format!("stream {id} already half-closed")),
            )),
            Some(_) => None,
        };
        if let Some(err) = err {
            return Poll::Ready(Err(write_error(&err)));
        }
        if !inner.queue.has_room() {
            inner.queue.wait(cx.waker());
            return Poll::Pending;
        }
        let (n, seq) = inner.queue.push_data(StreamId::new(id), buf);
        drop(inner);
        shared.writer_wake.notify_one();
        self.last_seq = seq;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.token.shared.lock();
        if inner.queue.written_seq >= self.last_seq {
            return Poll::Ready(Ok(()));
        }
        if let Some(err) = Shared::send_gone(&inner) {
            return Poll::Ready(Err(write_error(&err)));
        }
        inner.queue.wait(cx.waker());
        Poll::Pending
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(seq) = half_close(&self.token.shared, self.id) {
            self.last_seq = seq;
        }
        self.poll_flush(cx)
    }
}

/// Queues DATA+FIN if our half is still open; returns its sequence number.
fn half_close(shared: &Shared, id: u32) -> Option<u64> {
    let mut inner = shared.lock();
    let slot = inner.streams.get_mut(&id)?;
    if slot.send_end {
        return None;
    }
    slot.send_end = true;
    let seq = inner.queue.push_fin(StreamId::new(id));
    shared.writer_wake.notify_one();
    shared.maybe_remove(&mut inner, id);
    Some(seq)
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let shared = &self.token.shared;
        half_close(shared, self.id);
        let mut inner = shared.lock();
        if let Some(slot) = inner.streams.get_mut(&self.id) {
            slot.writer_alive = false;
        }
        shared.maybe_remove(&mut inner, self.id);
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let shared = &self.token.shared;
        let mut inner = shared.lock();
        if let Some(slot) = inner.streams.get_mut(&self.id) {
            slot.reader_alive = false;
            slot.recv = bytes::BytesMut::new();
        }
        shared.maybe_remove(&mut inner, self.id);
        drop(inner);
        shared.room_freed.notify_one();
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}
