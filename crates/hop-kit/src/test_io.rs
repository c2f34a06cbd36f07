//! Waiting for a server to act on a connection, for other crates' tests.
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads `stream` until the peer closes it (EOF or reset), discarding what arrives; how long it
/// took, or `None` if it is still open after `limit`.
pub async fn peer_closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(limit, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    closed.ok().map(|()| start.elapsed())
}
