//! Header block codec: the SPDY/3 dictionary, one zlib context per direction, sync flush per
//! block, NUL-joined values, and refusal of oversized (zip bomb) blocks.
use k8s_stream::spdy::dictionary::{DICTIONARY, DICTIONARY_ADLER32};
use k8s_stream::spdy::header_block::{
    parse_name_value_block, write_name_value_block, HeaderBlockError, HeaderDecoder, HeaderEncoder,
};

#[test]
fn name_value_block_layout() {
    let mut plain = Vec::new();
    write_name_value_block(
        [("StreamType", "error"), ("a", "1"), ("A", "2")],
        &mut plain,
    );
    let expected: &[u8] = b"\0\0\0\x02\
\0\0\0\x0astreamtype\0\0\0\x05error\
\0\0\0\x01a\0\0\0\x031\x002";
    assert_eq!(plain, expected);
    assert_eq!(
        parse_name_value_block(&plain).unwrap(),
        vec![
            ("streamtype".to_string(), "error".to_string()),
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ]
    );
}

#[test]
fn malformed_blocks() {
    assert!(parse_name_value_block(b"").is_err());
    assert!(parse_name_value_block(b"\0\0\0\x01\0\0\0\x05ab").is_err());
    // A count far beyond what the bytes could hold is refused before allocating.
    assert!(parse_name_value_block(b"\xff\xff\xff\xff\0\0\0\0\0\0\0\0").is_err());
    // Trailing garbage.
    assert!(parse_name_value_block(b"\0\0\0\0x").is_err());
}

#[test]
fn first_block_names_the_spdy3_dictionary() {
    let mut enc = HeaderEncoder::new();
    let mut block = Vec::new();
    enc.encode([("streamtype", "error")], &mut block).unwrap();
    // zlib header: CMF, FLG with FDICT, then DICTID big-endian.
    assert_eq!(block[0] & 0x0f, 8, "deflate");
    assert_ne!(block[1] & 0x20, 0, "FDICT set");
    assert_eq!(
        u32::from_be_bytes([block[2], block[3], block[4], block[5]]),
        DICTIONARY_ADLER32
    );
    // Z_SYNC_FLUSH ends with an empty stored block.
    assert!(block.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    assert_eq!(DICTIONARY.len(), 1423);
}

#[test]
fn one_context_per_direction_across_blocks() {
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::default();
    let sets: Vec<Vec<(&str, &str)>> = vec![
        vec![("streamtype", "error")],
        vec![("streamtype", "stdin")],
        vec![],
        vec![("streamtype", "stdout"), ("x-multi", "a"), ("x-multi", "b")],
        vec![("port", "8080"), ("requestid", "0")],
    ];
    let mut sizes = Vec::new();
    for set in &sets {
        let mut block = Vec::new();
        enc.encode(set.iter().copied(), &mut block).unwrap();
        sizes.push(block.len());
        let got = dec.decode(&block).unwrap();
        assert_eq!(got, owned(set));
    }
    // Later blocks reuse the shared context (no zlib header, back-references): smaller.
    assert!(sizes[1] < sizes[0], "{sizes:?}");
}

#[test]
fn a_fresh_decoder_cannot_read_a_later_block() {
    let mut enc = HeaderEncoder::new();
    let mut first = Vec::new();
    let mut second = Vec::new();
    enc.encode([("streamtype", "error")], &mut first).unwrap();
    enc.encode([("streamtype", "stdin")], &mut second).unwrap();
    assert!(HeaderDecoder::default().decode(&second).is_err());
}

#[test]
fn truncated_block_is_an_error() {
    let mut enc = HeaderEncoder::new();
    let mut block = Vec::new();
    enc.encode([("streamtype", "error")], &mut block).unwrap();
    let err = HeaderDecoder::default()
        .decode(&block[..block.len() / 2])
        .unwrap_err();
    assert!(
        matches!(
            err,
            HeaderBlockError::Truncated | HeaderBlockError::Malformed(_)
        ),
        "{err:?}"
    );
}

/// A compressing peer: zlib with the SPDY dictionary, one stream for all its blocks, a sync
/// flush after each (as spdystream writes them).
struct ZlibPeer(flate2::Compress);

impl ZlibPeer {
    fn new() -> Self {
        use flate2::{Compress, Compression};
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(DICTIONARY).unwrap();
        ZlibPeer(c)
    }

    fn block(&mut self, plain: &[u8]) -> Vec<u8> {
        use flate2::FlushCompress;
        let c = &mut self.0;
        let start = c.total_in();
        let mut out = Vec::with_capacity(plain.len() + 1024);
        loop {
            let consumed = (c.total_in() - start) as usize;
            c.compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (c.total_in() - start) as usize == plain.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(64 * 1024);
        }
    }
}

/// What a compressing peer sends for `plain` as its first block.
fn deflated_block(plain: &[u8]) -> Vec<u8> {
    ZlibPeer::new().block(plain)
}

#[test]
fn decoder_keeps_no_inflater_between_sync_flushed_blocks() {
    // Later blocks refer back into earlier blocks' output (a long value repeated), and past
    // 32 KiB of output the dictionary has left the window.
    let mut peer = ZlibPeer::new();
    let mut dec = HeaderDecoder::default();
    let mut seed = 1u32;
    let token: String = (0..300)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + (seed >> 16) as u8 % 26)
        })
        .collect();
    let filler = "z".repeat(20 * 1024);
    let sets: Vec<Vec<(&str, &str)>> = vec![
        vec![("streamtype", "error"), ("x-token", &token)],
        vec![("streamtype", "stdout"), ("x-token", &token)],
        vec![("x-filler", &filler)],
        vec![("x-filler", &filler), ("x-token", &token)],
        vec![("streamtype", "stdin"), ("x-token", &token)],
    ];
    for (i, set) in sets.iter().enumerate() {
        let mut plain = Vec::new();
        write_name_value_block(set.iter().copied(), &mut plain);
        let block = peer.block(&plain);
        if i == 1 {
            assert!(
                block.len() < token.len() / 2,
                "a back-reference: {}",
                block.len()
            );
        }
        let got = dec.decode(&block).unwrap();
        assert_eq!(got, owned(set));
        assert!(
            !dec.holds_inflater(),
            "an idle decoder holds only its history"
        );
    }
}

#[test]
fn a_block_cut_before_its_sync_flush_keeps_the_inflater() {
    let mut peer = ZlibPeer::new();
    let mut dec = HeaderDecoder::default();
    let mut plain = Vec::new();
    write_name_value_block([("streamtype", "error")], &mut plain);
    dec.decode(&peer.block(&plain)).unwrap();
    let mut plain = Vec::new();
    write_name_value_block([("streamtype", "stdout"), ("x", "yyyy")], &mut plain);
    let block = peer.block(&plain);
    let (head, tail) = block.split_at(block.len() / 2);
    let mut out = Vec::new();
    dec.inflate(head, &mut out).unwrap();
    assert!(dec.holds_inflater());
    dec.inflate(tail, &mut out).unwrap();
    assert!(!dec.holds_inflater());
    assert_eq!(out, plain);
}

#[test]
fn zip_bomb_is_refused() {
    let big = "a".repeat(4 * 1024 * 1024);
    let mut plain = Vec::new();
    write_name_value_block([("x", big.as_str())], &mut plain);
    let block = deflated_block(&plain);
    assert!(block.len() < 64 * 1024, "compresses well: {}", block.len());
    let err = HeaderDecoder::new(256 * 1024).decode(&block).unwrap_err();
    assert_eq!(err, HeaderBlockError::TooLarge(256 * 1024));
}

#[test]
fn compressed_blocks_from_a_zlib_peer_are_read() {
    let mut plain = Vec::new();
    write_name_value_block([("streamtype", "stdout"), ("port", "80")], &mut plain);
    let got = HeaderDecoder::default()
        .decode(&deflated_block(&plain))
        .unwrap();
    assert_eq!(got[0], ("streamtype".to_string(), "stdout".to_string()));
}

#[test]
fn encoder_writes_stored_blocks_and_keeps_no_deflate_state() {
    // No window, hash table or pending buffer: the encoder is a flag and a scratch Vec.
    assert!(std::mem::size_of::<HeaderEncoder>() <= 64);
    let mut enc = HeaderEncoder::new();
    let mut block = Vec::new();
    enc.encode([("streamtype", "error")], &mut block).unwrap();
    let mut plain = Vec::new();
    write_name_value_block([("streamtype", "error")], &mut plain);
    // zlib header + DICTID, one stored block holding the plain block, the sync flush.
    assert_eq!(&block[..2], &[0x78, 0x3f]);
    assert_eq!((u32::from(block[0]) * 256 + u32::from(block[1])) % 31, 0);
    let len = plain.len() as u16;
    assert_eq!(block[6], 0x00);
    assert_eq!(&block[7..9], &len.to_le_bytes());
    assert_eq!(&block[9..11], &(!len).to_le_bytes());
    assert_eq!(&block[11..11 + plain.len()], &plain[..]);
    assert_eq!(&block[11 + plain.len()..], &[0, 0, 0, 0xff, 0xff]);
    // Blocks bigger than one stored block (64 KiB − 1) are split and still read back whole.
    let big = "v".repeat(150 * 1024);
    let mut second = Vec::new();
    enc.encode([("x-big", big.as_str())], &mut second).unwrap();
    let mut dec = HeaderDecoder::new(1024 * 1024);
    dec.decode(&block).unwrap();
    assert_eq!(
        dec.decode(&second).unwrap(),
        vec![("x-big".to_string(), big.clone())]
    );
}

#[test]
fn wrong_dictionary_is_refused() {
    // zlib header with FDICT and DICTID 0x00000001 (any non-SPDY dictionary).
    let mut block = vec![0x78, 0xbb, 0, 0, 0, 1];
    // (0x78bb is a valid CMF/FLG pair: (0x78 * 256 + 0xbb) % 31 == 0)
    assert_eq!((0x78u32 * 256 + 0xbb) % 31, 0);
    block.extend_from_slice(&[0x03, 0x00]);
    assert_eq!(
        HeaderDecoder::default().decode(&block).unwrap_err(),
        HeaderBlockError::WrongDictionary(1)
    );
}

/// A header set as the decoder returns it.
fn owned(set: &[(&str, &str)]) -> Vec<(String, String)> {
    set.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}
