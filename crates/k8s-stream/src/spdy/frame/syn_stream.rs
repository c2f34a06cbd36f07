//! SYN_STREAM (type 1): opens a stream and carries its request headers.
use bytes::{Bytes, BytesMut};

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head, StreamId, FLAG_FIN, FLAG_UNIDIRECTIONAL};

/// Fixed bytes before the header block: stream id, associated-to id, priority, slot.
const FIXED_LEN: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynStream {
    pub stream_id: StreamId,
    /// 0 unless this is a server push; Kubernetes never sets it.
    pub associated_to: StreamId,
    /// 0 (highest) ..= 7; carried in the top 3 bits of its byte.
    pub priority: u8,
    pub slot: u8,
    pub fin: bool,
    pub unidirectional: bool,
    /// Compressed name/value block.
    pub header_block: Bytes,
}

impl SynStream {
    pub fn load(head: &Head, payload: Bytes) -> Result<Self, FrameError> {
        if payload.len() < FIXED_LEN {
            return Err(FrameError::BadLength {
                frame: ControlType::SynStream,
                len: payload.len(),
            });
        }
        let stream_id = StreamId::new(be_u32(&payload, 0));
        if stream_id.is_zero() {
            return Err(FrameError::ZeroStreamId);
        }
        Ok(SynStream {
            stream_id,
            associated_to: StreamId::new(be_u32(&payload, 4)),
            priority: payload[8] >> 5,
            slot: payload[9],
            fin: head.flags & FLAG_FIN != 0,
            unidirectional: head.flags & FLAG_UNIDIRECTIONAL != 0,
            header_block: payload.slice(FIXED_LEN..),
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        let mut flags = 0;
        if self.fin {
            flags |= FLAG_FIN;
        }
        if self.unidirectional {
            flags |= FLAG_UNIDIRECTIONAL;
        }
        let len = FIXED_LEN + self.header_block.len();
        encode_control(ControlType::SynStream, flags, len, dst);
        dst.extend_from_slice(&self.stream_id.get().to_be_bytes());
        dst.extend_from_slice(&self.associated_to.get().to_be_bytes());
        dst.extend_from_slice(&[(self.priority & 0x07) << 5, self.slot]);
        dst.extend_from_slice(&self.header_block);
    }
}
