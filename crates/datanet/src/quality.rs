//! The row quality score: integer basis points (0 = worst, 10,000 = best),
//! returned component by component so contributors can see why.
//!
//! The formula (also in `docs/datanets.md`), with `L` the number of characters
//! and `W` the number of words (maximal alphanumeric runs):
//!
//! - `length     = min(1, L / 100)`
//! - `charset    = min(textlike, letters)` where
//!   `textlike = clamp((t − 0.70) / 0.25)` for `t` the share of characters that
//!   are letters, digits, whitespace or common punctuation, and
//!   `letters = clamp((a − 0.40) / 0.30)` for `a` the share of
//!   non-whitespace characters that are letters;
//! - `repetition = min(1, (distinct words / W) / 0.30)` (1 when `W < 2`);
//! - `wordlike   = min(1, w / 0.80)` for `w` the share of words that look
//!   like words: at most 25 characters, containing a letter, and, when they
//!   are ASCII letters only, a vowel (`aeiouy`);
//! - `score = charset × repetition × (40·length + 60·wordlike) / 100`:
//!   character-class health and repetition are gates (factors), so symbol
//!   soup and `spam spam spam…` score near 0 however long they are; length
//!   and word shape are averaged.
//!
//! Every ratio is computed in integers (basis points, floor division), so
//! the score is the same on every machine.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Weights of the averaged components (length, wordlike), in percent (sum
/// 100); `charset` and `repetition` multiply the average.
pub const QUALITY_WEIGHTS: [(&str, u64); 2] = [("length", 40), ("wordlike", 60)];

const BP: u64 = 10_000;

/// A row's quality score and its components, all in basis points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QualityScore {
    /// The weighted total.
    pub score_bp: u16,
    /// Length adequacy.
    pub length_bp: u16,
    /// Character-class health.
    pub charset_bp: u16,
    /// Lack of word repetition.
    pub repetition_bp: u16,
    /// Share of word-like tokens.
    pub wordlike_bp: u16,
}

fn ratio_bp(num: u64, den: u64) -> u64 {
    (num * BP).checked_div(den).unwrap_or(0)
}

/// `min(1, x / full)` in basis points, for `x` and `full` in basis points.
fn ramp_up(x_bp: u64, full_bp: u64) -> u64 {
    (x_bp * BP / full_bp).min(BP)
}

fn is_common_punctuation(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | '\''
            | '"'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '-'
            | '–'
            | '—'
            | '/'
            | '&'
            | '%'
            | '$'
            | '#'
            | '@'
            | '*'
            | '+'
            | '='
            | '<'
            | '>'
            | '_'
            | '’'
            | '‘'
            | '“'
            | '”'
            | '§'
            | '`'
            | '|'
            | '~'
            | '^'
            | '…'
    )
}

/// Scores `text`.
pub fn quality_score(text: &str) -> QualityScore {
    let mut chars = 0u64;
    let mut textlike = 0u64;
    let mut non_ws = 0u64;
    let mut letters = 0u64;
    for c in text.chars() {
        chars += 1;
        if c.is_whitespace() {
            textlike += 1;
            continue;
        }
        non_ws += 1;
        if c.is_alphabetic() {
            letters += 1;
            textlike += 1;
        } else if c.is_numeric() || is_common_punctuation(c) {
            textlike += 1;
        }
    }
    let length = ramp_up(chars * BP, 100 * BP);
    let t = ratio_bp(textlike, chars);
    let textlike_score = if t <= 7_000 {
        0
    } else {
        ((t - 7_000) * BP / 2_500).min(BP)
    };
    let a = ratio_bp(letters, non_ws);
    let letters_score = if a <= 4_000 {
        0
    } else {
        ((a - 4_000) * BP / 3_000).min(BP)
    };
    let charset = textlike_score.min(letters_score);

    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let w = words.len() as u64;
    let repetition = if w < 2 {
        BP
    } else {
        let distinct = words.iter().collect::<HashSet<_>>().len() as u64;
        ramp_up(ratio_bp(distinct, w), 3_000)
    };
    let wordlike_count = words.iter().filter(|w| is_wordlike(w)).count() as u64;
    let wordlike = ramp_up(ratio_bp(wordlike_count, w), 8_000);

    let [(_, wl), (_, ww)] = QUALITY_WEIGHTS;
    let average = (wl * length + ww * wordlike) / 100;
    let score = charset * repetition / BP * average / BP;
    QualityScore {
        score_bp: score as u16,
        length_bp: length as u16,
        charset_bp: charset as u16,
        repetition_bp: repetition as u16,
        wordlike_bp: wordlike as u16,
    }
}

fn is_wordlike(w: &str) -> bool {
    if w.chars().count() > 25 || !w.chars().any(char::is_alphabetic) {
        return false;
    }
    if w.chars().all(|c| c.is_ascii_alphabetic()) {
        w.chars()
            .any(|c| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y'))
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_scores_high_and_garbage_scores_low() {
        let prose = "We the People of the United States, in Order to form a more perfect Union, \
                     establish Justice, insure domestic Tranquility, provide for the common defence.";
        let q = quality_score(prose);
        assert_eq!(q.score_bp, 10_000, "{q:?}");
        let garbage = quality_score(
            "xq zk# $$$ %%% ^^^ 0x1f 0x2e 0x3d qqq zzz ||| ~~~ ### @@@ !!! ((( ))) +++ ===",
        );
        assert_eq!(garbage.charset_bp, 0, "{garbage:?}");
        assert_eq!(garbage.score_bp, 0);
        let repeated = quality_score(&"spam ".repeat(100));
        assert!(repeated.repetition_bp < 500, "{repeated:?}");
        assert!(repeated.score_bp < 500, "{repeated:?}");
    }

    #[test]
    fn short_rows_lose_length_points_proportionally() {
        let q = quality_score("Hello there world, here is text."); // 32 chars
        assert_eq!(q.length_bp, 3_200);
        assert_eq!(quality_score("").score_bp, 0);
    }
}
