//! Expected texts and how an observed text is held against them (sans-IO).
//!
//! An expected text is exact except for its placeholders, which stand for the parts production
//! cannot fix in advance: `{n}` one or more decimal digits (ports, the `runc-process` suffix),
//! `{hex64}` exactly 64 lowercase hex digits (a containerd exec id). Literal braces are written
//! `{{` and `}}`. Everything else must match character for character.

/// Where a placeholder-bearing text is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole text (trailing newlines aside).
    Whole,
    /// The last non-empty line: kubectl prints klog lines of its own in front of some errors
    /// (failures.md, "Observed": "preceded by 2–3 `E... "Unhandled Error"` klog lines").
    LastLine,
}

/// One piece of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Digits,
    Hex64,
}

/// A parse error: an unknown `{placeholder}` or an unclosed brace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// An expected text with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    pieces: Vec<Piece>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let error = |reason: &str| PatternError {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if c == '{' {
                let end = rest.find('}').ok_or_else(|| error("unclosed `{`"))?;
                let piece = match &rest[1..end] {
                    "n" => Piece::Digits,
                    "hex64" => Piece::Hex64,
                    other => return Err(error(&format!("unknown placeholder {{{other}}}"))),
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
                rest = &rest[end + 1..];
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The pattern as written (placeholders shown).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `observed` is this text. Digits are matched greedily: a pattern never puts a
    /// digit right after `{n}`, so no backtracking is needed.
    pub fn matches(&self, observed: &str) -> bool {
        let mut rest = observed;
        for piece in &self.pieces {
            rest = match piece {
                Piece::Literal(text) => match rest.strip_prefix(text.as_str()) {
                    Some(after) => after,
                    None => return false,
                },
                Piece::Digits => {
                    let len = rest.bytes().take_while(u8::is_ascii_digit).count();
                    if len == 0 {
                        return false;
                    }
                    &rest[len..]
                }
                Piece::Hex64 => {
                    let hex = rest
                        .bytes()
                        .take(64)
                        .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                        .count();
                    if hex != 64 {
                        return false;
                    }
                    &rest[64..]
                }
            };
        }
        rest.is_empty()
    }
}

/// The part of `output` a [`Scope`] compares.
pub fn scoped(output: &str, scope: Scope) -> &str {
    let trimmed = output.trim_end_matches(['\n', '\r']);
    match scope {
        Scope::Whole => trimmed,
        Scope::LastLine => trimmed
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or(""),
    }
}

/// `output` without the lines of client-go's WebSocket reader race: its demux loop starts
/// before the client has registered its streams, so the server's ready signal (an empty
/// message on the lowest output channel, sent at once, as upstream's apiserver sends it) can
/// arrive first and is logged as `E… websocket.go:NNN] Unknown stream id 1, discarding
/// message` (client-go `tools/remotecommand/websocket.go` `readDemuxLoop`). Production shows
/// that line now and then too; it says nothing about the fault.
pub fn without_client_races(output: &str) -> std::borrow::Cow<'_, str> {
    let race = |line: &str| {
        line.starts_with('E')
            && line.contains(" websocket.go:")
            && line.contains("] Unknown stream id ")
            && line.ends_with(", discarding message")
    };
    if !output.lines().any(race) {
        return output.into();
    }
    output
        .split_inclusive('\n')
        .filter(|line| !race(line.trim_end_matches(['\n', '\r'])))
        .collect::<String>()
        .into()
}

/// Escapes a literal (a path, a user name) for use inside a pattern.
pub fn literal(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_go_reader_race_lines_are_dropped() {
        let stderr = "E1204 20:23:05.770471   21436 websocket.go:296] Unknown stream id 1, discarding message\nerror: Internal error occurred: unable to upgrade connection: Unauthorized\n";
        assert_eq!(
            without_client_races(stderr),
            "error: Internal error occurred: unable to upgrade connection: Unauthorized\n"
        );
        let other = "E1204 20:23:05.770471   21436 v2.go:104] \"Unhandled Error\" err=\"x\"\n";
        assert_eq!(without_client_races(other), other);
    }

    #[test]
    fn literals_match_exactly() {
        let p = Pattern::parse("error: unable to upgrade connection: Unauthorized").unwrap();
        assert!(p.matches("error: unable to upgrade connection: Unauthorized"));
        assert!(!p.matches("error: unable to upgrade connection: Unauthorized!"));
        assert!(!p.matches("error: unable to upgrade connection: unauthorized"));
    }

    #[test]
    fn digits_and_exec_ids_are_placeholders() {
        let p = Pattern::parse(
            "failed to start exec \"{hex64}\": OCI runtime exec failed: open /x/runc-process{n}: no space left on device: unknown",
        )
        .unwrap();
        let id = "0123456789abcdef".repeat(4);
        assert!(p.matches(&format!("failed to start exec \"{id}\": OCI runtime exec failed: open /x/runc-process2116393344: no space left on device: unknown")));
        assert!(!p.matches(&format!("failed to start exec \"{id}\": OCI runtime exec failed: open /x/runc-process: no space left on device: unknown")));
        let short = &id[..63];
        assert!(!p.matches(&format!("failed to start exec \"{short}\": OCI runtime exec failed: open /x/runc-process1: no space left on device: unknown")));
        let upper = id.to_uppercase();
        assert!(!p.matches(&format!("failed to start exec \"{upper}\": OCI runtime exec failed: open /x/runc-process1: no space left on device: unknown")));
    }

    #[test]
    fn braces_escape_and_unknown_placeholders_fail() {
        let p = Pattern::parse("{{\"kind\":\"Status\"}}").unwrap();
        assert!(p.matches("{\"kind\":\"Status\"}"));
        assert_eq!(literal("a{b}"), "a{{b}}");
        assert!(Pattern::parse(&literal("/tmp/{x}"))
            .unwrap()
            .matches("/tmp/{x}"));
        assert!(Pattern::parse("{port}").is_err());
        assert!(Pattern::parse("a {n").is_err());
    }

    #[test]
    fn scopes_pick_the_whole_text_or_the_last_line() {
        let out = "E0101 klog noise\nerror: boom\n\n";
        assert_eq!(scoped(out, Scope::LastLine), "error: boom");
        assert_eq!(scoped(out, Scope::Whole), "E0101 klog noise\nerror: boom");
        assert_eq!(scoped("", Scope::LastLine), "");
    }
}
