//! The connection writer and the ping timer.
//!
//! The writer takes everything queued in one go and writes it (small frames coalesced into one
//! buffer, big DATA frames passed straight through), flushes, and repeats; when a close is
//! requested it writes what is left, shuts the socket's write side down and stops.
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::shared::{Shared, Wakeups};
use super::SessionError;
use crate::spdy::frame::Ping;

/// Frames smaller than this are copied together into one write.
const COALESCE_BELOW: usize = 16 * 1024;

pub(crate) async fn run<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) {
    let mut batch: Vec<BytesMut> = Vec::new();
    let mut small = BytesMut::new();
    let mut done: Vec<BytesMut> = Vec::new();
    loop {
        let next = {
            let mut wake = Wakeups::default();
            let mut inner = shared.lock();
            if inner.queue.is_empty() {
                if inner.close_requested {
                    None
                } else {
                    Some(None)
                }
            } else {
                let (seq, _) = inner.queue.take(&mut batch);
                // Queue room was freed: writers blocked on it may go on.
                wake.extend(inner.queue.take_waiters());
                Some(Some(seq))
            }
        };
        let seq = match next {
            None => break,
            Some(None) => {
                shared.writer_wake.notified().await;
                continue;
            }
            Some(Some(seq)) => seq,
        };
        if let Err(e) = write_batch(&mut wr, &mut batch, &mut small, &mut done).await {
            // The peer may have closed after sending its last frames (a Status, then GOAWAY):
            // stop writing but let the reader deliver what is still on the wire; the reader
            // ends the session when it reaches the end.
            let mut wake = Wakeups::default();
            let mut inner = shared.lock();
            shared.fail_send(&mut inner, SessionError::Io(e.to_string()), &mut wake);
            return;
        }
        let mut wake = Wakeups::default();
        let mut inner = shared.lock();
        wake.extend(inner.queue.written(seq));
        for frame in done.drain(..) {
            inner.queue.recycle(frame);
        }
    }
    if let Err(e) = wr.shutdown().await {
        tracing::debug!(error = %e, "spdy: shutdown of the connection failed");
    }
    // Once our side is closed the connection is over; stop reading too.
    shared.stop_tx.send_replace(true);
}

/// Writes every frame of `batch`; written big frames are moved to `done` for reuse.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &mut Vec<BytesMut>,
    small: &mut BytesMut,
    done: &mut Vec<BytesMut>,
) -> std::io::Result<()> {
    for frame in batch.drain(..) {
        if frame.len() < COALESCE_BELOW {
            small.extend_from_slice(&frame);
            continue;
        }
        if !small.is_empty() {
            wr.write_all(small).await?;
            small.clear();
        }
        wr.write_all(&frame).await?;
        done.push(frame);
    }
    if !small.is_empty() {
        wr.write_all(small).await?;
        small.clear();
    }
    wr.flush().await
}

/// Sends a PING every `period` (ids of our parity, +2, wrapping as spdystream does).
pub(crate) async fn ping_every(shared: Arc<Shared>, period: Duration) {
    let mut stop = shared.stop_tx.subscribe();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut inner = shared.lock();
        if inner.conn_error.is_some() || inner.close_requested {
            return;
        }
        let id = inner.next_ping_id;
        inner.next_ping_id = if id > 0x7FFF_FFFE {
            id - 0x7FFF_FFFE
        } else {
            id + 2
        };
        let mut buf = BytesMut::with_capacity(12);
        Ping { id }.encode(&mut buf);
        shared.send_control(&mut inner, buf);
    }
}
