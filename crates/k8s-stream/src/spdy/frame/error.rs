use super::ControlType;

/// Why a byte sequence is not a valid SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("invalid control frame type {0}")]
    UnknownControlType(u16),
    #[error("{frame:?} frame has invalid payload length {len}")]
    BadLength { frame: ControlType, len: usize },
    #[error("{frame:?} frame has invalid flags {flags:#04x}")]
    BadFlags { frame: ControlType, flags: u8 },
    #[error("stream id zero is disallowed")]
    ZeroStreamId,
    #[error("RST_STREAM with status zero")]
    ZeroRstStatus,
    #[error("PING with id zero")]
    ZeroPingId,
}
