//! The [`IndexCatalog`]: one token index per published datanet version,
//! and the trace of a served answer against the versions its adapter was
//! trained on.
//!
//! Layout: `<root>/<DATANET_ID>/<VERSION>/` (the node's root is
//! `<home>/indexes`) holds the infini-gram files written by
//! [`build_index`] plus our `checksums.json` (blake3 of every index file
//! and the tokenizer hash), written last. An index is built once from the
//! rows of the version that the [`DatanetRows`] source supplies (the node's
//! datanet store, root-checked against the ledger), tokenized with the
//! served model's tokenizer ([`Tokens`]), with `first_seen` = acceptance
//! order so the first contributor of duplicated rows keeps the credit. It
//! is built lazily on first use and eagerly by [`IndexCatalog::index_missing`]
//! (the node calls it on an interval for every published version it holds).
//! An index whose checksums are missing or wrong, or whose tokenizer differs
//! from the served one, is removed and rebuilt; its problem is logged. See
//! `docs/attribution.md`, "Attribution at answer time".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use trib_types::{DatanetId, Hash};

use super::tokens::Tokens;
use super::view::{AnswerTrace, SpanRowView, SpanView};
use crate::error::AttributionError;
use crate::evidence::AttributionEvidence;
use crate::index::{
    build_index, IndexBuildOptions, IndexDocument, IndexSet, RowProvenance, SuffixIndex,
};
use crate::trace::{bm25_scores, bm25_terms, PromptMask, SpanRow, SpanTracer, Trace, TraceParams};
use crate::weights::DEFAULT_TOKEN_SHARE_PPM;

/// One row of a published datanet version, as its index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// Row hash, contribution, contributor and acceptance order.
    pub provenance: RowProvenance,
    /// The row's plain text.
    pub text: String,
}

/// A datanet on the ledger and its latest published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedDatanet {
    /// The ledger datanet id.
    pub id: DatanetId,
    /// Its name (for log lines).
    pub name: String,
    /// Its latest published version (0: none yet).
    pub latest_version: u32,
}

/// Where the catalog's rows come from: the node implements it over its
/// datanet store and the ledger.
pub trait DatanetRows: Send + Sync {
    /// The rows of `datanet@version` in acceptance order, checked against
    /// the version root the ledger records; `Err` says why they cannot be
    /// read (the version is not published, this node holds no rows, …).
    fn rows(&self, datanet: &DatanetId, version: u32) -> Result<Vec<VersionRow>, String>;
    /// Every datanet on the ledger with its latest published version.
    fn published(&self) -> Result<Vec<PublishedDatanet>, String>;
    /// Whether `datanet` is public, so its rows' text may be shown to any
    /// caller (`false` also when its record cannot be read).
    fn is_public(&self, datanet: &DatanetId) -> bool;
}

/// Files of an index directory covered by `checksums.json`.
pub const INDEX_FILES: [&str; 5] = [
    "manifest.json",
    "tokenized.0",
    "offset.0",
    "table.0",
    "rows.0",
];
/// Name of our checksum file inside an index directory.
pub const CHECKSUMS: &str = "checksums.json";
/// Rows listed per span in an answer's `attribution` field.
const ROWS_SHOWN: usize = 3;
/// Tokens of row context shown around a span.
const SNIPPET_CONTEXT: usize = 12;

/// Why an index could not be built or opened, or an answer not traced.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The rows of a version could not be read from the datanet store.
    #[error("rows of datanet {datanet}@{version}: {reason}")]
    Rows {
        /// The ledger datanet id.
        datanet: DatanetId,
        /// The version.
        version: u32,
        /// What the datanet service said.
        reason: String,
    },
    /// The served tokenizer failed on a row or an answer.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Building, opening or querying an index failed.
    #[error("index of datanet {datanet}@{version}: {source}")]
    Index {
        /// The ledger datanet id.
        datanet: DatanetId,
        /// The version.
        version: u32,
        /// The index error.
        source: AttributionError,
    },
    /// The span tracer rejected its input or parameters.
    #[error("trace: {0}")]
    Trace(AttributionError),
    /// A file of the catalog could not be read, written or removed.
    #[error("index catalog file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// `checksums.json`: what a sound index directory must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checksums {
    tokenizer_hash: Hash,
    files: BTreeMap<String, Hash>,
}

fn file_hashes(dir: &Path) -> Result<BTreeMap<String, Hash>, CatalogError> {
    let mut out = BTreeMap::new();
    for f in INDEX_FILES {
        let path = dir.join(f);
        let bytes = std::fs::read(&path).map_err(|source| CatalogError::Io {
            path: path.clone(),
            source,
        })?;
        out.insert(f.to_string(), Hash::of(&bytes));
    }
    Ok(out)
}

/// A published datanet version: the unit the catalog indexes.
type VersionKey = (DatanetId, u32);

/// What `stat` says about one file of an index directory: size, inode,
/// modification and status-change times (ns). Any write, truncation,
/// replacement or deletion changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    inode: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The stamps of every file an index check covers ([`INDEX_FILES`] and
/// [`CHECKSUMS`]), taken right after the index was hashed (or built);
/// `None` when one cannot be read (deleted).
fn stamp(dir: &Path) -> Option<Vec<FileStamp>> {
    use std::os::unix::fs::MetadataExt;
    INDEX_FILES
        .iter()
        .chain([&CHECKSUMS])
        .map(|f| {
            let m = std::fs::metadata(dir.join(f)).ok()?;
            Some(FileStamp {
                len: m.len(),
                inode: m.ino(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            })
        })
        .collect()
}

/// A version whose directory was hashed (or built) by this process.
#[derive(Debug, Clone)]
struct Checked {
    /// The index's content hash.
    content: Hash,
    /// Its files' stamps when they were hashed.
    files: Vec<FileStamp>,
}

/// The catalog of token indexes under `<home>/indexes`.
pub struct IndexCatalog {
    root: PathBuf,
    rows: Arc<dyn DatanetRows>,
    tokens: Arc<Tokens>,
    /// One lock per version, so a version is never built twice at once.
    locks: Mutex<HashMap<VersionKey, Arc<Mutex<()>>>>,
    /// Versions whose directory was hashed (or built) by this process, with
    /// their files' stamps: each use compares the stamps (a few `stat`
    /// calls) and re-hashes only when a file changed.
    sound: Mutex<HashMap<VersionKey, Checked>>,
    builds: AtomicU64,
}

impl IndexCatalog {
    /// A catalog of the indexes under `root`, built from the rows of
    /// `rows` and tokenized with `tokens`.
    pub fn new(root: PathBuf, rows: Arc<dyn DatanetRows>, tokens: Arc<Tokens>) -> Self {
        IndexCatalog {
            root,
            rows,
            tokens,
            locks: Mutex::new(HashMap::new()),
            sound: Mutex::new(HashMap::new()),
            builds: AtomicU64::new(0),
        }
    }

    /// The served tokenizer.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Index builds this process has done (a cache hit builds nothing).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// `<home>/indexes/<DATANET_ID>/<VERSION>`.
    pub fn dir(&self, datanet: &DatanetId, version: u32) -> PathBuf {
        self.root
            .join(datanet.to_string())
            .join(version.to_string())
    }

    /// Makes sure the index of `datanet@version` exists and is sound,
    /// building (or rebuilding) it when needed; returns its directory.
    pub fn ensure(&self, datanet: &DatanetId, version: u32) -> Result<PathBuf, CatalogError> {
        let key = (*datanet, version);
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.dir(datanet, version);
        let known = self
            .sound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(known) = known {
            if stamp(&dir).as_ref() == Some(&known.files) {
                return Ok(dir);
            }
            tracing::warn!(target: "trib::attribution", %datanet, version, dir = %dir.display(),
                index = %known.content.short(),
                "index files changed, were replaced or deleted since they were checked; checking them again");
            self.sound
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
        if dir.exists() {
            match self.check(&dir) {
                Ok(checked) => {
                    self.sound
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, checked);
                    return Ok(dir);
                }
                Err(problem) => {
                    tracing::warn!(target: "trib::attribution", %datanet, version, dir = %dir.display(),
                        %problem, "index is not usable; rebuilding it");
                    std::fs::remove_dir_all(&dir).map_err(|source| CatalogError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                }
            }
        }
        let content = self.build(datanet, version, &dir)?;
        let files = stamp(&dir).ok_or_else(|| CatalogError::Io {
            path: dir.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "an index file vanished right after the build",
            ),
        })?;
        self.sound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Checked { content, files });
        Ok(dir)
    }

    /// Why the index in `dir` cannot be used (a missing or changed file, a
    /// checksum that does not match, another tokenizer), or `None` when it
    /// is sound.
    pub fn problem(&self, dir: &Path) -> Option<String> {
        self.check(dir).err()
    }

    /// Why the index in `dir` cannot be used (`Err`), or its content hash
    /// and the stamps of the files just hashed.
    fn check(&self, dir: &Path) -> Result<Checked, String> {
        // Stamps first: a write during the hashing changes them, so the
        // next use re-checks rather than trusting a stale stamp.
        let files = stamp(dir).ok_or_else(|| "an index file is missing".to_string())?;
        let raw = std::fs::read(dir.join(CHECKSUMS))
            .map_err(|e| format!("{CHECKSUMS}: {e} (an interrupted build?)"))?;
        let sums: Checksums =
            serde_json::from_slice(&raw).map_err(|e| format!("{CHECKSUMS} does not parse: {e}"))?;
        if sums.tokenizer_hash != self.tokens.hash() {
            return Err(format!(
                "built with tokenizer {}, the served tokenizer is {}",
                sums.tokenizer_hash.short(),
                self.tokens.hash().short()
            ));
        }
        let now = file_hashes(dir).map_err(|e| e.to_string())?;
        for (name, want) in &sums.files {
            if now.get(name) != Some(want) {
                return Err(format!("{name} does not match its checksum (corrupted)"));
            }
        }
        let index = SuffixIndex::open(dir).map_err(|e| e.to_string())?;
        if index.manifest().tokenizer_hash != self.tokens.hash() {
            return Err("manifest names another tokenizer".into());
        }
        Ok(Checked {
            content: index.manifest().content_hash,
            files,
        })
    }

    fn build(&self, datanet: &DatanetId, version: u32, dir: &Path) -> Result<Hash, CatalogError> {
        let started = Instant::now();
        let rows = self
            .rows
            .rows(datanet, version)
            .map_err(|reason| CatalogError::Rows {
                datanet: *datanet,
                version,
                reason,
            })?;
        let mut tokens = Vec::with_capacity(rows.len());
        for r in &rows {
            tokens.push(self.tokens.encode(&r.text)?);
        }
        let docs = rows.iter().zip(&tokens).map(|(r, t)| IndexDocument {
            tokens: t,
            provenance: r.provenance,
        });
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| CatalogError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let index_err = |source| CatalogError::Index {
            datanet: *datanet,
            version,
            source,
        };
        let manifest = build_index(
            dir,
            docs,
            &IndexBuildOptions {
                label: format!("{datanet}@{version}"),
                tokenizer_hash: self.tokens.hash(),
                vocab_size: self.tokens.vocab_size(),
                threads: 1,
            },
        )
        .map_err(index_err)?;
        let sums = Checksums {
            tokenizer_hash: self.tokens.hash(),
            files: file_hashes(dir)?,
        };
        let path = dir.join(CHECKSUMS);
        let tmp = dir.join("checksums.json.tmp");
        let io = |source| CatalogError::Io {
            path: path.clone(),
            source,
        };
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&sums).expect("checksums serialise"),
        )
        .map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.builds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "trib::attribution", %datanet, version, rows = manifest.documents,
            tokens = manifest.tokens, ms = started.elapsed().as_millis() as u64, "token index built");
        Ok(manifest.content_hash)
    }

    /// The union of the indexes of `versions` (built where needed).
    pub fn open_set(&self, versions: &[(DatanetId, u32)]) -> Result<IndexSet, CatalogError> {
        let mut shards = Vec::with_capacity(versions.len());
        for (d, v) in versions {
            let dir = self.ensure(d, *v)?;
            shards.push(
                SuffixIndex::open(&dir).map_err(|source| CatalogError::Index {
                    datanet: *d,
                    version: *v,
                    source,
                })?,
            );
        }
        IndexSet::from_indexes(shards).map_err(CatalogError::Trace)
    }

    /// Builds every published version this node holds rows for and that
    /// has no sound index yet; returns how many were built.
    pub fn index_missing(&self) -> usize {
        let datanets = match self.rows.published() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(target: "trib::attribution", error = %e, "cannot list datanets to index");
                return 0;
            }
        };
        let before = self.builds();
        for d in datanets {
            for v in 1..=d.latest_version {
                // A checked version costs a few `stat` calls: a file
                // damaged or deleted since is re-checked and rebuilt here,
                // before any answer needs it.
                if let Err(e) = self.ensure(&d.id, v) {
                    tracing::debug!(target: "trib::attribution", datanet = %d.name, version = v,
                        error = %e, "version not indexed");
                }
            }
        }
        (self.builds() - before) as usize
    }

    /// Traces `text` against the union of `versions` (empty: no index, so no
    /// span and the ledger's fallback). With a `prompt`, the words `text`
    /// repeats from it are masked first ([`PromptMask`]: what the answer
    /// copies from the question earns nothing) and the evidence commits to
    /// the prompt's hash.
    pub fn trace(
        &self,
        versions: &[(DatanetId, u32)],
        prompt: Option<&str>,
        text: &str,
        params: &TraceParams,
    ) -> Result<AnswerTrace, CatalogError> {
        let started = Instant::now();
        let set = self.open_set(versions)?;
        let tokens = self.tokens.encode(text)?;
        let mask = prompt
            .map(|p| {
                PromptMask::new(p, &tokens, &self.tokens.pieces, |ids| {
                    self.tokens.try_decode(ids).map_err(|e| {
                        CatalogError::Tokenizer(format!("decoding an answer word: {e}"))
                    })
                })
            })
            .transpose()?;
        let tracer = SpanTracer::new(&set, &self.tokens.pieces, params.clone())
            .map_err(CatalogError::Trace)?;
        let trace = match &mask {
            Some(m) => tracer.trace_masked(&tokens, m),
            None => tracer.trace(&tokens),
        }
        .map_err(CatalogError::Trace)?;
        let (versions_hashed, share) = (set.versions(), DEFAULT_TOKEN_SHARE_PPM);
        let evidence = match &mask {
            Some(m) => AttributionEvidence::new_masked(
                &tokens,
                &trace,
                params,
                versions_hashed,
                None,
                share,
                m,
            ),
            None => AttributionEvidence::new(&tokens, &trace, params, versions_hashed, None, share),
        }
        .map_err(CatalogError::Trace)?;
        let withheld = self.permissioned(versions);
        // BM25 orders the rows shown per span by relevance to the prompt
        // and answer words (display only; evidence and weights are as traced).
        let mut query = bm25_terms(prompt.unwrap_or_default());
        query.extend(bm25_terms(text));
        let spans = self.span_views(&set, &tokens, &query, &trace, &withheld);
        let elapsed = started.elapsed();
        tracing::debug!(target: "trib::attribution", tokens = tokens.len(), spans = trace.spans.len(),
            weights = evidence.weights.len(), us = elapsed.as_micros() as u64, "answer traced");
        Ok(AnswerTrace {
            versions: versions.to_vec(),
            params: params.clone(),
            tokens: tokens.len(),
            masked_words: mask.as_ref().map(|m| {
                m.ranges()
                    .into_iter()
                    .map(|(a, b)| self.tokens.decode(&tokens[a..b]))
                    .collect()
            }),
            evidence,
            spans,
            elapsed,
        })
    }

    /// Per version: whether its datanet is permissioned (or its record
    /// cannot be read), so row text must not be shown: the trace endpoint
    /// answers any caller.
    fn permissioned(&self, versions: &[(DatanetId, u32)]) -> Vec<bool> {
        versions
            .iter()
            .map(|(d, _)| !self.rows.is_public(d))
            .collect()
    }

    /// The spans for display, rarest first; each span's rows ordered by
    /// [`bm25_scores`] of their words against `query` (prompt and answer
    /// words), the collection being all rows retrieved for the answer (ties
    /// keep the index order), as OLMoTrace re-ranks retrieved documents.
    fn span_views(
        &self,
        set: &IndexSet,
        answer: &[u32],
        query: &[String],
        trace: &Trace,
        withheld: &[bool],
    ) -> Vec<SpanView> {
        let mut docs: BTreeMap<(u32, u64), Vec<u32>> = BTreeMap::new();
        for r in trace.spans.iter().flat_map(|s| &s.rows) {
            let key = (r.occurrence.shard, r.occurrence.document);
            docs.entry(key)
                .or_insert_with(|| set.document_tokens(key.0, key.1));
        }
        let keys: Vec<(u32, u64)> = docs.keys().copied().collect();
        let words: Vec<Vec<String>> = docs
            .values()
            .map(|d| bm25_terms(&self.tokens.decode(d)))
            .collect();
        let texts: Vec<&[String]> = words.iter().map(Vec::as_slice).collect();
        let relevance: BTreeMap<(u32, u64), f64> =
            keys.into_iter().zip(bm25_scores(query, &texts)).collect();
        let bm25 = |r: &SpanRow| {
            relevance
                .get(&(r.occurrence.shard, r.occurrence.document))
                .copied()
                .unwrap_or(0.0)
        };
        let mut out: Vec<SpanView> = trace
            .spans
            .iter()
            .map(|s| {
                let mut rows: Vec<&SpanRow> = s.rows.iter().collect();
                rows.sort_by(|a, b| bm25(b).total_cmp(&bm25(a)));
                (s, rows)
            })
            .map(|(s, rows)| SpanView {
                text: self.tokens.decode(&answer[s.start..s.end]),
                start: s.start,
                end: s.end,
                count: s.count,
                log_prob_micros: s.log_prob_micros,
                rows_total: s.rows.len(),
                rows: rows
                    .into_iter()
                    .take(ROWS_SHOWN)
                    .map(|r| {
                        let doc = &docs[&(r.occurrence.shard, r.occurrence.document)];
                        let a = (r.occurrence.start as usize).min(doc.len());
                        let from = a.saturating_sub(SNIPPET_CONTEXT);
                        let to = (a + (s.end - s.start) + SNIPPET_CONTEXT).min(doc.len());
                        SpanRowView {
                            row_hash: r.provenance.row,
                            contribution: r.provenance.contribution,
                            contributor: r.provenance.contributor,
                            credited_contribution: r.credited.contribution,
                            credited_contributor: r.credited.contributor,
                            credit_micros: r.credit_micros,
                            bm25: (bm25(r) * 1e3).round() / 1e3,
                            snippet: (!withheld
                                .get(r.occurrence.shard as usize)
                                .copied()
                                .unwrap_or(true))
                            .then(|| self.tokens.decode(&doc[from..to])),
                        }
                    })
                    .collect(),
            })
            .collect();
        // Rarest first: what the response shows when it keeps the top spans.
        out.sort_by_key(|s| (s.log_prob_micros, s.start));
        out
    }
}
