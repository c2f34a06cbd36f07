//! Request heads as Go's `net/http` server takes them, over bytes (no IO).
//!
//! Go reads a request head of up to `MaxHeaderBytes` plus 4096 bytes, request line included, and
//! has no separate bound on the request target: kube-apiserver and the kubelet run an exec whose
//! command makes a 500 KiB query. hyper refuses any target longer than [`MAX_HYPER_TARGET`] (the
//! `http` crate's `Uri` bound) with an empty 414, at both ends of a connection. So the hops read
//! the first head themselves ([`scan`]) and, when its target is too long for hyper, hand hyper a
//! [`LONG_TARGET_STAND_IN`] in its place ([`replace_target`]); the upgrade client does the
//! reverse on the bytes hyper writes. A head that is too large gets Go's own answer
//! ([`GO_HEAD_TOO_LARGE`]).
//!
//! Checked against Go's `net/http/server.go` (`initialReadLimitSize`, the `errTooLarge` branch of
//! `conn.serve` and its `errorHeaders`) and `net/textproto` (lines end at `\n`).

use std::ops::Range;

/// Longest request target hyper accepts (`http::Uri`'s `MAX_LEN`).
pub const MAX_HYPER_TARGET: usize = u16::MAX as usize - 1;

/// What hyper is given instead of a target longer than [`MAX_HYPER_TARGET`].
pub const LONG_TARGET_STAND_IN: &str = "/.execlab-long-request-target";

/// Go's answer to a request head over its limit, written on the raw connection before it closes.
pub const GO_HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n\
431 Request Header Fields Too Large";

/// How far the bytes read so far go towards a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadScan {
    /// More bytes are needed.
    Partial,
    /// The head ends at `len` (its blank line included); `target` is where the request line
    /// names the target.
    Complete { len: usize, target: Range<usize> },
    /// The first line is no request line: hyper answers it as it does.
    NotARequestLine,
    /// The head would pass `max` bytes.
    TooLarge,
}

/// Scans `buf`, the first bytes of a connection, for a request head of at most `max` bytes.
pub fn scan(buf: &[u8], max: usize) -> HeadScan {
    let Some(line_end) = buf.iter().position(|&b| b == b'\n') else {
        return partial_or_too_large(buf.len(), max);
    };
    let Some(target) = target_range(&buf[..line_end]) else {
        return HeadScan::NotARequestLine;
    };
    match head_end(buf, line_end) {
        Some(len) if len <= max => HeadScan::Complete { len, target },
        Some(_) => HeadScan::TooLarge,
        None => partial_or_too_large(buf.len(), max),
    }
}

fn partial_or_too_large(read: usize, max: usize) -> HeadScan {
    if read >= max {
        HeadScan::TooLarge
    } else {
        HeadScan::Partial
    }
}

/// The target's place in a request line (`METHOD SP target SP HTTP/x.y`, `\r` optional).
fn target_range(line: &[u8]) -> Option<Range<usize>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let first = line.iter().position(|&b| b == b' ')?;
    let last = line.iter().rposition(|&b| b == b' ')?;
    let method = &line[..first];
    let version = &line[last + 1..];
    let well_formed = first > 0
        && last > first + 1
        && method.iter().all(u8::is_ascii_graphic)
        && version.starts_with(b"HTTP/");
    well_formed.then_some(first + 1..last)
}

/// Where the head ends: after the first empty line (`\n` or `\r\n`) past the request line.
fn head_end(buf: &[u8], line_end: usize) -> Option<usize> {
    let mut start = line_end + 1;
    while let Some(offset) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + offset];
        if line.is_empty() || line == b"\r" {
            return Some(start + offset + 1);
        }
        start += offset + 1;
    }
    None
}

/// `head` with the bytes in `target` replaced by `with`.
pub fn replace_target(head: &[u8], target: Range<usize>, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() - target.len() + with.len());
    out.extend_from_slice(&head[..target.start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&head[target.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_head_is_found_with_its_target() {
        let head = b"GET /exec/ns/pod?command=sh HTTP/1.1\r\nHost: x\r\n\r\nbody";
        assert_eq!(
            scan(head, 1024),
            HeadScan::Complete {
                len: head.len() - 4,
                target: 4..27
            }
        );
        assert_eq!(&head[4..27], b"/exec/ns/pod?command=sh");
    }

    #[test]
    fn bare_line_feeds_end_lines_as_in_go() {
        let head = b"POST /x HTTP/1.1\nHost: x\n\n";
        assert_eq!(
            scan(head, 1024),
            HeadScan::Complete {
                len: head.len(),
                target: 5..7
            }
        );
        let no_headers = b"GET / HTTP/1.0\r\n\r\n";
        assert!(matches!(
            scan(no_headers, 1024),
            HeadScan::Complete { len: 18, .. }
        ));
    }

    #[test]
    fn a_head_in_pieces_is_partial_until_its_blank_line() {
        let head = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..head.len() {
            assert_eq!(scan(&head[..cut], 1024), HeadScan::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn a_head_past_the_bound_is_too_large() {
        let head = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(scan(head, head.len() - 1), HeadScan::TooLarge);
        assert!(matches!(scan(head, head.len()), HeadScan::Complete { .. }));
        let endless = vec![b'a'; 100];
        assert_eq!(scan(&endless, 100), HeadScan::TooLarge);
        assert_eq!(scan(&endless, 101), HeadScan::Partial);
    }

    #[test]
    fn lines_that_are_no_request_lines_are_left_to_hyper() {
        for line in [
            &b"\x16\x03\x01\x02\x00\n"[..],
            b"GET /x\r\n",
            b"GET  HTTP/1.1\r\n",
            b" /x HTTP/1.1\r\n",
            b"GET /x FTP/1.0\r\n",
        ] {
            assert_eq!(scan(line, 1024), HeadScan::NotARequestLine, "{line:?}");
        }
    }

    #[test]
    fn a_target_is_replaced_byte_for_byte() {
        let head = b"GET /long?x=1 HTTP/1.1\r\n\r\n";
        let HeadScan::Complete { target, .. } = scan(head, 1024) else {
            panic!("complete head expected");
        };
        let short = replace_target(head, target, LONG_TARGET_STAND_IN.as_bytes());
        assert_eq!(
            short,
            b"GET /.execlab-long-request-target HTTP/1.1\r\n\r\n".to_vec()
        );
        let HeadScan::Complete { target, .. } = scan(&short, 1024) else {
            panic!("complete head expected");
        };
        assert_eq!(replace_target(&short, target, b"/long?x=1"), head.to_vec());
    }

    #[test]
    fn any_bytes_scan_without_panic_and_ranges_stay_inside() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"GET /?a HTTP/1.1\r\n: x";
        for _ in 0..20_000 {
            let len = (state % 48) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            if let HeadScan::Complete { len, target } = scan(&bytes, 40) {
                assert!(len <= bytes.len() && len <= 40, "{bytes:?}");
                assert!(target.start <= target.end && target.end < len, "{bytes:?}");
            }
        }
    }

    #[test]
    fn gos_answer_to_a_large_head_is_a_complete_response() {
        let text = std::str::from_utf8(GO_HEAD_TOO_LARGE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert_eq!(body, "431 Request Header Fields Too Large");
    }
}
