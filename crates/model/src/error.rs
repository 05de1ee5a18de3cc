//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running or adapting a model.
///
/// Variants carry what a user needs to fix the problem: the file, the tensor,
/// the expected and found shapes.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required file is absent.
    #[error("missing file {0}")]
    MissingFile(PathBuf),
    /// A JSON file (config.json, adapter_config.json, …) is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A GGUF file could not be parsed or lacks a required entry.
    #[error("GGUF {path}: {message}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A model configuration is invalid or describes something we do not run.
    #[error("unsupported or invalid model config: {0}")]
    Config(String),
    /// A weight tensor the architecture needs is absent from the checkpoint.
    #[error("missing weight tensor `{0}`")]
    MissingTensor(String),
    /// A tensor has a shape other than the one the configuration implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape found in the file.
        found: Vec<usize>,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A sequence would exceed the model's context window.
    #[error("context overflow: {needed} positions needed, the model allows {max}")]
    ContextOverflow {
        /// Positions the request needs (prompt + cache + new tokens).
        needed: usize,
        /// The model's maximum sequence length.
        max: usize,
    },
    /// A token id outside the vocabulary was given.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The differentiable forward needs dense f32 weights but the model holds
    /// quantized ones.
    #[error("training forward needs dense f32 weights; load the model with WeightFormat::F32")]
    NeedsDenseWeights,
    /// A LoRA configuration is invalid (rank 0, unknown target module, …).
    #[error("invalid LoRA config: {0}")]
    LoraConfig(String),
    /// An adapter file was refused; the message names the offending entry.
    #[error("adapter {path}: {message}")]
    InvalidAdapter {
        /// The adapter directory or file.
        path: PathBuf,
        /// Why it was refused.
        message: String,
    },
    /// An adapter does not fit the base model it is applied to.
    #[error("adapter does not fit the base model: {0}")]
    AdapterMismatch(String),
    /// A downloaded model file does not have the expected content hash.
    #[error("{path}: sha256 {found} does not match the expected {expected}")]
    HashMismatch {
        /// The file checked.
        path: PathBuf,
        /// The expected digest (hex).
        expected: String,
        /// The digest found (hex).
        found: String,
    },
    /// Invalid generation parameters (top_p outside (0, 1], …).
    #[error("invalid generation parameters: {0}")]
    Generation(String),
    /// A weight matrix or activation does not fit the decode kernels'
    /// block layout (byte count, block size or shape named).
    #[error("decode kernel layout: {0}")]
    Packing(String),
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results in this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn gguf(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Gguf {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn adapter(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::InvalidAdapter {
            path: path.into(),
            message: message.into(),
        }
    }
}
