//! PING (type 6): liveness probe; the receiver of a peer-parity id echoes it unchanged.
use bytes::BytesMut;

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Odd when the client sent it first, even for the server.
    pub id: u32,
}

impl Ping {
    pub fn load(head: &Head, payload: &[u8]) -> Result<Self, FrameError> {
        if payload.len() != 4 {
            return Err(FrameError::BadLength {
                frame: ControlType::Ping,
                len: payload.len(),
            });
        }
        let id = be_u32(payload, 0);
        if id == 0 {
            return Err(FrameError::ZeroPingId);
        }
        if head.flags != 0 {
            return Err(FrameError::BadFlags {
                frame: ControlType::Ping,
                flags: head.flags,
            });
        }
        Ok(Ping { id })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        encode_control(ControlType::Ping, 0, 4, dst);
        dst.extend_from_slice(&self.id.to_be_bytes());
    }
}
