//! A read buffer under a TLS stream, so a bulk transfer costs few socket reads.
//!
//! rustls asks its transport for at most 4 KiB per read (`READ_SIZE` in rustls 0.23
//! `msgs/deframer/buffers.rs`), and tokio-rustls reads until one whole record (up to 16 KiB) is
//! in: four or five `recvfrom` calls per record, which made syscalls the largest cost of the
//! TLS hops. [`ReadAhead`] reads from the socket into a [`PumpBuffer`] (growing while reads
//! fill it) and serves rustls's small reads from it. Writes pass straight through.
//!
//! The first [`UNBUFFERED_BYTES`] pass unbuffered and the buffer is only made after them: the
//! handshake's flights would otherwise grow it, and an idle exec session (most of them) would
//! keep that memory for its whole life.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use k8s_stream::exec::PumpBuffer;
use tokio::io::{AsyncRead, ReadBuf};

/// Largest read-ahead buffer: one socket read carries several TLS records.
pub const READ_AHEAD_BUFFER: usize = 64 * 1024;

/// Bytes read unbuffered before the buffer is made (well past a TLS handshake).
pub const UNBUFFERED_BYTES: usize = 64 * 1024;

/// `inner` with reads buffered (see the module docs).
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Made once [`UNBUFFERED_BYTES`] have been read.
    buf: Option<PumpBuffer>,
    /// Bytes read while unbuffered.
    unbuffered: usize,
    /// Bytes of `buf.filled()` already handed out.
    pos: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: None,
            unbuffered: 0,
            pos: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let buf = match &mut this.buf {
            Some(buf) => buf,
            None if this.unbuffered < UNBUFFERED_BYTES => {
                let before = out.filled().len();
                std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                this.unbuffered += out.filled().len() - before;
                return Poll::Ready(Ok(()));
            }
            None => this.buf.insert(PumpBuffer::new(READ_AHEAD_BUFFER)),
        };
        if this.pos == buf.filled().len() {
            // Nothing buffered: a read as big as the buffer could be goes straight to the caller.
            if out.remaining() >= buf.max() {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            // Before polling: a pending read leaves `filled` empty.
            this.pos = 0;
            std::task::ready!(buf.poll_read_from(cx, Pin::new(&mut this.inner)))?;
        }
        let ahead = &buf.filled()[this.pos..];
        let n = ahead.len().min(out.remaining());
        out.put_slice(&ahead[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

crate::write_passthrough::write_passthrough!(ReadAhead);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Counts the reads that reach it; with `stutter`, every other read is pending first.
    struct CountReads<'a> {
        data: &'a [u8],
        reads: usize,
        stutter: bool,
        ready: bool,
    }

    impl AsyncRead for CountReads<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let ready = self.ready;
            self.ready = !ready;
            if self.stutter && !ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = self.data.len().min(out.remaining());
            out.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.reads += 1;
            Poll::Ready(Ok(()))
        }
    }

    fn source(data: &[u8], stutter: bool) -> CountReads<'_> {
        CountReads {
            data,
            reads: 0,
            stutter,
            ready: false,
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_few_big_ones_in_order() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        for stutter in [false, true] {
            let mut ahead = ReadAhead::new(source(&data, stutter));
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut calls = 0;
            loop {
                let n = ahead.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
                calls += 1;
            }
            assert_eq!(got, data, "stutter={stutter}");
            assert!(calls >= data.len() / 4096);
            // 1 MB in 4 KiB reads: without the buffer one socket read per call (245); with
            // it, 16 unbuffered, then growing 0.25 → 1 → 4 → 16 → 64 KiB, about 36 (plus EOF).
            let reads = ahead.get_ref().reads;
            assert!(reads <= 40, "{reads} socket reads");
        }
    }

    #[tokio::test]
    async fn big_reads_bypass_the_buffer() {
        let data = vec![7u8; UNBUFFERED_BYTES + 300_000];
        let mut ahead = ReadAhead::new(source(&data, false));
        let mut first = vec![0u8; UNBUFFERED_BYTES];
        assert_eq!(ahead.read(&mut first).await.unwrap(), UNBUFFERED_BYTES);
        let mut big = vec![0u8; 300_000];
        assert_eq!(ahead.read(&mut big).await.unwrap(), big.len());
        assert_eq!(ahead.get_ref().reads, 2);
        assert_eq!(ahead.buf.map(|b| b.capacity()), Some(PumpBuffer::START));
    }

    #[tokio::test]
    async fn a_handshake_sized_exchange_allocates_no_buffer() {
        let data = vec![1u8; 8 * 1024];
        let mut ahead = ReadAhead::new(source(&data, false));
        let mut got = Vec::new();
        ahead.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        assert!(ahead.buf.is_none());
    }
}
