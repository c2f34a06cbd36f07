//! Container stdout/stderr in the CRI log format kubelet reads
//! (`<RFC3339Nano time> <stdout|stderr> <F|P> <line>`), sans-IO: bytes in, log lines out.
//!
//! Checked against kubernetes `pkg/kubelet/kuberuntime/logs/logs.go` (the parser: time, stream,
//! tag `F` full / `P` partial) and containerd `internal/cri/io/logger.go` (lines longer than the
//! maximum are split into `P` pieces; the time is `time.RFC3339Nano` in UTC, trailing zeros of
//! the fraction dropped).

use std::time::{SystemTime, UNIX_EPOCH};

/// containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Turns one stream's bytes into CRI log lines.
#[derive(Debug)]
pub struct CriLogEncoder {
    stream: LogStream,
    pending: Vec<u8>,
    max_line: usize,
}

impl CriLogEncoder {
    pub fn new(stream: LogStream) -> Self {
        Self::with_max_line(stream, MAX_LINE)
    }

    pub fn with_max_line(stream: LogStream, max_line: usize) -> Self {
        Self {
            stream,
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Appends the log lines completed by `bytes` (read at `now`) to `out`.
    pub fn feed(&mut self, bytes: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let line = std::mem::take(&mut self.pending);
            self.emit_full(&line, now, out);
        }
        self.pending.extend_from_slice(rest);
        while self.pending.len() >= self.max_line {
            let piece: Vec<u8> = self.pending.drain(..self.max_line).collect();
            self.emit(&piece, 'P', now, out);
        }
    }

    /// At EOF: an unterminated last line is written as a full line.
    pub fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line, 'F', now, out);
        }
    }

    fn emit_full(&self, line: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        let mut chunks = line.chunks(self.max_line).peekable();
        if chunks.peek().is_none() {
            self.emit(&[], 'F', now, out);
        }
        while let Some(chunk) = chunks.next() {
            let tag = if chunks.peek().is_some() { 'P' } else { 'F' };
            self.emit(chunk, tag, now, out);
        }
    }

    fn emit(&self, line: &[u8], tag: char, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(rfc3339_nano(now).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.as_str().as_bytes());
        out.push(b' ');
        out.push(tag as u8);
        out.push(b' ');
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

/// Go's `time.RFC3339Nano` in UTC: `2006-01-02T15:04:05.999999999Z` (fraction without trailing
/// zeros, omitted when zero).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let frac = d.subsec_nanos();
    let frac = if frac == 0 {
        String::new()
    } else {
        format!(".{frac:09}").trim_end_matches('0').to_string()
    };
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn timestamps_match_go_rfc3339nano() {
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(at(1_475_713_029, 669_794_202)),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(
            rfc3339_nano(at(951_782_400, 500_000_000)),
            "2000-02-29T00:00:00.5Z"
        );
    }

    #[test]
    fn lines_partials_and_eof() {
        let t = at(0, 0);
        let mut enc = CriLogEncoder::with_max_line(LogStream::Stdout, 4);
        let mut out = Vec::new();
        enc.feed(b"ab\ncd", t, &mut out);
        enc.feed(b"\n\nabcdefg", t, &mut out);
        enc.finish(t, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        let ts = "1970-01-01T00:00:00Z";
        assert_eq!(
            text,
            format!(
                "{ts} stdout F ab\n{ts} stdout F cd\n{ts} stdout F \n{ts} stdout P abcd\n{ts} stdout F efg\n"
            )
        );
        let mut err = CriLogEncoder::new(LogStream::Stderr);
        let mut out = Vec::new();
        err.feed(b"x\n", t, &mut out);
        assert_eq!(out, format!("{ts} stderr F x\n").into_bytes());
    }
}
