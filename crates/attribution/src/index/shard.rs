//! Queries over one memory-mapped index directory.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::mapped::MappedFile;
use super::{separator_for, IndexManifest, RowProvenance, FORMAT, ROW_RECORD_BYTES};
use crate::error::{io_err, AttributionError, Result};

/// One index directory (one datanet version), opened for queries.
///
/// All files are memory-mapped; queries never load the corpus into memory.
#[derive(Debug)]
pub struct SuffixIndex {
    dir: PathBuf,
    manifest: IndexManifest,
    tokenized: MappedFile,
    offsets: MappedFile,
    table: MappedFile,
    rows: MappedFile,
}

/// A document that contains a queried span, with context around it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowMatch {
    /// Document number within its index.
    pub document: u64,
    /// Where the row came from.
    pub provenance: RowProvenance,
    /// Token offset of the span within the document.
    pub start: u64,
    /// Up to `context` tokens before the span.
    pub before: Vec<u32>,
    /// Up to `context` tokens after the span.
    pub after: Vec<u32>,
}

impl SuffixIndex {
    /// Opens the index in `dir`, checking every file against the manifest.
    pub fn open(dir: &Path) -> Result<Self> {
        let corrupt = |reason: String| AttributionError::CorruptIndex {
            path: dir.to_path_buf(),
            reason,
        };
        let mpath = dir.join("manifest.json");
        let raw = fs::read(&mpath).map_err(io_err(&mpath))?;
        let manifest: IndexManifest =
            serde_json::from_slice(&raw).map_err(|e| corrupt(format!("manifest.json: {e}")))?;
        if manifest.format != FORMAT {
            return Err(corrupt(format!("unknown format {:?}", manifest.format)));
        }
        if manifest.token_width != 2 && manifest.token_width != 4 {
            return Err(corrupt(format!(
                "token width {} is not 2 or 4",
                manifest.token_width
            )));
        }
        let tokenized = MappedFile::open(&dir.join("tokenized.0"))?;
        let offsets = MappedFile::open(&dir.join("offset.0"))?;
        let table = MappedFile::open(&dir.join("table.0"))?;
        let rows = MappedFile::open(&dir.join("rows.0"))?;
        let positions = manifest.positions();
        let expect = [
            (&tokenized, positions * manifest.token_width as u64),
            (&offsets, manifest.documents * 8),
            (&table, positions * manifest.sa_entry_bytes as u64),
            (&rows, manifest.documents * ROW_RECORD_BYTES as u64),
        ];
        for (file, len) in expect {
            if file.bytes().len() as u64 != len {
                return Err(corrupt(format!(
                    "{} is {} bytes, the manifest implies {len}",
                    file.path().display(),
                    file.bytes().len()
                )));
            }
        }
        Ok(SuffixIndex {
            dir: dir.to_path_buf(),
            manifest,
            tokenized,
            offsets,
            table,
            rows,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }

    /// The directory the index was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn width(&self) -> usize {
        self.manifest.token_width as usize
    }

    /// Number of suffix-array entries (token positions including separators).
    fn len(&self) -> u64 {
        self.manifest.positions()
    }

    /// Byte offset stored in suffix-array entry `i`.
    fn sa(&self, i: u64) -> usize {
        let k = self.manifest.sa_entry_bytes as usize;
        let at = i as usize * k;
        let mut buf = [0u8; 8];
        buf[..k].copy_from_slice(&self.table.bytes()[at..at + k]);
        u64::from_le_bytes(buf) as usize
    }

    /// The query as little-endian bytes, or `None` if a token cannot occur
    /// (it is the separator or too wide for the index).
    fn encode(&self, query: &[u32]) -> Option<Vec<u8>> {
        let sep = separator_for(self.manifest.token_width);
        let mut out = Vec::with_capacity(query.len() * self.width());
        for &t in query {
            if t == sep || (self.width() == 2 && t > 0xFFFF) {
                return None;
            }
            if self.width() == 2 {
                out.extend_from_slice(&(t as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        Some(out)
    }

    fn cmp_at(&self, i: u64, q: &[u8]) -> Ordering {
        let tok = self.tokenized.bytes();
        let p = self.sa(i);
        let end = (p + q.len()).min(tok.len());
        tok[p..end].cmp(q)
    }

    /// Suffix-array range `[lo, hi)` of suffixes starting with `q`, searched within `[lo, hi)`.
    fn range_in(&self, q: &[u8], mut lo: u64, mut hi: u64) -> (u64, u64) {
        let (mut a, mut b) = (lo, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.cmp_at(mid, q) == Ordering::Less {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        lo = a;
        let (mut a, mut b) = (lo, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.cmp_at(mid, q) == Ordering::Greater {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        hi = a;
        (lo, hi)
    }

    /// Suffix-array range of `query` (empty range if it does not occur).
    pub(crate) fn range(&self, query: &[u32]) -> (u64, u64) {
        match self.encode(query) {
            Some(q) if !query.is_empty() => self.range_in(&q, 0, self.len()),
            Some(_) => (0, self.manifest.tokens),
            None => (0, 0),
        }
    }

    /// Number of occurrences of the n-gram `query` (the empty query counts
    /// every token).
    pub fn count(&self, query: &[u32]) -> u64 {
        if query.is_empty() {
            return self.manifest.tokens;
        }
        let (lo, hi) = self.range(query);
        hi - lo
    }

    /// Longest prefix of `tokens` that occurs in the index: `(length, count)`.
    /// Length 0 means not even the first token occurs.
    pub fn longest_prefix(&self, tokens: &[u32]) -> (usize, u64) {
        let Some(all) = self.encode(tokens) else {
            // Some token cannot occur: search up to the first such token.
            let sep = separator_for(self.manifest.token_width);
            let cut = tokens
                .iter()
                .position(|&t| t == sep || (self.width() == 2 && t > 0xFFFF))
                .unwrap_or(tokens.len());
            return self.longest_prefix(&tokens[..cut]);
        };
        let w = self.width();
        let (mut lo, mut hi) = (0, self.len());
        let mut best = (0usize, 0u64);
        for len in 1..=tokens.len() {
            let (a, b) = self.range_in(&all[..len * w], lo, hi);
            if a >= b {
                break;
            }
            (lo, hi) = (a, b);
            best = (len, b - a);
        }
        best
    }

    /// Token positions (document, offset within document) of up to `max`
    /// occurrences of `query`, in suffix-array order.
    pub(crate) fn occurrences(&self, query: &[u32], max: usize) -> Vec<(u64, u64)> {
        if query.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = self.range(query);
        let hi = hi.min(lo + max as u64);
        (lo..hi)
            .map(|i| {
                let byte = self.sa(i) as u64;
                let doc = self.document_at(byte);
                let start = (byte - self.doc_offset(doc)) / self.width() as u64 - 1;
                (doc, start)
            })
            .collect()
    }

    fn doc_offset(&self, doc: u64) -> u64 {
        let at = doc as usize * 8;
        u64::from_le_bytes(
            self.offsets.bytes()[at..at + 8]
                .try_into()
                .expect("8 bytes"),
        )
    }

    /// Document containing byte offset `byte` of `tokenized.0`.
    fn document_at(&self, byte: u64) -> u64 {
        let (mut a, mut b) = (0u64, self.manifest.documents);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.doc_offset(mid) <= byte {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        a - 1
    }

    /// Provenance of document `doc`.
    pub fn row(&self, doc: u64) -> RowProvenance {
        let at = doc as usize * ROW_RECORD_BYTES;
        RowProvenance::from_record(&self.rows.bytes()[at..at + ROW_RECORD_BYTES])
    }

    /// Number of documents.
    pub fn documents(&self) -> u64 {
        self.manifest.documents
    }

    /// Token ids of document `doc`.
    pub fn document_tokens(&self, doc: u64) -> Vec<u32> {
        let w = self.width();
        let start = self.doc_offset(doc) as usize + w;
        let end = if doc + 1 < self.manifest.documents {
            self.doc_offset(doc + 1) as usize
        } else {
            self.tokenized.bytes().len()
        };
        self.tokenized.bytes()[start..end]
            .chunks_exact(w)
            .map(|c| {
                if w == 2 {
                    u16::from_le_bytes([c[0], c[1]]) as u32
                } else {
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                }
            })
            .collect()
    }

    /// Up to `max_rows` documents containing `span`, each with up to
    /// `context` tokens on either side.
    pub fn retrieve(&self, span: &[u32], max_rows: usize, context: usize) -> Vec<RowMatch> {
        self.occurrences(span, max_rows)
            .into_iter()
            .map(|(doc, start)| {
                let toks = self.document_tokens(doc);
                let s = start as usize;
                let e = (s + span.len()).min(toks.len());
                RowMatch {
                    document: doc,
                    provenance: self.row(doc),
                    start,
                    before: toks[s.saturating_sub(context)..s].to_vec(),
                    after: toks[e..(e + context).min(toks.len())].to_vec(),
                }
            })
            .collect()
    }
}
