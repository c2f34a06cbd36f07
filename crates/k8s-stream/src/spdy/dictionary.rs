//! The SPDY/3 header-compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1), the preset
//! zlib dictionary both directions start from. Bytes checked against moby/spdystream
//! `spdy/dictionary.go`; its zlib DICTID (adler32) is [`DICTIONARY_ADLER32`].

/// Adler-32 of [`DICTIONARY`]: the DICTID a peer's zlib header names.
pub const DICTIONARY_ADLER32: u32 = 0xE3C6_A7C2;

/// The 1423-byte dictionary. The first part is a name/value-style list of u32-length-prefixed
/// words; the tail is a run of common header values.
pub const DICTIONARY: &[u8; 1423] = b"\
\x00\x00\x00\x07options\
\x00\x00\x00\x04head\
\x00\x00\x00\x04post\
\x00\x00\x00\x03put\
\x00\x00\x00\x06delete\
\x00\x00\x00\x05trace\
\x00\x00\x00\x06accept\
\x00\x00\x00\x0eaccept-charset\
\x00\x00\x00\x0faccept-encoding\
\x00\x00\x00\x0faccept-language\
\x00\x00\x00\x0daccept-ranges\
\x00\x00\x00\x03age\
\x00\x00\x00\x05allow\
\x00\x00\x00\x0dauthorization\
\x00\x00\x00\x0dcache-control\
\x00\x00\x00\x0aconnection\
\x00\x00\x00\x0ccontent-base\
\x00\x00\x00\x10content-encoding\
\x00\x00\x00\x10content-language\
\x00\x00\x00\x0econtent-length\
\x00\x00\x00\x10content-location\
\x00\x00\x00\x0bcontent-md5\
\x00\x00\x00\x0dcontent-range\
\x00\x00\x00\x0ccontent-type\
\x00\x00\x00\x04date\
\x00\x00\x00\x04etag\
\x00\x00\x00\x06expect\
\x00\x00\x00\x07expires\
\x00\x00\x00\x04from\
\x00\x00\x00\x04host\
\x00\x00\x00\x08if-match\
\x00\x00\x00\x11if-modified-since\
\x00\x00\x00\x0dif-none-match\
\x00\x00\x00\x08if-range\
\x00\x00\x00\x13if-unmodified-since\
\x00\x00\x00\x0dlast-modified\
\x00\x00\x00\x08location\
\x00\x00\x00\x0cmax-forwards\
\x00\x00\x00\x06pragma\
\x00\x00\x00\x12proxy-authenticate\
\x00\x00\x00\x13proxy-authorization\
\x00\x00\x00\x05range\
\x00\x00\x00\x07referer\
\x00\x00\x00\x0bretry-after\
\x00\x00\x00\x06server\
\x00\x00\x00\x02te\
\x00\x00\x00\x07trailer\
\x00\x00\x00\x11transfer-encoding\
\x00\x00\x00\x07upgrade\
\x00\x00\x00\x0auser-agent\
\x00\x00\x00\x04vary\
\x00\x00\x00\x03via\
\x00\x00\x00\x07warning\
\x00\x00\x00\x10www-authenticate\
\x00\x00\x00\x06method\
\x00\x00\x00\x03get\
\x00\x00\x00\x06status\
\x00\x00\x00\x06200 OK\
\x00\x00\x00\x07version\
\x00\x00\x00\x08HTTP/1.1\
\x00\x00\x00\x03url\
\x00\x00\x00\x06public\
\x00\x00\x00\x0aset-cookie\
\x00\x00\x00\x0akeep-alive\
\x00\x00\x00\x06origin10010120120220520630030230330430530630740240540640740840941\
0411412413414415416417502504505203 Non-Authoritative Information204 No Content301\
\x20Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 In\
ternal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May \
Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunk\
ed,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,\
text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8cha\
rset=iso-8859-1,utf-,*,enq=0.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_spec_length_and_adler32() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for &byte in DICTIONARY.iter() {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, DICTIONARY_ADLER32);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(DICTIONARY.ends_with(b",enq=0."));
    }
}
