//! Several indexes (datanet versions) queried as one corpus.

use std::path::Path;

use serde::{Deserialize, Serialize};
use trib_types::Hash;

use super::shard::{RowMatch, SuffixIndex};
use super::RowProvenance;
use crate::error::{AttributionError, Result};

/// Position of an index within an [`IndexSet`].
pub type ShardId = u32;

/// One occurrence of a span: which index, which document, where in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Occurrence {
    /// Index within the set.
    pub shard: ShardId,
    /// Document number within that index.
    pub document: u64,
    /// Token offset of the span within the document.
    pub start: u64,
}

/// The union of several indexes (for example every datanet version an
/// adapter was trained on), merged at query time: counts add up, the
/// longest match is the longest in any index, occurrences are listed index
/// by index. All indexes must share a tokenizer and token width.
#[derive(Debug, Default)]
pub struct IndexSet {
    shards: Vec<SuffixIndex>,
}

impl IndexSet {
    /// An empty set: every count is zero.
    pub fn empty() -> Self {
        IndexSet { shards: Vec::new() }
    }

    /// Opens every directory in `dirs`.
    pub fn open<P: AsRef<Path>>(dirs: &[P]) -> Result<Self> {
        let shards = dirs
            .iter()
            .map(|d| SuffixIndex::open(d.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Self::from_indexes(shards)
    }

    /// A set over already opened indexes.
    pub fn from_indexes(shards: Vec<SuffixIndex>) -> Result<Self> {
        if let Some(first) = shards.first() {
            let (tok, width) = (
                first.manifest().tokenizer_hash,
                first.manifest().token_width,
            );
            for s in &shards[1..] {
                let m = s.manifest();
                if m.tokenizer_hash != tok || m.token_width != width {
                    return Err(AttributionError::IncompatibleIndex {
                        path: s.dir().to_path_buf(),
                        expected: tok.to_string(),
                        found: m.tokenizer_hash.to_string(),
                        expected_width: width,
                        found_width: m.token_width,
                    });
                }
            }
        }
        Ok(IndexSet { shards })
    }

    /// The indexes, in set order.
    pub fn indexes(&self) -> &[SuffixIndex] {
        &self.shards
    }

    /// Content hashes of the indexes, in set order: the versions a receipt cites.
    pub fn versions(&self) -> Vec<Hash> {
        self.shards
            .iter()
            .map(|s| s.manifest().content_hash)
            .collect()
    }

    /// Total tokens (separators excluded).
    pub fn total_tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.manifest().tokens).sum()
    }

    /// Occurrences of the n-gram `query` across all indexes.
    pub fn count(&self, query: &[u32]) -> u64 {
        self.shards.iter().map(|s| s.count(query)).sum()
    }

    /// Occurrences of the single token `token` (for rarity).
    pub fn unigram_count(&self, token: u32) -> u64 {
        self.count(&[token])
    }

    /// Longest prefix of `tokens` occurring in any index: `(length, total count)`.
    pub fn longest_prefix(&self, tokens: &[u32]) -> (usize, u64) {
        let len = self
            .shards
            .iter()
            .map(|s| s.longest_prefix(tokens).0)
            .max()
            .unwrap_or(0);
        if len == 0 {
            return (0, 0);
        }
        (len, self.count(&tokens[..len]))
    }

    /// Up to `max` occurrences of `query`, index by index in suffix-array order.
    pub fn occurrences(&self, query: &[u32], max: usize) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            if out.len() >= max {
                break;
            }
            for (document, start) in s.occurrences(query, max - out.len()) {
                out.push(Occurrence {
                    shard: i as ShardId,
                    document,
                    start,
                });
            }
        }
        out
    }

    /// Provenance of a document.
    pub fn row(&self, shard: ShardId, document: u64) -> RowProvenance {
        self.shards[shard as usize].row(document)
    }

    /// Token ids of a document.
    pub fn document_tokens(&self, shard: ShardId, document: u64) -> Vec<u32> {
        self.shards[shard as usize].document_tokens(document)
    }

    /// Up to `max_rows` documents containing `span` with `context` tokens around it.
    pub fn retrieve(
        &self,
        span: &[u32],
        max_rows: usize,
        context: usize,
    ) -> Vec<(ShardId, RowMatch)> {
        let mut out = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            if out.len() >= max_rows {
                break;
            }
            for m in s.retrieve(span, max_rows - out.len(), context) {
                out.push((i as ShardId, m));
            }
        }
        out
    }
}
