//! Watches a streaming connection at the byte level: it reports when the client is gone (EOF or
//! an I/O error on the socket) and enforces the idle timeout (no bytes either way for
//! `--stream-idle-timeout`: the connection is failed, as upstream's streaming server closes an
//! idle connection). The exec session kills its process when the client is gone, even if the
//! process is silent.
//!
//! Upstream (kubelet `cri/streaming/server.go`, spdystream `SetIdleTimeout`, x/net websocket
//! deadlines) counts stream data; here any byte counts, including SPDY pings and WebSocket
//! keep-alives, so a client that pings (client-go: every 5 s) is never idle.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

// tokio's clock, so tests can run it paused.
use tokio::time::Instant;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_ms: AtomicU64,
    gone: CancellationToken,
    /// Pending reader/writer, woken when the connection is failed for idleness.
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// An I/O stream that notes activity and the client's departure.
pub struct WatchedConnection<T> {
    io: T,
    activity: Arc<Activity>,
}

/// Cancelled once the client is gone or the connection was idle too long.
pub type ClientGone = CancellationToken;

impl<T> WatchedConnection<T> {
    /// Wraps `io`; with `idle_timeout`, a background task fails the connection once it has been
    /// idle that long (the task ends with the connection).
    pub fn new(io: T, idle_timeout: Option<Duration>) -> (Self, ClientGone) {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            gone: CancellationToken::new(),
            read_waker: AtomicWaker::new(),
            write_waker: AtomicWaker::new(),
        });
        if let Some(timeout) = idle_timeout.filter(|t| !t.is_zero()) {
            let watched = Arc::downgrade(&activity);
            let gone = activity.gone.clone();
            tokio::spawn(async move {
                let mut wait = timeout;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = gone.cancelled() => return,
                    }
                    let Some(activity) = watched.upgrade() else {
                        return;
                    };
                    let idle = activity.idle_for();
                    if idle >= timeout {
                        tracing::info!(?timeout, "streaming connection idle; closing it");
                        activity.gone.cancel();
                        activity.read_waker.wake();
                        activity.write_waker.wake();
                        return;
                    }
                    wait = timeout - idle;
                }
            });
        }
        let gone = activity.gone.clone();
        (Self { io, activity }, gone)
    }

    fn closed_error() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "streaming connection idle timeout",
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedConnection<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.activity.gone.is_cancelled() {
            return Poll::Ready(Err(Self::closed_error()));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.activity.touch(),
            // Nothing read into a buffer with room: EOF.
            Poll::Ready(Ok(())) if room => self.activity.gone.cancel(),
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => self.activity.gone.cancel(),
            // Woken by the idle timer too, so the session notices.
            Poll::Pending => self.activity.read_waker.register(cx.waker()),
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedConnection<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.activity.gone.is_cancelled() {
            return Poll::Ready(Err(Self::closed_error()));
        }
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        match &polled {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.touch(),
            Poll::Ready(Err(_)) => self.activity.gone.cancel(),
            Poll::Pending => self.activity.write_waker.register(cx.waker()),
            Poll::Ready(Ok(_)) => {}
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn eof_means_the_client_is_gone() {
        let (a, b) = tokio::io::duplex(64);
        let (mut watched, gone) = WatchedConnection::new(a, None);
        drop(b);
        let mut buf = [0u8; 4];
        assert_eq!(watched.read(&mut buf).await.expect("eof"), 0);
        assert!(gone.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_failed_and_activity_keeps_them() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut watched, gone) = WatchedConnection::new(a, Some(Duration::from_secs(10)));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            loop {
                match watched.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        });
        // Activity every 6 s keeps the connection for longer than the timeout.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"x").await.expect("write");
            tokio::task::yield_now().await;
            assert!(!gone.is_cancelled());
        }
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(gone.is_cancelled());
        let err = reader.await.expect("join").expect_err("idle error");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
