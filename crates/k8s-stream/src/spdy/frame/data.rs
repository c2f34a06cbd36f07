//! DATA frames: stream payload; an empty one with FIN is a half-close.
use bytes::{Bytes, BytesMut};

use super::head::encode_data;
use super::{FrameError, Head, StreamId, FLAG_FIN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub stream_id: StreamId,
    pub fin: bool,
    pub payload: Bytes,
}

impl Data {
    pub fn load(head: &Head, stream_id: StreamId, payload: Bytes) -> Result<Self, FrameError> {
        if stream_id.is_zero() {
            return Err(FrameError::ZeroStreamId);
        }
        Ok(Data {
            stream_id,
            fin: head.flags & FLAG_FIN != 0,
            payload,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        Self::encode_head(self.stream_id, self.fin, self.payload.len(), dst);
        dst.extend_from_slice(&self.payload);
    }

    /// Appends just the 8-byte head of a data frame with `len` payload bytes, for writers that
    /// put the payload in place themselves (`len` must be at most 16 MiB − 1).
    pub fn encode_head(stream_id: StreamId, fin: bool, len: usize, dst: &mut BytesMut) {
        encode_data(stream_id, if fin { FLAG_FIN } else { 0 }, len, dst);
    }
}
