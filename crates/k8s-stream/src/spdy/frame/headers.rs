//! HEADERS (type 8): extra headers on an open stream (spdystream reads and drops them).
use bytes::{Bytes, BytesMut};

use super::{stream_block, ControlType, FrameError, Head, StreamId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersFrame {
    pub stream_id: StreamId,
    pub fin: bool,
    /// Compressed name/value block.
    pub header_block: Bytes,
}

impl HeadersFrame {
    pub fn load(head: &Head, payload: Bytes) -> Result<Self, FrameError> {
        let (stream_id, fin, header_block) =
            stream_block::load(ControlType::Headers, head, payload)?;
        Ok(Self {
            stream_id,
            fin,
            header_block,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        stream_block::encode(
            ControlType::Headers,
            self.stream_id,
            self.fin,
            &self.header_block,
            dst,
        );
    }
}
