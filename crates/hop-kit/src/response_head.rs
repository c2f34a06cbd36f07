//! What Go's HTTP client says about an answer that is not an HTTP response.
//!
//! When the kubelet dials the streaming server and something else answers (seed 003: a NodePort
//! DNAT sends the dial to an unrelated app), production's text is Go's `http.ReadResponse` error,
//! relayed verbatim by the upgrade-aware proxy. hyper refuses the same bytes with its own
//! wording, so the upgrade client records the first bytes it reads ([`HeadRecorder`]) and, when
//! hyper cannot parse them, words the failure as Go does ([`go_read_response_error`]).
//!
//! Checked against Go's `net/http/response.go` (ReadResponse: the status line is cut at the first
//! space; a status code that is not 3 digits is `malformed HTTP status code %q`; a line without
//! a space is `malformed HTTP response %q`; then `malformed HTTP version %q`), `ParseHTTPVersion`,
//! and `net/textproto` (lines end at `\n`, a trailing `\r` is dropped; EOF before any byte is
//! `unexpected EOF`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use k8s_stream::go_quote;
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes of the answer kept for the error text: more than any status line needs.
pub const RECORDED_HEAD: usize = 4096;

/// Go's error for a response whose head starts with `head`, or `None` when its status line is
/// acceptable to Go (the failure is then elsewhere, and the caller keeps its own text).
pub fn go_read_response_error(head: &[u8]) -> Option<String> {
    if head.is_empty() {
        return Some("unexpected EOF".to_owned());
    }
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(end) => &head[..end],
        None => head,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = String::from_utf8_lossy(line);
    let Some((proto, status)) = line.split_once(' ') else {
        return Some(bad_string("malformed HTTP response", &line));
    };
    let status = status.trim_start_matches(' ');
    let code = status.split_once(' ').map_or(status, |(code, _)| code);
    let numeric = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    // Go's Atoi also takes a sign ("+12"), and only rejects a negative code afterwards.
    let signed_ok =
        code.len() == 3 && code.starts_with('+') && code[1..].bytes().all(|b| b.is_ascii_digit());
    if !numeric && !signed_ok {
        return Some(bad_string("malformed HTTP status code", code));
    }
    if !go_http_version_ok(proto) {
        return Some(bad_string("malformed HTTP version", proto));
    }
    None
}

/// Go's `badStringError`: the description, then the value quoted as `%q` does.
fn bad_string(what: &str, value: &str) -> String {
    format!("{what} {}", go_quote(value))
}

/// `http.ParseHTTPVersion`: `HTTP/` then one digit, `.`, one digit.
fn go_http_version_ok(proto: &str) -> bool {
    let Some(version) = proto.strip_prefix("HTTP/") else {
        return false;
    };
    let bytes = version.as_bytes();
    bytes.len() == 3 && bytes[0].is_ascii_digit() && bytes[1] == b'.' && bytes[2].is_ascii_digit()
}

/// Passes a connection through, keeping a copy of the first [`RECORDED_HEAD`] bytes read.
/// Past that it only forwards, so the upgraded stream pays one branch per read.
pub struct HeadRecorder<S> {
    inner: S,
    head: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<S> HeadRecorder<S> {
    /// The wrapped connection and a handle on what it will record.
    pub fn new(inner: S) -> (Self, RecordedHead) {
        let head = Arc::new(Mutex::new(Vec::new()));
        let recorder = Self {
            inner,
            head: Some(head.clone()),
        };
        (recorder, RecordedHead(head))
    }
}

/// The bytes a [`HeadRecorder`] read first.
#[derive(Clone)]
pub struct RecordedHead(Arc<Mutex<Vec<u8>>>);

impl RecordedHead {
    pub fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadRecorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(head) = &self.head {
            let mut head = head.lock().unwrap_or_else(PoisonError::into_inner);
            let room = RECORDED_HEAD.saturating_sub(head.len());
            let new = &buf.filled()[before..];
            head.extend_from_slice(&new[..new.len().min(room)]);
            let full = head.len() >= RECORDED_HEAD;
            drop(head);
            if full {
                self.head = None;
            }
        }
        poll
    }
}

crate::write_passthrough::write_passthrough!(HeadRecorder);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dubbo_telnet_answer_reads_as_go_says() {
        // What a Dubbo port answers to `POST /exec/...` (seed 003).
        let head = b"Unsupported command: POST\r\ndubbo>";
        assert_eq!(
            go_read_response_error(head).as_deref(),
            Some("malformed HTTP status code \"command:\"")
        );
    }

    #[test]
    fn line_without_a_space() {
        assert_eq!(
            go_read_response_error(b"SSH-2.0-OpenSSH_9.2\r\n").as_deref(),
            Some("malformed HTTP response \"SSH-2.0-OpenSSH_9.2\"")
        );
        assert_eq!(
            go_read_response_error(b"\x00\x01\n").as_deref(),
            Some("malformed HTTP response \"\\x00\\x01\"")
        );
    }

    #[test]
    fn bad_version_comes_after_the_code() {
        assert_eq!(
            go_read_response_error(b"HTTP/2 200 OK\r\n").as_deref(),
            Some("malformed HTTP version \"HTTP/2\"")
        );
        assert_eq!(
            go_read_response_error(b"ICY 200 OK\r\n").as_deref(),
            Some("malformed HTTP version \"ICY\"")
        );
        assert_eq!(
            go_read_response_error(b"HTTP/1.1 2000 OK\r\n").as_deref(),
            Some("malformed HTTP status code \"2000\"")
        );
    }

    #[test]
    fn good_status_lines_are_not_go_errors() {
        assert_eq!(go_read_response_error(b"HTTP/1.1 101 Switching\r\n"), None);
        assert_eq!(go_read_response_error(b"HTTP/1.0  404\n"), None);
    }

    #[test]
    fn nothing_read_is_unexpected_eof() {
        assert_eq!(
            go_read_response_error(b"").as_deref(),
            Some("unexpected EOF")
        );
    }

    #[tokio::test]
    async fn recorder_keeps_only_the_head() {
        use tokio::io::AsyncReadExt;
        let data = vec![7u8; RECORDED_HEAD * 3];
        let (mut recorder, head) = HeadRecorder::new(&data[..]);
        let mut sink = Vec::new();
        recorder.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink.len(), data.len());
        assert_eq!(head.bytes().len(), RECORDED_HEAD);
    }
}
