//! Answer-time token attribution: the node's [`IndexCatalog`] of
//! `trib-attribution` indexes, one per published datanet version, and the
//! trace of a served answer against the versions its adapter was trained on.
//!
//! Layout: `<home>/indexes/<DATANET_ID>/<VERSION>/` holds the infini-gram
//! files written by [`trib_attribution::build_index`] plus our
//! `checksums.json` (blake3 of every index file and the tokenizer hash),
//! written last. An index is built once from the store's rows of the version
//! (root-checked against the ledger), tokenized with the served model's
//! tokenizer, with `first_seen` = acceptance order so the first contributor
//! of duplicated rows keeps the credit. It is built lazily on first use and
//! eagerly by [`spawn_indexer`] (every published version this node holds).
//! An index whose checksums are missing or wrong, or whose tokenizer differs
//! from the served one, is removed and rebuilt; its problem is logged. See
//! `docs/attribution.md`, "Attribution at answer time".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use trib_attribution::{
    bm25_scores, bm25_terms, build_index, AttributionError, AttributionEvidence, IndexBuildOptions,
    IndexDocument, IndexSet, PieceTable, PromptMask, RowProvenance, SpanTracer, SuffixIndex, Trace,
    TraceParams, DEFAULT_TOKEN_SHARE_PPM,
};
use trib_ledger::{Datanet, DatanetRef, Visibility};
use trib_model::Model;
use trib_types::{Address, ContributionId, DatanetId, Hash, RowHash};

use crate::chain::Chain;
use crate::datanets::DatanetService;

/// The receipt method of an answer settled with token-span weights.
pub(crate) const TOKEN_METHOD: &str = "token-spans";
/// The receipt method of an answer settled by the ledger's fallback rule
/// (no span cleared the thresholds, or the model has no datanet).
pub(crate) const FALLBACK_METHOD: &str = "datanet-fallback";
/// Files of an index directory covered by `checksums.json`.
const INDEX_FILES: [&str; 5] = [
    "manifest.json",
    "tokenized.0",
    "offset.0",
    "table.0",
    "rows.0",
];
/// The span tracer's thresholds for paid answers: the OLMoTrace defaults
/// with a 2-token minimum span, applied after the prompt's words are
/// masked, and no span without a letter. Measured best on planted facts
/// (docs/attribution.md §5): recall@1 1.000 on correct and on borrowed
/// answers, 0 false credit on the base model's answers; at the default
/// 4-token minimum, masking left most correct answers (an invented
/// 2–3-token name plus a full stop) with no span. On the demo data (§8) the
/// 2-token minimum alone let a digit span (`" 1"`: a space and a digit
/// token) credit 6 of 40 unrelated answers: `require_letter` drops those.
pub(crate) fn answer_trace_params() -> TraceParams {
    TraceParams {
        min_span_tokens: 2,
        require_letter: true,
        ..TraceParams::default()
    }
}

/// The text whose words are masked in an answer to `prompt` (the prompt as
/// a stored answer keeps it): the messages' contents, one per line, for a
/// chat (stored as the JSON list of `{role, content}` messages), else the
/// prompt itself. The same function serves settlement and verify, so a
/// re-run masks exactly the words the settlement masked.
pub(crate) fn prompt_words(prompt: &str) -> String {
    #[derive(Deserialize)]
    struct Message {
        content: String,
    }
    match serde_json::from_str::<Vec<Message>>(prompt) {
        Ok(messages) => messages
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => prompt.to_string(),
    }
}

/// Name of our checksum file inside an index directory.
const CHECKSUMS: &str = "checksums.json";
/// Rows listed per span in an answer's `attribution` field.
const ROWS_SHOWN: usize = 3;
/// Tokens of row context shown around a span.
const SNIPPET_CONTEXT: usize = 12;

/// Why an index could not be built or opened, or an answer not traced.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
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

/// The served model's tokenizer, as the index and the tracer need it.
#[derive(Clone)]
pub(crate) struct Tokens {
    model: Arc<Model>,
    pieces: PieceTable,
    hash: Hash,
    vocab_size: u32,
}

impl Tokens {
    /// Reads the vocabulary of `model`'s tokenizer: its pieces (for word
    /// starts and delimiters), its size, and a hash of its serialised form
    /// (an index built with another tokenizer is rebuilt).
    pub(crate) fn new(model: Arc<Model>) -> Result<Self, CatalogError> {
        let tok = model.tokenizer();
        let vocab = tok.get_vocab_size(true).max(model.config().vocab_size);
        let pieces: Vec<String> = (0..vocab as u32)
            .map(|id| tok.id_to_token(id).unwrap_or_default())
            .collect();
        let json = tok
            .to_string(false)
            .map_err(|e| CatalogError::Tokenizer(format!("serialising: {e}")))?;
        let vocab_size = u32::try_from(vocab)
            .map_err(|_| CatalogError::Tokenizer(format!("vocabulary of {vocab} is too large")))?;
        Ok(Tokens {
            hash: Hash::domain("tributary tokenizer v1", &[json.as_bytes()]),
            pieces: PieceTable::new(&pieces),
            model,
            vocab_size,
        })
    }

    /// The tokenizer hash recorded in every index manifest.
    #[cfg(test)]
    pub(crate) fn hash(&self) -> Hash {
        self.hash
    }

    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, CatalogError> {
        self.model
            .encode(text)
            .map_err(|e| CatalogError::Tokenizer(e.to_string()))
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.model.decode(ids).unwrap_or_default()
    }

    /// The decoded text of `ids`, for tests.
    #[cfg(test)]
    pub(crate) fn decode_for_test(&self, ids: &[u32]) -> String {
        self.decode(ids)
    }
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
pub(crate) struct IndexCatalog {
    root: PathBuf,
    datanets: Arc<DatanetService>,
    chain: Arc<Chain>,
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
    pub(crate) fn new(
        root: PathBuf,
        datanets: Arc<DatanetService>,
        chain: Arc<Chain>,
        tokens: Arc<Tokens>,
    ) -> Self {
        IndexCatalog {
            root,
            datanets,
            chain,
            tokens,
            locks: Mutex::new(HashMap::new()),
            sound: Mutex::new(HashMap::new()),
            builds: AtomicU64::new(0),
        }
    }

    /// The served tokenizer.
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Index builds this process has done (a cache hit builds nothing).
    pub(crate) fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// `<home>/indexes/<DATANET_ID>/<VERSION>`.
    pub(crate) fn dir(&self, datanet: &DatanetId, version: u32) -> PathBuf {
        self.root
            .join(datanet.to_string())
            .join(version.to_string())
    }

    /// Makes sure the index of `datanet@version` exists and is sound,
    /// building (or rebuilding) it when needed; returns its directory.
    pub(crate) fn ensure(
        &self,
        datanet: &DatanetId,
        version: u32,
    ) -> Result<PathBuf, CatalogError> {
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
        if sums.tokenizer_hash != self.tokens.hash {
            return Err(format!(
                "built with tokenizer {}, the served tokenizer is {}",
                sums.tokenizer_hash.short(),
                self.tokens.hash.short()
            ));
        }
        let now = file_hashes(dir).map_err(|e| e.to_string())?;
        for (name, want) in &sums.files {
            if now.get(name) != Some(want) {
                return Err(format!("{name} does not match its checksum (corrupted)"));
            }
        }
        let index = SuffixIndex::open(dir).map_err(|e| e.to_string())?;
        if index.manifest().tokenizer_hash != self.tokens.hash {
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
            .datanets
            .index_rows(datanet, version)
            .map_err(|e| CatalogError::Rows {
                datanet: *datanet,
                version,
                reason: e.message,
            })?;
        let mut tokens = Vec::with_capacity(rows.len());
        for r in &rows {
            tokens.push(self.tokens.encode(&r.text)?);
        }
        let docs = rows.iter().zip(&tokens).map(|(r, t)| IndexDocument {
            tokens: t,
            provenance: RowProvenance {
                row: r.row,
                contribution: r.contribution,
                contributor: r.contributor,
                first_seen: r.first_seen,
            },
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
                tokenizer_hash: self.tokens.hash,
                vocab_size: self.tokens.vocab_size,
                threads: 1,
            },
        )
        .map_err(index_err)?;
        let sums = Checksums {
            tokenizer_hash: self.tokens.hash,
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
    pub(crate) fn open_set(&self, versions: &[(DatanetId, u32)]) -> Result<IndexSet, CatalogError> {
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
    pub(crate) fn index_missing(&self) -> usize {
        let datanets = match self.chain.ledger().datanets() {
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
    pub(crate) fn trace(
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
                    self.tokens.model.decode(ids).map_err(|e| {
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
        let ledger = self.chain.ledger();
        versions
            .iter()
            .map(|(d, _)| {
                !matches!(
                    ledger.datanet(DatanetRef::Id(*d)),
                    Ok(Some(Datanet {
                        visibility: Visibility::Public,
                        ..
                    }))
                )
            })
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
        let bm25 = |r: &trib_attribution::SpanRow| {
            relevance
                .get(&(r.occurrence.shard, r.occurrence.document))
                .copied()
                .unwrap_or(0.0)
        };
        let mut out: Vec<SpanView> = trace
            .spans
            .iter()
            .map(|s| {
                let mut rows: Vec<&trib_attribution::SpanRow> = s.rows.iter().collect();
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

/// One row holding a traced span, for display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SpanRowView {
    pub(crate) row_hash: RowHash,
    pub(crate) contribution: ContributionId,
    pub(crate) contributor: Address,
    /// Who is credited for this row (the first contributor of identical rows).
    pub(crate) credited_contribution: ContributionId,
    pub(crate) credited_contributor: Address,
    pub(crate) credit_micros: u64,
    /// BM25 relevance of the row to the prompt and answer (display order:
    /// the most relevant rows of a span are shown first).
    pub(crate) bm25: f64,
    /// The span with some row context, decoded; `None` for rows of a
    /// permissioned datanet (traces are shown to any caller).
    pub(crate) snippet: Option<String>,
}

/// One traced span, for display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SpanView {
    pub(crate) text: String,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) count: u64,
    pub(crate) log_prob_micros: i64,
    pub(crate) rows_total: usize,
    pub(crate) rows: Vec<SpanRowView>,
}

/// The trace of one answer: the sealed evidence and what to show.
#[derive(Debug, Clone)]
pub(crate) struct AnswerTrace {
    /// The datanet versions traced against.
    pub(crate) versions: Vec<(DatanetId, u32)>,
    /// The thresholds.
    pub(crate) params: TraceParams,
    /// Answer length in tokens.
    pub(crate) tokens: usize,
    /// The runs of answer words masked because the prompt holds them,
    /// decoded; `None` when traced without a prompt.
    pub(crate) masked_words: Option<Vec<String>>,
    /// The evidence (its hash goes into the receipt).
    pub(crate) evidence: AttributionEvidence,
    /// Kept spans, rarest first.
    pub(crate) spans: Vec<SpanView>,
    /// How long the trace took (index opening included).
    pub(crate) elapsed: Duration,
}

impl AnswerTrace {
    /// The receipt method.
    pub(crate) fn method(&self) -> &'static str {
        if self.evidence.weights.is_empty() {
            FALLBACK_METHOD
        } else {
            TOKEN_METHOD
        }
    }

    /// The ledger weights: parts per billion per contribution.
    pub(crate) fn ledger_weights(&self) -> Vec<(ContributionId, u64)> {
        self.evidence
            .weights
            .iter()
            .map(|w| (w.contribution, w.weight))
            .collect()
    }

    /// The compact `attribution` field of a response: method, the `top`
    /// rarest spans with up to three rows each, and the weights.
    pub(crate) fn view(&self, top: usize) -> serde_json::Value {
        let reason = if !self.evidence.weights.is_empty() {
            None
        } else if self.versions.is_empty() {
            Some("the model has no datanet version to trace against: the ledger's fallback rule applies")
        } else {
            Some("no span of the answer cleared the thresholds: the contributors' share goes to the adapter's datanets pro rata by rows")
        };
        serde_json::json!({
            "method": self.method(),
            "fallback": self.evidence.weights.is_empty(),
            "reason": reason,
            "datanets": self.versions.iter().map(|(d, v)| format!("{d}@{v}")).collect::<Vec<_>>(),
            "index_versions": self.evidence.index_versions,
            "answer_tokens": self.tokens,
            "prompt_masked": self.masked_words.is_some(),
            "masked_tokens": self.evidence.prompt.as_ref().map_or(0, |p| p.masked.iter().map(|(a, b)| b - a).sum::<u32>()),
            "masked_words": self.masked_words,
            "prompt_hash": self.evidence.prompt.as_ref().map(|p| p.prompt_hash),
            "spans_total": self.spans.len(),
            "spans": self.spans.iter().take(top).collect::<Vec<_>>(),
            "contributions": self.evidence.weights.iter().map(|w| serde_json::json!({
                "contribution": w.contribution,
                "contributor": w.contributor,
                "weight_ppb": w.weight,
            })).collect::<Vec<_>>(),
            "thresholds": self.evidence.thresholds,
            "evidence_hash": self.evidence.evidence_hash,
            "trace_ms": self.elapsed.as_secs_f64() * 1e3,
        })
    }
}

/// Starts the eager indexer: it indexes every published version not yet
/// indexed at once, then again every `interval` (so a newly published
/// version is indexed within one interval), until `stop` turns true. The
/// builds run on the blocking pool, never on the runtime's workers.
pub(crate) fn spawn_indexer(
    catalog: Arc<IndexCatalog>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let c = catalog.clone();
            match tokio::task::spawn_blocking(move || c.index_missing()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(target: "trib::attribution", built = n, "indexed newly published versions")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(target: "trib::attribution", error = %e, "indexer task failed");
                    return;
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    //! The catalog on a real node home (tiny model, in-process ledger and
    //! datanet store), and the world the serving tests settle answers in.

    use super::*;
    use crate::config::NodeConfig;
    use crate::home::{InitOptions, NodeHome};
    use crate::serving::Serving;
    use trib_client::wire::CreateDatanetRequest;
    use trib_ledger::{Action, CurationMode, DataType, Transaction, Visibility};
    use trib_types::{AdapterId, Amount, SecretKey};

    /// A sentence no other row holds: an answer quoting it must pay alice.
    pub(crate) const DISTINCTIVE: &str = "The quokka orchestra rehearses beneath the violet lighthouse every second Tuesday of the month.";

    pub(crate) fn alice_file() -> String {
        format!(
            "{DISTINCTIVE} Its conductor insists that every musician brings a lantern, a spare reed and a thermos of nettle tea to the cliff top before the tide turns.\n\n\
             Our village keeps a ledger of every storm since the harbour wall was rebuilt, and the older fishermen still argue about which winter brought the worst of the gales ashore."
        )
    }

    fn bob_file() -> String {
        // Bob re-uploads alice's paragraph (rejected as a duplicate at
        // validation) next to a paragraph of his own.
        format!(
            "{DISTINCTIVE} Its conductor insists that every musician brings a lantern, a spare reed and a thermos of nettle tea to the cliff top before the tide turns.\n\n\
             Copper kettles hang above the bakery door in the square, and the baker polishes them each Sunday while the bread cools on racks by the open window."
        )
    }

    /// A node home with the tiny model served, an in-process ledger that
    /// produces a block per call, and the datanet service.
    pub(crate) struct World {
        _dir: tempfile::TempDir,
        pub(crate) home: NodeHome,
        pub(crate) chain: Arc<Chain>,
        pub(crate) datanets: Arc<DatanetService>,
        pub(crate) serving: Arc<Serving>,
        pub(crate) producer: SecretKey,
        pub(crate) alice: SecretKey,
        pub(crate) bob: SecretKey,
        pub(crate) carol: SecretKey,
    }

    /// What [`World::publish_and_register`] made.
    pub(crate) struct Published {
        pub(crate) datanet: DatanetId,
        pub(crate) alice_contribution: ContributionId,
        pub(crate) bob_contribution: ContributionId,
    }

    impl World {
        pub(crate) fn new() -> World {
            Self::serving(None)
        }

        /// Carol pays for `answer` to `prompt` from `model`; after the next
        /// block, the stored answer and its committed ledger receipt.
        pub(crate) fn settle(
            &self,
            model: &str,
            prompt: &str,
            answer: &str,
        ) -> (crate::serving::StoredAnswer, trib_ledger::InferenceReceipt) {
            use crate::serving::{answer_path, receipts_dir, AnswerToSettle};
            let target = self.serving.resolve(model).unwrap().unwrap();
            let done = self
                .serving
                .settle_answer(AnswerToSettle {
                    payer: self.carol.address(),
                    target: &target,
                    model,
                    prompt,
                    answer,
                    prompt_tokens: 20,
                    completion_tokens: 40,
                })
                .unwrap();
            self.block();
            let receipt = self
                .chain
                .ledger()
                .receipt(&done.settled.receipt)
                .unwrap()
                .expect("the settlement committed");
            let stored = serde_json::from_slice(
                &std::fs::read(answer_path(&receipts_dir(&self.home), &receipt.id)).unwrap(),
            )
            .unwrap();
            (stored, receipt)
        }

        /// A world serving `model` (`None`: a tiny random model).
        fn serving(model: Option<PathBuf>) -> World {
            let dir = tempfile::tempdir().unwrap();
            let model = model.unwrap_or_else(|| {
                let tiny = dir.path().join("tiny.gguf");
                trib_model::write_tiny_gguf(
                    &tiny,
                    &trib_model::TinySpec::default(),
                    11,
                    trib_model::GgmlDType::Q8_0,
                )
                .unwrap();
                tiny
            });
            let root = dir.path().join("home");
            let config = NodeConfig {
                base_model: Some(model),
                ..NodeConfig::default()
            };
            NodeHome::init(
                &root,
                InitOptions {
                    dev: true,
                    config: config.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            let home = NodeHome::new(&root);
            let genesis = home.load_genesis().unwrap();
            let producer = home.load_producer(&config, &genesis).unwrap();
            let chain = Arc::new(Chain::new(
                home.open_ledger().unwrap(),
                &genesis,
                producer.clone(),
                1_000,
            ));
            let datanets =
                Arc::new(DatanetService::open(&home.datanets_dir(), chain.clone()).unwrap());
            let serving = Serving::start(&home, &config, chain.clone(), datanets.clone())
                .unwrap()
                .unwrap();
            World {
                _dir: dir,
                home,
                chain,
                datanets,
                serving,
                producer,
                alice: SecretKey::from_seed([21; 32]),
                bob: SecretKey::from_seed([22; 32]),
                carol: SecretKey::from_seed([23; 32]),
            }
        }

        /// Signs `action` by `key`, submits it and commits a block with it.
        pub(crate) fn commit(&self, key: &SecretKey, action: Action) {
            self.submit(key, action);
            self.block();
        }

        pub(crate) fn submit(&self, key: &SecretKey, action: Action) {
            let nonce = self.chain.account(&key.address()).unwrap().next_nonce;
            let stx = Transaction {
                chain_id: self.home.load_genesis().unwrap().chain_id,
                sender: key.public_key(),
                nonce,
                fee: self.chain.ledger().params().unwrap().min_fee,
                action,
            }
            .sign(key);
            self.chain.submit(stx).unwrap();
        }

        pub(crate) fn block(&self) {
            let o = self.chain.produce_block().unwrap();
            assert!(o.rejected.is_empty(), "{:?}", o.rejected);
        }

        /// Creates datanet `name` (owner: the producer), contributes each
        /// `(key, file, text)` in order, accepts them all and publishes v1;
        /// returns the datanet and the contribution ids in order.
        pub(crate) fn publish_datanet(
            &self,
            name: &str,
            files: &[(&SecretKey, &str, String)],
        ) -> (DatanetId, Vec<ContributionId>) {
            self.publish_datanet_as(name, Visibility::Public, files)
        }

        /// [`World::publish_datanet`] with the given visibility.
        pub(crate) fn publish_datanet_as(
            &self,
            name: &str,
            visibility: Visibility,
            files: &[(&SecretKey, &str, String)],
        ) -> (DatanetId, Vec<ContributionId>) {
            let created = self
                .datanets
                .create(CreateDatanetRequest {
                    owner: self.producer.address(),
                    name: name.into(),
                    description: "village facts".into(),
                    tags: vec![],
                    data_type: DataType::Text,
                    curation: CurationMode::OwnerApproval,
                    stake_per_contribution: Amount::open(1),
                    visibility,
                })
                .unwrap();
            self.commit(&self.producer, created.action);
            let mut ids = Vec::new();
            for (key, file, text) in files {
                let r = self
                    .datanets
                    .contribute(name, key.address(), file, None, None, text.as_bytes())
                    .unwrap();
                ids.push(r.report.contribution);
                self.commit(key, r.action.expect("contribution accepted at validation"));
            }
            for c in &ids {
                self.submit(
                    &self.producer,
                    Action::Curate {
                        contribution: *c,
                        accept: true,
                        reason: "on topic".into(),
                    },
                );
            }
            self.block();
            let plan = self.datanets.plan_publish(name).unwrap();
            self.commit(&self.producer, plan.action);
            (created.id, ids)
        }

        /// Registers the served base model once, then adapter `name`
        /// trained on `datanets`.
        pub(crate) fn register_adapter(&self, name: &str, datanets: Vec<(DatanetId, u32)>) {
            let info = crate::models::describe_model(
                self.home
                    .load_config()
                    .unwrap()
                    .base_model
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            if self.chain.ledger().base_model(&info.id).unwrap().is_none() {
                self.commit(
                    &self.producer,
                    Action::RegisterBaseModel {
                        model: info.id,
                        name: info.name,
                        architecture: "llama".into(),
                        licence: "Apache-2.0".into(),
                    },
                );
            }
            self.commit(
                &self.producer,
                Action::RegisterAdapter {
                    adapter: AdapterId(Hash::of(name.as_bytes())),
                    base: info.id,
                    name: name.into(),
                    datanets,
                    config_hash: Hash::of(b"config"),
                    metrics_hash: Hash::of(b"metrics"),
                    price_in_per_1k: Amount::parse_open("0.002").unwrap(),
                    price_out_per_1k: Amount::parse_open("0.004").unwrap(),
                },
            );
        }

        /// Funds alice, bob and carol, publishes datanet `facts` v1 from
        /// alice's file and bob's partly duplicated one, registers the base
        /// model and an adapter `facts-lora` trained on `facts@1`, and lets
        /// carol pay the operator.
        pub(crate) fn publish_and_register(&self) -> Published {
            for k in [&self.alice, &self.bob, &self.carol] {
                self.submit(
                    &self.producer,
                    Action::Transfer {
                        to: k.address(),
                        amount: Amount::open(100),
                    },
                );
            }
            self.block();
            let (datanet, ids) = self.publish_datanet(
                "facts",
                &[
                    (&self.alice, "alice.txt", alice_file()),
                    (&self.bob, "bob.txt", bob_file()),
                ],
            );
            self.register_adapter("facts-lora", vec![(datanet, 1)]);
            self.commit(
                &self.carol,
                Action::ApproveOperator {
                    operator: self.producer.address(),
                    allowance: Amount::open(10),
                },
            );
            Published {
                datanet,
                alice_contribution: ids[0],
                bob_contribution: ids[1],
            }
        }

        fn catalog(&self) -> &IndexCatalog {
            &self.serving.catalog
        }

        /// A second catalog over the same home, as after a restart.
        fn fresh_catalog(&self, tokens: Tokens) -> IndexCatalog {
            IndexCatalog::new(
                self.home.root().join("indexes"),
                self.datanets.clone(),
                self.chain.clone(),
                Arc::new(tokens),
            )
        }

        fn tokens(&self) -> Tokens {
            Tokens::new(self.catalog().tokens.model.clone()).unwrap()
        }
    }

    #[test]
    fn an_index_is_built_once_then_served_from_disk() {
        let w = World::new();
        let p = w.publish_and_register();
        let dir = w.catalog().ensure(&p.datanet, 1).unwrap();
        assert_eq!(w.catalog().builds(), 1);
        assert_eq!(
            dir,
            w.home
                .root()
                .join("indexes")
                .join(p.datanet.to_string())
                .join("1")
        );
        for f in INDEX_FILES.iter().chain([&CHECKSUMS]) {
            assert!(dir.join(f).is_file(), "{f}");
        }
        // Same process: no rebuild.
        w.catalog().ensure(&p.datanet, 1).unwrap();
        assert_eq!(w.catalog().builds(), 1);
        // A restarted node finds it on disk, checks it and builds nothing.
        let again = w.fresh_catalog(w.tokens());
        again.ensure(&p.datanet, 1).unwrap();
        assert_eq!(again.builds(), 0);
        // Rows carry contribution and contributor; alice's rows come first.
        let index = SuffixIndex::open(&dir).unwrap();
        let rows: Vec<RowProvenance> = (0..index.documents()).map(|d| index.row(d)).collect();
        assert_eq!(rows.len(), 3, "alice's two rows and bob's own row");
        assert_eq!(rows[0].contributor, w.alice.address());
        assert_eq!(rows[0].contribution, p.alice_contribution);
        assert!(rows.windows(2).all(|r| r[0].first_seen < r[1].first_seen));
        assert_eq!(rows[2].contributor, w.bob.address());
        assert_eq!(index.manifest().tokenizer_hash, w.catalog().tokens().hash());
    }

    #[test]
    fn the_eager_indexer_builds_every_published_version_once() {
        let w = World::new();
        let p = w.publish_and_register();
        assert_eq!(w.catalog().index_missing(), 1);
        assert_eq!(w.catalog().index_missing(), 0);
        assert!(w.catalog().dir(&p.datanet, 1).join(CHECKSUMS).is_file());
    }

    #[tokio::test]
    async fn a_version_published_while_the_node_runs_is_indexed_in_the_background() {
        let w = World::new();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let catalog = w.serving.catalog.clone();
        let task = spawn_indexer(catalog.clone(), Duration::from_millis(20), stop);
        // Nothing is published yet; publishing runs on the blocking pool
        // while the indexer keeps polling.
        let p = tokio::task::spawn_blocking(move || {
            let p = w.publish_and_register();
            (w, p)
        });
        let (w, p) = p.await.unwrap();
        let ready = w.catalog().dir(&p.datanet, 1).join(CHECKSUMS);
        let mut polls = 0;
        while !ready.is_file() {
            polls += 1;
            assert!(polls < 1_000, "the indexer did not index facts@1");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        // The answer-time path finds it built: no second build.
        let before = w.catalog().builds();
        w.catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                DISTINCTIVE,
                &TraceParams::default(),
            )
            .unwrap();
        assert_eq!(w.catalog().builds(), before);
        assert_eq!(before, 1);
    }

    #[test]
    fn a_different_tokenizer_triggers_a_rebuild() {
        let w = World::new();
        let p = w.publish_and_register();
        w.catalog().ensure(&p.datanet, 1).unwrap();
        let mut other = w.tokens();
        other.hash = Hash::of(b"another tokenizer");
        let c = w.fresh_catalog(other);
        let dir = c.ensure(&p.datanet, 1).unwrap();
        assert_eq!(c.builds(), 1);
        let m = SuffixIndex::open(&dir).unwrap();
        assert_eq!(m.manifest().tokenizer_hash, Hash::of(b"another tokenizer"));
    }

    #[test]
    fn corrupted_or_half_written_index_files_are_rebuilt_not_trusted() {
        let w = World::new();
        let p = w.publish_and_register();
        let dir = w.catalog().ensure(&p.datanet, 1).unwrap();
        let good = SuffixIndex::open(&dir).unwrap().manifest().content_hash;
        type Damage = (&'static str, fn(&Path));
        let damage: [Damage; 4] = [
            ("table.0", |f| {
                let mut b = std::fs::read(f).unwrap();
                b[0] ^= 0xff;
                std::fs::write(f, b).unwrap();
            }),
            ("tokenized.0", |f| {
                let b = std::fs::read(f).unwrap();
                std::fs::write(f, &b[..b.len() / 2]).unwrap();
            }),
            ("manifest.json", |f| {
                std::fs::write(f, b"{ not json").unwrap()
            }),
            (CHECKSUMS, |f| std::fs::remove_file(f).unwrap()),
        ];
        for (file, hurt) in damage {
            hurt(&dir.join(file));
            let c = w.fresh_catalog(w.tokens());
            let problem = c.check(&dir).unwrap_err();
            assert!(!problem.is_empty(), "{file}");
            c.ensure(&p.datanet, 1).unwrap();
            assert_eq!(c.builds(), 1, "{file} was not rebuilt");
            assert_eq!(
                SuffixIndex::open(&dir).unwrap().manifest().content_hash,
                good
            );
        }
    }

    #[test]
    fn an_unpublished_version_is_a_clear_error_and_leaves_no_directory() {
        let w = World::new();
        let p = w.publish_and_register();
        let err = w.catalog().ensure(&p.datanet, 2).unwrap_err();
        assert!(err.to_string().contains("not published"), "{err}");
        assert!(!w.catalog().dir(&p.datanet, 2).exists());
    }

    #[test]
    fn a_quoted_sentence_is_traced_to_its_first_contributor() {
        let w = World::new();
        let p = w.publish_and_register();
        let t = w
            .catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                &format!("As the notes say: {DISTINCTIVE}"),
                &TraceParams::default(),
            )
            .unwrap();
        assert_eq!(t.method(), TOKEN_METHOD);
        assert!(!t.spans.is_empty());
        let paid: Vec<Address> = t.evidence.weights.iter().map(|w| w.contributor).collect();
        assert_eq!(paid, vec![w.alice.address()]);
        assert_eq!(
            t.ledger_weights(),
            vec![(p.alice_contribution, 1_000_000_000)]
        );
        assert!(t.spans[0].rows[0]
            .snippet
            .as_deref()
            .unwrap()
            .contains("quokka"));
        // Text with no rare span: no weights, the fallback, and it says why.
        let none = w
            .catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                "Nothing here matches at all, friend.",
                &TraceParams::default(),
            )
            .unwrap();
        assert_eq!(none.method(), FALLBACK_METHOD);
        assert!(none.view(5)["reason"]
            .as_str()
            .unwrap()
            .contains("thresholds"));
        // No datanet (the base model alone): the fallback.
        let base = w
            .catalog()
            .trace(&[], None, DISTINCTIVE, &TraceParams::default())
            .unwrap();
        assert_eq!(base.method(), FALLBACK_METHOD);
        assert!(base.view(5)["reason"]
            .as_str()
            .unwrap()
            .contains("no datanet"));
    }

    #[test]
    fn rows_of_a_permissioned_datanet_are_credited_but_their_text_is_not_shown() {
        let w = World::new();
        let p = w.publish_and_register();
        let secret = "The keeper's private almanac lists nineteen hidden coves between the basalt cape and the reed estuary.";
        let (private, ids) = w.publish_datanet_as(
            "almanac",
            Visibility::Permissioned,
            &[(&w.producer, "almanac.txt", secret.to_string())],
        );
        let t = w
            .catalog()
            .trace(
                &[(p.datanet, 1), (private, 1)],
                None,
                &format!("{DISTINCTIVE} Also, {secret}"),
                &TraceParams::default(),
            )
            .unwrap();
        let paid: Vec<ContributionId> = t.ledger_weights().iter().map(|w| w.0).collect();
        assert!(
            paid.contains(&ids[0]) && paid.contains(&p.alice_contribution),
            "{paid:?}"
        );
        let rows: Vec<&SpanRowView> = t.spans.iter().flat_map(|s| &s.rows).collect();
        let (hidden, shown): (Vec<&SpanRowView>, Vec<&SpanRowView>) =
            rows.iter().copied().partition(|r| r.contribution == ids[0]);
        assert!(!hidden.is_empty() && !shown.is_empty(), "{rows:?}");
        assert!(hidden.iter().all(|r| r.snippet.is_none()), "{hidden:?}");
        assert!(shown.iter().all(|r| r.snippet.is_some()), "{shown:?}");
        // The response shows the span (the answer's own words) and who is
        // credited, never the row's text around it.
        let v = t.view(10);
        let shown_rows: Vec<&serde_json::Value> = v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["rows"].as_array().unwrap())
            .filter(|r| r["contribution"] == serde_json::json!(ids[0]))
            .collect();
        assert!(!shown_rows.is_empty());
        assert!(shown_rows.iter().all(|r| r["snippet"].is_null()), "{v}");
    }

    #[test]
    fn the_rows_shown_for_a_span_are_ordered_by_bm25_relevance_to_the_prompt_and_answer() {
        // Six rows open with the same formula; only one names the mason.
        let w = World::new();
        let p = w.publish_and_register();
        const FORMULA: &str = "By order of the harbour council of the old town";
        // Distinct rows of over 200 bytes (shorter ones merge with the next
        // paragraph, near-identical ones are rejected as duplicates).
        let jobs = [
            ("potter", "glazes the blue jugs before the fair, then stacks them in straw crates that the carters take inland on the first dry morning of April"),
            ("smith", "sharpens the boat hooks and forges new hinges for the chapel gate, charging the vestry in eggs and firewood rather than coin"),
            ("mason", "repairs the sea wall near the dolphins' cove, setting each granite block by hand and testing the mortar with a thumbnail"),
            ("weaver", "mends the nets in the loft above the chandlery, humming ballads her grandmother learned from sailors out of Brittany"),
            ("miller", "grinds the winter oats at the tide mill and sends the bran to the piggery on the hill above the churchyard lane"),
            ("cooper", "hoops the herring barrels in the yard behind the inn and marks each one with a hot iron shaped like an anchor"),
        ];
        let text: Vec<String> = jobs
            .iter()
            .map(|(who, what)| {
                format!("{FORMULA}, the {who} {what}. Ask for the {who} at the office.")
            })
            .collect();
        let (orders, _) = w.publish_datanet("orders", &[(&w.bob, "orders.txt", text.join("\n\n"))]);
        let rows = w.datanets.index_rows(&orders, 1).unwrap();
        assert_eq!(rows.len(), jobs.len());
        let mason = rows.iter().find(|r| r.text.contains("mason")).unwrap().row;
        let versions = [(p.datanet, 1), (orders, 1)];
        let params = TraceParams::default();
        // No prompt: the answer's own words are the BM25 query.
        let t = w
            .catalog()
            .trace(
                &versions,
                None,
                &format!("{FORMULA}, and it is the mason who keeps the sea wall."),
                &params,
            )
            .unwrap();
        let span = t
            .spans
            .iter()
            .find(|s| s.count == jobs.len() as u64)
            .expect("the formula is a span of every row");
        assert_eq!(span.rows_total, jobs.len());
        assert_eq!(span.rows[0].row_hash, mason, "{:?}", span.rows);
        assert!(span.rows[0].bm25 > span.rows[1].bm25, "{:?}", span.rows);
        assert!(span.rows.windows(2).all(|r| r[0].bm25 >= r[1].bm25));
        // With a question about the potter, the potter's row comes first.
        let potter = rows.iter().find(|r| r.text.contains("potter")).unwrap().row;
        let t = w
            .catalog()
            .trace(
                &versions,
                Some("What does the potter glaze?"),
                &format!("{FORMULA}, blue jugs."),
                &params,
            )
            .unwrap();
        let span = t
            .spans
            .iter()
            .find(|s| s.count == jobs.len() as u64)
            .expect("the formula is a span of every row");
        assert_eq!(span.rows[0].row_hash, potter, "{:?}", span.rows);
    }

    /// The trace latency per answer on the demo data (the Constitution and
    /// Declaration fixtures, SmolLM2's tokenizer), recorded in
    /// `docs/attribution.md`: `cargo test -p trib-node --lib
    /// trace_latency_on_the_demo_data -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: needs the SmolLM2 file, prints timings"]
    fn trace_latency_on_the_demo_data() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        let Ok(model) = trib_model::locate_smollm2(&models) else {
            eprintln!(
                "SKIPPED: no SmolLM2 file in {} (scripts/fetch-model.sh)",
                models.display()
            );
            return;
        };
        let w = World::serving(Some(model));
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datanet/tests/fixtures");
        let constitution = std::fs::read_to_string(fixtures.join("constitution.txt")).unwrap();
        let declaration = std::fs::read_to_string(fixtures.join("declaration.md")).unwrap();
        w.commit(
            &w.producer,
            Action::Transfer {
                to: w.alice.address(),
                amount: Amount::open(100),
            },
        );
        let created = w
            .datanets
            .create(CreateDatanetRequest {
                owner: w.producer.address(),
                name: "founding".into(),
                description: "demo data".into(),
                tags: vec![],
                data_type: DataType::Text,
                curation: CurationMode::OwnerApproval,
                stake_per_contribution: Amount::open(1),
                visibility: Visibility::Public,
            })
            .unwrap();
        w.commit(&w.producer, created.action);
        let mut ids = Vec::new();
        for (file, text) in [
            ("constitution.txt", &constitution),
            ("declaration.md", &declaration),
        ] {
            let r = w
                .datanets
                .contribute(
                    "founding",
                    w.alice.address(),
                    file,
                    None,
                    None,
                    text.as_bytes(),
                )
                .unwrap();
            ids.push(r.report.contribution);
            w.commit(&w.alice, r.action.unwrap());
        }
        for c in ids {
            w.commit(
                &w.producer,
                Action::Curate {
                    contribution: c,
                    accept: true,
                    reason: "ok".into(),
                },
            );
        }
        let plan = w.datanets.plan_publish("founding").unwrap();
        w.commit(&w.producer, plan.action);
        let build = Instant::now();
        let dir = w.catalog().ensure(&created.id, 1).unwrap();
        let build = build.elapsed();
        let m = SuffixIndex::open(&dir).unwrap().manifest().clone();
        // Answers: 64-token windows of the fixtures with a sentence of
        // filler in front (what a quoting answer looks like), and the same
        // count of windows of unrelated text.
        let toks = w.catalog().tokens().encode(&constitution).unwrap();
        let mut answers = Vec::new();
        for i in 0..40 {
            let at = (i * 97) % toks.len().saturating_sub(64).max(1);
            answers.push(format!(
                "Here is the text: {}",
                w.catalog().tokens().decode(&toks[at..at + 64])
            ));
        }
        for i in 0..40 {
            answers.push(format!("Answer {i}: the weather was mild, the trains ran late and nobody in the office could find the stapler before lunch."));
        }
        // The first 40 answers quote; the last 40 do not. Each answer is
        // traced as OLMoTrace's defaults would (no prompt, spans ≥ 4) and as
        // a paid answer is (its question's words masked, spans ≥ 2).
        let questions = [
            "What does the US Constitution say? Quote a passage.",
            "How was the day at the office?",
        ];
        let configs: [(&str, TraceParams, bool); 2] = [
            (
                "OLMoTrace defaults, no prompt",
                TraceParams::default(),
                false,
            ),
            (
                "answer time: prompt masked, spans >= 2 holding a letter",
                answer_trace_params(),
                true,
            ),
        ];
        for (label, params, masked) in configs {
            let mut times = Vec::new();
            let (mut quoting, mut unrelated, mut credited_unrelated) = (0, 0, 0);
            let cpu = cpu_seconds();
            for (i, a) in answers.iter().enumerate() {
                let q = questions[usize::from(i >= 40)];
                let t = w
                    .catalog()
                    .trace(&[(created.id, 1)], masked.then_some(q), a, &params)
                    .unwrap();
                if i < 40 {
                    quoting += t.spans.len();
                } else {
                    unrelated += t.spans.len();
                    credited_unrelated += usize::from(!t.evidence.weights.is_empty());
                }
                times.push(t.elapsed);
            }
            let cpu = cpu_seconds() - cpu;
            times.sort();
            let median = times[times.len() / 2];
            let p90 = times[times.len() * 9 / 10];
            eprintln!(
                "[{label}] index: {} rows, {} tokens, built in {:.1} ms; trace over {} answers (~64-75 tokens): median {:.2} ms, p90 {:.2} ms, max {:.2} ms; spans kept: {quoting} over the 40 quoting answers, {unrelated} over the 40 unrelated ones ({credited_unrelated} of them credited someone); {:.3} CPU-s in total (1 thread)",
                m.documents, m.tokens, build.as_secs_f64() * 1e3, answers.len(),
                median.as_secs_f64() * 1e3, p90.as_secs_f64() * 1e3,
                times.last().unwrap().as_secs_f64() * 1e3, cpu
            );
            assert!(quoting > 0, "the quoting answers hold spans");
        }
    }

    /// User plus system CPU seconds of this process (Linux `/proc`).
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }
}
