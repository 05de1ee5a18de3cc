//! UTF-8 text checks (txt, md, and the text layer of jsonl and csv) and CSV.

use super::{ParseLimits, Unit};
use crate::error::{DatanetError, ParseFailure};

/// Share of control characters (other than tab, line feed, carriage return
/// and form feed), in per mille, above which text is called binary.
const MAX_CONTROL_PER_MILLE: u64 = 10;

/// Validates that `bytes` are UTF-8 text with bounded lines and no binary
/// content; returns the text without a leading byte-order mark.
pub(super) fn checked_text<'a>(
    file: &str,
    bytes: &'a [u8],
    limits: &ParseLimits,
) -> Result<&'a str, DatanetError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            return Err(DatanetError::parse(
                file,
                Some(line),
                ParseFailure::NotUtf8 {
                    byte_offset: at as u64,
                },
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut control = 0u64;
    let mut chars = 0u64;
    let mut first_control_line = None;
    let mut line = 1u64;
    let mut line_start = 0usize;
    for (i, c) in text.char_indices() {
        chars += 1;
        if c == '\n' {
            let len = (i - line_start) as u64;
            if len > limits.max_line_bytes {
                return Err(DatanetError::parse(
                    file,
                    Some(line),
                    ParseFailure::LineTooLong {
                        len,
                        max: limits.max_line_bytes,
                    },
                ));
            }
            line += 1;
            line_start = i + 1;
        } else if c.is_control() && !matches!(c, '\t' | '\r' | '\x0c') {
            control += 1;
            first_control_line.get_or_insert(line);
            if c == '\0' {
                return Err(DatanetError::parse(
                    file,
                    Some(line),
                    ParseFailure::Binary {
                        control_chars: control,
                        scanned: chars,
                    },
                ));
            }
        }
    }
    let len = (text.len() - line_start) as u64;
    if len > limits.max_line_bytes {
        return Err(DatanetError::parse(
            file,
            Some(line),
            ParseFailure::LineTooLong {
                len,
                max: limits.max_line_bytes,
            },
        ));
    }
    if control * 1000 > chars * MAX_CONTROL_PER_MILLE {
        return Err(DatanetError::parse(
            file,
            first_control_line,
            ParseFailure::Binary {
                control_chars: control,
                scanned: chars,
            },
        ));
    }
    Ok(text)
}

/// CSV with a header row; each non-empty cell of `column` is one text unit.
pub(super) fn parse_csv(file: &str, text: &str, column: &str) -> Result<Vec<Unit>, DatanetError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let bad = |line: Option<u64>, e: csv::Error| {
        DatanetError::parse(file, line, ParseFailure::BadCsv(e.to_string()))
    };
    let headers = reader.headers().map_err(|e| bad(Some(1), e))?.clone();
    let Some(col) = headers.iter().position(|h| h.trim() == column) else {
        return Err(DatanetError::parse(
            file,
            Some(1),
            ParseFailure::MissingColumn {
                column: column.to_string(),
                available: headers.iter().collect::<Vec<_>>().join(","),
            },
        ));
    };
    let mut units = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map(|p| p.line()).unwrap_or(line);
                if let Some(cell) = record.get(col) {
                    if !cell.trim().is_empty() {
                        units.push(Unit::Text {
                            line,
                            text: cell.to_string(),
                        });
                    }
                }
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line);
                return Err(bad(Some(line), e));
            }
        }
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_line_and_offset() {
        let e = checked_text("f.txt", b"ok\nbad \xff here", &ParseLimits::default()).unwrap_err();
        assert_eq!(e.to_string(), "f.txt:2: invalid UTF-8 at byte 7");
    }

    #[test]
    fn nul_bytes_and_long_lines_are_refused() {
        let e = checked_text("f.txt", b"a\0b", &ParseLimits::default()).unwrap_err();
        assert!(e.to_string().contains("binary content"), "{e}");
        let limits = ParseLimits {
            max_line_bytes: 4,
            ..ParseLimits::default()
        };
        let e = checked_text("f.txt", b"abcd\nabcde\n", &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.txt:2: line is 5 bytes, over the limit of 4"
        );
    }

    #[test]
    fn csv_takes_the_named_column() {
        let units =
            parse_csv("d.csv", "id,text\n1,hello\n2,\"multi\nline\"\n3,\n", "text").unwrap();
        assert_eq!(
            units,
            vec![
                Unit::Text {
                    line: 2,
                    text: "hello".into()
                },
                Unit::Text {
                    line: 3,
                    text: "multi\nline".into()
                },
            ]
        );
        let e = parse_csv("d.csv", "id,body\n1,x\n", "text").unwrap_err();
        assert!(
            e.to_string()
                .contains("no column \"text\" (columns: id,body)"),
            "{e}"
        );
    }
}
