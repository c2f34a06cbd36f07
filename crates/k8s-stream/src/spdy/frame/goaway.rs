//! GOAWAY (type 7): the sender opens no more streams and accepts none above `last_good`.
use bytes::BytesMut;

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, GoAwayStatus, Head, StreamId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAway {
    /// The last peer-opened stream the sender accepted (0 if none).
    pub last_good: StreamId,
    pub status: GoAwayStatus,
}

impl GoAway {
    pub fn load(head: &Head, payload: &[u8]) -> Result<Self, FrameError> {
        if head.flags != 0 {
            return Err(FrameError::BadFlags {
                frame: ControlType::GoAway,
                flags: head.flags,
            });
        }
        if payload.len() != 8 {
            return Err(FrameError::BadLength {
                frame: ControlType::GoAway,
                len: payload.len(),
            });
        }
        Ok(GoAway {
            last_good: StreamId::new(be_u32(payload, 0)),
            status: GoAwayStatus::from_u32(be_u32(payload, 4)),
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        encode_control(ControlType::GoAway, 0, 8, dst);
        dst.extend_from_slice(&self.last_good.get().to_be_bytes());
        dst.extend_from_slice(&self.status.code().to_be_bytes());
    }
}
