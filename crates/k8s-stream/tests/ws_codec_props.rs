//! Property tests: codec round trips, and no input ever panics.
use bytes::Bytes;
use k8s_stream::remotecommand::{
    decode_error_stream, ProtocolVersion, Status, TerminalSize, TerminalSizeDecoder, WsProtocol,
};
use k8s_stream::ws::{ChannelCodec, ChannelFrame, EncodedMessage};
use proptest::prelude::*;

fn protocol() -> impl Strategy<Value = WsProtocol> {
    prop::sample::select(WsProtocol::ALL.to_vec())
}

proptest! {
    #[test]
    fn data_round_trips(p in protocol(), channel in 0u8..5, payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        let codec = ChannelCodec::new(p);
        let decoded = match codec.encode_data(channel, &payload) {
            EncodedMessage::Binary(b) => codec.decode_binary(b),
            EncodedMessage::Text(t) => codec.decode_text(t.as_bytes()),
        };
        prop_assert_eq!(decoded, Ok(Some(ChannelFrame::Data { channel, payload: Bytes::from(payload) })));
    }

    #[test]
    fn arbitrary_messages_never_panic(p in protocol(), bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let codec = ChannelCodec::new(p);
        let _ = codec.decode_binary(Bytes::from(bytes.clone()));
        let _ = codec.decode_text(&bytes);
    }

    #[test]
    fn resize_round_trips_in_any_split(sizes in prop::collection::vec((any::<u16>(), any::<u16>()), 1..8), cut in 0usize..200) {
        let sizes: Vec<TerminalSize> = sizes.into_iter().map(|(width, height)| TerminalSize { width, height }).collect();
        let wire: Vec<u8> = sizes.iter().flat_map(|s| s.encode()).collect();
        let cut = cut.min(wire.len());
        let mut d = TerminalSizeDecoder::new();
        let mut got = d.feed(&wire[..cut]).unwrap();
        got.extend(d.feed(&wire[cut..]).unwrap());
        prop_assert_eq!(got, sizes);
    }

    #[test]
    fn resize_decoder_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut d = TerminalSizeDecoder::new();
        for c in chunks {
            let _ = d.feed(&c);
        }
    }

    #[test]
    fn status_round_trips(code in 1i32..256, msg in ".*") {
        let s = Status::non_zero_exit(code, &msg);
        let back: Status = serde_json::from_slice(&s.to_json()).unwrap();
        prop_assert_eq!(&back, &s);
        let e = decode_error_stream(ProtocolVersion::V4, &s.to_json()).unwrap_err();
        prop_assert_eq!(e.exit_code(), code);
    }

    #[test]
    fn error_stream_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for v in ProtocolVersion::NEWEST_FIRST {
            let _ = decode_error_stream(v, &bytes);
        }
    }
}
