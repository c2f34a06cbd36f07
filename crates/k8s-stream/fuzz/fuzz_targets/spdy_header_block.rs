//! Arbitrary bytes through the header-block decoder: split into several blocks fed to ONE
//! decoder (as a connection would), and through the plain name/value parser. Never a panic, and
//! the decompressed-size cap holds.
#![no_main]

use k8s_stream::spdy::header_block::{parse_name_value_block, HeaderDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_name_value_block(data);
    let mut decoder = HeaderDecoder::new(64 * 1024);
    // 0xFF bytes split the input into successive header blocks.
    for block in data.split(|&b| b == 0xFF) {
        let mut out = Vec::new();
        if decoder.inflate(block, &mut out).is_err() {
            break;
        }
        assert!(out.len() <= 64 * 1024 + 64 * 1024, "cap exceeded: {}", out.len());
        let _ = parse_name_value_block(&out);
    }
});
