//! The accept step every hop's TCP listener shares.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept (EMFILE and the like) before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The next connection on `listener`, with TCP_NODELAY set, as Go's net package sets it on every
/// TCP connection: the small writes of a session's start (a 101, SPDY replies, the first output
/// bytes) must not wait for the peer's ACK. A failed accept is logged and retried after a pause,
/// never returned: a listener outlives a burst of them.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, peer);
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr);
        let ((server, peer), client) = tokio::join!(accept(&listener), client);
        let client = client.expect("connect");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        assert!(server.nodelay().expect("nodelay"));
    }
}
