//! What one client connection may take from a listening hop: time to finish its TLS handshake,
//! time to send a request head, the head's size, and a place among a bounded number of open
//! connections.
//!
//! Go's `net/http` bounds a TLS handshake by the smallest of the server's non-zero
//! `ReadTimeout`, `ReadHeaderTimeout` and `WriteTimeout` (`Server.tlsHandshakeTimeout`) and a
//! request head by `ReadHeaderTimeout` (else `ReadTimeout`); the head, request line included,
//! may take `MaxHeaderBytes` (default 1 MiB) plus 4096 bytes of slack. Go has no bound on
//! connections; like `netutil.LimitListener`, [`ConnectionSlots`] stops accepting while the
//! bound is reached, so the kernel's backlog holds the rest.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Go's `http.DefaultMaxHeaderBytes`.
pub const GO_MAX_HEADER_BYTES: usize = 1 << 20;
/// What Go reads of a request head beyond `MaxHeaderBytes` before it refuses it
/// (`initialReadLimitSize`).
const GO_HEADER_SLACK: usize = 4096;

/// The limits a listening hop serves its connections with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From accept to a finished TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// To send a request head, from the moment the server waits for one.
    pub request_header_timeout: Duration,
    /// Largest request head, request line included.
    pub max_header_bytes: usize,
    /// Connections open at once; accepting pauses at the bound.
    pub max_connections: usize,
}

/// Open connections a hop allows when nothing upstream bounds them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

impl ConnectionLimits {
    /// kube-apiserver's secure serving (`ReadHeaderTimeout: 32 s`, `MaxHeaderBytes: 1 MiB`, no
    /// `ReadTimeout`): 32 s for the handshake and for each request head.
    pub const KUBE_APISERVER: Self = Self {
        tls_handshake_timeout: Duration::from_secs(32),
        request_header_timeout: Duration::from_secs(32),
        max_header_bytes: GO_MAX_HEADER_BYTES,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    };

    /// The kubelet's server (`ReadTimeout` and `WriteTimeout` 4 h, no `ReadHeaderTimeout`):
    /// upstream bounds nothing tighter than 4 h; the lab keeps a 10 s handshake and 32 s head
    /// bound as the API server's, which its flags change.
    pub const KUBELET: Self = Self {
        tls_handshake_timeout: Duration::from_secs(10),
        request_header_timeout: Duration::from_secs(32),
        max_header_bytes: GO_MAX_HEADER_BYTES,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    };

    /// The CRI streaming server (plain `http.Server` with no timeouts: upstream holds an idle
    /// connection forever); the lab bounds the head as the API server does.
    pub const STREAMING_SERVER: Self = Self {
        tls_handshake_timeout: Duration::from_secs(10),
        request_header_timeout: Duration::from_secs(32),
        max_header_bytes: GO_MAX_HEADER_BYTES,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    };

    /// Bytes a request head may take before it is refused, as Go counts them.
    pub fn max_head_bytes(&self) -> usize {
        self.max_header_bytes + GO_HEADER_SLACK
    }

    /// An HTTP/1.1 server builder with the head's time and size bounds.
    pub fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        let head = self.max_head_bytes();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.request_header_timeout)
            .max_header_size(head)
            .max_buf_size(head.max(8192));
        builder
    }

    /// `handshake` bounded by the TLS handshake timeout.
    pub async fn tls_handshake<T, E>(
        &self,
        handshake: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, HandshakeError<E>> {
        match tokio::time::timeout(self.tls_handshake_timeout, handshake).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(err)) => Err(HandshakeError::Failed(err)),
            Err(_) => Err(HandshakeError::TimedOut(self.tls_handshake_timeout)),
        }
    }
}

/// A TLS handshake that failed or took too long.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError<E> {
    #[error("TLS handshake failed: {0}")]
    Failed(E),
    #[error("TLS handshake timed out after {0:?}")]
    TimedOut(Duration),
}

/// The flags that change a hop's [`ConnectionLimits`]; absent ones keep the hop's upstream
/// values (docs/architecture.md lists them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Time a client gets to finish its TLS handshake [default: the hop's upstream value].
    #[arg(long, env = "EXECLAB_TLS_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: Option<Duration>,
    /// Time a client gets to send a request head [default: the hop's upstream value].
    #[arg(long, env = "EXECLAB_REQUEST_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    pub request_header_timeout: Option<Duration>,
    /// Connections open at once; accepting pauses at the bound [default: 4096].
    #[arg(long, env = "EXECLAB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

impl LimitArgs {
    /// `upstream` with the flags given applied.
    pub fn apply(&self, upstream: ConnectionLimits) -> ConnectionLimits {
        ConnectionLimits {
            tls_handshake_timeout: self
                .tls_handshake_timeout
                .unwrap_or(upstream.tls_handshake_timeout),
            request_header_timeout: self
                .request_header_timeout
                .unwrap_or(upstream.request_header_timeout),
            max_connections: self
                .max_connections
                .map_or(upstream.max_connections, |n| n as usize),
            ..upstream
        }
    }
}

/// Places for open connections: one is taken before each accept and held until the
/// connection ends.
#[derive(Debug, Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub fn new(limits: &ConnectionLimits) -> Self {
        Self(Arc::new(Semaphore::new(limits.max_connections.max(1))))
    }

    /// The next connection on `listener` once a place is free, with that place.
    pub async fn accept(&self, listener: &TcpListener) -> (TcpStream, SocketAddr, ConnectionSlot) {
        let slot = match self.0.clone().acquire_owned().await {
            Ok(permit) => ConnectionSlot(Some(permit)),
            // The semaphore is never closed.
            Err(_) => ConnectionSlot(None),
        };
        let (tcp, peer) = crate::accept(listener).await;
        (tcp, peer, slot)
    }

    /// Places free now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_only_what_they_name() {
        let args = LimitArgs {
            request_header_timeout: Some(Duration::from_secs(3)),
            ..LimitArgs::default()
        };
        let limits = args.apply(ConnectionLimits::KUBE_APISERVER);
        assert_eq!(limits.request_header_timeout, Duration::from_secs(3));
        assert_eq!(limits.tls_handshake_timeout, Duration::from_secs(32));
        assert_eq!(limits.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[tokio::test]
    async fn accepting_waits_for_a_free_place() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ConnectionLimits {
            max_connections: 1,
            ..ConnectionLimits::KUBE_APISERVER
        };
        let slots = ConnectionSlots::new(&limits);
        let _first_client = TcpStream::connect(addr).await.expect("connect");
        let (_tcp, _peer, slot) = slots.accept(&listener).await;
        assert_eq!(slots.available(), 0);
        let _second_client = TcpStream::connect(addr).await.expect("connect");
        let second = slots.accept(&listener);
        tokio::pin!(second);
        // Nothing is accepted while the only place is held ...
        assert!(futures_util::poll!(&mut second).is_pending());
        tokio::task::yield_now().await;
        assert!(futures_util::poll!(&mut second).is_pending());
        // ... and the waiting connection is accepted once it is freed.
        drop(slot);
        let accepted = tokio::time::timeout(Duration::from_secs(5), second).await;
        assert!(accepted.is_ok(), "the second connection was not accepted");
    }
}
