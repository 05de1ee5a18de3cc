//! File parsers: bytes of an uploaded file → text blocks and records.
//!
//! Each parser is defensive: sizes are checked before allocation, text must be
//! UTF-8 and not binary, lines are bounded, zip archives (.docx) are bounded in
//! entry count and decompressed size and may not carry path-traversal names.
//! Every failure names the file, the line (record, page) and the reason.

mod docx;
mod jsonl;
mod pdf;
mod text;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::chunk::{chunk_text, ChunkerConfig};
use crate::error::{DatanetError, ParseFailure};
use crate::row::RowContent;

pub(crate) use jsonl::parse_record;

/// The file formats a datanet accepts.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// Plain text (`.txt`).
    Txt,
    /// Markdown (`.md`), chunked like plain text.
    Md,
    /// One JSON record per line (`.jsonl`).
    Jsonl,
    /// Comma-separated values with a chosen text column (`.csv`).
    Csv,
    /// PDF, text extracted page by page.
    Pdf,
    /// Word (OOXML) document.
    Docx,
}

impl FileKind {
    /// The type implied by a file name's extension, if any.
    pub fn from_file_name(name: &str) -> Option<FileKind> {
        let ext = name.rsplit_once('.')?.1;
        ext.parse().ok()
    }

    /// Whether the bytes are parsed as UTF-8 text (txt, md, jsonl, csv).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FileKind::Txt | FileKind::Md | FileKind::Jsonl | FileKind::Csv
        )
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Txt => "txt",
            FileKind::Md => "md",
            FileKind::Jsonl => "jsonl",
            FileKind::Csv => "csv",
            FileKind::Pdf => "pdf",
            FileKind::Docx => "docx",
        })
    }
}

impl FromStr for FileKind {
    type Err = ParseFailure;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "txt" | "text" => FileKind::Txt,
            "md" | "markdown" => FileKind::Md,
            "jsonl" | "ndjson" => FileKind::Jsonl,
            "csv" => FileKind::Csv,
            "pdf" => FileKind::Pdf,
            "docx" => FileKind::Docx,
            other => {
                return Err(ParseFailure::UnsupportedType(
                    other.chars().take(32).collect(),
                ))
            }
        })
    }
}

/// Bounds the parsers enforce, per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Longest line of a text file, in bytes.
    pub max_line_bytes: u64,
    /// Most entries in a zip container (.docx).
    pub max_zip_entries: u64,
    /// Most bytes decompressed out of one file, in total: .docx zip
    /// entries, and a PDF's page content streams over all its pages.
    pub max_decompressed_bytes: u64,
    /// Most rows (records, text chunks) one file may yield.
    pub max_rows: u64,
    /// Most pages read from one PDF; the page tree is walked no further.
    pub max_pdf_pages: u64,
    /// Longest a PDF may take to parse, checked between pages (a CPU budget
    /// for what the byte bounds do not cover: fonts, operators, the page
    /// tree).
    pub max_parse_time: Duration,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_file_bytes: 32 << 20,
            max_line_bytes: 1 << 20,
            max_zip_entries: 1_000,
            max_decompressed_bytes: 64 << 20,
            max_rows: 100_000,
            max_pdf_pages: 1_000,
            max_parse_time: Duration::from_secs(20),
        }
    }
}

/// A file handed to the parser.
#[derive(Debug, Clone, Copy)]
pub struct SourceFile<'a> {
    /// The file name as uploaded (used for messages and for the type when
    /// `declared` is absent).
    pub name: &'a str,
    /// The type the contributor declared, if any.
    pub declared: Option<FileKind>,
    /// For CSV: the column holding the text (default `text`).
    pub csv_column: Option<&'a str>,
    /// The raw bytes.
    pub bytes: &'a [u8],
}

/// What a parser produces, before chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A block of text to be chunked; `line` is its first line (page for PDF).
    Text { line: u64, text: String },
    /// One record (a JSONL line or a CSV cell); `line` is its line.
    Record { line: u64, content: RowContent },
}

/// Detects the file's type from the declared type (or extension) and its
/// content, and refuses mismatches (a PDF declared as text, a zip as PDF…).
pub fn detect_kind(file: &SourceFile<'_>) -> Result<FileKind, DatanetError> {
    let err = |r| DatanetError::parse(file.name, None, r);
    let declared = match file.declared {
        Some(k) => k,
        None => {
            let ext = file.name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
            ext.parse::<FileKind>().map_err(err)?
        }
    };
    let sniffed = sniff(file.bytes);
    match (declared, sniffed) {
        (FileKind::Pdf, Some("pdf")) | (FileKind::Docx, Some("zip")) => Ok(declared),
        (k, None) if k.is_text() => Ok(k),
        (k, detected) => Err(err(ParseFailure::TypeMismatch {
            declared: k.to_string(),
            detected: detected.unwrap_or("text or unknown binary").to_string(),
        })),
    }
}

/// Magic numbers of the binary formats we know.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("pdf")
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some("zip")
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("jpeg")
    } else if bytes.starts_with(b"\x7fELF") {
        Some("elf")
    } else {
        None
    }
}

/// Parses a file into units. Pure: no I/O, no state.
pub(crate) fn parse_units(
    file: &SourceFile<'_>,
    kind: FileKind,
    limits: &ParseLimits,
) -> Result<Vec<Unit>, DatanetError> {
    let len = file.bytes.len() as u64;
    if len > limits.max_file_bytes {
        return Err(DatanetError::parse(
            file.name,
            None,
            ParseFailure::FileTooLarge {
                len,
                max: limits.max_file_bytes,
            },
        ));
    }
    if file.bytes.is_empty() {
        return Err(DatanetError::parse(file.name, None, ParseFailure::Empty));
    }
    let units = match kind {
        FileKind::Txt | FileKind::Md => {
            let text = text::checked_text(file.name, file.bytes, limits)?;
            vec![Unit::Text {
                line: 1,
                text: text.to_string(),
            }]
        }
        FileKind::Jsonl => {
            let text = text::checked_text(file.name, file.bytes, limits)?;
            jsonl::parse_jsonl(file.name, text)?
        }
        FileKind::Csv => {
            let text = text::checked_text(file.name, file.bytes, limits)?;
            text::parse_csv(file.name, text, file.csv_column.unwrap_or("text"))?
        }
        FileKind::Pdf => pdf::parse_pdf(file.name, file.bytes, limits)?,
        FileKind::Docx => docx::parse_docx(file.name, file.bytes, limits)?,
    };
    let has_text = units.iter().any(|u| match u {
        Unit::Text { text, .. } => !text.trim().is_empty(),
        Unit::Record { .. } => true,
    });
    if !has_text {
        return Err(DatanetError::parse(file.name, None, ParseFailure::NoText));
    }
    Ok(units)
}

/// Units as rows: text chunked by `chunker`, records as they are; refused
/// as soon as they pass `max_rows` (the rows of one file).
pub(crate) fn units_to_rows(
    file: &str,
    units: Vec<Unit>,
    chunker: &ChunkerConfig,
    max_rows: u64,
) -> Result<Vec<(u64, RowContent)>, DatanetError> {
    let mut rows = Vec::new();
    for unit in units {
        match unit {
            Unit::Text { line, text } => rows.extend(
                chunk_text(&text, line, chunker)
                    .into_iter()
                    .map(|c| (c.line, RowContent::Text { text: c.text })),
            ),
            Unit::Record { line, content } => rows.push((line, content)),
        }
        if rows.len() as u64 > max_rows {
            return Err(DatanetError::parse(
                file,
                None,
                ParseFailure::TooManyRows { max: max_rows },
            ));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(name: &'a str, declared: Option<FileKind>, bytes: &'a [u8]) -> SourceFile<'a> {
        SourceFile {
            name,
            declared,
            csv_column: None,
            bytes,
        }
    }

    #[test]
    fn kind_comes_from_declaration_or_extension_and_must_match_content() {
        assert_eq!(
            detect_kind(&src("a.TXT", None, b"hi")).unwrap(),
            FileKind::Txt
        );
        assert_eq!(
            detect_kind(&src("a", Some(FileKind::Md), b"hi")).unwrap(),
            FileKind::Md
        );
        let e = detect_kind(&src("a.txt", None, b"%PDF-1.4 ...")).unwrap_err();
        assert!(
            e.to_string()
                .contains("declared as txt but the content is pdf"),
            "{e}"
        );
        let e = detect_kind(&src("a.exe", None, b"MZ")).unwrap_err();
        assert!(e.to_string().contains("unsupported file type"), "{e}");
        assert!(detect_kind(&src("a.pdf", None, b"plain")).is_err());
    }
}
