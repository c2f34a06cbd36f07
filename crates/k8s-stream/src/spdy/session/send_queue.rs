//! Frames waiting for the connection writer, already encoded, in wire order.
//!
//! Header blocks are compressed at the moment their frame is queued, under the same lock, so
//! the peer's decompressor sees blocks in the order our compressor made them. Small writes to
//! the same stream are appended to the DATA frame still waiting at the tail of the queue, so a
//! caller writing 8 KiB at a time still puts big frames on the wire while the writer is busy.
use std::collections::VecDeque;
use std::task::Waker;

use bytes::{BufMut, BytesMut};

use crate::spdy::frame::{Data, StreamId, HEAD_LEN};

/// Largest DATA payload we put in one frame (64 KiB measured best of 32/64/128/256 KiB on
/// loopback; spdystream itself writes one frame per Write call).
pub(crate) const DATA_FRAME_LEN: usize = 64 * 1024;
/// DATA payload bytes queued (not yet handed to the socket) before writers wait.
pub(crate) const SEND_QUEUE_BYTES: usize = 512 * 1024;

struct Queued {
    bytes: BytesMut,
    /// Set for a DATA frame (without FIN) that may still grow; its length is patched on take.
    open_data: Option<StreamId>,
}

#[derive(Default)]
pub(crate) struct SendQueue {
    frames: VecDeque<Queued>,
    /// DATA payload bytes in `frames`.
    data_bytes: usize,
    /// Sequence number of the last frame queued / the last frame the socket accepted.
    pub(crate) enqueued_seq: u64,
    pub(crate) written_seq: u64,
    /// Writers waiting for room or for their frames to be written.
    waiters: Vec<Waker>,
    /// Emptied DATA frame buffers handed back by the writer, reused to avoid page-faulting
    /// fresh large allocations for every frame.
    spare: Vec<BytesMut>,
}

/// Spare frame buffers kept for reuse.
const SPARE_BUFFERS: usize = 8;

impl SendQueue {
    /// Queues an encoded control frame; returns its sequence number.
    pub(crate) fn push_control(&mut self, bytes: BytesMut) -> u64 {
        self.frames.push_back(Queued {
            bytes,
            open_data: None,
        });
        self.enqueued_seq += 1;
        self.enqueued_seq
    }

    pub(crate) fn has_room(&self) -> bool {
        self.data_bytes < SEND_QUEUE_BYTES
    }

    /// Queues up to [`DATA_FRAME_LEN`] bytes of `buf` for `stream`; returns (bytes taken, seq).
    pub(crate) fn push_data(&mut self, stream: StreamId, buf: &[u8]) -> (usize, u64) {
        let n = buf.len().min(DATA_FRAME_LEN);
        if let Some(tail) = self.frames.back_mut() {
            if tail.open_data == Some(stream) {
                let room = DATA_FRAME_LEN - (tail.bytes.len() - HEAD_LEN);
                if room > 0 {
                    let n = n.min(room);
                    tail.bytes.extend_from_slice(&buf[..n]);
                    self.data_bytes += n;
                    return (n, self.enqueued_seq);
                }
            }
        }
        // Writes big enough to be followed by more get a whole frame's room up front, so
        // appending to them never reallocates.
        let mut bytes = match self.spare.pop() {
            Some(bytes) => bytes,
            None if n >= DATA_FRAME_LEN / 8 => BytesMut::with_capacity(HEAD_LEN + DATA_FRAME_LEN),
            None => BytesMut::with_capacity(HEAD_LEN + n),
        };
        // Length and flags are patched when the writer takes the frame.
        Data::encode_head(stream, false, 0, &mut bytes);
        bytes.put_slice(&buf[..n]);
        self.data_bytes += n;
        self.frames.push_back(Queued {
            bytes,
            open_data: Some(stream),
        });
        self.enqueued_seq += 1;
        (n, self.enqueued_seq)
    }

    /// Queues an empty DATA frame with FIN (half-close).
    pub(crate) fn push_fin(&mut self, stream: StreamId) -> u64 {
        let mut bytes = BytesMut::with_capacity(HEAD_LEN);
        Data::encode_head(stream, true, 0, &mut bytes);
        self.push_control(bytes)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Takes every queued frame for writing, in order; returns them with the seq they end at.
    pub(crate) fn take(&mut self, out: &mut Vec<BytesMut>) -> (u64, usize) {
        let data = self.data_bytes;
        for mut frame in self.frames.drain(..) {
            if frame.open_data.is_some() {
                let len = (frame.bytes.len() - HEAD_LEN) as u32;
                frame.bytes[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
            }
            out.push(frame.bytes);
        }
        self.data_bytes = 0;
        (self.enqueued_seq, data)
    }

    /// Records that everything up to `seq` reached the socket, and wakes waiting writers.
    pub(crate) fn written(&mut self, seq: u64) -> Vec<Waker> {
        self.written_seq = seq;
        std::mem::take(&mut self.waiters)
    }

    /// Takes back a written frame buffer for reuse.
    pub(crate) fn recycle(&mut self, mut bytes: BytesMut) {
        if self.spare.len() < SPARE_BUFFERS && bytes.capacity() >= HEAD_LEN + DATA_FRAME_LEN {
            bytes.clear();
            self.spare.push(bytes);
        }
    }

    pub(crate) fn wait(&mut self, waker: &Waker) {
        if !self.waiters.iter().any(|w| w.will_wake(waker)) {
            self.waiters.push(waker.clone());
        }
    }

    pub(crate) fn take_waiters(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.waiters)
    }

    pub(crate) fn queued_data_bytes(&self) -> usize {
        self.data_bytes
    }
}
