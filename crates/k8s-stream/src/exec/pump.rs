//! Copying one stream into another with a single bounded buffer.
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Buffer size of [`pump`]: large enough that each write becomes one big frame/message.
pub const PUMP_BUFFER: usize = 64 * 1024;

/// Copies `from` into `to` until EOF, then shuts `to` down (half-close / CLOSE signal / FIN).
/// Returns the bytes copied. Memory: one buffer of [`PUMP_BUFFER`] bytes.
pub async fn pump<R, W>(mut from: R, mut to: W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; PUMP_BUFFER];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    to.flush().await?;
    to.shutdown().await?;
    Ok(total)
}
