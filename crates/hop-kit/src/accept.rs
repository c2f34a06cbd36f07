//! The accept step every hop's TCP listener shares.

use std::future::Future;
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

/// Runs a hop's serving loop as a task on the runtime's workers, and waits for it.
///
/// `#[tokio::main]` polls `main`'s future on the main thread, which is not a worker: a server
/// awaited there accepts on that thread, and each connection it spawns is handed to a parked
/// worker, one thread wake-up more per connection before its TLS handshake starts. From a
/// worker, the spawned connection runs on the same thread as soon as the accept loop yields.
/// A panic in the loop is raised again here.
pub async fn on_worker<F>(serve: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(serve).await {
        Ok(output) => output,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels the task, and then main is not polled either.
            Err(err) => unreachable!("serving task cancelled: {err}"),
        },
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

    /// As under `#[tokio::main]`: the future given to `block_on` runs on the calling thread.
    #[test]
    fn the_serving_loop_runs_on_a_worker_not_on_main() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("worker")
            .enable_all()
            .build()
            .expect("runtime");
        let thread_name = || std::thread::current().name().map(str::to_owned);
        let caller = thread_name();
        assert_ne!(caller.as_deref(), Some("worker"));
        assert_eq!(runtime.block_on(async { thread_name() }), caller);
        let served_on = runtime.block_on(on_worker(async move { thread_name() }));
        assert_eq!(served_on.as_deref(), Some("worker"));
    }

    #[test]
    #[should_panic(expected = "the serving loop failed")]
    fn a_panic_in_the_serving_loop_reaches_main() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(on_worker(async { panic!("the serving loop failed") }));
    }
}
