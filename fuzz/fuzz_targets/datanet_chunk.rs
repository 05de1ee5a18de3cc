//! The chunker on arbitrary text: deterministic, bounded rows, and no
//! non-whitespace character lost or added.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trib_datanet::{chunk_text, ChunkerConfig};

fuzz_target!(|input: (u8, u8, &str)| {
    let (max, min, text) = input;
    let config = ChunkerConfig {
        max_row_bytes: 16 + max as usize,
        min_row_bytes: min as usize,
    };
    let a = chunk_text(text, 1, &config);
    assert_eq!(
        a,
        chunk_text(text, 1, &config),
        "chunker is not deterministic"
    );
    for c in &a {
        assert!(!c.text.is_empty() && c.text.len() <= config.max_row_bytes);
    }
    let kept: String = a
        .iter()
        .flat_map(|c| c.text.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let orig: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(kept, orig, "non-whitespace text lost or changed");
});
