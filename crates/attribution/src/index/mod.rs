//! The token index: one suffix array per datanet version, in infini-gram's
//! on-disk layout, plus our own row map.
//!
//! Files in an index directory (shard `0`; we always write one shard):
//!
//! | file | content |
//! |---|---|
//! | `tokenized.0` | for each document, the separator (`0xFFFF`, or `0xFFFFFFFF` for 4-byte tokens) then its token ids, little-endian |
//! | `offset.0` | u64 LE byte offset in `tokenized.0` of each document's separator |
//! | `table.0` | suffix array: the byte offset (even, a multiple of the token width) of every token position of `tokenized.0`, sorted by the little-endian **byte** order of the suffixes, `k` bytes LE each, `k` the smallest with `256^k ≥ len(tokenized.0)` (infini-gram's `ceil(log2(bytes)/8)`) |
//! | `rows.0` | ours: one fixed 92-byte [`RowProvenance`] record per document |
//! | `manifest.json` | ours: [`IndexManifest`] |
//!
//! The first four follow infini-gram exactly, so its engine opens our directory.

mod build;
mod mapped;
mod set;
mod shard;

use serde::{Deserialize, Serialize};
use trib_types::{Address, ContributionId, Hash, RowHash};

pub use build::{build_index, IndexBuildOptions, IndexDocument};
pub use set::{IndexSet, Occurrence, ShardId};
pub use shard::{RowMatch, SuffixIndex};

/// Manifest format tag written into every index.
pub(crate) const FORMAT: &str = "tributary-infinigram-v1";

/// Size of one record in `rows.0`.
pub(crate) const ROW_RECORD_BYTES: usize = 32 + 32 + 20 + 8;

/// Where a document of the index came from: filled by the datanet crate.
///
/// `first_seen` orders rows by when the datanet first accepted them (for
/// example block height × 2³² + position in the block). It decides who keeps
/// the credit for identical or near-identical rows: the smallest `first_seen`
/// (then the smallest row hash) is the canonical owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowProvenance {
    /// Content hash of the row.
    pub row: RowHash,
    /// The contribution (uploaded file) the row came from.
    pub contribution: ContributionId,
    /// Who contributed it.
    pub contributor: Address,
    /// Acceptance order of the row in its datanet (lower = earlier).
    pub first_seen: u64,
}

impl RowProvenance {
    pub(crate) fn to_record(self) -> [u8; ROW_RECORD_BYTES] {
        let mut out = [0u8; ROW_RECORD_BYTES];
        out[..32].copy_from_slice(self.row.0.as_bytes());
        out[32..64].copy_from_slice(self.contribution.0.as_bytes());
        out[64..84].copy_from_slice(&self.contributor.0);
        out[84..92].copy_from_slice(&self.first_seen.to_le_bytes());
        out
    }

    pub(crate) fn from_record(rec: &[u8]) -> Self {
        let mut row = [0u8; 32];
        row.copy_from_slice(&rec[..32]);
        let mut contribution = [0u8; 32];
        contribution.copy_from_slice(&rec[32..64]);
        let mut contributor = [0u8; 20];
        contributor.copy_from_slice(&rec[64..84]);
        let mut seen = [0u8; 8];
        seen.copy_from_slice(&rec[84..92]);
        RowProvenance {
            row: RowHash(Hash(row)),
            contribution: ContributionId(Hash(contribution)),
            contributor: Address(contributor),
            first_seen: u64::from_le_bytes(seen),
        }
    }
}

/// `manifest.json` of an index directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexManifest {
    /// Always `tributary-infinigram-v1`.
    pub format: String,
    /// Free label, normally the datanet id and version this index covers.
    pub label: String,
    /// Hash identifying the tokenizer that produced the token ids.
    pub tokenizer_hash: Hash,
    /// Declared vocabulary size (token ids are below it).
    pub vocab_size: u32,
    /// Bytes per token in `tokenized.0`: 2 (`u16`) or 4 (`u32`).
    pub token_width: u8,
    /// Number of documents (rows).
    pub documents: u64,
    /// Number of tokens, separators excluded.
    pub tokens: u64,
    /// Bytes per suffix-array entry in `table.0`.
    pub sa_entry_bytes: u8,
    /// blake3 over `tokenized.0` and `rows.0`: the index version that receipts cite.
    pub content_hash: Hash,
}

impl IndexManifest {
    /// Number of positions (tokens plus one separator per document) in `tokenized.0`.
    pub fn positions(&self) -> u64 {
        self.tokens + self.documents
    }
}

/// Token width for a vocabulary: 2 bytes when every id fits below the
/// `0xFFFF` separator, otherwise 4.
pub(crate) fn token_width_for(vocab_size: u32) -> u8 {
    if vocab_size <= 0xFFFF {
        2
    } else {
        4
    }
}

/// The separator id for a token width.
pub(crate) fn separator_for(width: u8) -> u32 {
    if width == 2 {
        0xFFFF
    } else {
        0xFFFF_FFFF
    }
}

/// Smallest `k` with `256^k ≥ bytes` (at least 1).
pub(crate) fn sa_entry_bytes(bytes: u64) -> u8 {
    let mut k = 1u8;
    while k < 8 && (1u128 << (8 * k as u32)) < bytes as u128 {
        k += 1;
    }
    k
}
