//! SPDY/3 name/value header blocks and their zlib framing.
//!
//! Uncompressed layout: u32 pair count, then per pair u32 name length, name (lower-case), u32
//! value length, value (several values for one name joined by NUL). On the wire each direction
//! of a connection is one zlib stream (2-byte zlib header, preset [`DICTIONARY`]), each block
//! ended by a sync flush, so a [`HeaderEncoder`] and a [`HeaderDecoder`] must live as long as the
//! connection and see every header block in wire order. We send stored (level 0) deflate blocks
//! and read whatever the peer's compressor makes.
//!
//! Checked against moby/spdystream `spdy/write.go` (writeHeaderValueBlock: lower-cased names,
//! NUL-joined values, flush per block) and `spdy/read.go` (parseHeaderValueBlock, one lazily made
//! decompressor fed exactly the block's bytes; Go's `compress/zlib` reader checks only that the
//! DICTID matches the SPDY dictionary). Where spdystream fails the frame on an upper-case
//! or duplicated name, we accept it (lower-casing, keeping both) — headers are still meaningful.
use flate2::{Decompress, FlushDecompress, Status};

use super::dictionary::{DICTIONARY, DICTIONARY_ADLER32};

/// Default cap on one decompressed header block (refuses zip bombs).
pub const DEFAULT_MAX_DECOMPRESSED: usize = 256 * 1024;

/// Why a header block could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderBlockError {
    #[error("header block decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("header block needs zlib dictionary {0:#010x}, not the SPDY/3 one")]
    WrongDictionary(u32),
    #[error("header block zlib error: {0}")]
    Zlib(String),
    #[error("compressed header block is incomplete")]
    Truncated,
    #[error("header block is malformed: {0}")]
    Malformed(&'static str),
}

/// The compressing side of one connection direction.
///
/// Header blocks are emitted as zlib *stored* (uncompressed) deflate blocks, exactly what zlib
/// writes at level 0 with a sync flush: the first block starts with the zlib header naming the
/// SPDY/3 dictionary, each block is one or more stored blocks followed by the empty stored block
/// of the sync flush. Every inflater reads this (the peer's keeps its usual 32 KiB window), and
/// our side holds no deflate state at all: a real compressor costs ~300 KiB per connection
/// (window, hash chains, pending buffer, most of it touched at init), which dominated an idle
/// session's memory, while exec header blocks are a few dozen bytes sent once per stream.
#[derive(Default)]
pub struct HeaderEncoder {
    /// The zlib header has been written (it precedes only the first block).
    started: bool,
    plain: Vec<u8>,
}

/// zlib header: CMF (deflate, 32 KiB window), FLG with FDICT and level "fastest"; the pair
/// is a multiple of 31 as RFC 1950 requires.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x3f];
/// Largest payload of one stored deflate block.
const STORED_MAX: usize = 0xffff;

impl HeaderEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serialises `headers` as a name/value block and appends its zlib bytes (stored blocks,
    /// then a sync flush) to `dst`. Names are lower-cased; repeated names are joined into one
    /// NUL-separated value at the position of their first occurrence.
    pub fn encode<'a, I>(&mut self, headers: I, dst: &mut Vec<u8>) -> Result<(), HeaderBlockError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        self.plain.clear();
        write_name_value_block(headers, &mut self.plain);
        if !std::mem::replace(&mut self.started, true) {
            dst.extend_from_slice(&ZLIB_HEADER);
            dst.extend_from_slice(&DICTIONARY_ADLER32.to_be_bytes());
        }
        dst.reserve(self.plain.len() + 5 * (self.plain.len() / STORED_MAX + 2));
        for chunk in self.plain.chunks(STORED_MAX) {
            push_stored_block(chunk, dst);
        }
        // The sync flush: an empty stored block (`00 00 00 ff ff`).
        push_stored_block(&[], dst);
        Ok(())
    }
}

/// One non-final stored deflate block: header bits (BFINAL 0, BTYPE 00) padded to a byte,
/// LEN and its one's complement little-endian, then the bytes. Output stays byte aligned, so
/// blocks can be cut at any block boundary.
fn push_stored_block(bytes: &[u8], dst: &mut Vec<u8>) {
    debug_assert!(bytes.len() <= STORED_MAX);
    let len = bytes.len() as u16;
    dst.push(0x00);
    dst.extend_from_slice(&len.to_le_bytes());
    dst.extend_from_slice(&(!len).to_le_bytes());
    dst.extend_from_slice(bytes);
}

/// deflate's window: the farthest back a compressed block may refer.
const WINDOW: usize = 32 * 1024;
/// The bytes that end a sync flush (the empty stored block's LEN and NLEN).
const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The decompressing side of one connection direction.
///
/// An inflater costs ~45 KiB (its state and 32 KiB window), held for the connection's whole
/// life although an exec session receives a handful of header blocks at its start. Since every
/// block ends with a sync flush, the stream is at a deflate block boundary between blocks, and
/// all an inflater carries across that boundary is its window: the last 32 KiB of output
/// (the dictionary included). So between blocks we keep only the output since the dictionary
/// (bytes, not KiB, for exec) and make a raw inflater for each block, primed with that window
/// as its dictionary. A block that does not end with the sync flush's bytes keeps its inflater
/// live for the next one, as a single long-lived inflater would behave.
pub struct HeaderDecoder {
    /// The zlib stream's inflater while a block is being read, or across blocks when the last
    /// one did not end at a sync flush. `None` before the first block and between blocks.
    inflater: Option<Decompress>,
    /// The zlib header (which only the first block carries) has been read.
    started: bool,
    /// The last [`WINDOW`] bytes of decompressed output (what follows the dictionary).
    history: Vec<u8>,
    max_decompressed: usize,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DECOMPRESSED)
    }
}

impl HeaderDecoder {
    /// A decoder that refuses blocks decompressing to more than `max_decompressed` bytes.
    pub fn new(max_decompressed: usize) -> Self {
        HeaderDecoder {
            inflater: None,
            started: false,
            history: Vec::new(),
            max_decompressed,
        }
    }

    /// Whether an inflater is held between blocks (only after a block that did not end with a
    /// sync flush).
    pub fn holds_inflater(&self) -> bool {
        self.inflater.is_some()
    }

    /// Decompresses one block (exactly the bytes of one frame's header block) and parses it.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, HeaderBlockError> {
        let mut plain = Vec::new();
        self.inflate(block, &mut plain)?;
        parse_name_value_block(&plain)
    }

    /// Appends the decompressed bytes of `block` to `out`.
    pub fn inflate(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), HeaderBlockError> {
        let start = out.len();
        let mut decompress = match self.inflater.take() {
            Some(live) => live,
            // The first block starts the zlib stream (header, then the dictionary request).
            None if !self.started => Decompress::new(true),
            None => self.resume()?,
        };
        self.started = true;
        inflate_block(&mut decompress, block, out, self.max_decompressed)?;
        self.remember(&out[start..]);
        if !block.ends_with(&SYNC_FLUSH_TAIL) {
            self.inflater = Some(decompress);
        }
        Ok(())
    }

    /// A raw inflater that carries on the stream after a sync flush: its window is the
    /// dictionary followed by the output so far, as the stream's own inflater's would be.
    fn resume(&self) -> Result<Decompress, HeaderBlockError> {
        let mut decompress = Decompress::new_with_window_bits(false, 15);
        let from_dictionary = WINDOW
            .saturating_sub(self.history.len())
            .min(DICTIONARY.len());
        let mut window = Vec::with_capacity(from_dictionary + self.history.len());
        window.extend_from_slice(&DICTIONARY[DICTIONARY.len() - from_dictionary..]);
        window.extend_from_slice(&self.history);
        decompress
            .set_dictionary(&window)
            .map_err(|e| HeaderBlockError::Zlib(e.to_string()))?;
        Ok(decompress)
    }

    /// Adds a block's output to the window kept between blocks.
    fn remember(&mut self, output: &[u8]) {
        let output = &output[output.len().saturating_sub(WINDOW)..];
        let keep = WINDOW - output.len();
        if self.history.len() > keep {
            self.history.drain(..self.history.len() - keep);
        }
        self.history.extend_from_slice(output);
    }
}

/// Runs `decompress` over exactly the bytes of one header block, appending the output to `out`.
fn inflate_block(
    decompress: &mut Decompress,
    block: &[u8],
    out: &mut Vec<u8>,
    max_decompressed: usize,
) -> Result<(), HeaderBlockError> {
    let start = out.len();
    let mut consumed = 0;
    loop {
        let room = (block.len() * 4).clamp(256, 64 * 1024);
        out.reserve(room);
        let before_in = decompress.total_in();
        let before_out = decompress.total_out();
        let status = decompress.decompress_vec(&block[consumed..], out, FlushDecompress::Sync);
        consumed += (decompress.total_in() - before_in) as usize;
        let produced = decompress.total_out() - before_out;
        match status {
            Ok(Status::StreamEnd) => return Ok(()),
            Ok(_) => {}
            Err(e) => match e.needs_dictionary() {
                Some(DICTIONARY_ADLER32) => {
                    decompress
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| HeaderBlockError::Zlib(e.to_string()))?;
                    continue;
                }
                Some(other) => return Err(HeaderBlockError::WrongDictionary(other)),
                None => return Err(HeaderBlockError::Zlib(e.to_string())),
            },
        }
        if out.len() - start > max_decompressed {
            return Err(HeaderBlockError::TooLarge(max_decompressed));
        }
        if consumed == block.len() && out.len() < out.capacity() {
            return Ok(());
        }
        if produced == 0 && consumed == block.len() {
            // Output space left, no input, no progress: the block ended mid-stream.
            return Err(HeaderBlockError::Truncated);
        }
    }
}

/// Appends the uncompressed name/value block for `headers`.
pub fn write_name_value_block<'a, I>(headers: I, dst: &mut Vec<u8>)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    // Group repeated names (case-insensitively) keeping first-occurrence order.
    let mut pairs: Vec<(String, Vec<&'a str>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match pairs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => pairs.push((name, vec![value])),
        }
    }
    dst.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
    for (name, values) in &pairs {
        dst.extend_from_slice(&(name.len() as u32).to_be_bytes());
        dst.extend_from_slice(name.as_bytes());
        let value_len = values.iter().map(|v| v.len()).sum::<usize>() + values.len() - 1;
        dst.extend_from_slice(&(value_len as u32).to_be_bytes());
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                dst.push(0);
            }
            dst.extend_from_slice(value.as_bytes());
        }
    }
}

/// Parses an uncompressed name/value block, which must be consumed exactly. Each NUL-separated
/// value becomes its own pair; names are lower-cased; invalid UTF-8 is replaced.
pub fn parse_name_value_block(plain: &[u8]) -> Result<Vec<(String, String)>, HeaderBlockError> {
    let mut rest = plain;
    let count = take_u32(&mut rest)? as usize;
    // Every pair needs at least its two length words; refuse absurd counts before allocating.
    if count > rest.len() / 8 {
        return Err(HeaderBlockError::Malformed("pair count exceeds block size"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_bytes(&mut rest)?;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = take_bytes(&mut rest)?;
        for part in value.split(|&b| b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    if !rest.is_empty() {
        return Err(HeaderBlockError::Malformed(
            "trailing bytes after last pair",
        ));
    }
    Ok(headers)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, HeaderBlockError> {
    let Some((word, tail)) = rest.split_first_chunk::<4>() else {
        return Err(HeaderBlockError::Malformed("truncated length"));
    };
    *rest = tail;
    Ok(u32::from_be_bytes(*word))
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], HeaderBlockError> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(HeaderBlockError::Malformed("string longer than block"));
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Ok(bytes)
}
