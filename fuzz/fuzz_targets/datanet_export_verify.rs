//! Reads arbitrary bytes as a datanet export (JSONL with provenance) the two
//! ways a reader does: `verify_export` (header, rows, recomputed root) and
//! `export_rows` (the rows training takes), and as a datanet descriptor.
//! None may panic; an export that verifies must yield one row per verified
//! row; a descriptor that decodes must re-encode to the same bytes.
//!
//! With `TRIB_FUZZ_WRITE_SEEDS=DIR` the target writes seed inputs (exports
//! written by `write_export` of the datanet test fixtures' rows: plain text,
//! instruction records, both) into DIR and exits, before fuzzing starts.
#![no_main]

#[path = "seeds/hook.rs"]
mod seeds;

use libfuzzer_sys::fuzz_target;
use trib_datanet::{
    canonical_order, export_rows, merkle_root, parse_rows, verify_export, write_export,
    ChunkerConfig, Datanet, DatanetVersion, FileKind, ParseLimits, SourceFile, StoredRow,
    VersionLeaf, MAX_DESCRIPTOR_BYTES,
};
use trib_types::{Canonical, ContributionId, DatanetId, Hash, SecretKey};

const TEXT: &[u8] = include_bytes!("../../crates/datanet/tests/fixtures/declaration.md");
const RECORDS: &[u8] = include_bytes!("../../crates/datanet/tests/fixtures/instructions.jsonl");

/// The fixture's rows, as one contribution of one contributor.
fn rows(name: &str, kind: FileKind, bytes: &[u8], who: u8) -> Vec<StoredRow> {
    let file = SourceFile {
        name,
        declared: Some(kind),
        csv_column: None,
        bytes,
    };
    let chunker = ChunkerConfig {
        max_row_bytes: 512,
        min_row_bytes: 64,
    };
    let parsed = parse_rows(&file, &ParseLimits::default(), &chunker).expect("fixture parses");
    let contribution = ContributionId(Hash::domain("trib.fuzz.seed", &[name.as_bytes()]));
    parsed
        .into_iter()
        .take(12)
        .enumerate()
        .map(|(i, (_, content))| StoredRow {
            row_hash: content.row_hash(),
            contributor: SecretKey::from_seed([who; 32]).address(),
            contribution,
            index: i as u32,
            content,
        })
        .collect()
}

/// An export of `rows` as version 1, exactly as the store writes it.
fn export(mut rows: Vec<StoredRow>) -> Vec<u8> {
    let leaves: Vec<VersionLeaf> = rows
        .iter()
        .map(|r| VersionLeaf {
            row_hash: r.row_hash,
            contributor: r.contributor,
            contribution: r.contribution,
        })
        .collect();
    let leaves = canonical_order(leaves);
    rows.sort_by_key(|r| r.row_hash);
    rows.dedup_by(|a, b| a.row_hash == b.row_hash);
    let hashes: Vec<Hash> = leaves.iter().map(VersionLeaf::hash).collect();
    let version = DatanetVersion {
        datanet: DatanetId(Hash::domain("trib.fuzz.seed", &[b"datanet"])),
        number: 1,
        root: merkle_root(&hashes),
        row_count: leaves.len() as u64,
        previous_root: Hash::ZERO,
    };
    let mut out = Vec::new();
    write_export(&mut out, "fuzz-seed", &version, rows).expect("export");
    out
}

fn write_seeds(out: &std::path::Path) {
    let text = rows("declaration.md", FileKind::Md, TEXT, 1);
    let records = rows("instructions.jsonl", FileKind::Jsonl, RECORDS, 2);
    let both: Vec<StoredRow> = text
        .iter()
        .take(3)
        .chain(records.iter().take(3))
        .cloned()
        .collect();
    for (i, rows) in [text, records, both].into_iter().enumerate() {
        let bytes = export(rows);
        let check = verify_export(bytes.as_slice()).expect("a written export verifies");
        assert!(
            check.is_consistent(),
            "a written export reproduces its root"
        );
        std::fs::write(out.join(format!("seed-export-{i}")), bytes).expect("seed");
    }
}

fuzz_target!(
    init: seeds::on_request(write_seeds),
    |data: &[u8]| {
    let check = verify_export(data);
    let rows = export_rows(data);
    if let (Ok(check), Ok(rows)) = (&check, &rows) {
        if check.is_consistent() {
            assert_eq!(
                rows.len() as u64,
                check.rows,
                "export_rows and verify_export disagree on the row count"
            );
        }
    }
    if let Ok(d) = Datanet::decode(data, MAX_DESCRIPTOR_BYTES) {
        assert_eq!(d.encode(), data, "descriptor encoding is not canonical");
        let _ = d.validate();
    }
}
);
