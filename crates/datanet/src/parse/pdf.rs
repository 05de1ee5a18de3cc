//! PDF text extraction through `lopdf`, one text unit per page.
//!
//! A PDF is a program more than a file: a few KB can describe thousands of
//! pages that share one content stream, a page tree whose nodes repeat, or
//! streams that inflate a thousandfold. Every bound is per file
//! ([`ParseLimits`]): the page count the tree claims and the pages it holds
//! are at most `max_pdf_pages`, the content streams of all pages together may
//! decompress to at most `max_decompressed_bytes` (charged page by page;
//! the same bound applies to each stream while the document loads), and
//! the whole parse stops with an error once it has run `max_parse_time`
//! (checked between pages, so it overruns by at most one bounded page).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::{ParseLimits, Unit};
use crate::error::{DatanetError, ParseFailure};

pub(super) fn parse_pdf(
    file: &str,
    bytes: &[u8],
    limits: &ParseLimits,
) -> Result<Vec<Unit>, DatanetError> {
    let started = Instant::now();
    let budget = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let max_pages = usize::try_from(limits.max_pdf_pages).unwrap_or(usize::MAX);
    let bad = |reason: String| DatanetError::parse(file, None, ParseFailure::BadPdf(reason));
    let over_budget = || {
        bad(format!(
            "its pages' content decompresses to over {budget} bytes in total \
             (the limit is per file: max_decompressed_bytes)"
        ))
    };
    // lopdf is a full PDF object parser; a malformed file must not take the
    // node down, so a panic inside it becomes a parse error.
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Unit>, DatanetError> {
        let options = lopdf::LoadOptions {
            max_decompressed_size: Some(budget),
            ..lopdf::LoadOptions::default()
        };
        let doc = lopdf::Document::load_mem_with_options(bytes, options)
            .map_err(|e| bad(e.to_string()))?;
        if doc.is_encrypted() {
            return Err(bad("the document is encrypted".into()));
        }
        // lopdf sizes its page list by the tree's `Count` entries, which a
        // file of a few bytes can set to billions (an allocation that
        // aborts the process): the claim is checked first. Then the tree
        // is walked lazily, no further than one page over the limit.
        let claimed = doc.page_iter().size_hint().0;
        if claimed > max_pages {
            return Err(bad(format!(
                "its page tree claims {claimed} pages, over {max_pages}, the most read from one \
                 PDF (max_pdf_pages)"
            )));
        }
        let pages: Vec<_> = doc.page_iter().take(max_pages.saturating_add(1)).collect();
        if pages.len() > max_pages {
            return Err(bad(format!(
                "over {max_pages} pages, the most read from one PDF (max_pdf_pages)"
            )));
        }
        let mut left = budget;
        let mut units = Vec::with_capacity(pages.len());
        for (i, &page_id) in pages.iter().enumerate() {
            if started.elapsed() > limits.max_parse_time {
                return Err(bad(format!(
                    "parsing stopped at page {} of {} after {:?}, the most one file may take \
                     (max_parse_time)",
                    i + 1,
                    pages.len(),
                    limits.max_parse_time
                )));
            }
            let page = i as u32 + 1;
            // Charge the page's content streams to the file's budget, then
            // extract its text within what was left before it.
            let content = doc
                .get_page_content_with_limit(page_id, left)
                .map_err(|_| over_budget())?;
            let before = left;
            left = left.saturating_sub(content.len());
            drop(content);
            let text = doc.extract_text_with_limit(&[page], before).map_err(|e| {
                DatanetError::parse(
                    file,
                    Some(u64::from(page)),
                    ParseFailure::BadPdf(e.to_string()),
                )
            })?;
            if !text.trim().is_empty() {
                units.push(Unit::Text {
                    line: u64::from(page),
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
