//! Terminal resize events: JSON `{"Width":80,"Height":24}` values, one per change.
//!
//! Checked against: client-go `tools/remotecommand/resize.go` (`TerminalSize` has no json tags, so
//! the keys are the capitalised Go field names; uint16 values) and `v3.go` (a `json.Encoder`, i.e.
//! each value followed by `\n`), kubelet `cri/streaming/remotecommand/httpstream.go`
//! (`handleResizeEvents`: a `json.Decoder` over the stream that stops at the first error).
use serde::{Deserialize, Serialize};

/// The size of a terminal in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width", alias = "width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height", alias = "height")]
    pub height: u16,
}

impl TerminalSize {
    /// The wire form: the JSON object followed by a newline, as Go's `json.Encoder` writes it.
    pub fn encode(&self) -> Vec<u8> {
        format!("{{\"Width\":{},\"Height\":{}}}\n", self.width, self.height).into_bytes()
    }
}

/// Why the resize stream cannot be decoded any further.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResizeDecodeError {
    /// The bytes are not a sequence of `TerminalSize` JSON values.
    #[error("invalid resize event: {0}")]
    Invalid(String),
    /// One value is larger than any sane size event; the peer is not speaking the protocol.
    #[error("resize event larger than {0} bytes")]
    TooLarge(usize),
}

/// Decodes a byte stream of concatenated JSON `TerminalSize` values, fed in arbitrary pieces.
///
/// After an error the decoder stays failed (upstream stops reading resize events at the first
/// decode error).
#[derive(Debug, Default)]
pub struct TerminalSizeDecoder {
    pending: Vec<u8>,
    failed: bool,
}

impl TerminalSizeDecoder {
    /// The most bytes one undecoded value may take.
    pub const MAX_PENDING: usize = 4096;

    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the complete values they finish, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<TerminalSize>, ResizeDecodeError> {
        if self.failed {
            return Err(ResizeDecodeError::Invalid("decoder already failed".into()));
        }
        self.pending.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let result = {
            let mut values =
                serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
            loop {
                match values.next() {
                    Some(Ok(size)) => {
                        sizes.push(size);
                        consumed = values.byte_offset();
                    }
                    Some(Err(e)) if e.is_eof() => break Ok(()),
                    Some(Err(e)) => break Err(ResizeDecodeError::Invalid(e.to_string())),
                    None => {
                        consumed = values.byte_offset();
                        break Ok(());
                    }
                }
            }
        };
        self.pending.drain(..consumed);
        if let Err(e) = result {
            self.failed = true;
            self.pending.clear();
            return Err(e);
        }
        if self.pending.len() > Self::MAX_PENDING {
            self.failed = true;
            self.pending.clear();
            return Err(ResizeDecodeError::TooLarge(Self::MAX_PENDING));
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go_json_encoder() {
        let s = TerminalSize {
            width: 80,
            height: 24,
        };
        assert_eq!(s.encode(), b"{\"Width\":80,\"Height\":24}\n");
    }

    #[test]
    fn decodes_split_and_concatenated_values() {
        let mut d = TerminalSizeDecoder::new();
        assert_eq!(d.feed(b"{\"Width\":100,\"Hei").unwrap(), vec![]);
        let got = d
            .feed(b"ght\":30}\n{\"Width\":1,\"Height\":2}{\"width\":3,\"height\":4}")
            .unwrap();
        assert_eq!(
            got,
            vec![
                TerminalSize {
                    width: 100,
                    height: 30
                },
                TerminalSize {
                    width: 1,
                    height: 2
                },
                TerminalSize {
                    width: 3,
                    height: 4
                }
            ]
        );
    }

    #[test]
    fn stops_at_garbage() {
        let mut d = TerminalSizeDecoder::new();
        assert!(d.feed(b"{\"Width\":1,\"Height\":2} nonsense").is_err());
        assert!(d.feed(b"{\"Width\":1,\"Height\":2}").is_err());
    }

    #[test]
    fn bounds_pending_bytes() {
        let mut d = TerminalSizeDecoder::new();
        let mut big = b"{\"Width\":1,\"Height\":2,\"x\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 5000));
        assert_eq!(
            d.feed(&big),
            Err(ResizeDecodeError::TooLarge(
                TerminalSizeDecoder::MAX_PENDING
            ))
        );
    }
}
