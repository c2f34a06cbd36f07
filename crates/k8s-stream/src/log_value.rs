//! A peer's bytes as a log field, cut at a bound: a request must not decide how long a log
//! line is (a SPDY header of NUL bytes, a huge query, a long error body).
use std::fmt::{self, Debug, Display, Write};

/// The most of a value one log field takes.
pub const LOG_VALUE_BYTES: usize = 512;

/// Shows at most [`LOG_VALUE_BYTES`] of the wrapped value's `Display` (or `Debug`), then `…`;
/// formatting stops there, so a huge value costs no more than a small one.
pub struct Bounded<T>(pub T);

impl<T: Display> Display for Bounded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        capped(f, |w| write!(w, "{}", self.0))
    }
}

impl<T: Debug> Debug for Bounded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        capped(f, |w| write!(w, "{:?}", self.0))
    }
}

fn capped(
    f: &mut fmt::Formatter<'_>,
    write: impl FnOnce(&mut Capped<'_, '_>) -> fmt::Result,
) -> fmt::Result {
    let mut capped = Capped {
        out: f,
        left: LOG_VALUE_BYTES,
        cut: false,
    };
    let result = write(&mut capped);
    match (capped.cut, result) {
        (true, _) => capped.out.write_str("…"),
        (false, result) => result,
    }
}

/// Passes writes through until the bound, then refuses them (which stops the formatting).
struct Capped<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    left: usize,
    cut: bool,
}

impl Write for Capped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.left {
            self.left -= s.len();
            return self.out.write_str(s);
        }
        let mut end = self.left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.write_str(&s[..end])?;
        self.left = 0;
        self.cut = true;
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_shown_whole() {
        assert_eq!(Bounded("stdout").to_string(), "stdout");
        assert_eq!(format!("{:?}", Bounded("a\0b")), r#""a\0b""#);
    }

    #[test]
    fn long_values_are_cut_at_the_bound() {
        let nul = "\0".repeat(250_000);
        let shown = format!("{:?}", Bounded(&nul));
        assert_eq!(shown.len(), LOG_VALUE_BYTES + "…".len());
        assert!(shown.ends_with('…'));
        let values: Vec<&str> = vec![""; 250_001];
        assert_eq!(
            format!("{:?}", Bounded(&values)).len(),
            LOG_VALUE_BYTES + "…".len()
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let text = "é".repeat(LOG_VALUE_BYTES);
        let shown = Bounded(&text).to_string();
        assert!(shown.len() <= LOG_VALUE_BYTES + "…".len());
        assert!(shown.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
