//! Sans-IO SPDY/3.1 frames: parse from bytes, encode to bytes, nothing else.
//!
//! One file per frame type, each with `load(head, payload)` (checks the rules a receiver
//! enforces) and `encode(dst)`. Header blocks stay compressed here; see
//! [`super::header_block`]. Layouts and receive-side checks follow moby/spdystream
//! `spdy/types.go`, `spdy/read.go` and `spdy/write.go`: the version field is not checked,
//! stream id 0 is refused on stream-bearing frames, PING/GOAWAY/WINDOW_UPDATE want zero flags,
//! GOAWAY/WINDOW_UPDATE want exactly 8 payload bytes, RST_STREAM wants a non-zero status, and an
//! unknown control type is an error (spdystream ends the connection on it).
mod data;
mod error;
mod goaway;
mod head;
mod headers;
mod ping;
mod reason;
mod rst_stream;
mod settings;
mod stream_block;
mod stream_id;
mod syn_reply;
mod syn_stream;
mod window_update;

pub use data::Data;
pub use error::FrameError;
pub use goaway::GoAway;
pub use head::{ControlType, Head, Kind, FLAG_FIN, FLAG_UNIDIRECTIONAL, HEAD_LEN, SPDY_VERSION};
pub use headers::HeadersFrame;
pub use ping::Ping;
pub use reason::{GoAwayStatus, RstStatus};
pub use rst_stream::RstStream;
pub use settings::{Setting, Settings, FLAG_CLEAR_SETTINGS};
pub use stream_id::StreamId;
pub use syn_reply::SynReply;
pub use syn_stream::SynStream;
pub use window_update::WindowUpdate;

use bytes::{Bytes, BytesMut};

/// Largest payload the 24-bit length field can express (16 MiB − 1).
pub const MAX_PAYLOAD_LEN: usize = 0xFF_FFFF;

/// One SPDY/3.1 frame. Header blocks are still zlib-compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream(SynStream),
    SynReply(SynReply),
    RstStream(RstStream),
    Settings(Settings),
    Ping(Ping),
    GoAway(GoAway),
    Headers(HeadersFrame),
    WindowUpdate(WindowUpdate),
    Data(Data),
}

impl Frame {
    /// Parses one frame from the start of `buf`, copying its payload.
    ///
    /// `Ok(None)` means `buf` does not yet hold a whole frame (read more bytes); `Ok(Some((frame,
    /// used)))` gives the frame and how many bytes of `buf` it took. A payload longer than
    /// `max_len` is refused as soon as the 8-byte head is visible, before it is buffered.
    pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(head) = Head::peek(buf, max_len)? else {
            return Ok(None);
        };
        let end = HEAD_LEN + head.length;
        let payload = Bytes::copy_from_slice(&buf[HEAD_LEN..end]);
        Ok(Some((Frame::load(&head, payload)?, end)))
    }

    /// Like [`Frame::parse`] but takes the frame out of `buf` without copying its payload (the
    /// frame shares `buf`'s allocation). Leaves `buf` untouched when it returns `Ok(None)`.
    pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
        let Some(head) = Head::peek(buf, max_len)? else {
            return Ok(None);
        };
        let mut whole = buf.split_to(HEAD_LEN + head.length);
        let payload = whole.split_off(HEAD_LEN).freeze();
        Frame::load(&head, payload).map(Some)
    }

    /// Builds the frame a head announces from its whole payload.
    pub fn load(head: &Head, payload: Bytes) -> Result<Frame, FrameError> {
        Ok(match head.kind {
            Kind::Data { stream_id } => Frame::Data(Data::load(head, stream_id, payload)?),
            Kind::Control { ty, .. } => match ty {
                ControlType::SynStream => Frame::SynStream(SynStream::load(head, payload)?),
                ControlType::SynReply => Frame::SynReply(SynReply::load(head, payload)?),
                ControlType::RstStream => Frame::RstStream(RstStream::load(head, &payload)?),
                ControlType::Settings => Frame::Settings(Settings::load(head, &payload)?),
                ControlType::Ping => Frame::Ping(Ping::load(head, &payload)?),
                ControlType::GoAway => Frame::GoAway(GoAway::load(head, &payload)?),
                ControlType::Headers => Frame::Headers(HeadersFrame::load(head, payload)?),
                ControlType::WindowUpdate => {
                    Frame::WindowUpdate(WindowUpdate::load(head, &payload)?)
                }
            },
        })
    }

    /// Appends the frame's wire bytes to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::SynStream(f) => f.encode(dst),
            Frame::SynReply(f) => f.encode(dst),
            Frame::RstStream(f) => f.encode(dst),
            Frame::Settings(f) => f.encode(dst),
            Frame::Ping(f) => f.encode(dst),
            Frame::GoAway(f) => f.encode(dst),
            Frame::Headers(f) => f.encode(dst),
            Frame::WindowUpdate(f) => f.encode(dst),
            Frame::Data(f) => f.encode(dst),
        }
    }
}

/// Reads a big-endian u32 at `at`; callers have checked the length.
pub(crate) fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
