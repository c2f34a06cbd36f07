//! ADAPTER (workaround, remove once fixed in k8s-stream): holds back reads of an upgraded
//! connection until the exec session has been constructed.
//!
//! `k8s_stream::spdy::Session::new` spawns its frame reader before it registers the handle token
//! that incoming streams need; when the client's SYN_STREAMs are already buffered (they follow the
//! 101 immediately) and the constructing thread is preempted, the reader refuses them
//! (`RST_STREAM REFUSED_STREAM`). `Session::new` runs synchronously within the first poll of
//! `k8s_stream::exec::serve`, so [`serve_gated`] polls it once, then opens the gate.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Default)]
struct GateState {
    open: AtomicBool,
    waker: AtomicWaker,
}

/// Opens a [`StartupGate`].
pub struct GateOpener(Arc<GateState>);

impl GateOpener {
    pub fn open(&self) {
        self.0.open.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// An I/O stream whose reads wait until its [`GateOpener`] is used (writes pass at once).
pub struct StartupGate<T> {
    io: T,
    state: Arc<GateState>,
}

impl<T> StartupGate<T> {
    pub fn new(io: T) -> (Self, GateOpener) {
        let state = Arc::new(GateState::default());
        (
            Self {
                io,
                state: state.clone(),
            },
            GateOpener(state),
        )
    }
}

/// Runs `start(gated io)` with the gate opened right after the future's first poll.
pub async fn serve_gated<T, F, Fut>(io: T, start: F) -> Fut::Output
where
    F: FnOnce(StartupGate<T>) -> Fut,
    Fut: Future,
{
    let (gated, opener) = StartupGate::new(io);
    let mut fut = std::pin::pin!(start(gated));
    let first = futures_util::poll!(fut.as_mut());
    opener.open();
    match first {
        Poll::Ready(out) => out,
        Poll::Pending => fut.await,
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StartupGate<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.state.open.load(Ordering::Acquire) {
            self.state.waker.register(cx.waker());
            // Re-check: the gate may have opened between the load and the registration.
            if !self.state.open.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StartupGate<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_wait_for_the_opener() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b"hi").await.expect("write");
        let (mut gate, opener) = StartupGate::new(a);
        let mut buf = [0u8; 2];
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            gate.read_exact(&mut buf),
        )
        .await;
        assert!(early.is_err(), "read before the gate opened");
        opener.open();
        gate.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");
        gate.write_all(b"yo").await.expect("write");
        b.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"yo");
    }

    #[tokio::test]
    async fn serve_gated_opens_after_the_first_poll() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b"x").await.expect("write");
        let got = serve_gated(a, |mut io| async move {
            let mut buf = [0u8; 1];
            io.read_exact(&mut buf).await.map(|_| buf)
        })
        .await
        .expect("read");
        assert_eq!(&got, b"x");
    }
}
