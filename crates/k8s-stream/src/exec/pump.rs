//! Copying one stream into another with a single bounded buffer that grows with the traffic.
//!
//! An exec session is idle most of its life (a shell waiting for a keystroke), but a busy one
//! wants big reads so each write becomes one big frame/message. So the buffer starts at
//! [`PumpBuffer::START`] and grows fourfold whenever a read fills it, up to its maximum: idle
//! sessions cost 256 bytes per direction, bulk copies reach full-size reads after four reads.
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest buffer of [`pump`]: large enough that each write becomes one big frame/message.
pub const PUMP_BUFFER: usize = 64 * 1024;

/// A read buffer that starts small and grows (up to a maximum) while reads keep filling it.
#[derive(Debug)]
pub struct PumpBuffer {
    buf: Vec<u8>,
    max: usize,
    /// Bytes the last read put at the front of `buf`.
    filled: usize,
    /// The last read filled the whole buffer: more is probably waiting.
    last_full: bool,
}

impl PumpBuffer {
    /// Size before the first read: an idle session's pumps (three in the apiserver's translator,
    /// as many in each hop below) keep this much each, zero-filled.
    pub const START: usize = 256;

    /// A buffer that never grows beyond `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        PumpBuffer {
            buf: vec![0; Self::START.min(max)],
            max,
            filled: 0,
            last_full: false,
        }
    }

    /// Bytes currently allocated.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Largest size the buffer grows to.
    pub fn max(&self) -> usize {
        self.max
    }

    /// What the last read returned.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Reads once from `from` (growing first if the previous read filled the buffer) and
    /// returns what was read; empty at EOF.
    pub async fn read_from<R>(&mut self, from: &mut R) -> std::io::Result<&[u8]>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        poll_fn(|cx| self.poll_read_from(cx, Pin::new(&mut *from))).await?;
        Ok(self.filled())
    }

    /// [`read_from`](Self::read_from) for `poll_*` callers: the bytes read are in
    /// [`filled`](Self::filled) once this is ready (none at EOF).
    pub fn poll_read_from<R>(
        &mut self,
        cx: &mut Context<'_>,
        from: Pin<&mut R>,
    ) -> Poll<std::io::Result<usize>>
    where
        R: AsyncRead + ?Sized,
    {
        if self.last_full && self.buf.len() < self.max {
            let grown = self.buf.len().saturating_mul(4).min(self.max);
            self.buf.resize(grown, 0);
            self.last_full = false;
        }
        self.filled = 0;
        let mut read = ReadBuf::new(&mut self.buf);
        std::task::ready!(from.poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.filled = n;
        self.last_full = n == self.buf.len();
        Poll::Ready(Ok(n))
    }
}

/// Copies `from` into `to` until EOF, then shuts `to` down (half-close / CLOSE signal / FIN).
/// Returns the bytes copied. Memory: one [`PumpBuffer`] of at most [`PUMP_BUFFER`] bytes.
pub async fn pump<R, W>(mut from: R, mut to: W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = PumpBuffer::new(PUMP_BUFFER);
    let mut total = 0u64;
    loop {
        let chunk = buf.read_from(&mut from).await?;
        if chunk.is_empty() {
            break;
        }
        to.write_all(chunk).await?;
        total += chunk.len() as u64;
    }
    to.flush().await?;
    to.shutdown().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn idle_pump_keeps_a_small_buffer_busy_one_grows_to_the_maximum() {
        let mut buf = PumpBuffer::new(PUMP_BUFFER);
        let mut small: &[u8] = b"r\n";
        assert_eq!(buf.read_from(&mut small).await.unwrap(), b"r\n");
        assert_eq!(buf.read_from(&mut small).await.unwrap(), b"");
        assert_eq!(buf.capacity(), 256);

        let bulk = vec![7u8; 1024 * 1024];
        let mut from: &[u8] = &bulk;
        let mut sizes = Vec::new();
        let mut total = 0;
        loop {
            let n = buf.read_from(&mut from).await.unwrap().len();
            if n == 0 {
                break;
            }
            total += n;
            sizes.push(n);
        }
        assert_eq!(total, bulk.len());
        assert_eq!(buf.capacity(), PUMP_BUFFER);
        assert_eq!(&sizes[..6], &[256, 1024, 4096, 16384, 65536, 65536]);
    }

    #[tokio::test]
    async fn pump_copies_everything_and_shuts_down() {
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let (mut a, b) = tokio::io::duplex(8 * 1024);
        let (mut c, d) = tokio::io::duplex(8 * 1024);
        let feeder = {
            let data = data.clone();
            tokio::spawn(async move {
                a.write_all(&data).await.unwrap();
                a.shutdown().await.unwrap();
            })
        };
        let copier = tokio::spawn(pump(b, d));
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        feeder.await.unwrap();
        assert_eq!(copier.await.unwrap().unwrap(), data.len() as u64);
        assert_eq!(got, data);
    }
}
