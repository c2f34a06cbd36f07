//! The remote command protocol (`channel.k8s.io` family, v1–v5), sans-IO: versions and
//! subprotocols, stream types, exec options, terminal resize events, the error stream's
//! `Status` and how a client decodes it, and the upgrade negotiation of both sides.
//!
//! Upstream files each part was checked against are named in the submodules' docs.
pub mod client_upgrade;
pub mod error_stream;
pub mod negotiate;
pub mod options;
pub mod resize;
pub mod status;
pub mod stream_type;
pub mod version;

pub use client_upgrade::{
    spdy_request_headers, validate_spdy_response, validate_websocket_response,
    websocket_request_headers, UpgradeError, WsClientHandshake,
};
pub use error_stream::{decode_error_stream, decode_status, status_outcome, RemoteError};
pub use negotiate::{
    is_websocket_request, negotiate, websocket_subprotocols, ServerProtocols, Upgrade,
    UpgradeRejection,
};
pub use options::ExecOptions;
pub use resize::{ResizeDecodeError, TerminalSize, TerminalSizeDecoder};
pub use status::{Status, StatusCause, StatusDetails};
pub use stream_type::{StreamType, STREAM_TYPE_HEADER};
pub use version::{ProtocolVersion, StreamProtocol, WsProtocol};
