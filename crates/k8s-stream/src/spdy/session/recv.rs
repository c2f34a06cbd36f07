//! The connection reader: parses frames and applies them to the stream table.
//!
//! Receive rules as in moby/spdystream `connection.go`: peer SYN_STREAM ids must grow and have
//! the peer's parity (else RST PROTOCOL_ERROR); after GOAWAY new streams are ignored; DATA for
//! a stream not yet replied is dropped; PING with the peer's parity is echoed; SETTINGS and
//! WINDOW_UPDATE are parsed and ignored; any framing or header-block error ends the connection.
//! Unlike spdystream we keep reading after a GOAWAY so streams already open can finish.
//!
//! Memory is bounded: when a stream's buffer holds `stream_buffer_bytes`, the reader waits for
//! that stream's consumer before reading the socket again, so TCP pushes back on the peer.
//! Replies the peer provokes (PING echoes, SYN_REPLY / RST_STREAM for its streams) are bounded
//! too: with [`MAX_UNWRITTEN_FRAMES`] frames not yet on the socket, the reader waits for the
//! writer, as spdystream's reader blocks on writing its PING reply to a peer that does not read.
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::shared::{RecvEnd, Shared, StreamSlot, Wakeups, MAX_PEER_STREAMS};
use super::{Headers, IncomingStream, SessionError};
use crate::spdy::frame::{Data, Frame, Ping, RstStatus, StreamId};
use crate::spdy::header_block::HeaderDecoder;

/// Frames queued or being written before the reader stops taking frames that need a reply.
pub(crate) const MAX_UNWRITTEN_FRAMES: u64 = 1024;

/// Read buffer headroom requested before each socket read: it starts small, so an idle
/// session holds little, and grows fourfold whenever a read fills it, up to the largest.
const READ_CHUNK_FIRST: usize = 1024;
const READ_CHUNK: usize = 256 * 1024;

pub(crate) async fn run<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut rd: R) {
    let mut stop = shared.stop_tx.subscribe();
    let mut decoder = HeaderDecoder::default();
    let mut chunk = READ_CHUNK_FIRST;
    let mut buf = BytesMut::with_capacity(chunk);
    let max_len = shared.cfg.max_frame_len;
    let end = loop {
        loop {
            let frame = match Frame::decode(&mut buf, max_len) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "spdy: bad frame");
                    return finish(&shared, SessionError::Protocol(e.to_string()));
                }
            };
            if matches!(frame, Frame::Ping(_) | Frame::SynStream(_)) {
                tokio::select! {
                    _ = writer_caught_up(&shared) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            let applied = tokio::select! {
                r = apply(&shared, &mut decoder, frame) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            if let Err(e) = applied {
                return finish(&shared, e);
            }
        }
        if buf.capacity() - buf.len() < chunk / 4 {
            buf.reserve(chunk);
        }
        let room = buf.capacity() - buf.len();
        let read = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match read {
            Ok(0) => break SessionError::Closed,
            Ok(n) if n == room => chunk = (chunk * 4).min(READ_CHUNK),
            Ok(_) => {}
            Err(e) => break SessionError::Io(e.to_string()),
        }
    };
    finish(&shared, end);
}

/// Resolves once fewer than [`MAX_UNWRITTEN_FRAMES`] frames wait for the socket (or the writer
/// is gone, when replies are dropped anyway).
async fn writer_caught_up(shared: &Shared) {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        let unwritten = inner.queue.enqueued_seq - inner.queue.written_seq;
        if unwritten < MAX_UNWRITTEN_FRAMES || inner.write_error.is_some() {
            Poll::Ready(())
        } else {
            inner.queue.wait(cx.waker());
            Poll::Pending
        }
    })
    .await
}

fn finish(shared: &Shared, err: SessionError) {
    let mut wake = Wakeups::default();
    let mut inner = shared.lock();
    shared.fail_all(&mut inner, err, &mut wake);
}

async fn apply(
    shared: &Arc<Shared>,
    decoder: &mut HeaderDecoder,
    frame: Frame,
) -> Result<(), SessionError> {
    let mut decode = |block: &[u8]| -> Result<Headers, SessionError> {
        decoder
            .decode(block)
            .map_err(|e| SessionError::Protocol(e.to_string()))
    };
    match frame {
        Frame::Data(data) => on_data(shared, data).await,
        Frame::SynStream(syn) => {
            // Always decompress: the zlib stream must see every block even if we ignore it.
            let headers = decode(&syn.header_block)?;
            on_syn_stream(shared, syn.stream_id, syn.fin, syn.unidirectional, headers);
            Ok(())
        }
        Frame::SynReply(reply) => {
            decode(&reply.header_block)?;
            let mut wake = Wakeups::default();
            let mut inner = shared.lock();
            if let Some(slot) = inner.streams.get_mut(&reply.stream_id.get()) {
                if !slot.replied {
                    slot.replied = true;
                    if let Some(tx) = slot.reply_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                    if reply.fin {
                        remote_fin(slot, &mut wake);
                    }
                }
            }
            shared.maybe_remove(&mut inner, reply.stream_id.get());
            Ok(())
        }
        Frame::Headers(headers) => {
            decode(&headers.header_block)?;
            let mut wake = Wakeups::default();
            let mut inner = shared.lock();
            if let Some(slot) = inner.streams.get_mut(&headers.stream_id.get()) {
                if slot.replied && headers.fin {
                    remote_fin(slot, &mut wake);
                }
            }
            shared.maybe_remove(&mut inner, headers.stream_id.get());
            Ok(())
        }
        Frame::RstStream(rst) => {
            let mut wake = Wakeups::default();
            let mut inner = shared.lock();
            let id = rst.stream_id.get();
            if let Some(slot) = inner.streams.get_mut(&id) {
                tracing::debug!(stream = id, status = %rst.status, "spdy: stream reset by peer");
                if slot.recv_end.is_none() {
                    slot.recv_end = Some(RecvEnd::Reset(rst.status));
                }
                if !slot.send_end {
                    slot.send_end = true;
                    slot.send_error = Some(SessionError::Reset(id, rst.status));
                }
                if let Some(tx) = slot.reply_tx.take() {
                    let _ = tx.send(Err(SessionError::Reset(id, rst.status)));
                }
                slot.replied = true;
                wake.add(slot.read_waker.take());
                wake.extend(inner.queue.take_waiters());
            }
            shared.maybe_remove(&mut inner, id);
            shared.room_freed.notify_one();
            Ok(())
        }
        Frame::Ping(ping) => {
            let mut inner = shared.lock();
            if ping.id % 2 != inner.next_ping_id % 2 {
                let mut buf = BytesMut::with_capacity(12);
                Ping { id: ping.id }.encode(&mut buf);
                shared.send_control(&mut inner, buf);
            } else {
                tracing::trace!(id = ping.id, "spdy: ping answered");
            }
            Ok(())
        }
        Frame::GoAway(goaway) => {
            tracing::debug!(last_good = goaway.last_good.get(), status = ?goaway.status,
                "spdy: GOAWAY received");
            let mut inner = shared.lock();
            inner.goaway_received = true;
            inner.incoming_tx = None;
            shared.maybe_close(&mut inner);
            Ok(())
        }
        Frame::Settings(_) | Frame::WindowUpdate(_) => {
            // spdystream has no flow control; neither do we. Never wait for window updates.
            Ok(())
        }
    }
}

fn remote_fin(slot: &mut StreamSlot, wake: &mut Wakeups) {
    if slot.recv_end.is_none() {
        slot.recv_end = Some(RecvEnd::Fin);
    }
    wake.add(slot.read_waker.take());
}

fn on_syn_stream(
    shared: &Arc<Shared>,
    id: StreamId,
    fin: bool,
    unidirectional: bool,
    headers: Headers,
) {
    // Taken before the lock so that, should it be the last handle, it is dropped after the
    // lock is released (its drop takes the lock).
    let token = shared.token();
    let mut inner = shared.lock();
    if inner.goaway_sent || inner.goaway_received {
        return;
    }
    let raw = id.get();
    let peer_parity = inner.next_peer_id % 2;
    if raw < inner.next_peer_id || raw % 2 != peer_parity {
        tracing::debug!(stream = raw, "spdy: invalid peer stream id");
        shared.send_rst(&mut inner, id, RstStatus::ProtocolError);
        return;
    }
    inner.next_peer_id = raw.saturating_add(2);
    inner.last_peer_id = raw;
    let pending = inner
        .streams
        .keys()
        .filter(|k| *k % 2 == peer_parity)
        .count();
    let accepting = inner
        .incoming_tx
        .clone()
        .filter(|_| pending < MAX_PEER_STREAMS);
    let Some((tx, token)) = accepting.zip(token) else {
        shared.send_rst(&mut inner, id, RstStatus::RefusedStream);
        return;
    };
    let mut slot = StreamSlot::new(false);
    if fin {
        slot.recv_end = Some(RecvEnd::Fin);
    }
    if unidirectional {
        slot.send_end = true;
    }
    inner.streams.insert(raw, slot);
    drop(inner);
    if let Err(unwanted) = tx.send(IncomingStream::new(token, raw, headers)) {
        // Nobody takes incoming streams any more.
        unwanted.0.refuse(RstStatus::RefusedStream);
    }
}

async fn on_data(shared: &Shared, data: Data) -> Result<(), SessionError> {
    let id = data.stream_id.get();
    let len = data.payload.len();
    let mut payload = Some(data.payload).filter(|_| len > 0);
    loop {
        let room_freed = shared.room_freed.notified();
        tokio::pin!(room_freed);
        room_freed.as_mut().enable();
        {
            let mut wake = Wakeups::default();
            let mut inner = shared.lock();
            let cap = shared.cfg.stream_buffer_bytes;
            let Some(slot) = inner.streams.get_mut(&id) else {
                return Ok(());
            };
            if !slot.replied {
                tracing::debug!(stream = id, "spdy: data before reply dropped");
                return Ok(());
            }
            if let Some(bytes) = payload.take() {
                if slot.recv_end.is_some() || !slot.reader_alive {
                    // Nobody will read it: discard.
                } else if slot.recv.is_empty() || slot.recv.len() + len <= cap {
                    slot.recv.extend_from_slice(&bytes);
                    slot.reader_task_waiting = false;
                    wake.add(slot.read_waker.take());
                } else {
                    payload = Some(bytes);
                    slot.reader_task_waiting = true;
                }
            }
            if payload.is_none() {
                if data.fin {
                    remote_fin(slot, &mut wake);
                    shared.maybe_remove(&mut inner, id);
                }
                return Ok(());
            }
        }
        room_freed.await;
    }
}
