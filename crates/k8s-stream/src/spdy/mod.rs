//! SPDY/3.1 as moby/spdystream speaks it (the transport under `kubectl exec` over SPDY).
//!
//! - [`frame`]: sans-IO parse/encode of every frame type; header blocks stay compressed here.
//! - [`header_block`]: the zlib-with-dictionary name/value block codec, one context per direction.
//! - [`session`]: the async session (client or server role) over any byte stream.
//!
//! Behaviour checked against moby/spdystream `spdy/{types,read,write,dictionary}.go`,
//! `connection.go` and `stream.go` (HEAD f0be51f).
pub mod dictionary;
pub mod frame;
pub mod header_block;
pub mod session;

pub use frame::{GoAwayStatus, RstStatus, StreamId};
pub use session::{
    header, Headers, Incoming, IncomingStream, Role, Session, SessionConfig, SessionError, Stream,
    StreamReader, StreamWriter,
};
