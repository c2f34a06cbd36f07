//! The 31-bit stream id.

/// A SPDY stream id: 31 bits, odd when the client opened the stream, even for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId(u32);

impl StreamId {
    /// The largest id (0x7FFFFFFF).
    pub const MAX: StreamId = StreamId(0x7FFF_FFFF);
    pub const ZERO: StreamId = StreamId(0);

    /// Takes the low 31 bits; the top bit is reserved and ignored on receipt.
    pub fn new(id: u32) -> Self {
        StreamId(id & 0x7FFF_FFFF)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Odd ids belong to the client side of the connection.
    pub fn is_client_initiated(self) -> bool {
        self.0 % 2 == 1
    }
}

impl From<u32> for StreamId {
    fn from(id: u32) -> Self {
        StreamId::new(id)
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
