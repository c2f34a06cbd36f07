//! k8s-stream: the wire protocols of the `kubectl exec` chain, implemented once for every hop.
//!
//! - [`spdy`]: SPDY/3.1 as moby/spdystream speaks it — sans-IO frames and header blocks, and an
//!   async session over any `AsyncRead + AsyncWrite`.
//! - [`remotecommand`]: the `channel.k8s.io` exec protocol family (v1–v5): versions, stream
//!   types, the error stream's `Status`, terminal resize, upgrade negotiation.
//! - [`ws`]: the WebSocket channel framing (binary and base64) and its async session.
//! - [`exec`]: typed exec streams (stdin/stdout/stderr/resize/error) over either transport, for the
//!   server side (a streaming server) and the client side (the apiserver's translator, tests, bench).
//! - [`translate`]: the apiserver's WebSocket v5 → SPDY stream translator.
//! - [`go_quote()`]: Go's `%q`, for error texts quoted as production quotes them.
//! - [`Bounded`]: a peer's value as a log field, cut at [`LOG_VALUE_BYTES`].
pub mod exec;
mod go_quote;
mod log_value;
pub use go_quote::go_quote;
pub use log_value::{Bounded, LOG_VALUE_BYTES};
pub mod remotecommand;
pub mod spdy;
pub mod translate;
pub mod ws;
