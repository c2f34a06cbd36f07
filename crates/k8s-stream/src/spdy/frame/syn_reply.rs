//! SYN_REPLY (type 2): accepts a stream and carries its response headers.
use bytes::{Bytes, BytesMut};

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head, StreamId, FLAG_FIN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynReply {
    pub stream_id: StreamId,
    pub fin: bool,
    /// Compressed name/value block.
    pub header_block: Bytes,
}

impl SynReply {
    pub fn load(head: &Head, payload: Bytes) -> Result<Self, FrameError> {
        if payload.len() < 4 {
            return Err(FrameError::BadLength {
                frame: ControlType::SynReply,
                len: payload.len(),
            });
        }
        let stream_id = StreamId::new(be_u32(&payload, 0));
        if stream_id.is_zero() {
            return Err(FrameError::ZeroStreamId);
        }
        Ok(SynReply {
            stream_id,
            fin: head.flags & FLAG_FIN != 0,
            header_block: payload.slice(4..),
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        let flags = if self.fin { FLAG_FIN } else { 0 };
        encode_control(
            ControlType::SynReply,
            flags,
            4 + self.header_block.len(),
            dst,
        );
        dst.extend_from_slice(&self.stream_id.get().to_be_bytes());
        dst.extend_from_slice(&self.header_block);
    }
}
