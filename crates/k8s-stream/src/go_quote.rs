//! Go's `%q` verb for strings, which production error texts use to quote values
//! (`malformed HTTP status code "command:"`, `invalid exit code value "x"`). One implementation
//! for every hop that must print those texts verbatim.

/// Go's `%q` of a string (close enough for error texts: ASCII escapes, `\u` for the rest of
/// the non-printables).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_as_go_does() {
        assert_eq!(go_quote("command:"), r#""command:""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\r\n\t\x07\x00\x7f"), r#""\r\n\t\a\x00\x7f""#);
        assert_eq!(go_quote("\u{85}é"), "\"\\u0085é\"");
    }
}
