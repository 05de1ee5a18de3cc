//! The crate's error type.
//!
//! Contribution-level and row-level *rejections* are not errors: they are data
//! in a [`crate::ValidationReport`] shown to the contributor. [`DatanetError`]
//! is for failures of the operation itself (a file that cannot be parsed, an
//! I/O failure, an unknown datanet, a malformed export).

use std::path::PathBuf;

use serde::Serialize;

/// Why a file could not be turned into rows. Carried by
/// [`DatanetError::Parse`] together with the file name and line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParseFailure {
    /// The file is larger than the parser accepts.
    #[error("file is {len} bytes, over the limit of {max}")]
    FileTooLarge {
        /// File size in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The file has no content at all.
    #[error("file is empty")]
    Empty,
    /// The file yields more rows than one upload may hold (the node's
    /// `[datanets] max_upload_rows`); counting stops at the first row over.
    #[error(
        "the file holds over {max} rows, the most one upload may hold (max_upload_rows): split it"
    )]
    TooManyRows {
        /// The limit.
        max: u64,
    },
    /// The file type is not one we parse.
    #[error("unsupported file type {0:?} (expected txt, md, jsonl, csv, pdf or docx)")]
    UnsupportedType(String),
    /// The declared type disagrees with what the bytes are.
    #[error("declared as {declared} but the content is {detected}")]
    TypeMismatch {
        /// The type the contributor declared.
        declared: String,
        /// What the content looks like.
        detected: String,
    },
    /// Text that is not valid UTF-8.
    #[error("invalid UTF-8 at byte {byte_offset}")]
    NotUtf8 {
        /// Offset of the first invalid byte in the file.
        byte_offset: u64,
    },
    /// Text containing NUL bytes or many control characters: binary data.
    #[error(
        "binary content: {control_chars} control characters in the first {scanned} characters"
    )]
    Binary {
        /// Control characters found.
        control_chars: u64,
        /// Characters scanned.
        scanned: u64,
    },
    /// A single line over the line-length limit.
    #[error("line is {len} bytes, over the limit of {max}")]
    LineTooLong {
        /// Line length in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A JSONL line that is not valid JSON.
    #[error("invalid JSON: {0}")]
    BadJson(String),
    /// A JSONL line that is JSON but not a record shape we know.
    #[error("unrecognised record: {0}")]
    BadRecord(String),
    /// A CSV file without the requested text column.
    #[error("CSV has no column {column:?} (columns: {available})")]
    MissingColumn {
        /// The requested column.
        column: String,
        /// The header, comma separated.
        available: String,
    },
    /// A malformed CSV record.
    #[error("invalid CSV: {0}")]
    BadCsv(String),
    /// A PDF that could not be read.
    #[error("invalid PDF: {0}")]
    BadPdf(String),
    /// A .docx that is not a valid zip/OOXML package.
    #[error("invalid DOCX: {0}")]
    BadDocx(String),
    /// A zip entry whose name escapes the archive (`../`, absolute paths).
    #[error("zip entry name {0:?} escapes the archive (path traversal)")]
    ZipPathTraversal(String),
    /// A zip with more entries than allowed.
    #[error("zip has {entries} entries, over the limit of {max}")]
    ZipTooManyEntries {
        /// Entries in the archive.
        entries: u64,
        /// The limit.
        max: u64,
    },
    /// A zip that decompresses to more than allowed (a zip bomb).
    #[error("zip decompresses to more than {max} bytes (zip bomb?)")]
    ZipTooLarge {
        /// The limit on decompressed bytes.
        max: u64,
    },
    /// A document that parsed but holds no text.
    #[error("no text found")]
    NoText,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum DatanetError {
    /// A contributed file could not be parsed.
    #[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The file name as given by the contributor.
        file: String,
        /// 1-based line (record, page) where the problem is, when known.
        line: Option<u64>,
        /// What is wrong.
        reason: ParseFailure,
    },
    /// A datanet descriptor that breaks a rule.
    #[error("invalid datanet descriptor: {field}: {reason}")]
    InvalidDescriptor {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A datanet with this name already exists for this owner.
    #[error("datanet {0:?} already exists")]
    DatanetExists(String),
    /// The same contributor already contributed this exact file to this
    /// datanet (its id is taken, even if curation rejected it).
    #[error("contribution {0} already exists (same contributor, datanet and file)")]
    ContributionExists(String),
    /// Something looked up by id or name does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing (`"datanet"`, `"version"`, …).
        what: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// A curation decision on a contribution that is not pending.
    #[error("contribution {id} is {status}, not pending")]
    NotPending {
        /// The contribution.
        id: String,
        /// Its current status.
        status: String,
    },
    /// Publishing with no accepted rows added since the last version.
    #[error("datanet {0} has no newly accepted rows to publish")]
    NothingToPublish(String),
    /// A blob whose bytes no longer hash to its name.
    #[error("content store object {hash} is corrupt (bytes hash to {actual})")]
    CorruptBlob {
        /// The name (expected hash).
        hash: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The object store (S3-compatible, in-memory…) failed.
    #[error("object store: {0}")]
    ObjectStore(String),
    /// The embedded database failed.
    #[error("datanet store: {0}")]
    Store(String),
    /// Stored bytes that do not decode.
    #[error(transparent)]
    Decode(#[from] trib_types::DecodeError),
    /// An export file that is malformed or inconsistent.
    #[error("export line {line}: {reason}")]
    BadExport {
        /// 1-based line in the export file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

impl DatanetError {
    pub(crate) fn parse(file: &str, line: Option<u64>, reason: ParseFailure) -> Self {
        DatanetError::Parse {
            file: file.to_string(),
            line,
            reason,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatanetError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for DatanetError {
            fn from(e: $t) -> Self {
                DatanetError::Store(e.to_string())
            }
        }
    )*};
}
store_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
