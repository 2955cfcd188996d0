//! Strict RFC 4180 quoting, checked over the raw bytes before the `csv`
//! crate parses the file. That crate is lenient by design: text after a
//! closing quote (`"never closed,1` followed by more rows, whose next quote
//! closes the field) is appended to the field, so rows merge in silence, and
//! a quoted field still open at the end of the file is accepted. Python's
//! `csv` module with `strict=True` refuses both; so does this check. A quote
//! inside an unquoted field (`a 5" screen`) is a literal character, as in
//! Python and pandas: it merges nothing.

use std::io::{BufRead, BufReader, Read};

/// A quoting violation, with 1-based line numbers (as the `csv` crate's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotingError {
    /// A quoted field opened at `opened` was closed at `closed` and
    /// followed by `found` instead of a comma or the end of the line.
    TextAfterClosingQuote { opened: u64, closed: u64, found: u8 },
    /// A quoted field opened at `opened` is still open at the end of the file.
    NeverClosed { opened: u64 },
}

impl QuotingError {
    /// The line to report, where the faulty quoted field starts.
    pub fn line(&self) -> u64 {
        match self {
            QuotingError::TextAfterClosingQuote { opened, .. }
            | QuotingError::NeverClosed { opened } => *opened,
        }
    }

    /// What is wrong and what to do, without the `file:line:` prefix.
    pub fn describe(&self) -> String {
        match self {
            QuotingError::TextAfterClosingQuote {
                opened,
                closed,
                found,
            } => {
                let found = char::from(*found).escape_default();
                let span = if opened == closed {
                    String::new()
                } else {
                    format!(" runs to line {closed}, where it")
                };
                format!(
                    "the quoted field that opens here{span} is closed by a quote followed by '{found}' \
                     instead of a comma or the end of the line, which would merge rows; \
                     double every quote inside a quoted field (\"\") and close the field before its comma"
                )
            }
            QuotingError::NeverClosed { .. } => "a quoted field opens here and is never closed; \
                 close it with a quote (a quote inside a quoted field is written \"\")"
                .to_string(),
        }
    }
}

#[derive(Clone, Copy)]
enum State {
    /// At the start of a field (after a comma or a line break).
    FieldStart,
    /// Inside an unquoted field: quotes here are literal characters.
    Unquoted,
    /// Inside a quoted field that opened at this line.
    Quoted { opened: u64 },
    /// Just after a quote inside a quoted field: either the first half of
    /// `""` or the closing quote.
    QuoteInQuoted { opened: u64 },
}

/// Checks the quoting of a comma-separated file read from `input`.
pub fn check(input: impl Read) -> std::io::Result<Result<(), QuotingError>> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut state = State::FieldStart;
    let mut line: u64 = 1;
    let mut at_file_start = true;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let mut bytes = chunk;
        if at_file_start {
            // A UTF-8 byte-order mark is not part of the first field.
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            at_file_start = false;
        }
        for &b in bytes {
            state = match (state, b) {
                (State::FieldStart, b'"') => State::Quoted { opened: line },
                (State::FieldStart | State::Unquoted, b',' | b'\n' | b'\r') => State::FieldStart,
                (State::FieldStart | State::Unquoted, _) => State::Unquoted,
                (State::Quoted { opened }, b'"') => State::QuoteInQuoted { opened },
                (quoted @ State::Quoted { .. }, _) => quoted,
                (State::QuoteInQuoted { opened }, b'"') => State::Quoted { opened },
                (State::QuoteInQuoted { .. }, b',' | b'\n' | b'\r') => State::FieldStart,
                (State::QuoteInQuoted { opened }, found) => {
                    return Ok(Err(QuotingError::TextAfterClosingQuote {
                        opened,
                        closed: line,
                        found,
                    }));
                }
            };
            if b == b'\n' {
                line += 1;
            }
        }
        let n = chunk.len();
        reader.consume(n);
    }
    Ok(match state {
        State::Quoted { opened } => Err(QuotingError::NeverClosed { opened }),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_str(s: &str) -> Result<(), QuotingError> {
        check(s.as_bytes()).unwrap()
    }

    #[test]
    fn accepts_what_rfc_4180_and_pythons_strict_reader_accept() {
        for ok in [
            "sentence,label\na,1\n",
            "sentence,label\r\n\"a, \"\"quoted\"\"\nline\",1\r\n",
            "sentence,label\na 5\" screen,1\n",
            "\u{feff}\"sentence\",label\n\"\",0\n",
            "sentence,label\n\"last\",1",
            "",
        ] {
            assert_eq!(check_str(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn text_after_a_closing_quote_names_the_line_where_the_field_opened() {
        // The unclosed quote on line 2 swallows line 3 up to its opening
        // quote, which closes the field; `x` follows it.
        let merged = "sentence,label\n\"never closed,1\n\"x\",0\n";
        assert_eq!(
            check_str(merged),
            Err(QuotingError::TextAfterClosingQuote {
                opened: 2,
                closed: 3,
                found: b'x'
            })
        );
        let same_line = "sentence,label\n\"a\"b,1\n";
        let e = check_str(same_line).unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(!e.describe().contains("runs to line"), "{}", e.describe());
    }

    #[test]
    fn a_quote_open_at_the_end_of_the_file_is_refused() {
        let e = check_str("sentence,label\ngood,0\n\"never closed,1\ngood,0\n").unwrap_err();
        assert_eq!(e, QuotingError::NeverClosed { opened: 3 });
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        // Larger than the reader's buffer, with the violation far in.
        let mut s = String::from("sentence,label\n");
        for i in 0..20_000 {
            s.push_str(&format!("\"row {i}, with a comma\",{}\n", i % 2));
        }
        s.push_str("\"bad\"tail,1\n");
        let e = check_str(&s).unwrap_err();
        assert_eq!(e.line(), 20_002);
    }
}
