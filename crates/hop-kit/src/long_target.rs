//! Request targets longer than hyper takes, carried past it at both ends (see
//! [`request_head`](crate::request_head)).
//!
//! Server side, [`read_first_head`] reads a connection's first request head itself, within the
//! head's time and size bounds, and hands hyper the bytes again ([`Replay`]) with a long target
//! put aside; the handler finds it with [`path_and_query`]. Client side, [`TargetWriter`] puts
//! the long target back into the head hyper writes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::limits::ConnectionLimits;
use crate::request_head::{
    replace_target, scan, HeadScan, GO_HEAD_TOO_LARGE, LONG_TARGET_STAND_IN, MAX_HYPER_TARGET,
};

/// The target a client sent, when it was too long for hyper: a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongTarget(pub String);

/// The request's path and query as its client sent them, however long.
pub fn path_and_query<B>(req: &http::Request<B>) -> (&str, Option<&str>) {
    match req.extensions().get::<LongTarget>() {
        Some(LongTarget(target)) => {
            // An absolute-form target (`http://host/path?q`) starts its path after the authority.
            let origin = match target.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
                None => target,
            };
            match origin.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (origin, None),
            }
        }
        None => (req.uri().path(), req.uri().query()),
    }
}

/// Why a connection ended before its first request reached hyper.
#[derive(Debug, thiserror::Error)]
pub enum FirstHeadError {
    #[error("the client left before its first request head ended")]
    Closed,
    #[error("no whole request head within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("request head over {0} bytes; answered 431")]
    TooLarge(usize),
    #[error("reading the first request head: {0}")]
    Io(#[from] io::Error),
}

/// Reads the first request head of `io` (all of it, or its first line when that is no request
/// line) within `limits`; a head over the bound gets Go's 431 here. Returns the stream hyper
/// reads, and the target when it was put aside.
pub async fn read_first_head<S>(
    mut io: S,
    limits: &ConnectionLimits,
) -> Result<(Replay<S>, Option<LongTarget>), FirstHeadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = limits.max_head_bytes();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(8192);
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Err(FirstHeadError::Closed);
            }
            match scan(&buf, max) {
                HeadScan::Partial => continue,
                HeadScan::Complete { len, target } => return Ok(Some((len, target))),
                HeadScan::NotARequestLine => return Ok(None),
                HeadScan::TooLarge => return Err(FirstHeadError::TooLarge(max)),
            }
        }
    };
    let timeout = limits.request_header_timeout;
    let found = match tokio::time::timeout(timeout, read).await {
        Ok(found) => found,
        Err(_) => Err(FirstHeadError::TimedOut(timeout)),
    };
    match found {
        Ok(Some((_, target))) if target.len() > MAX_HYPER_TARGET => {
            let long = String::from_utf8_lossy(&buf[target.clone()]).into_owned();
            let head = replace_target(&buf, target, LONG_TARGET_STAND_IN.as_bytes());
            Ok((Replay::new(head, io), Some(LongTarget(long))))
        }
        Ok(_) => Ok((Replay::new(buf, io), None)),
        Err(err @ FirstHeadError::TooLarge(_)) => {
            // The client may still be writing; Go answers anyway and closes.
            io.write_all(GO_HEAD_TOO_LARGE).await?;
            io.shutdown().await?;
            Err(err)
        }
        Err(err) => Err(err),
    }
}

/// `inner`, with bytes already read from it served first.
#[derive(Debug)]
pub struct Replay<S> {
    replay: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub fn new(replay: Vec<u8>, inner: S) -> Self {
        Self {
            replay,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.replay.len() {
            let n = buf.remaining().min(this.replay.len() - this.pos);
            buf.put_slice(&this.replay[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.replay.len() {
                this.replay = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

crate::write_passthrough::write_passthrough!(Replay);

/// Writes through to `inner`, except that the request head written first gets its
/// [`LONG_TARGET_STAND_IN`] target replaced by the long one.
#[derive(Debug)]
pub struct TargetWriter<S> {
    inner: S,
    state: WriterState,
}

#[derive(Debug)]
enum WriterState {
    /// Collecting the head; nothing is sent before it is whole.
    Head {
        head: Vec<u8>,
        target: String,
    },
    /// Sending the rewritten head.
    Sending {
        bytes: Vec<u8>,
        pos: usize,
    },
    Through,
}

impl<S> TargetWriter<S> {
    /// With `None`, every write goes straight through.
    pub fn new(inner: S, long_target: Option<String>) -> Self {
        let state = match long_target {
            Some(target) => WriterState::Head {
                head: Vec::new(),
                target,
            },
            None => WriterState::Through,
        };
        Self { inner, state }
    }
}

impl WriterState {
    /// Takes `data` into a head still being collected; `false` once the head has gone on.
    fn collect(&mut self, data: &[u8]) -> bool {
        let WriterState::Head { head, target } = self else {
            return false;
        };
        head.extend_from_slice(data);
        match scan(head, usize::MAX) {
            HeadScan::Complete { target: range, .. } => {
                let bytes = replace_target(head, range, target.as_bytes());
                *self = WriterState::Sending { bytes, pos: 0 };
            }
            HeadScan::NotARequestLine | HeadScan::TooLarge => {
                let bytes = std::mem::take(head);
                *self = WriterState::Sending { bytes, pos: 0 };
            }
            HeadScan::Partial => {}
        }
        true
    }
}

impl<S: AsyncWrite + Unpin> TargetWriter<S> {
    /// Sends what is left of the rewritten head.
    fn poll_send_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let WriterState::Sending { bytes, pos } = &mut self.state {
            if *pos == bytes.len() {
                self.state = WriterState::Through;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *pos += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TargetWriter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.state.collect(data) {
            return Poll::Ready(Ok(data.len()));
        }
        ready!(this.poll_send_head(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send_head(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send_head(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TargetWriter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            request_header_timeout: Duration::from_secs(5),
            ..ConnectionLimits::KUBE_APISERVER
        }
    }

    #[tokio::test]
    async fn a_long_target_is_put_aside_and_the_rest_replayed() {
        let long = format!("/exec/ns/p?{}", "command=x&".repeat(10_000));
        let head = format!("GET {long} HTTP/1.1\r\nHost: a\r\n\r\nafter");
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            client.write_all(head.as_bytes()).await.expect("write");
            client
        });
        let (mut replay, target) = read_first_head(server, &limits()).await.expect("head");
        assert_eq!(target, Some(LongTarget(long)));
        let _client = writer.await.expect("writer");
        let mut seen = vec![0; 128];
        let mut got = Vec::new();
        while !got.ends_with(b"after") {
            let n = replay.read(&mut seen).await.expect("read");
            got.extend_from_slice(&seen[..n]);
        }
        assert_eq!(
            got,
            b"GET /.execlab-long-request-target HTTP/1.1\r\nHost: a\r\n\r\nafter".to_vec()
        );
    }

    #[tokio::test]
    async fn a_head_over_the_bound_gets_gos_431() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let lim = limits();
        let writer = tokio::spawn(async move {
            let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(lim.max_head_bytes()));
            let _ = client.write_all(line.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        });
        let err = read_first_head(server, &lim).await.expect_err("too large");
        assert!(matches!(err, FirstHeadError::TooLarge(_)), "{err}");
        assert_eq!(writer.await.expect("writer"), GO_HEAD_TOO_LARGE.to_vec());
    }

    #[tokio::test]
    async fn a_head_that_never_ends_times_out() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost")
            .await
            .expect("write");
        let lim = ConnectionLimits {
            request_header_timeout: Duration::from_millis(50),
            ..limits()
        };
        let err = read_first_head(server, &lim).await.expect_err("timeout");
        assert!(matches!(err, FirstHeadError::TimedOut(_)), "{err}");
    }

    #[test]
    fn the_long_target_is_the_path_and_query() {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(LongTarget("/exec/ns/p?command=a&command=b".into()));
        assert_eq!(
            path_and_query(&req),
            ("/exec/ns/p", Some("command=a&command=b"))
        );
        req.extensions_mut()
            .insert(LongTarget("https://h:1/x?y".into()));
        assert_eq!(path_and_query(&req), ("/x", Some("y")));
        let req = http::Request::get("/short?q=1").body(()).expect("request");
        assert_eq!(path_and_query(&req), ("/short", Some("q=1")));
    }

    #[tokio::test]
    async fn the_writer_puts_the_long_target_back_in_pieces() {
        let long = format!("/exec?{}", "command=y&".repeat(7_000));
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = TargetWriter::new(client, Some(long.clone()));
        let head = format!("POST {LONG_TARGET_STAND_IN} HTTP/1.1\r\nHost: b\r\n\r\n");
        for piece in head.as_bytes().chunks(7) {
            writer.write_all(piece).await.expect("write");
        }
        writer.write_all(b"body").await.expect("write");
        writer.flush().await.expect("flush");
        drop(writer);
        let mut sent = Vec::new();
        server.read_to_end(&mut sent).await.expect("read");
        assert_eq!(
            String::from_utf8(sent).expect("utf-8"),
            format!("POST {long} HTTP/1.1\r\nHost: b\r\n\r\nbody")
        );
    }
}
