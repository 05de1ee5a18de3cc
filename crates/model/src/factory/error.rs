//! The one error type of ModelFactory.

use std::path::PathBuf;

/// Everything that can go wrong while reading a job, preparing its data,
/// training, evaluating, exporting or caching gradients.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    /// The job file is not valid TOML or does not match the job schema.
    #[error("job file {path}: {message}")]
    JobSyntax {
        /// The job file (or `<string>` when parsed from memory).
        path: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A job key holds a value outside its allowed range.
    #[error("job key `{key}`: {message}")]
    InvalidJob {
        /// The dotted key, e.g. `lora.r`.
        key: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A data source string is neither `name@version` nor a `.txt`/`.jsonl` path.
    #[error("data source {source_ref:?}: {message}")]
    InvalidSource {
        /// The source as written in the job.
        source_ref: String,
        /// What is wrong.
        message: String,
    },
    /// A `datanet@version` source was given but no resolver was supplied.
    #[error("data source {source_ref:?} names a datanet, but this job runs without a datanet resolver (use a local .txt/.jsonl file, or run the job through the node)")]
    NoResolver {
        /// The source as written in the job.
        source_ref: String,
    },
    /// The datanet resolver refused or failed (unknown datanet, no access, …).
    #[error("datanet {datanet}@{version}: {message}")]
    Resolve {
        /// The datanet name.
        datanet: String,
        /// The requested version.
        version: String,
        /// The resolver's explanation.
        message: String,
    },
    /// A row of a data source does not have the shape the data format needs.
    #[error("{source_ref} row {row}: {message}")]
    BadRow {
        /// The source the row came from.
        source_ref: String,
        /// The 0-based row index in that source.
        row: u64,
        /// What is wrong with it.
        message: String,
    },
    /// After formatting, tokenizing and masking, nothing is left to train on.
    #[error("no training examples: {0}")]
    NoData(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON or safetensors file could not be written or read.
    #[error("{path}: {message}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint does not belong to this job or is incomplete.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// Why it cannot be resumed.
        message: String,
    },
    /// The loss or a gradient became NaN or infinite.
    #[error("training diverged at step {step}: {what} is not finite")]
    Diverged {
        /// The optimiser step.
        step: u64,
        /// Which quantity (loss, gradient norm).
        what: &'static str,
    },
    /// The job was cancelled through its cancellation flag.
    #[error("training cancelled at step {step}")]
    Cancelled {
        /// The last completed optimiser step.
        step: u64,
    },
    /// The tokenizer failed on some text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An error from the model layer (loading, forward, adapter I/O).
    #[error("model: {0}")]
    Model(String),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

impl FactoryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FactoryError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        FactoryError::Format {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        FactoryError::InvalidJob {
            key,
            message: message.into(),
        }
    }
}

/// Shorthand for results in this module.
pub type Result<T, E = FactoryError> = std::result::Result<T, E>;
