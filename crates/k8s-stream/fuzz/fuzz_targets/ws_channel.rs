//! Arbitrary bytes through the WebSocket channel codec (every subprotocol, binary and text
//! forms) and the resize decoder: never a panic, and every decoded data frame re-encodes to a
//! message that decodes to the same frame.
#![no_main]

use bytes::Bytes;
use k8s_stream::remotecommand::{TerminalSizeDecoder, WsProtocol};
use k8s_stream::ws::{ChannelCodec, ChannelFrame, EncodedMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let protocol = WsProtocol::ALL[usize::from(selector) % WsProtocol::ALL.len()];
    let codec = ChannelCodec::new(protocol);
    for decoded in [codec.decode_binary(Bytes::copy_from_slice(data)), codec.decode_text(data)] {
        if let Ok(Some(ChannelFrame::Data { channel, payload })) = decoded {
            // A text frame's channel digit must stay one ASCII byte ('0' + 79 = 0x7F).
            if protocol.is_base64() && channel >= 80 {
                continue;
            }
            let again = match codec.encode_data(channel, &payload) {
                EncodedMessage::Binary(b) => codec.decode_binary(b),
                EncodedMessage::Text(t) => codec.decode_text(t.as_bytes()),
            };
            assert_eq!(again, Ok(Some(ChannelFrame::Data { channel, payload })));
        }
    }
    let mut resize = TerminalSizeDecoder::new();
    for chunk in data.chunks(usize::from(selector % 16) + 1) {
        let _ = resize.feed(chunk);
    }
});
