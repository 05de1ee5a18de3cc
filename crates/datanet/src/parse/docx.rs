//! .docx: a zip archive whose `word/document.xml` holds the text.
//!
//! Hostile archives are refused before anything large is read: the entry
//! count is capped, every entry name must stay inside the archive (no `..`,
//! no absolute paths), and reading stops once the decompressed bytes pass the
//! cap, whatever sizes the headers claim (zip bombs lie about sizes).

use std::io::{Cursor, Read};

use quick_xml::events::Event;

use super::{ParseLimits, Unit};
use crate::error::{DatanetError, ParseFailure};

const DOCUMENT_XML: &str = "word/document.xml";

pub(super) fn parse_docx(
    file: &str,
    bytes: &[u8],
    limits: &ParseLimits,
) -> Result<Vec<Unit>, DatanetError> {
    let err = |r| DatanetError::parse(file, None, r);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| err(ParseFailure::BadDocx(e.to_string())))?;
    let entries = archive.len() as u64;
    if entries > limits.max_zip_entries {
        return Err(err(ParseFailure::ZipTooManyEntries {
            entries,
            max: limits.max_zip_entries,
        }));
    }
    let mut declared_total = 0u64;
    let mut document = None;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| err(ParseFailure::BadDocx(e.to_string())))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if entry.enclosed_name().is_none() || is_traversal(&name) {
            return Err(err(ParseFailure::ZipPathTraversal(
                name.chars().take(200).collect(),
            )));
        }
        declared_total = declared_total.saturating_add(entry.size());
        if declared_total > limits.max_decompressed_bytes {
            return Err(err(ParseFailure::ZipTooLarge {
                max: limits.max_decompressed_bytes,
            }));
        }
        if name == DOCUMENT_XML {
            document = Some(i);
        }
    }
    let Some(index) = document else {
        return Err(err(ParseFailure::BadDocx(format!(
            "no {DOCUMENT_XML} in the archive"
        ))));
    };
    let entry = archive
        .by_index(index)
        .map_err(|e| err(ParseFailure::BadDocx(e.to_string())))?;
    let cap = limits.max_decompressed_bytes;
    let mut xml = Vec::new();
    entry
        .take(cap + 1)
        .read_to_end(&mut xml)
        .map_err(|e| err(ParseFailure::BadDocx(format!("{DOCUMENT_XML}: {e}"))))?;
    if xml.len() as u64 > cap {
        return Err(err(ParseFailure::ZipTooLarge { max: cap }));
    }
    let xml = std::str::from_utf8(&xml).map_err(|e| {
        err(ParseFailure::BadDocx(format!(
            "{DOCUMENT_XML} is not UTF-8: {e}"
        )))
    })?;
    let text = document_text(xml).map_err(|e| err(ParseFailure::BadDocx(e)))?;
    Ok(vec![Unit::Text { line: 1, text }])
}

/// Names with `..` components, absolute paths, drive letters or NULs.
fn is_traversal(name: &str) -> bool {
    name.starts_with('/')
        || name.starts_with('\\')
        || name.contains('\0')
        || name.get(1..2) == Some(":")
        || name.split(['/', '\\']).any(|c| c == "..")
}

/// The text of `w:p` paragraphs (`w:t` runs, `w:tab` as a tab, `w:br` as a
/// line break), paragraphs separated by blank lines. Entity references other
/// than the five XML ones are refused by quick-xml, so no entity expansion
/// ("billion laughs") is possible.
fn document_text(xml: &str) -> Result<String, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = String::new();
    let mut in_text = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => match e.local_name().as_ref() {
                b"t" => in_text = true,
                b"p" => {}
                _ => {}
            },
            Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"tab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                b"p" => out.push_str("\n\n"),
                _ => {}
            },
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => out.push_str("\n\n"),
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                let s = t
                    .unescape()
                    .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
                out.push_str(&s);
            }
            Ok(Event::CData(t)) if in_text => {
                out.push_str(&String::from_utf8_lossy(&t));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "{DOCUMENT_XML} at byte {}: {e}",
                    reader.buffer_position()
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_names_are_detected() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\..\\x"] {
            assert!(is_traversal(bad), "{bad}");
        }
        assert!(!is_traversal("word/document.xml"));
        assert!(!is_traversal("a..b/c"));
    }

    #[test]
    fn paragraphs_runs_and_tabs_are_read() {
        let xml = r#"<w:document xmlns:w="x"><w:body><w:p><w:r><w:t>Hello &amp;</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve"> world</w:t></w:r></w:p><w:p><w:r><w:t>Two</w:t></w:r></w:p></w:body></w:document>"#;
        assert_eq!(document_text(xml).unwrap(), "Hello &\t world\n\nTwo\n\n");
    }
}
