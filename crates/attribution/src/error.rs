//! The crate's one error type.

use std::path::PathBuf;

/// Why an attribution operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// Reading or writing an index file failed.
    #[error("index file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The target index directory already exists; indexes are immutable.
    #[error(
        "index directory {0} already exists: an index is immutable, build into a new directory"
    )]
    IndexExists(PathBuf),
    /// An index file is missing, truncated or inconsistent with its manifest.
    #[error("corrupt index at {path}: {reason}")]
    CorruptIndex {
        /// The index directory.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
    /// A token id collides with the document separator or exceeds the declared vocabulary.
    #[error("token id {token} in document {document} is out of range for a vocabulary of {vocab_size} (the separator {separator:#x} is reserved)")]
    TokenOutOfRange {
        /// Index of the offending document in build order.
        document: usize,
        /// The token id.
        token: u32,
        /// The declared vocabulary size.
        vocab_size: u32,
        /// The reserved separator id.
        separator: u32,
    },
    /// The suffix-array construction library reported an error.
    #[error("suffix array construction failed: {0}")]
    SuffixArray(String),
    /// Indexes with different tokenizers or token widths cannot be queried together.
    #[error("index {path} uses tokenizer {found} / {found_width}-byte tokens, the set uses {expected} / {expected_width}-byte tokens")]
    IncompatibleIndex {
        /// The index that does not match.
        path: PathBuf,
        /// The tokenizer hash of the set.
        expected: String,
        /// The tokenizer hash of the index.
        found: String,
        /// Token width of the set in bytes.
        expected_width: u8,
        /// Token width of the index in bytes.
        found_width: u8,
    },
    /// Gradient matrices do not have the shapes the computation needs.
    #[error("gradient shape mismatch: {0}")]
    Shape(String),
    /// A configuration value is outside its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A damped matrix was not positive definite (damping too small or NaN gradients).
    #[error("matrix for layer {layer} is not positive definite; increase damping or check the gradients for NaN")]
    NotPositiveDefinite {
        /// The layer name.
        layer: String,
    },
    /// A dense solve was requested for a dimension too large to hold in memory.
    #[error("exact influence for layer {layer} needs a {dim}x{dim} matrix, over the limit of {max}; use DataInf or project the gradients")]
    TooLarge {
        /// The layer name.
        layer: String,
        /// The smaller of d_l and n.
        dim: usize,
        /// The limit.
        max: usize,
    },
    /// A gradient cache file is not valid safetensors or holds a non-f32 tensor.
    #[error("gradient cache: {0}")]
    GradientCache(String),
    /// The weights handed to a split cannot be used (empty, all zero or too large).
    #[error("cannot split by weight: {0}")]
    Split(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = AttributionError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AttributionError {
    let path = path.into();
    move |source| AttributionError::Io { path, source }
}
