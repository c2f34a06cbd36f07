//! Errors of setting up or finishing an exec session.
use crate::remotecommand::UpgradeError;
use crate::spdy::SessionError;

/// Why an exec session could not be set up or finished.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The client did not create every expected SPDY stream in time (upstream's text).
    #[error("timed out waiting for client to create streams")]
    StreamCreationTimeout,
    /// The connection ended before the client created its streams.
    #[error("connection closed before the client created its streams")]
    ClosedBeforeStreams,
    /// The SPDY session failed.
    #[error(transparent)]
    Spdy(#[from] SessionError),
    /// The upgrade was refused (client side).
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// Reading or writing the connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Anything else on the way to the backend (dial, TLS, HTTP), already worded for the user.
    #[error("{0}")]
    Other(String),
}
