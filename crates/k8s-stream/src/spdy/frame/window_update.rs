//! WINDOW_UPDATE (type 9): SPDY/3.1 flow control credit. spdystream parses and drops it, and so
//! does our session; it is never waited for.
use bytes::BytesMut;

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head, StreamId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdate {
    /// 0 means the whole connection.
    pub stream_id: StreamId,
    /// 31 bits.
    pub delta: u32,
}

impl WindowUpdate {
    pub fn load(head: &Head, payload: &[u8]) -> Result<Self, FrameError> {
        if head.flags != 0 {
            return Err(FrameError::BadFlags {
                frame: ControlType::WindowUpdate,
                flags: head.flags,
            });
        }
        if payload.len() != 8 {
            return Err(FrameError::BadLength {
                frame: ControlType::WindowUpdate,
                len: payload.len(),
            });
        }
        Ok(WindowUpdate {
            stream_id: StreamId::new(be_u32(payload, 0)),
            delta: be_u32(payload, 4) & 0x7FFF_FFFF,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        encode_control(ControlType::WindowUpdate, 0, 8, dst);
        dst.extend_from_slice(&self.stream_id.get().to_be_bytes());
        dst.extend_from_slice(&(self.delta & 0x7FFF_FFFF).to_be_bytes());
    }
}
