//! The WebSocket side of exec: the channel framing (sans-IO, [`channel`]) and an async session
//! over an upgraded connection ([`session`]).
//!
//! Checked against: apimachinery `util/httpstream/wsstream/conn.go`, client-go
//! `tools/remotecommand/websocket.go`, kubelet `cri/streaming/remotecommand/websocket.go`.
pub mod channel;
pub mod session;

pub use crate::remotecommand::WsProtocol;
pub use channel::{ChannelCodec, ChannelCodecError, ChannelFrame, EncodedMessage, CLOSE_SIGNAL};
pub use session::{
    start, ChannelReader, ChannelReaders, ChannelWriter, WsRole, WsSession, WsSessionConfig,
};
