//! RST_STREAM (type 3): ends a stream abnormally in both directions.
use bytes::BytesMut;

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head, RstStatus, StreamId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstStream {
    pub stream_id: StreamId,
    pub status: RstStatus,
}

impl RstStream {
    pub fn load(_head: &Head, payload: &[u8]) -> Result<Self, FrameError> {
        if payload.len() != 8 {
            return Err(FrameError::BadLength {
                frame: ControlType::RstStream,
                len: payload.len(),
            });
        }
        let stream_id = StreamId::new(be_u32(payload, 0));
        let status = be_u32(payload, 4);
        if status == 0 {
            return Err(FrameError::ZeroRstStatus);
        }
        if stream_id.is_zero() {
            return Err(FrameError::ZeroStreamId);
        }
        Ok(RstStream {
            stream_id,
            status: RstStatus::from_u32(status),
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        encode_control(ControlType::RstStream, 0, 8, dst);
        dst.extend_from_slice(&self.stream_id.get().to_be_bytes());
        dst.extend_from_slice(&self.status.code().to_be_bytes());
    }
}
