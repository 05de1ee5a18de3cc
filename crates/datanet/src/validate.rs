//! Validation: a contributed file → rows, each accepted or rejected with a
//! reason, plus a verdict for the contribution.
//!
//! The order of checks (also in `docs/datanets.md`):
//!
//! 1. contribution: file size, then quotas (files per contributor per day,
//!    bytes per contributor per day, bytes per datanet per day);
//! 2. contribution: file type (declared vs content), and that the datanet's
//!    data type takes it;
//! 3. contribution: parsing (UTF-8, binary, line length, JSON, CSV column,
//!    PDF, DOCX and zip limits), then chunking into rows;
//! 4. each row, first failing check wins: shape matches the data type, size,
//!    exact duplicate within the contribution, exact duplicate in the datanet
//!    (pending and published rows, every version), near duplicate (MinHash/LSH
//!    against the datanet and the earlier rows of this contribution), quality
//!    score below the datanet's minimum;
//! 5. contribution: no rows → rejected; no row accepted and every rejection a
//!    duplicate → rejected as all duplicates; no row accepted → rejected;
//!    otherwise accepted with the accepted rows only.
//!
//! Validation is pure: quota usage and the dedup index come from the caller,
//! nothing is written anywhere.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use trib_types::{Address, ContributionId, DatanetId, Hash, RowHash};

use crate::descriptor::{accepts, Datanet};
use crate::error::{DatanetError, ParseFailure};
use crate::minhash::{LshIndex, MinHashParams, MinHashSignature, MinHasher};
use crate::parse::{detect_kind, parse_units, units_to_rows, FileKind, ParseLimits, SourceFile};
use crate::quality::{quality_score, QualityScore};
use crate::row::RowContent;
use crate::version::{canonical_order, merkle_root, VersionLeaf};
use trib_types::DataType;

/// What the contributor (and the datanet) already used today. The caller
/// (ledger or node) owns the counters and the day boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QuotaUsage {
    /// Bytes this contributor uploaded to this datanet today.
    pub contributor_bytes_today: u64,
    /// Files this contributor uploaded to this datanet today.
    pub contributor_files_today: u32,
    /// Bytes the datanet accepted today, all contributors.
    pub datanet_bytes_today: u64,
}

/// The rows a datanet already holds (pending and published), for duplicate
/// detection. [`crate::DatanetStore`] implements it persistently and
/// [`MemoryDedupIndex`] in memory.
pub trait DedupIndex {
    /// Whether a row with this hash is pending or published in the datanet.
    fn contains_row(&self, row: &RowHash) -> Result<bool, DatanetError>;
    /// Among the rows sharing at least one LSH band key with `band_keys`,
    /// the most similar to `sig` whose estimated similarity (basis points,
    /// [`MinHasher::similarity_bp`]) is at least `threshold_bp`.
    fn nearest(
        &self,
        hasher: &MinHasher,
        sig: &MinHashSignature,
        band_keys: &[u64],
        threshold_bp: u16,
    ) -> Result<Option<(RowHash, u16)>, DatanetError>;
}

/// An in-memory [`DedupIndex`].
#[derive(Debug, Default, Clone)]
pub struct MemoryDedupIndex {
    rows: HashSet<RowHash>,
    lsh: LshIndex,
}

impl MemoryDedupIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the accepted rows of a validated contribution.
    pub fn add(&mut self, validated: &ValidatedContribution) {
        for r in &validated.rows {
            self.rows.insert(r.row_hash);
            if let Some(sig) = &r.signature {
                self.lsh.insert(r.row_hash, sig.clone(), &r.band_keys);
            }
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl DedupIndex for MemoryDedupIndex {
    fn contains_row(&self, row: &RowHash) -> Result<bool, DatanetError> {
        Ok(self.rows.contains(row))
    }
    fn nearest(
        &self,
        hasher: &MinHasher,
        sig: &MinHashSignature,
        band_keys: &[u64],
        threshold_bp: u16,
    ) -> Result<Option<(RowHash, u16)>, DatanetError> {
        Ok(self.lsh.nearest(hasher, sig, band_keys, threshold_bp))
    }
}

/// Which quota was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    /// Files per contributor per day.
    ContributorFilesPerDay,
    /// Bytes per contributor per day.
    ContributorBytesPerDay,
    /// Bytes per datanet per day.
    DatanetBytesPerDay,
}

/// Why a whole contribution was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ContributionRejection {
    /// The file is over the datanet's per-file limit.
    #[error("file is {bytes} bytes, over the datanet's limit of {max}")]
    FileTooLarge {
        /// File size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// Accepting the file would pass a quota.
    #[error("quota {quota:?} exceeded: {used} used + {adding} > {limit}")]
    QuotaExceeded {
        /// Which quota.
        quota: QuotaKind,
        /// Already used today.
        used: u64,
        /// What this file adds.
        adding: u64,
        /// The limit.
        limit: u64,
    },
    /// The file could not be parsed.
    #[error("{file}{}: {failure}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Unparseable {
        /// File name.
        file: String,
        /// 1-based line (record, page), when known.
        line: Option<u64>,
        /// What is wrong.
        failure: ParseFailure,
    },
    /// The datanet's data type does not take this kind of file.
    #[error("a {data_type:?} datanet does not take {kind} files")]
    WrongDataType {
        /// The file kind.
        kind: FileKind,
        /// The datanet's data type.
        data_type: DataType,
    },
    /// The file holds no rows at all.
    #[error("the file holds no rows")]
    NoRows,
    /// Every row is an exact or near duplicate.
    #[error("all {rows} rows are duplicates")]
    AllDuplicates {
        /// Row count.
        rows: u32,
    },
    /// No row passed validation (for reasons other than duplicates only).
    #[error("none of the {rows} rows passed validation")]
    NoAcceptedRows {
        /// Row count.
        rows: u32,
    },
}

impl ContributionRejection {
    /// The machine-readable reason, as the JSON `reason` tag spells it.
    pub fn code(&self) -> &'static str {
        match self {
            ContributionRejection::FileTooLarge { .. } => "file_too_large",
            ContributionRejection::QuotaExceeded { .. } => "quota_exceeded",
            ContributionRejection::Unparseable { .. } => "unparseable",
            ContributionRejection::WrongDataType { .. } => "wrong_data_type",
            ContributionRejection::NoRows => "no_rows",
            ContributionRejection::AllDuplicates { .. } => "all_duplicates",
            ContributionRejection::NoAcceptedRows { .. } => "no_accepted_rows",
        }
    }
}

/// Why one row was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RowRejection {
    /// A record of a shape the datanet's data type does not hold.
    WrongShape {
        /// The record's shape (`text`, `alpaca`, …).
        shape: &'static str,
    },
    /// A record over the maximum row size (text is split instead).
    TooLarge {
        /// Row bytes.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The same row appears earlier in this contribution.
    DuplicateInContribution {
        /// Index of the earlier row.
        of_index: u32,
    },
    /// The row is already pending or published in the datanet.
    DuplicateInDatanet,
    /// The row is a near duplicate of an existing row.
    NearDuplicate {
        /// The most similar row.
        of: RowHash,
        /// Estimated Jaccard similarity, basis points.
        similarity_bp: u16,
    },
    /// The quality score is below the datanet's minimum.
    LowQuality {
        /// The row's score.
        score_bp: u16,
        /// The minimum.
        min_bp: u16,
    },
}

impl RowRejection {
    /// Whether this is an exact or near duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self,
            RowRejection::DuplicateInContribution { .. }
                | RowRejection::DuplicateInDatanet
                | RowRejection::NearDuplicate { .. }
        )
    }
}

/// One row's result, as shown to the contributor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowReport {
    /// 0-based index in the contribution.
    pub index: u32,
    /// 1-based line (record, page) of the file where the row starts.
    pub line: u64,
    /// Content address.
    pub row_hash: RowHash,
    /// `text`, `alpaca`, `prompt_response` or `messages`.
    pub shape: &'static str,
    /// UTF-8 bytes of the row's text.
    pub bytes: u64,
    /// Quality score and components.
    pub quality: QualityScore,
    /// `None` when accepted.
    pub rejection: Option<RowRejection>,
}

/// The result of validating one contribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    /// The datanet.
    pub datanet: DatanetId,
    /// The contribution's id.
    pub contribution: ContributionId,
    /// Who contributed.
    pub contributor: Address,
    /// File name.
    pub file_name: String,
    /// blake3 of the file's bytes (its content-store name).
    pub file_hash: Hash,
    /// File size.
    pub file_bytes: u64,
    /// Detected type, once known.
    pub kind: Option<FileKind>,
    /// Every row, accepted or not.
    pub rows: Vec<RowReport>,
    /// Rows accepted.
    pub rows_accepted: u32,
    /// Rows rejected as exact or near duplicates.
    pub duplicates_rejected: u32,
    /// `None` when the contribution is accepted (with `rows_accepted` rows).
    pub rejection: Option<ContributionRejection>,
    /// Merkle root over the accepted rows (version format, ascending row
    /// hash): the `rows_root` of the ledger's `Contribute` action;
    /// `Hash::ZERO` when rejected.
    pub rows_root: Hash,
}

impl ValidationReport {
    /// Whether the contribution is accepted (for curation).
    pub fn is_accepted(&self) -> bool {
        self.rejection.is_none()
    }
}

/// An accepted row, ready to store and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRow {
    /// Index in the contribution (matches the report).
    pub index: u32,
    /// Content address.
    pub row_hash: RowHash,
    /// The content.
    pub content: RowContent,
    /// MinHash signature (`None` for rows without words).
    pub signature: Option<MinHashSignature>,
    /// LSH band keys of the signature.
    pub band_keys: Vec<u64>,
}

/// A report plus the accepted rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedContribution {
    /// What the contributor sees.
    pub report: ValidationReport,
    /// The accepted rows (empty when rejected).
    pub rows: Vec<ValidatedRow>,
}

impl ValidatedContribution {
    /// The Merkle root over this contribution's accepted rows (also in
    /// [`ValidationReport::rows_root`]).
    pub fn rows_root(&self) -> Hash {
        self.report.rows_root
    }
}

/// The Merkle root over a contribution's accepted rows, in the version
/// format: leaves of (row hash, contributor, contribution) in ascending row
/// hash.
fn rows_root(report: &ValidationReport, rows: &[ValidatedRow]) -> Hash {
    let leaves = canonical_order(
        rows.iter()
            .map(|r| VersionLeaf {
                row_hash: r.row_hash,
                contributor: report.contributor,
                contribution: report.contribution,
            })
            .collect(),
    );
    merkle_root(&leaves.iter().map(VersionLeaf::hash).collect::<Vec<_>>())
}

/// The id of a contribution: a hash of the datanet, the contributor, the
/// file and the contributor's submission sequence in that datanet
/// (`attempt`: how many files this contributor submitted to this datanet
/// before, rejected ones included). The sequence makes a re-submission of
/// the same file after a rejection a new contribution; exact-duplicate rows
/// are still caught by the duplicate check, not by the id.
pub fn contribution_id(
    datanet: &DatanetId,
    contributor: &Address,
    file_hash: &Hash,
    attempt: u64,
) -> ContributionId {
    ContributionId(Hash::domain(
        "tributary contribution id v2",
        &[
            datanet.0.as_bytes(),
            &contributor.0,
            file_hash.as_bytes(),
            &attempt.to_be_bytes(),
        ],
    ))
}

/// Validates contributions. Holds the MinHash permutations, so build one and
/// reuse it.
#[derive(Debug, Clone)]
pub struct Validator {
    hasher: MinHasher,
    /// The node's parser bounds; a datanet's smaller `max_file_bytes`
    /// quota wins over this one's.
    limits: ParseLimits,
    /// Called when parsing starts (tests: hold a parse to show what it
    /// does not block).
    #[cfg(test)]
    pub(crate) on_parse: Option<ParseHook>,
}

/// A test hook run at the start of [`Validator::parse`].
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct ParseHook(pub(crate) std::sync::Arc<dyn Fn() + Send + Sync>);

#[cfg(test)]
impl std::fmt::Debug for ParseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParseHook")
    }
}

/// A contributed file parsed and chunked into rows ([`Validator::parse`]),
/// before any store state is read: the costly step, done outside the
/// store's write lock.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    kind: Option<FileKind>,
    rows: Result<Vec<(u64, RowContent)>, ContributionRejection>,
}

impl Default for Validator {
    fn default() -> Self {
        Validator::new(MinHashParams::default())
    }
}

/// The largest-file check ([`ContributionRejection::FileTooLarge`]).
fn check_file_size(bytes: u64, limits: &ParseLimits) -> Result<(), ContributionRejection> {
    if bytes > limits.max_file_bytes {
        return Err(ContributionRejection::FileTooLarge {
            bytes,
            max: limits.max_file_bytes,
        });
    }
    Ok(())
}

fn check_quota(
    quota: QuotaKind,
    used: u64,
    adding: u64,
    limit: u64,
) -> Result<(), ContributionRejection> {
    match used.checked_add(adding) {
        Some(total) if total <= limit => Ok(()),
        _ => Err(ContributionRejection::QuotaExceeded {
            quota,
            used,
            adding,
            limit,
        }),
    }
}

impl Validator {
    /// A validator with these MinHash parameters.
    pub fn new(params: MinHashParams) -> Self {
        Validator {
            hasher: MinHasher::new(params),
            limits: ParseLimits::default(),
            #[cfg(test)]
            on_parse: None,
        }
    }

    /// This validator with the node's parser bounds (rows per upload, PDF
    /// pages, decompressed bytes, parse time, largest file).
    pub fn with_limits(mut self, limits: ParseLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The bounds a file contributed to `datanet` is parsed under.
    pub fn limits_for(&self, datanet: &Datanet) -> ParseLimits {
        ParseLimits {
            max_file_bytes: self
                .limits
                .max_file_bytes
                .min(datanet.quotas.max_file_bytes),
            ..self.limits
        }
    }

    /// The MinHasher in use.
    pub fn hasher(&self) -> &MinHasher {
        &self.hasher
    }

    /// Validates `file` contributed by `contributor` to `datanet` as the
    /// contributor's first submission there (see [`Validator::validate_nth`]).
    pub fn validate(
        &self,
        datanet: &Datanet,
        contributor: Address,
        file: &SourceFile<'_>,
        quota: &QuotaUsage,
        index: &dyn DedupIndex,
    ) -> Result<ValidatedContribution, DatanetError> {
        self.validate_nth(datanet, contributor, 0, file, quota, index)
    }

    /// Validates `file`, the contributor's submission number `attempt`
    /// (from 0) to `datanet`, which enters its [`contribution_id`]. Returns
    /// an error only when the dedup index fails; every rejection is in the
    /// report.
    pub fn validate_nth(
        &self,
        datanet: &Datanet,
        contributor: Address,
        attempt: u64,
        file: &SourceFile<'_>,
        quota: &QuotaUsage,
        index: &dyn DedupIndex,
    ) -> Result<ValidatedContribution, DatanetError> {
        let parsed = self.parse(datanet, file);
        self.validate_parsed(datanet, contributor, attempt, file, parsed, quota, index)
    }

    /// Steps 1 and 3 without any store state: the file's size, type,
    /// parsing and chunking, under [`Validator::limits_for`] `datanet`.
    /// Pure and possibly slow (a large PDF): the store runs it before it
    /// takes its write lock.
    pub fn parse(&self, datanet: &Datanet, file: &SourceFile<'_>) -> ParsedFile {
        #[cfg(test)]
        if let Some(hook) = &self.on_parse {
            (hook.0)();
        }
        let mut kind = None;
        let rows = self.parse_rows(datanet, file, &mut kind);
        ParsedFile { kind, rows }
    }

    /// [`Validator::validate_nth`] of a file already [`Validator::parse`]d.
    #[allow(clippy::too_many_arguments)]
    pub fn validate_parsed(
        &self,
        datanet: &Datanet,
        contributor: Address,
        attempt: u64,
        file: &SourceFile<'_>,
        parsed: ParsedFile,
        quota: &QuotaUsage,
        index: &dyn DedupIndex,
    ) -> Result<ValidatedContribution, DatanetError> {
        let datanet_id = datanet.id();
        let file_hash = Hash::of(file.bytes);
        let mut report = ValidationReport {
            datanet: datanet_id,
            contribution: contribution_id(&datanet_id, &contributor, &file_hash, attempt),
            contributor,
            file_name: file.name.to_string(),
            file_hash,
            file_bytes: file.bytes.len() as u64,
            kind: None,
            rows: Vec::new(),
            rows_accepted: 0,
            duplicates_rejected: 0,
            rejection: None,
            rows_root: Hash::ZERO,
        };
        let rows = match self.check_file(datanet, file, parsed, quota, &mut report) {
            Ok(rows) => rows,
            Err(rejection) => {
                report.rejection = Some(rejection);
                return Ok(self.finish(report, Vec::new()));
            }
        };
        let accepted = self.check_rows(datanet, rows, index, &mut report)?;
        Ok(self.finish(report, accepted))
    }

    /// Steps 1–3: sizes, quotas, then the parsed file's type and rows.
    fn check_file(
        &self,
        datanet: &Datanet,
        file: &SourceFile<'_>,
        parsed: ParsedFile,
        quota: &QuotaUsage,
        report: &mut ValidationReport,
    ) -> Result<Vec<(u64, RowContent)>, ContributionRejection> {
        let bytes = file.bytes.len() as u64;
        let q = &datanet.quotas;
        check_file_size(bytes, &self.limits_for(datanet))?;
        check_quota(
            QuotaKind::ContributorFilesPerDay,
            quota.contributor_files_today as u64,
            1,
            q.files_per_contributor_per_day as u64,
        )?;
        check_quota(
            QuotaKind::ContributorBytesPerDay,
            quota.contributor_bytes_today,
            bytes,
            q.bytes_per_contributor_per_day,
        )?;
        check_quota(
            QuotaKind::DatanetBytesPerDay,
            quota.datanet_bytes_today,
            bytes,
            q.bytes_per_datanet_per_day,
        )?;
        report.kind = parsed.kind;
        parsed.rows
    }

    /// [`Validator::parse`]: detects the kind, parses, chunks and counts the
    /// rows (`kind` is set once detected).
    fn parse_rows(
        &self,
        datanet: &Datanet,
        file: &SourceFile<'_>,
        kind_out: &mut Option<FileKind>,
    ) -> Result<Vec<(u64, RowContent)>, ContributionRejection> {
        let limits = self.limits_for(datanet);
        check_file_size(file.bytes.len() as u64, &limits)?;
        let unparseable = |e: DatanetError| match e {
            DatanetError::Parse { file, line, reason } => ContributionRejection::Unparseable {
                file,
                line,
                failure: reason,
            },
            other => ContributionRejection::Unparseable {
                file: file.name.to_string(),
                line: None,
                failure: ParseFailure::BadRecord(other.to_string()),
            },
        };
        let kind = detect_kind(file).map_err(unparseable)?;
        *kind_out = Some(kind);
        if !accepts(datanet.data_type, kind) {
            return Err(ContributionRejection::WrongDataType {
                kind,
                data_type: datanet.data_type,
            });
        }
        let units = parse_units(file, kind, &limits).map_err(unparseable)?;
        let rows = units_to_rows(file.name, units, &datanet.chunker(), limits.max_rows)
            .map_err(unparseable)?;
        if rows.is_empty() {
            return Err(ContributionRejection::NoRows);
        }
        Ok(rows)
    }

    /// Step 4: row by row.
    fn check_rows(
        &self,
        datanet: &Datanet,
        rows: Vec<(u64, RowContent)>,
        index: &dyn DedupIndex,
        report: &mut ValidationReport,
    ) -> Result<Vec<ValidatedRow>, DatanetError> {
        let mut seen: HashMap<RowHash, u32> = HashMap::new();
        let mut local = LshIndex::new();
        let mut accepted = Vec::new();
        let max = datanet.rules.max_row_bytes as u64;
        for (i, (line, content)) in rows.into_iter().enumerate() {
            let i = i as u32;
            let row_hash = content.row_hash();
            let text = content.plain_text();
            let quality = quality_score(&text);
            let bytes = content.text_bytes() as u64;
            let mut signature = None;
            let mut band_keys = Vec::new();
            let wants_text = !datanet.data_type.takes_records();
            let rejection = if content.is_text() != wants_text {
                Some(RowRejection::WrongShape {
                    shape: content.shape(),
                })
            } else if bytes > max {
                Some(RowRejection::TooLarge { bytes, max })
            } else if let Some(&of_index) = seen.get(&row_hash) {
                Some(RowRejection::DuplicateInContribution { of_index })
            } else if index.contains_row(&row_hash)? {
                seen.insert(row_hash, i);
                Some(RowRejection::DuplicateInDatanet)
            } else {
                seen.insert(row_hash, i);
                signature = self.hasher.signature(&text);
                match &signature {
                    Some(sig) => {
                        band_keys = self.hasher.band_keys(sig);
                        let threshold = datanet.rules.near_duplicate_bp;
                        let in_datanet = index.nearest(&self.hasher, sig, &band_keys, threshold)?;
                        let in_file = local.nearest(&self.hasher, sig, &band_keys, threshold);
                        // The most similar wins; on a tie, the datanet's row.
                        match (in_datanet, in_file) {
                            (Some(d), Some(f)) if f.1 > d.1 => Some(f),
                            (Some(d), _) => Some(d),
                            (None, f) => f,
                        }
                        .map(|(of, similarity_bp)| {
                            RowRejection::NearDuplicate { of, similarity_bp }
                        })
                    }
                    None => None,
                }
                .or_else(|| {
                    (quality.score_bp < datanet.rules.min_quality_bp).then_some(
                        RowRejection::LowQuality {
                            score_bp: quality.score_bp,
                            min_bp: datanet.rules.min_quality_bp,
                        },
                    )
                })
            };
            match &rejection {
                None => {
                    if let Some(sig) = &signature {
                        local.insert(row_hash, sig.clone(), &band_keys);
                    }
                    report.rows_accepted += 1;
                    accepted.push(ValidatedRow {
                        index: i,
                        row_hash,
                        content: content.clone(),
                        signature,
                        band_keys,
                    });
                }
                Some(r) if r.is_duplicate() => report.duplicates_rejected += 1,
                Some(_) => {}
            }
            report.rows.push(RowReport {
                index: i,
                line,
                row_hash,
                shape: content.shape(),
                bytes,
                quality,
                rejection,
            });
        }
        Ok(accepted)
    }

    /// Step 5: the contribution's verdict.
    fn finish(
        &self,
        mut report: ValidationReport,
        rows: Vec<ValidatedRow>,
    ) -> ValidatedContribution {
        if report.rejection.is_none() && report.rows_accepted == 0 {
            let n = report.rows.len() as u32;
            report.rejection = Some(if report.duplicates_rejected == n {
                ContributionRejection::AllDuplicates { rows: n }
            } else {
                ContributionRejection::NoAcceptedRows { rows: n }
            });
        }
        let rows = if report.rejection.is_some() {
            Vec::new()
        } else {
            rows
        };
        report.rows_root = rows_root(&report, &rows);
        tracing::debug!(
            target: "trib::datanet",
            contribution = %report.contribution,
            file = %report.file_name,
            rows = report.rows.len(),
            accepted = report.rows_accepted,
            duplicates = report.duplicates_rejected,
            rejection = ?report.rejection,
            "validated contribution"
        );
        ValidatedContribution { report, rows }
    }
}
