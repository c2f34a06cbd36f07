//! Byte-level tests of every SPDY/3.1 frame type: hand-written wire bytes (from the layouts in
//! protocol-facts §1.1) parse to the expected frame and encode back to the same bytes.
use bytes::{Bytes, BytesMut};
use k8s_stream::spdy::frame::{
    ControlType, Data, Frame, FrameError, GoAway, GoAwayStatus, HeadersFrame, Ping, RstStatus,
    RstStream, Setting, Settings, StreamId, SynReply, SynStream, WindowUpdate, MAX_PAYLOAD_LEN,
};

fn roundtrip(wire: &[u8], expected: Frame) {
    let (frame, used) = Frame::parse(wire, MAX_PAYLOAD_LEN)
        .unwrap()
        .expect("complete frame");
    assert_eq!(used, wire.len());
    assert_eq!(frame, expected);
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    assert_eq!(&out[..], wire);
    // Every strict prefix is "need more bytes", never an error.
    for cut in 0..wire.len() {
        assert_eq!(
            Frame::parse(&wire[..cut], MAX_PAYLOAD_LEN),
            Ok(None),
            "prefix {cut}"
        );
    }
    // The zero-copy decoder agrees and consumes exactly the frame.
    let mut buf = BytesMut::from(wire);
    buf.extend_from_slice(b"next");
    assert_eq!(
        Frame::decode(&mut buf, MAX_PAYLOAD_LEN).unwrap(),
        Some(expected)
    );
    assert_eq!(&buf[..], b"next");
}

#[test]
fn syn_stream() {
    let wire = [
        0x80, 0x03, 0x00, 0x01, // control, version 3, type 1
        0x03, 0x00, 0x00, 0x0d, // flags FIN|UNIDIRECTIONAL, length 13
        0x00, 0x00, 0x00, 0x05, // stream id 5
        0x00, 0x00, 0x00, 0x01, // associated to 1
        0x60, 0x00, // priority 3 in the top bits, slot 0
        0xaa, 0xbb, 0xcc, // header block
    ];
    roundtrip(
        &wire,
        Frame::SynStream(SynStream {
            stream_id: StreamId::new(5),
            associated_to: StreamId::new(1),
            priority: 3,
            slot: 0,
            fin: true,
            unidirectional: true,
            header_block: Bytes::from_static(&[0xaa, 0xbb, 0xcc]),
        }),
    );
}

#[test]
fn syn_reply() {
    let wire = [
        0x80, 0x03, 0x00, 0x02, 0x01, 0x00, 0x00, 0x06, 0, 0, 0, 7, 0x01, 0x02,
    ];
    roundtrip(
        &wire,
        Frame::SynReply(SynReply {
            stream_id: StreamId::new(7),
            fin: true,
            header_block: Bytes::from_static(&[1, 2]),
        }),
    );
}

#[test]
fn rst_stream() {
    let wire = [
        0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 3, 0, 0, 0, 5,
    ];
    roundtrip(
        &wire,
        Frame::RstStream(RstStream {
            stream_id: StreamId::new(3),
            status: RstStatus::Cancel,
        }),
    );
}

#[test]
fn rst_status_codes() {
    for code in 1..=11 {
        assert_eq!(RstStatus::from_u32(code).code(), code);
        assert!(!matches!(RstStatus::from_u32(code), RstStatus::Other(_)));
    }
    assert_eq!(RstStatus::ProtocolError.code(), 1);
    assert_eq!(RstStatus::RefusedStream.code(), 3);
    assert_eq!(RstStatus::Cancel.code(), 5);
    assert_eq!(RstStatus::FrameTooLarge.code(), 11);
    assert_eq!(RstStatus::from_u32(99), RstStatus::Other(99));
    assert_eq!(GoAwayStatus::from_u32(2), GoAwayStatus::InternalError);
}

#[test]
fn settings() {
    let wire = [
        0x80, 0x03, 0x00, 0x04, 0x01, 0x00, 0x00, 0x14, // CLEAR_SETTINGS, length 20
        0, 0, 0, 2, // two entries
        0x01, 0x00, 0x00, 0x04, 0, 0, 0, 100, // PERSIST_VALUE, MAX_CONCURRENT_STREAMS = 100
        0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00, // INITIAL_WINDOW_SIZE = 65536
    ];
    roundtrip(
        &wire,
        Frame::Settings(Settings {
            clear: true,
            entries: vec![
                Setting {
                    flags: 1,
                    id: 4,
                    value: 100,
                },
                Setting {
                    flags: 0,
                    id: 7,
                    value: 65536,
                },
            ],
        }),
    );
}

#[test]
fn ping() {
    let wire = [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 9];
    roundtrip(&wire, Frame::Ping(Ping { id: 9 }));
}

#[test]
fn goaway() {
    let wire = [
        0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 7, 0, 0, 0, 1,
    ];
    roundtrip(
        &wire,
        Frame::GoAway(GoAway {
            last_good: StreamId::new(7),
            status: GoAwayStatus::ProtocolError,
        }),
    );
}

#[test]
fn headers() {
    let wire = [
        0x80, 0x03, 0x00, 0x08, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 1, 0xee,
    ];
    roundtrip(
        &wire,
        Frame::Headers(HeadersFrame {
            stream_id: StreamId::new(1),
            fin: false,
            header_block: Bytes::from_static(&[0xee]),
        }),
    );
}

#[test]
fn window_update() {
    let wire = [
        0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0, 0, 1, 0, 0,
    ];
    roundtrip(
        &wire,
        Frame::WindowUpdate(WindowUpdate {
            stream_id: StreamId::ZERO,
            delta: 65536,
        }),
    );
}

#[test]
fn data_and_empty_fin() {
    roundtrip(
        &[0, 0, 0, 3, 0x00, 0x00, 0x00, 0x02, b'h', b'i'],
        Frame::Data(Data {
            stream_id: StreamId::new(3),
            fin: false,
            payload: "hi".into(),
        }),
    );
    // spdystream's Stream.Close(): an empty DATA frame with FIN.
    roundtrip(
        &[0, 0, 0, 3, 0x01, 0x00, 0x00, 0x00],
        Frame::Data(Data {
            stream_id: StreamId::new(3),
            fin: true,
            payload: Bytes::new(),
        }),
    );
}

#[test]
fn version_is_not_checked() {
    let wire = [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 9];
    let (frame, _) = Frame::parse(&wire, MAX_PAYLOAD_LEN).unwrap().unwrap();
    assert_eq!(frame, Frame::Ping(Ping { id: 9 }));
}

fn parse_err(wire: &[u8]) -> FrameError {
    Frame::parse(wire, MAX_PAYLOAD_LEN).expect_err("malformed frame")
}

#[test]
fn malformed_frames_are_typed_errors() {
    // Unknown control types (NOOP 5, CREDENTIAL 10, anything else).
    for ty in [0u8, 5, 10, 0xff] {
        let wire = [0x80, 0x03, 0x00, ty, 0, 0, 0, 0];
        assert!(
            matches!(parse_err(&wire), FrameError::UnknownControlType(t) if t == u16::from(ty))
        );
    }
    // Stream id zero on stream-bearing frames.
    assert_eq!(
        parse_err(&[0, 0, 0, 0, 0, 0, 0, 1, b'x']),
        FrameError::ZeroStreamId
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5]),
        FrameError::ZeroStreamId
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0]),
        FrameError::ZeroStreamId
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        FrameError::ZeroStreamId
    );
    // RST status zero; PING id zero or with flags; GOAWAY/WINDOW_UPDATE flags or length.
    assert_eq!(
        parse_err(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0]),
        FrameError::ZeroRstStatus
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 0]),
        FrameError::ZeroPingId
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 6, 1, 0, 0, 4, 0, 0, 0, 1]),
        FrameError::BadFlags {
            frame: ControlType::Ping,
            flags: 1
        }
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 7, 1, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0]),
        FrameError::BadFlags {
            frame: ControlType::GoAway,
            flags: 1
        }
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 7, 0, 0, 0, 4, 0, 0, 0, 1]),
        FrameError::BadLength {
            frame: ControlType::GoAway,
            len: 4
        }
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 9, 0, 0, 0, 4, 0, 0, 0, 1]),
        FrameError::BadLength {
            frame: ControlType::WindowUpdate,
            len: 4
        }
    );
    // SYN_STREAM shorter than its fixed part; SETTINGS count disagreeing with its length.
    assert_eq!(
        parse_err(&[0x80, 3, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]),
        FrameError::BadLength {
            frame: ControlType::SynStream,
            len: 4
        }
    );
    assert_eq!(
        parse_err(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1]),
        FrameError::BadLength {
            frame: ControlType::Settings,
            len: 4
        }
    );
}

#[test]
fn frame_size_cap_applies_before_the_payload_arrives() {
    // Head announces 1 MiB; with a 64 KiB cap the error comes from the 8 head bytes alone.
    let head = [0, 0, 0, 1, 0, 0x10, 0x00, 0x00];
    assert_eq!(
        Frame::parse(&head, 64 * 1024),
        Err(FrameError::TooLarge {
            len: 1 << 20,
            max: 64 * 1024
        })
    );
    assert_eq!(Frame::parse(&head, MAX_PAYLOAD_LEN), Ok(None));
}
