//! The connection writer and the ping timer.
//!
//! The writer takes everything queued in one go and writes it (small frames coalesced into one
//! buffer, big DATA frames passed straight through, all in vectored writes), flushes, and
//! repeats; when a close is requested it writes what is left, shuts the socket's write side
//! down and stops.
use std::io::IoSlice;
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
///
/// Small frames are coalesced into `small` so a burst of control frames is one slice; then the
/// batch goes out with vectored writes, so a queue of several 64 KiB DATA frames costs one
/// `writev` instead of one `write` (and one reader wake-up on the peer) per frame.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &mut Vec<BytesMut>,
    small: &mut BytesMut,
    done: &mut Vec<BytesMut>,
) -> std::io::Result<()> {
    // Runs of small frames become one buffer each; order is kept.
    let mut parts: Vec<Part> = Vec::with_capacity(batch.len());
    for frame in batch.drain(..) {
        if frame.len() < COALESCE_BELOW {
            let start = small.len();
            small.extend_from_slice(&frame);
            match parts.last_mut() {
                Some(Part::Small(range)) if range.end == start => range.end = small.len(),
                _ => parts.push(Part::Small(start..small.len())),
            }
        } else {
            parts.push(Part::Big(frame));
        }
    }
    write_parts(wr, &parts, small).await?;
    small.clear();
    for part in parts {
        if let Part::Big(frame) = part {
            done.push(frame);
        }
    }
    wr.flush().await
}

/// One piece of a batch: a range of the coalesced small frames, or a big frame.
enum Part {
    Small(std::ops::Range<usize>),
    Big(BytesMut),
}

/// Most slices handed to one `writev` (well under every platform's IOV_MAX).
const MAX_SLICES: usize = 64;

async fn write_parts<W: AsyncWrite + Unpin>(
    wr: &mut W,
    parts: &[Part],
    small: &BytesMut,
) -> std::io::Result<()> {
    fn bytes_of<'a>(part: &'a Part, small: &'a BytesMut) -> &'a [u8] {
        match part {
            Part::Small(range) => &small[range.clone()],
            Part::Big(frame) => frame,
        }
    }
    if !wr.is_write_vectored() {
        for part in parts {
            wr.write_all(bytes_of(part, small)).await?;
        }
        return Ok(());
    }
    // (index of the first unwritten part, bytes of it already written)
    let (mut first, mut offset) = (0usize, 0usize);
    while first < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[first..]
            .iter()
            .take(MAX_SLICES)
            .enumerate()
            .map(|(i, part)| {
                let bytes = bytes_of(part, small);
                IoSlice::new(if i == 0 { &bytes[offset..] } else { bytes })
            })
            .collect();
        let mut written = wr.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Advance past what was written.
        while first < parts.len() {
            let left = bytes_of(&parts[first], small).len() - offset;
            if written < left {
                offset += written;
                break;
            }
            written -= left;
            first += 1;
            offset = 0;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Takes at most `step` bytes per call, vectored or not, and records them.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored: bool,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut left = self.step;
            for buf in bufs {
                let n = buf.len().min(left);
                self.out.extend_from_slice(&buf[..n]);
                left -= n;
            }
            self.calls += 1;
            Poll::Ready(Ok(self.step - left))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frames() -> Vec<BytesMut> {
        [10usize, 20, 70_000, 5, 70_000, 3]
            .iter()
            .enumerate()
            .map(|(i, &len)| BytesMut::from(&vec![i as u8; len][..]))
            .collect()
    }

    #[tokio::test]
    async fn batches_go_out_whole_and_in_order_with_few_writes() {
        let want: Vec<u8> = frames().iter().flat_map(|f| f.to_vec()).collect();
        for (vectored, step) in [(true, usize::MAX), (true, 7), (true, 65_536), (false, 4096)] {
            let mut wr = Trickle {
                out: Vec::new(),
                step,
                vectored,
                calls: 0,
            };
            let (mut batch, mut small, mut done) = (frames(), BytesMut::new(), Vec::new());
            write_batch(&mut wr, &mut batch, &mut small, &mut done)
                .await
                .unwrap();
            assert_eq!(wr.out, want, "vectored={vectored} step={step}");
            assert!(batch.is_empty() && small.is_empty());
            // The two big frames come back for reuse.
            assert_eq!(done.len(), 2);
            if vectored && step == usize::MAX {
                assert_eq!(wr.calls, 1, "one writev for the whole batch");
            }
        }
    }
}
