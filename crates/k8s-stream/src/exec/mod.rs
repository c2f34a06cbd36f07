//! One exec API for every hop, over either transport.
//!
//! After an HTTP upgrade (negotiated with [`crate::remotecommand::negotiate`] on the server or
//! validated with [`crate::remotecommand::validate_spdy_response`] /
//! [`crate::remotecommand::validate_websocket_response`] on the client), hand the upgraded
//! connection and the [`StreamProtocol`] to:
//!
//! - [`serve`] (streaming server side) → [`ServerStreams`]: `stdin` to read, `stdout`/`stderr`
//!   to write (shut them down at the process's EOF), `resize` events, and a [`StatusSink`] whose
//!   [`StatusSink::finish`] writes the final status in the version's format and closes the
//!   connection (SPDY GOAWAY, WebSocket close 1000).
//! - [`connect`] (client side) → [`ClientStreams`]: `stdin` to write (`shutdown()` = stdin EOF),
//!   `stdout`/`stderr` to read, a [`ResizeSender`], and an [`OutcomeFuture`] resolving to `Ok(())`
//!   or the [`RemoteError`](crate::remotecommand::RemoteError) client-go would report.
//!
//! Buffers are bounded everywhere: a stalled reader stops the session reading the socket.
//!
//! Checked against: client-go `tools/remotecommand/{v1..v5,websocket,spdy}.go`, kubelet
//! `cri/streaming/remotecommand/{httpstream,websocket,exec}.go`.
mod client;
mod error;
mod pump;
mod server;

pub use client::{
    connect, connect_with, ClientStreams, ConnectConfig, OutcomeFuture, ResizeSender,
};
pub use error::ExecError;
pub use pump::{pump, PumpBuffer, PUMP_BUFFER};
pub use server::{
    error_stream_payload, serve, ExecOutcome, ServeConfig, ServerStreams, StatusSink,
};

pub use crate::remotecommand::{ExecOptions, StreamProtocol};

/// A boxed byte source (stdin on the server, stdout/stderr on the client).
pub type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// A boxed byte sink (stdout/stderr on the server, stdin on the client).
pub type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
