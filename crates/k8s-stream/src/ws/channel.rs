//! The WebSocket channel framing, sans-IO: every message is one chunk of one channel.
//!
//! Binary subprotocols: `[channel, payload...]`. Base64 subprotocols: a text message
//! `'0'+channel` followed by standard base64 (with padding) of the payload. `v5.channel.k8s.io`
//! adds the CLOSE signal, exactly `[0xFF, channel]`. Empty messages carry nothing (the server's
//! first, "ready" message is an empty chunk of a channel and reads as a zero-length write).
//!
//! Checked against: apimachinery `util/httpstream/wsstream/conn.go` (channel byte, base64 digit
//! offset with byte wrap-around, empty messages skipped, CLOSE length must be 2 and its channel in
//! range, otherwise the read loop ends), client-go `tools/remotecommand/websocket.go` (client
//! accepts only binary messages on v5).
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::remotecommand::WsProtocol;

/// First byte of a v5 CLOSE signal.
pub const CLOSE_SIGNAL: u8 = 0xFF;

/// One decoded channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelFrame {
    /// A chunk of data (possibly empty) for `channel`.
    Data {
        /// Channel number (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize).
        channel: u8,
        /// The bytes.
        payload: Bytes,
    },
    /// v5: the sender will write no more on `channel`.
    Close {
        /// Channel number.
        channel: u8,
    },
}

/// A message that does not follow the channel framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelCodecError {
    /// A CLOSE signal that is not exactly two bytes.
    #[error("Single channel byte should follow stream close signal. Got {0} more bytes")]
    CloseLength(usize),
    /// Base64 payload did not decode.
    #[error("invalid base64 payload on channel {channel}: {reason}")]
    Base64 {
        /// Channel the message was for.
        channel: u8,
        /// Decoder's complaint.
        reason: String,
    },
    /// Binary message on a base64 subprotocol or text on a binary one.
    #[error("unexpected message type: {0}")]
    UnexpectedMessageType(&'static str),
}

/// Encodes and decodes channel messages for one subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelCodec {
    protocol: WsProtocol,
}

/// An encoded message, ready to become a WebSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodedMessage {
    /// A binary message.
    Binary(Bytes),
    /// A text message (base64 subprotocols), ASCII only.
    Text(String),
}

impl ChannelCodec {
    /// A codec for `protocol`.
    pub fn new(protocol: WsProtocol) -> Self {
        Self { protocol }
    }

    /// The subprotocol.
    pub fn protocol(&self) -> WsProtocol {
        self.protocol
    }

    /// Encodes a data chunk for `channel` (one copy of `payload`). Base64 subprotocols can name
    /// channels 0–79 only (the digit must stay one ASCII byte); exec uses 0–4.
    pub fn encode_data(&self, channel: u8, payload: &[u8]) -> EncodedMessage {
        if self.protocol.is_base64() {
            let engine = base64::engine::general_purpose::STANDARD;
            let mut text = String::with_capacity(1 + payload.len().div_ceil(3) * 4);
            text.push(char::from(b'0'.wrapping_add(channel)));
            engine.encode_string(payload, &mut text);
            EncodedMessage::Text(text)
        } else {
            let mut buf = BytesMut::with_capacity(1 + payload.len());
            buf.put_u8(channel);
            buf.put_slice(payload);
            EncodedMessage::Binary(buf.freeze())
        }
    }

    /// Encodes the CLOSE signal for `channel`; `None` where the subprotocol has no CLOSE.
    pub fn encode_close(&self, channel: u8) -> Option<EncodedMessage> {
        self.protocol
            .supports_close()
            .then(|| EncodedMessage::Binary(Bytes::copy_from_slice(&[CLOSE_SIGNAL, channel])))
    }

    /// Decodes a binary message. `Ok(None)`: an empty message, which carries nothing.
    pub fn decode_binary(&self, message: Bytes) -> Result<Option<ChannelFrame>, ChannelCodecError> {
        if self.protocol.is_base64() {
            return Err(ChannelCodecError::UnexpectedMessageType("binary"));
        }
        let Some(&first) = message.first() else {
            return Ok(None);
        };
        if first == CLOSE_SIGNAL && self.protocol.supports_close() {
            if message.len() != 2 {
                return Err(ChannelCodecError::CloseLength(message.len() - 1));
            }
            return Ok(Some(ChannelFrame::Close {
                channel: message[1],
            }));
        }
        Ok(Some(ChannelFrame::Data {
            channel: first,
            payload: message.slice(1..),
        }))
    }

    /// Decodes a text message (base64 subprotocols only). `Ok(None)`: an empty message.
    pub fn decode_text(&self, message: &[u8]) -> Result<Option<ChannelFrame>, ChannelCodecError> {
        if !self.protocol.is_base64() {
            return Err(ChannelCodecError::UnexpectedMessageType("text"));
        }
        let Some((&digit, rest)) = message.split_first() else {
            return Ok(None);
        };
        let channel = digit.wrapping_sub(b'0');
        let payload = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|e| ChannelCodecError::Base64 {
                channel,
                reason: e.to_string(),
            })?;
        Ok(Some(ChannelFrame::Data {
            channel,
            payload: Bytes::from(payload),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bytes() {
        let c = ChannelCodec::new(WsProtocol::V5Channel);
        assert_eq!(
            c.encode_data(1, b"hi"),
            EncodedMessage::Binary(Bytes::from_static(&[1, b'h', b'i']))
        );
        assert_eq!(
            c.encode_data(3, b""),
            EncodedMessage::Binary(Bytes::from_static(&[3]))
        );
        assert_eq!(
            c.encode_close(0),
            Some(EncodedMessage::Binary(Bytes::from_static(&[0xFF, 0])))
        );
        assert_eq!(
            c.decode_binary(Bytes::from_static(&[0, b'x'])),
            Ok(Some(ChannelFrame::Data {
                channel: 0,
                payload: Bytes::from_static(b"x")
            }))
        );
        assert_eq!(
            c.decode_binary(Bytes::from_static(&[0xFF, 2])),
            Ok(Some(ChannelFrame::Close { channel: 2 }))
        );
        assert_eq!(
            c.decode_binary(Bytes::from_static(&[0xFF])),
            Err(ChannelCodecError::CloseLength(0))
        );
        assert_eq!(
            c.decode_binary(Bytes::from_static(&[0xFF, 0, 0])),
            Err(ChannelCodecError::CloseLength(2))
        );
        assert_eq!(c.decode_binary(Bytes::new()), Ok(None));
    }

    #[test]
    fn v4_has_no_close() {
        let c = ChannelCodec::new(WsProtocol::V4Channel);
        assert_eq!(c.encode_close(0), None);
        // 0xFF is just an (out-of-range) channel number before v5.
        assert_eq!(
            c.decode_binary(Bytes::from_static(&[0xFF, 0])),
            Ok(Some(ChannelFrame::Data {
                channel: 0xFF,
                payload: Bytes::from_static(&[0])
            }))
        );
    }

    #[test]
    fn base64_bytes() {
        let c = ChannelCodec::new(WsProtocol::Base64Channel);
        assert_eq!(
            c.encode_data(1, b"hi"),
            EncodedMessage::Text("1aGk=".into())
        );
        assert_eq!(c.encode_data(1, b""), EncodedMessage::Text("1".into()));
        assert_eq!(
            c.decode_text(b"0aGk="),
            Ok(Some(ChannelFrame::Data {
                channel: 0,
                payload: Bytes::from_static(b"hi")
            }))
        );
        assert!(matches!(
            c.decode_text(b"0!!"),
            Err(ChannelCodecError::Base64 { channel: 0, .. })
        ));
        assert_eq!(
            c.decode_binary(Bytes::from_static(&[1])),
            Err(ChannelCodecError::UnexpectedMessageType("binary"))
        );
        let b = ChannelCodec::new(WsProtocol::Channel);
        assert_eq!(
            b.decode_text(b"1"),
            Err(ChannelCodecError::UnexpectedMessageType("text"))
        );
    }
}
