//! The 8-byte head shared by control and data frames.
use super::{be_u32, FrameError, StreamId};

/// Bytes in every frame head.
pub const HEAD_LEN: usize = 8;
/// The protocol version written in control heads (`0x80 0x03`); received heads are not checked.
pub const SPDY_VERSION: u16 = 3;
/// FIN on control frames (SYN_STREAM, SYN_REPLY, HEADERS) and on data frames.
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL on SYN_STREAM: the sender will not receive on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// The control frame types spdystream knows (NOOP 5 and CREDENTIAL 10 are not among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ControlType {
    SynStream = 1,
    SynReply = 2,
    RstStream = 3,
    Settings = 4,
    Ping = 6,
    GoAway = 7,
    Headers = 8,
    WindowUpdate = 9,
}

impl ControlType {
    pub fn from_u16(ty: u16) -> Option<Self> {
        Some(match ty {
            1 => Self::SynStream,
            2 => Self::SynReply,
            3 => Self::RstStream,
            4 => Self::Settings,
            6 => Self::Ping,
            7 => Self::GoAway,
            8 => Self::Headers,
            9 => Self::WindowUpdate,
            _ => return None,
        })
    }
}

/// Control or data, told apart by the top bit of the first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Control { version: u16, ty: ControlType },
    Data { stream_id: StreamId },
}

/// A parsed frame head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub kind: Kind,
    pub flags: u8,
    /// Payload bytes after the head (24 bits).
    pub length: usize,
}

impl Head {
    /// Reads the head at the start of `buf` and returns it only once the whole frame is in
    /// `buf`; refuses an over-long or unknown frame as soon as the head is visible.
    pub fn peek(buf: &[u8], max_len: usize) -> Result<Option<Head>, FrameError> {
        if buf.len() < HEAD_LEN {
            return Ok(None);
        }
        let first = be_u32(buf, 0);
        let second = be_u32(buf, 4);
        let flags = (second >> 24) as u8;
        let length = (second & 0xFF_FFFF) as usize;
        let kind = if first & 0x8000_0000 != 0 {
            let ty = (first & 0xFFFF) as u16;
            let ty = ControlType::from_u16(ty).ok_or(FrameError::UnknownControlType(ty))?;
            Kind::Control {
                version: ((first >> 16) & 0x7FFF) as u16,
                ty,
            }
        } else {
            Kind::Data {
                stream_id: StreamId::new(first),
            }
        };
        if length > max_len {
            return Err(FrameError::TooLarge {
                len: length,
                max: max_len,
            });
        }
        if buf.len() < HEAD_LEN + length {
            return Ok(None);
        }
        Ok(Some(Head {
            kind,
            flags,
            length,
        }))
    }
}

/// Appends a control head (`0x80 0x03`, type, flags, 24-bit length).
pub(crate) fn encode_control(ty: ControlType, flags: u8, length: usize, dst: &mut bytes::BytesMut) {
    debug_assert!(length <= super::MAX_PAYLOAD_LEN);
    let first = 0x8000_0000 | (u32::from(SPDY_VERSION) << 16) | ty as u32;
    dst.extend_from_slice(&first.to_be_bytes());
    dst.extend_from_slice(&((u32::from(flags) << 24) | length as u32).to_be_bytes());
}

/// Appends a data head (stream id, flags, 24-bit length).
pub(crate) fn encode_data(
    stream_id: StreamId,
    flags: u8,
    length: usize,
    dst: &mut bytes::BytesMut,
) {
    debug_assert!(length <= super::MAX_PAYLOAD_LEN);
    dst.extend_from_slice(&stream_id.get().to_be_bytes());
    dst.extend_from_slice(&((u32::from(flags) << 24) | length as u32).to_be_bytes());
}
