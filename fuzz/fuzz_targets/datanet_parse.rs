//! Parses arbitrary bytes as every datanet file type (txt, md, jsonl, csv,
//! pdf, docx). Parsing must never panic or run away, and whatever parses must
//! satisfy the chunker's invariants: no empty row, no text row over the
//! maximum size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trib_datanet::{parse_rows, ChunkerConfig, FileKind, ParseLimits, RowContent, SourceFile};

const KINDS: [FileKind; 6] =
    [FileKind::Txt, FileKind::Md, FileKind::Jsonl, FileKind::Csv, FileKind::Pdf, FileKind::Docx];

fuzz_target!(|data: &[u8]| {
    // Small limits so that the fuzzer explores the limit checks quickly.
    let limits = ParseLimits {
        max_file_bytes: 1 << 20,
        max_line_bytes: 4 << 10,
        max_zip_entries: 64,
        max_decompressed_bytes: 1 << 20,
    };
    let chunker = ChunkerConfig { max_row_bytes: 256, min_row_bytes: 32 };
    for kind in KINDS {
        let file = SourceFile { name: "fuzz", declared: Some(kind), csv_column: None, bytes: data };
        if let Ok(rows) = parse_rows(&file, &limits, &chunker) {
            for (_, row) in rows {
                if let RowContent::Text { text } = &row {
                    assert!(!text.is_empty(), "empty row");
                    assert!(text.len() <= 256, "row of {} bytes over the maximum", text.len());
                }
                let _ = row.row_hash();
            }
        }
    }
});
