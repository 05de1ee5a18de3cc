//! PDF text extraction through `lopdf`, one text unit per page.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{ParseLimits, Unit};
use crate::error::{DatanetError, ParseFailure};

/// Most pages read from one PDF.
const MAX_PAGES: usize = 10_000;

pub(super) fn parse_pdf(
    file: &str,
    bytes: &[u8],
    limits: &ParseLimits,
) -> Result<Vec<Unit>, DatanetError> {
    let max_decompressed = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let bad = |reason: String| DatanetError::parse(file, None, ParseFailure::BadPdf(reason));
    // lopdf is a full PDF object parser; a malformed file must not take the
    // node down, so a panic inside it becomes a parse error.
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Unit>, DatanetError> {
        let doc = lopdf::Document::load_mem(bytes).map_err(|e| bad(e.to_string()))?;
        if doc.is_encrypted() {
            return Err(bad("the document is encrypted".into()));
        }
        let pages = doc.get_pages();
        if pages.len() > MAX_PAGES {
            return Err(bad(format!(
                "{} pages, over the limit of {MAX_PAGES}",
                pages.len()
            )));
        }
        let mut units = Vec::with_capacity(pages.len());
        for &page in pages.keys() {
            let text = doc
                .extract_text_with_limit(&[page], max_decompressed)
                .map_err(|e| {
                    DatanetError::parse(
                        file,
                        Some(page as u64),
                        ParseFailure::BadPdf(e.to_string()),
                    )
                })?;
            if !text.trim().is_empty() {
                units.push(Unit::Text {
                    line: page as u64,
                    text,
                });
            }
        }
        Ok(units)
    }));
    match result {
        Ok(r) => r,
        Err(_) => Err(bad("the PDF parser failed on this file".into())),
    }
}
