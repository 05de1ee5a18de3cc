//! The deterministic paragraph-based chunker.
//!
//! Rules (also in `docs/datanets.md`):
//!
//! 1. Line endings `\r\n` and `\r` become `\n`.
//! 2. Within each line, every run of Unicode whitespace becomes one space and
//!    the line is trimmed (indentation is not kept).
//! 3. A paragraph is a maximal run of non-empty lines; its lines are joined
//!    with `\n`. Empty lines only separate paragraphs.
//! 4. A paragraph shorter than `min_row_bytes` is joined to the following
//!    paragraphs (separated by `\n\n`) while the row is still shorter than
//!    `min_row_bytes` and the result fits in `max_row_bytes`.
//! 5. A paragraph longer than `max_row_bytes` is split greedily: the longest
//!    prefix that fits and ends at a sentence end (`.`, `!`, `?` before
//!    whitespace, or a line break); failing that, at a word boundary; failing
//!    that (one huge "word"), at the last UTF-8 character boundary that fits.
//!    Pieces are trimmed.
//!
//! Only whitespace is ever changed or dropped: the non-whitespace characters
//! of the input appear in the rows, in order, exactly once; no row is empty or
//! longer than `max_row_bytes`. The same input always gives the same rows.

/// Chunker parameters (from the datanet's row rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Largest row in UTF-8 bytes (at least 16).
    pub max_row_bytes: usize,
    /// Paragraphs shorter than this are merged with the next ones.
    pub min_row_bytes: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            max_row_bytes: 4096,
            min_row_bytes: 200,
        }
    }
}

/// One chunk of text and the 1-based source line where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The line of the source file where this chunk starts.
    pub line: u64,
    /// The normalised text.
    pub text: String,
}

/// Splits `text` (whose first line is line `first_line` of its file) into rows.
pub fn chunk_text(text: &str, first_line: u64, config: &ChunkerConfig) -> Vec<Chunk> {
    let max = config.max_row_bytes.max(16);
    let paragraphs = paragraphs(text, first_line);
    let mut out = Vec::new();
    let mut buf: Option<(u64, String)> = None;
    for (line, para) in paragraphs {
        match &mut buf {
            Some((_, b)) if b.len() < config.min_row_bytes && b.len() + 2 + para.len() <= max => {
                b.push_str("\n\n");
                b.push_str(&para);
            }
            _ => {
                if let Some((l, b)) = buf.take() {
                    emit(&mut out, l, &b, max);
                }
                buf = Some((line, para));
            }
        }
    }
    if let Some((l, b)) = buf.take() {
        emit(&mut out, l, &b, max);
    }
    out
}

/// Normalised paragraphs with their first line numbers.
fn paragraphs(text: &str, first_line: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(u64, String)> = None;
    let mut line_no = first_line;
    let mut rest = text;
    loop {
        // Split on \n, \r\n or a lone \r.
        let (line, next) = match rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
            None => (rest, None),
        };
        let norm = normalise_line(line);
        if norm.is_empty() {
            if let Some(p) = cur.take() {
                out.push(p);
            }
        } else {
            match &mut cur {
                Some((_, p)) => {
                    p.push('\n');
                    p.push_str(&norm);
                }
                None => cur = Some((line_no, norm)),
            }
        }
        match next {
            Some(n) => {
                rest = n;
                line_no += 1;
            }
            None => break,
        }
    }
    if let Some(p) = cur.take() {
        out.push(p);
    }
    out
}

/// Collapses whitespace runs to one space and trims.
fn normalise_line(line: &str) -> String {
    let mut s = String::with_capacity(line.len());
    for word in line.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(word);
    }
    s
}

/// Pushes `block` as one or more rows of at most `max` bytes.
fn emit(out: &mut Vec<Chunk>, line: u64, block: &str, max: usize) {
    let mut rest = block.trim();
    let base = block.as_ptr() as usize;
    while !rest.is_empty() {
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            last_sentence_end(rest, max)
                .or_else(|| last_word_end(rest, max))
                .unwrap_or_else(|| floor_char_boundary(rest, max))
        };
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        let offset = head.as_ptr() as usize - base;
        let piece_line = line + block[..offset].matches('\n').count() as u64;
        out.push(Chunk {
            line: piece_line,
            text: head.to_string(),
        });
        rest = tail.trim_start();
    }
}

/// The largest `i <= max`, `i > 0`, where `s[..i]` ends a sentence and
/// `s[i..]` starts with whitespace.
fn last_sentence_end(s: &str, max: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = floor_char_boundary(s, max);
    while i > 0 {
        if i < b.len()
            && b[i].is_ascii_whitespace()
            && (b[i] == b'\n' || matches!(b[i - 1], b'.' | b'!' | b'?'))
        {
            return Some(i);
        }
        i -= 1;
    }
    None
}

/// The largest `i <= max`, `i > 0`, where `s[i..]` starts with whitespace
/// (only ASCII space and `\n` survive normalisation).
fn last_word_end(s: &str, max: usize) -> Option<usize> {
    let b = s.as_bytes();
    (1..=floor_char_boundary(s, max))
        .rev()
        .find(|&i| i < b.len() && b[i].is_ascii_whitespace())
}

/// The largest char boundary `<= max` (at least one character).
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    if i == 0 {
        // One character wider than max: take it whole (max >= 16 > 4 makes
        // this unreachable, but never loop forever).
        s.char_indices().nth(1).map(|(j, _)| j).unwrap_or(s.len())
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(max: usize, min: usize) -> ChunkerConfig {
        ChunkerConfig {
            max_row_bytes: max,
            min_row_bytes: min,
        }
    }

    #[test]
    fn paragraphs_become_rows_with_their_line_numbers() {
        let text = "First  para\r\nstill first.\n\n\n  Second\tpara. \n";
        let rows = chunk_text(text, 1, &cfg(100, 0));
        assert_eq!(
            rows,
            vec![
                Chunk {
                    line: 1,
                    text: "First para\nstill first.".into()
                },
                Chunk {
                    line: 5,
                    text: "Second para.".into()
                },
            ]
        );
    }

    #[test]
    fn short_paragraphs_merge_up_to_the_minimum() {
        let rows = chunk_text(
            "ARTICLE I\n\nAll legislative powers.\n\nNext.",
            1,
            &cfg(100, 20),
        );
        assert_eq!(rows[0].text, "ARTICLE I\n\nAll legislative powers.");
        assert_eq!(rows[1].text, "Next.");
        assert_eq!(rows[1].line, 5);
    }

    #[test]
    fn long_paragraphs_split_at_sentences_then_words_then_chars() {
        let rows = chunk_text("One two three. Four five six. Seven.", 1, &cfg(20, 0));
        assert_eq!(
            rows.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
            ["One two three.", "Four five six.", "Seven."]
        );
        let rows = chunk_text("aaaa bbbb cccc dddd eeee ffff", 1, &cfg(16, 0));
        assert_eq!(rows[0].text, "aaaa bbbb cccc");
        let rows = chunk_text(&"é".repeat(20), 1, &cfg(17, 0));
        assert_eq!(rows[0].text.len(), 16);
        assert_eq!(rows.len(), 3);
    }

    fn non_ws(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    proptest! {
        #[test]
        fn chunker_is_deterministic_bounded_and_lossless(
            text in "([a-zé .!?\t\r\n]{0,40}){0,30}",
            max in 16usize..120,
            min in 0usize..80,
        ) {
            let c = cfg(max, min);
            let a = chunk_text(&text, 1, &c);
            let b = chunk_text(&text, 1, &c);
            prop_assert_eq!(&a, &b);
            for ch in &a {
                prop_assert!(!ch.text.is_empty());
                prop_assert!(ch.text.len() <= max, "row of {} > {}", ch.text.len(), max);
            }
            let joined: String = a.iter().map(|c| c.text.as_str()).collect();
            prop_assert_eq!(non_ws(&joined), non_ws(&text));
        }
    }
}
