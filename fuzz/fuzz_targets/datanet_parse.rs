//! Every datanet document parser (txt, md, jsonl, csv, pdf, docx) through
//! the one dispatch the node's upload path uses, `parse_rows` (kind
//! detection, then the parser, then the chunker). The first input byte
//! chooses the file: bits 0-2 the kind (modulo 6), bit 7 whether the kind is
//! declared or taken from the file name's extension, bit 6 whether a CSV
//! names its text column; the rest is the file. Parsing must never panic or
//! run away, and whatever parses must keep the chunker's invariants: no
//! empty text row, no text row over the maximum size.
//!
//! The PDF parser turns a panic inside `lopdf` into a parse error
//! (`catch_unwind` in `parse/pdf.rs`), and the node relies on that. libFuzzer's
//! panic hook aborts before any unwinding, which would report those handled
//! panics as crashes; this target restores the default hook instead, so a
//! handled panic is the error the product returns and an unhandled one still
//! aborts (libfuzzer-sys aborts on any panic that reaches the target).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trib_datanet::{parse_rows, ChunkerConfig, FileKind, ParseLimits, RowContent, SourceFile};

const KINDS: [(FileKind, &str); 6] = [
    (FileKind::Txt, "fuzz.txt"),
    (FileKind::Md, "fuzz.md"),
    (FileKind::Jsonl, "fuzz.jsonl"),
    (FileKind::Csv, "fuzz.csv"),
    (FileKind::Pdf, "fuzz.pdf"),
    (FileKind::Docx, "fuzz.docx"),
];

fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (kind, name) = KINDS[(selector & 0x07) as usize % KINDS.len()];
    // Small limits so that the fuzzer reaches the limit checks quickly.
    let limits = ParseLimits {
        max_file_bytes: 1 << 20,
        max_line_bytes: 4 << 10,
        max_zip_entries: 64,
        max_decompressed_bytes: 1 << 20,
        max_rows: 10_000,
        max_pdf_pages: 64,
        max_parse_time: std::time::Duration::from_secs(5),
    };
    let chunker = ChunkerConfig {
        max_row_bytes: 256,
        min_row_bytes: 32,
    };
    let file = SourceFile {
        name,
        declared: (selector & 0x80 == 0).then_some(kind),
        csv_column: (selector & 0x40 != 0).then_some("body"),
        bytes,
    };
    if let Ok(rows) = parse_rows(&file, &limits, &chunker) {
        for (_, row) in rows {
            if let RowContent::Text { text } = &row {
                assert!(!text.is_empty(), "empty row");
                assert!(
                    text.len() <= chunker.max_row_bytes,
                    "row of {} bytes over the maximum",
                    text.len()
                );
            }
            let _ = row.row_hash();
        }
    }
}
);
