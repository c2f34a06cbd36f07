//! Arbitrary bytes through the SPDY frame parser (copying and zero-copy forms): never a panic,
//! consumed lengths always within the input, and every parsed frame re-encodes to bytes that
//! parse back to the same frame.
#![no_main]

use bytes::BytesMut;
use k8s_stream::spdy::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the frame-size cap so the TooLarge path is exercised too.
    let Some((&cap, data)) = data.split_first() else {
        return;
    };
    let max_len = usize::from(cap) * 64;
    let mut rest = data;
    while let Ok(Some((frame, used))) = Frame::parse(rest, max_len) {
        assert!(used >= 8 && used <= rest.len());
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        let again = Frame::parse(&wire, usize::MAX).expect("re-encoded frame parses");
        assert_eq!(again.map(|(f, _)| f).as_ref(), Some(&frame));
        rest = &rest[used..];
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = Frame::decode(&mut buf, max_len) {}
});
