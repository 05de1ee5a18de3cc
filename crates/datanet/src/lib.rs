//! Datanets: community data repositories, the data side.
//!
//! A contributor uploads a file; this crate turns it into validated,
//! content-addressed rows and, once curated, into immutable versions that
//! training can name (`NAME@VERSION`) and attribution can pay back. It owns
//!
//! - the content store ([`BlobStore`]: a local directory, or any
//!   `object_store` backend such as S3),
//! - the parsers (txt, md, jsonl, csv, pdf, docx) with hard limits against
//!   hostile files, and the deterministic paragraph chunker,
//! - validation, row by row, with reasons: sizes, quotas, exact duplicates,
//!   MinHash/LSH near duplicates and a documented quality score,
//! - versions (a Merkle root over accepted rows, inclusion proofs) and the
//!   byte-stable JSONL export that reproduces the root,
//! - the [`Datanet`] descriptor whose hash the ledger records, and
//!   [`ReputationTally`], a contributor's standing folded from events,
//! - [`DatanetStore`], the node's embedded store for all of the above.
//!
//! The ledger (`trib-ledger`) owns what must be agreed on: descriptors,
//! stakes, curation transactions, slashing and version roots. This crate
//! has no dependency on it; the vocabulary both speak (data type, curation
//! mode, visibility, datanet ids, and the on-chain contribution status and
//! reputation that [`CurationStatus`] and [`ReputationTally`] are derived
//! from) is defined once in `trib-types`. Formulas and
//! formats are in `docs/datanets.md`.
#![deny(missing_docs)]

mod blob;
mod chunk;
mod descriptor;
mod error;
mod export;
mod minhash;
mod parse;
mod quality;
mod reputation;
mod row;
mod store;
mod validate;
mod version;

pub use blob::{BlobStore, LocalBlobStore, ObjectBlobStore};
pub use chunk::{chunk_text, Chunk, ChunkerConfig};
pub use descriptor::{Datanet, Quotas, RowRules, MAX_DESCRIPTOR_BYTES};
pub use error::{DatanetError, ParseFailure};
pub use export::{export_rows, verify_export, write_export, ExportCheck, ExportRow, EXPORT_FORMAT};
pub use minhash::{LshIndex, MinHashParams, MinHashSignature, MinHasher};
pub use parse::{detect_kind, FileKind, ParseLimits, SourceFile};
pub use quality::{quality_score, QualityScore, QUALITY_WEIGHTS};
pub use reputation::{compute_reputation, leaderboard, ReputationEvent, ReputationTally};
pub use row::{ChatMessage, RowContent, StoredRow};
pub use store::{
    parse_version_ref, utc_day, ContributionRecord, CurationStatus, DatanetStore, Decision, Page,
    PageRequest, RejectedSubmission, VersionRow,
};
/// The descriptor's vocabulary, defined in `trib-types` (the ledger uses
/// the same types).
pub use trib_types::{datanet_id, CurationMode, DataType, Visibility};
pub use validate::{
    contribution_id, ContributionRejection, DedupIndex, MemoryDedupIndex, ParsedFile, QuotaKind,
    QuotaUsage, RowRejection, RowReport, ValidatedContribution, ValidatedRow, ValidationReport,
    Validator,
};
pub use version::{canonical_order, merkle_root, DatanetVersion, InclusionProof, VersionLeaf};

/// Parses a file into rows without validating them against a datanet: the
/// same parsing and chunking [`Validator::validate`] does. Used by fuzz
/// targets and benchmarks.
pub fn parse_rows(
    file: &SourceFile<'_>,
    limits: &ParseLimits,
    chunker: &ChunkerConfig,
) -> Result<Vec<(u64, RowContent)>, DatanetError> {
    let kind = detect_kind(file)?;
    let units = parse::parse_units(file, kind, limits)?;
    parse::units_to_rows(file.name, units, chunker, limits.max_rows)
}
