//! Shared helpers: datanets, contributors, and builders for binary formats
//! (docx, pdf) so that hostile files are made in the test, not committed.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use trib_datanet::{Datanet, FileKind, SourceFile};
use trib_types::Address;

pub fn alice() -> Address {
    Address([0xa1; 20])
}

pub fn bob() -> Address {
    Address([0xb0; 20])
}

pub fn text_datanet() -> Datanet {
    let mut d = Datanet::new(Address([0x01; 20]), "us-law", "# US founding documents");
    d.rules.min_row_bytes = 0;
    d
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn src<'a>(name: &'a str, bytes: &'a [u8]) -> SourceFile<'a> {
    SourceFile {
        name,
        declared: FileKind::from_file_name(name),
        csv_column: None,
        bytes,
    }
}

/// A zip with the given (name, bytes) entries, deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A .docx whose paragraphs are `paras`.
pub fn docx_of(paras: &[&str]) -> Vec<u8> {
    let body: String = paras
        .iter()
        .map(|p| format!("<w:p><w:r><w:t xml:space=\"preserve\">{p}</w:t></w:r></w:p>"))
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
         <w:body>{body}</w:body></w:document>"
    );
    let content_types = b"<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"xml\" ContentType=\"application/xml\"/></Types>";
    zip_of(&[
        ("[Content_Types].xml", content_types),
        ("word/document.xml", xml.as_bytes()),
    ])
}

/// A PDF with one page per string, Helvetica text.
pub fn pdf_of(pages: &[&str]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for text in pages {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 720.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// `n` distinct, well-formed English-like paragraphs separated by blank lines.
pub fn paragraphs(n: usize, salt: &str) -> String {
    let subjects = [
        "The Congress",
        "Each State",
        "The President",
        "A Senator",
        "The Court",
        "No Person",
    ];
    let verbs = [
        "shall have",
        "may establish",
        "shall not pass",
        "must receive",
        "shall hold",
        "may grant",
    ];
    let objects = [
        "power to lay and collect taxes",
        "jurisdiction over such district",
        "the compensation of officers",
        "a writ of habeas corpus",
        "the consent of the legislature",
        "all bills for raising revenue",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} in {salt} clause {i}, and {} {} {} according to article {} of this text.",
                subjects[i % 6],
                verbs[(i / 6) % 6],
                objects[(i / 36) % 6],
                subjects[(i + 1) % 6],
                verbs[(i + 2) % 6],
                objects[(i + 3) % 6],
                i * 7 + 1,
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `n` paragraphs of 30 pseudo-random words from a 64-word vocabulary:
/// unrelated to each other (and to other seeds) for near-duplicate purposes.
pub fn distinct_paragraphs(n: usize, seed: u64) -> String {
    const VOCAB: [&str; 64] = [
        "river", "stone", "garden", "winter", "letter", "silver", "market", "planet", "window",
        "forest", "candle", "harbor", "mirror", "engine", "valley", "castle", "bridge", "meadow",
        "thunder", "pocket", "ladder", "basket", "island", "feather", "copper", "lantern",
        "orchard", "saddle", "velvet", "marble", "anchor", "blanket", "compass", "desert",
        "falcon", "glacier", "hammer", "jungle", "kettle", "lemon", "magnet", "needle", "oyster",
        "pepper", "quarry", "rocket", "spider", "tunnel", "umbrella", "violin", "walnut", "yellow",
        "zebra", "bottle", "circle", "dragon", "echo", "fabric", "ginger", "honey", "ivory",
        "jacket", "koala", "lizard",
    ];
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|_| {
            let words: Vec<&str> = (0..30).map(|_| VOCAB[(next() % 64) as usize]).collect();
            format!("The {}.", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A hostile PDF of a few hundred bytes whose page tree claims
/// `fanout ^ depth` pages: each `Pages` node lists its one child `fanout`
/// times, down to a single page.
pub fn pdf_page_tree_bomb(depth: usize, fanout: usize) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let content_id = doc.add_object(Stream::new(dictionary! {}, b"BT ET".to_vec()));
    let mut child = doc.add_object(dictionary! { "Type" => "Page", "Contents" => content_id });
    let mut count = 1i64;
    for _ in 0..depth {
        count = count.saturating_mul(fanout as i64);
        let kids: Vec<Object> = (0..fanout).map(|_| child.into()).collect();
        child = doc.add_object(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count });
    }
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => child });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A PDF of `pages` pages that all draw one shared content stream of
/// about `stream_bytes` bytes: small on disk, `pages × stream_bytes` of
/// content to decompress and run.
pub fn pdf_shared_content(pages: usize, stream_bytes: usize) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut ops = String::from("BT /F1 12 Tf 72 720 Td ");
    while ops.len() < stream_bytes {
        ops.push_str("(The same words on every page.) Tj ");
    }
    ops.push_str("ET");
    let content_id = doc.add_object(Stream::new(dictionary! {}, ops.into_bytes()));
    let kids: Vec<Object> = (0..pages)
        .map(|_| {
            doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            })
            .into()
        })
        .collect();
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => pages as i64, "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}
