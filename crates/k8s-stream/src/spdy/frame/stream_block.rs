//! The payload SYN_REPLY and HEADERS share: a 31-bit stream id, then a compressed header block.
use bytes::{Bytes, BytesMut};

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head, StreamId, FLAG_FIN};

/// Stream id, FIN flag and header block of a `frame` (SYN_REPLY or HEADERS).
pub(super) fn load(
    frame: ControlType,
    head: &Head,
    payload: Bytes,
) -> Result<(StreamId, bool, Bytes), FrameError> {
    if payload.len() < 4 {
        return Err(FrameError::BadLength {
            frame,
            len: payload.len(),
        });
    }
    let stream_id = StreamId::new(be_u32(&payload, 0));
    if stream_id.is_zero() {
        return Err(FrameError::ZeroStreamId);
    }
    Ok((stream_id, head.flags & FLAG_FIN != 0, payload.slice(4..)))
}

pub(super) fn encode(
    frame: ControlType,
    stream_id: StreamId,
    fin: bool,
    header_block: &[u8],
    dst: &mut BytesMut,
) {
    let flags = if fin { FLAG_FIN } else { 0 };
    encode_control(frame, flags, 4 + header_block.len(), dst);
    dst.extend_from_slice(&stream_id.get().to_be_bytes());
    dst.extend_from_slice(header_block);
}
