//! Property tests: every frame round-trips through encode/parse, header blocks round-trip
//! through one encoder/decoder pair, and arbitrary bytes never panic the parsers.
use bytes::{Bytes, BytesMut};
use k8s_stream::spdy::frame::{
    Data, Frame, GoAway, GoAwayStatus, HeadersFrame, Ping, RstStatus, RstStream, Setting, Settings,
    StreamId, SynReply, SynStream, WindowUpdate, MAX_PAYLOAD_LEN,
};
use k8s_stream::spdy::header_block::{parse_name_value_block, HeaderDecoder, HeaderEncoder};
use proptest::prelude::*;

fn stream_id() -> impl Strategy<Value = StreamId> {
    (1u32..=0x7FFF_FFFF).prop_map(StreamId::new)
}

fn block() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            stream_id(),
            0u32..=0x7FFF_FFFF,
            0u8..8,
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            block()
        )
            .prop_map(
                |(id, assoc, priority, slot, fin, unidirectional, header_block)| {
                    Frame::SynStream(SynStream {
                        stream_id: id,
                        associated_to: StreamId::new(assoc),
                        priority,
                        slot,
                        fin,
                        unidirectional,
                        header_block,
                    })
                }
            ),
        (stream_id(), any::<bool>(), block()).prop_map(|(stream_id, fin, header_block)| {
            Frame::SynReply(SynReply {
                stream_id,
                fin,
                header_block,
            })
        }),
        (stream_id(), any::<bool>(), block()).prop_map(|(stream_id, fin, header_block)| {
            Frame::Headers(HeadersFrame {
                stream_id,
                fin,
                header_block,
            })
        }),
        (stream_id(), 1u32..).prop_map(|(stream_id, code)| {
            Frame::RstStream(RstStream {
                stream_id,
                status: RstStatus::from_u32(code),
            })
        }),
        (
            any::<bool>(),
            proptest::collection::vec((any::<u8>(), 0u32..0x100_0000, any::<u32>()), 0..8)
        )
            .prop_map(|(clear, entries)| {
                let entries = entries
                    .into_iter()
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect();
                Frame::Settings(Settings { clear, entries })
            }),
        (1u32..).prop_map(|id| Frame::Ping(Ping { id })),
        (0u32..=0x7FFF_FFFF, any::<u32>()).prop_map(|(last, status)| {
            Frame::GoAway(GoAway {
                last_good: StreamId::new(last),
                status: GoAwayStatus::from_u32(status),
            })
        }),
        (0u32..=0x7FFF_FFFF, 0u32..=0x7FFF_FFFF).prop_map(|(id, delta)| {
            Frame::WindowUpdate(WindowUpdate {
                stream_id: StreamId::new(id),
                delta,
            })
        }),
        (
            stream_id(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(stream_id, fin, payload)| Frame::Data(Data {
                stream_id,
                fin,
                payload: payload.into()
            })),
    ]
}

fn header_list() -> impl Strategy<Value = Vec<(String, String)>> {
    // Lower-case names without NUL, distinct; values without NUL (NUL separates values).
    proptest::collection::btree_map("[a-z0-9-]{1,12}", "[ -~]{0,40}", 0..8)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn frames_round_trip(frames in proptest::collection::vec(frame(), 1..6)) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut offset = 0;
        for f in &frames {
            let (parsed, used) = Frame::parse(&wire[offset..], MAX_PAYLOAD_LEN).unwrap().unwrap();
            prop_assert_eq!(&parsed, f);
            offset += used;
        }
        prop_assert_eq!(offset, wire.len());
    }

    #[test]
    fn header_blocks_round_trip(sets in proptest::collection::vec(header_list(), 1..6)) {
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::default();
        for set in &sets {
            let mut block = Vec::new();
            enc.encode(set.iter().map(|(n, v)| (n.as_str(), v.as_str())), &mut block).unwrap();
            prop_assert_eq!(&dec.decode(&block).unwrap(), set);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_parser(bytes in proptest::collection::vec(any::<u8>(), 0..256), max in 0usize..300) {
        let mut rest = &bytes[..];
        while let Ok(Some((_, used))) = Frame::parse(rest, max) {
            prop_assert!(used >= 8 && used <= rest.len());
            rest = &rest[used..];
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_header_decoder(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 1..4)) {
        let mut dec = HeaderDecoder::new(4096);
        for b in &blocks {
            let _ = dec.decode(b);
            let _ = parse_name_value_block(b);
        }
    }

    #[test]
    fn corrupted_valid_blocks_never_panic(set in header_list(), flip in any::<(usize, u8)>()) {
        let mut enc = HeaderEncoder::new();
        let mut block = Vec::new();
        enc.encode(set.iter().map(|(n, v)| (n.as_str(), v.as_str())), &mut block).unwrap();
        let i = flip.0 % block.len();
        block[i] ^= flip.1 | 1;
        let _ = HeaderDecoder::default().decode(&block);
    }
}
