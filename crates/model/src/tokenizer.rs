//! Tokenizers: the Hugging Face `tokenizers` pipeline rebuilt from GGUF
//! metadata (`tokenizer.ggml.*`) so that a GGUF file tokenizes exactly as the
//! original `tokenizer.json` would, or read from `tokenizer.json` directly.
//!
//! GGUF stores the BPE vocabulary, the merges, a type per token (1 normal,
//! 3 control, 4 user-defined) and a pre-tokenizer name (`tokenizer.ggml.pre`)
//! that llama.cpp maps to a regex. We map the same names to the Hugging Face
//! pre-tokenizer the original model used. SmolLM2 (`smollm`) is GPT-2
//! byte-level BPE preceded by `Digits(individual_digits)`.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

/// GGUF token type of control tokens (`<|im_start|>` …).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of user-defined added tokens.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The Llama-3 pre-tokenizer regex (numbers in groups of up to three).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 pre-tokenizer regex (single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer families we can rebuild from `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreTokenizerKind {
    /// GPT-2 byte-level regex.
    Gpt2,
    /// `Digits(individual)` then GPT-2 byte level (SmolLM, StarCoder).
    DigitsThenGpt2,
    /// Llama-3 regex split then byte level without its own regex.
    Llama3,
    /// Qwen2 regex split then byte level without its own regex.
    Qwen2,
}

impl PreTokenizerKind {
    pub(crate) fn from_gguf_name(name: &str) -> Option<Self> {
        Some(match name {
            "default" | "gpt2" | "gpt-2" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" => Self::DigitsThenGpt2,
            "llama3" | "llama-bpe" | "smaug-bpe" => Self::Llama3,
            "qwen2" => Self::Qwen2,
            _ => return None,
        })
    }

    fn to_json(self) -> Value {
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
        match self {
            Self::Gpt2 => byte_level(true),
            Self::DigitsThenGpt2 => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            Self::Llama3 => {
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(false)]})
            }
            Self::Qwen2 => {
                json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false)]})
            }
        }
    }
}

/// A byte-level BPE description: enough to write a `tokenizer.json`.
#[derive(Clone, Debug)]
pub(crate) struct BpeSpec {
    /// Token strings by id (byte-level alphabet, `Ġ` for space).
    pub tokens: Vec<String>,
    /// Merge rules in priority order, each "left right".
    pub merges: Vec<String>,
    /// Ids of added tokens and whether each is special.
    pub added: Vec<(u32, bool)>,
    /// Pre-tokenizer family.
    pub pre: PreTokenizerKind,
}

impl BpeSpec {
    /// The `tokenizer.json` document (format version 1.0).
    pub(crate) fn to_json(&self) -> Value {
        let vocab: serde_json::Map<String, Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<Value> = self
            .added
            .iter()
            .map(|&(id, special)| {
                json!({"id": id, "content": self.tokens[id as usize], "single_word": false,
                       "lstrip": false, "rstrip": false, "normalized": false, "special": special})
            })
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": self.pre.to_json(),
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": self.merges}
        })
    }

    pub(crate) fn build(&self) -> Result<Tokenizer> {
        let text = self.to_json().to_string();
        text.parse::<Tokenizer>()
            .map_err(|e| ModelError::Tokenizer(format!("building byte-level BPE: {e}")))
    }

    /// Reads the BPE description from GGUF metadata.
    pub(crate) fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| ModelError::gguf(path, "missing metadata `tokenizer.ggml.model`"))?;
        if model != "gpt2" {
            return Err(ModelError::gguf(
                path,
                format!("tokenizer model `{model}` is not supported (only byte-level BPE `gpt2`)"),
            ));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let arr = md
                .get(key)
                .and_then(|v| v.to_vec().ok())
                .ok_or_else(|| ModelError::gguf(path, format!("missing array `{key}`")))?;
            arr.iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|_| ModelError::gguf(path, format!("`{key}` holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let pre_name = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        let pre = PreTokenizerKind::from_gguf_name(&pre_name).ok_or_else(|| {
            ModelError::gguf(path, format!("pre-tokenizer `{pre_name}` is not supported"))
        })?;
        let mut added = Vec::new();
        if let Some(types) = md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
        {
            if types.len() != tokens.len() {
                return Err(ModelError::gguf(
                    path,
                    format!("{} token types for {} tokens", types.len(), tokens.len()),
                ));
            }
            for (id, t) in types.iter().enumerate() {
                let t = match t {
                    gguf_file::Value::I32(x) => *x as i64,
                    gguf_file::Value::U32(x) => *x as i64,
                    _ => continue,
                };
                if t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED {
                    added.push((id as u32, t == TOKEN_TYPE_CONTROL));
                }
            }
        }
        Ok(BpeSpec {
            tokens,
            merges,
            added,
            pre,
        })
    }
}

/// Builds the Hugging Face tokenizer described by a GGUF file's metadata.
pub fn tokenizer_from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Tokenizer> {
    BpeSpec::from_gguf(content, path)?.build()
}

/// Reads a `tokenizer.json`.
pub fn tokenizer_from_file(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(ModelError::MissingFile(path.to_path_buf()));
    }
    Tokenizer::from_file(path)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))
}

/// Encodes text; special tokens written literally (`<|im_start|>`) map to
/// their single ids.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| ModelError::Tokenizer(format!("encoding: {e}")))
}

/// Decodes ids to text, keeping or skipping special tokens.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32], skip_special: bool) -> Result<String> {
    tokenizer
        .decode(ids, skip_special)
        .map_err(|e| ModelError::Tokenizer(format!("decoding: {e}")))
}

/// Looks up the id of a token string (e.g. `<|im_end|>`).
pub fn token_id(tokenizer: &Tokenizer, token: &str) -> Option<u32> {
    tokenizer.token_to_id(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::tiny_bpe;

    #[test]
    fn tiny_byte_level_bpe_round_trips_arbitrary_text() {
        let tok = tiny_bpe().build().unwrap();
        for text in [
            "hello world",
            "The 2024 café ☕ costs 3.50€\n\tok",
            "",
            "  spaces  ",
        ] {
            let ids = encode(&tok, text).unwrap();
            assert_eq!(decode(&tok, &ids, false).unwrap(), text);
        }
    }

    #[test]
    fn tiny_special_tokens_are_single_ids_and_digits_split() {
        let spec = tiny_bpe();
        let tok = spec.build().unwrap();
        let ids = encode(&tok, "<|im_start|>user\n<|im_end|>").unwrap();
        assert_eq!(ids[0], token_id(&tok, "<|im_start|>").unwrap());
        assert_eq!(*ids.last().unwrap(), token_id(&tok, "<|im_end|>").unwrap());
        // Digits are split one by one even though "12" would be a merge away.
        let ids = encode(&tok, "123").unwrap();
        assert_eq!(ids.len(), 3);
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips_through_the_tiny_bpe(text in "\\PC{0,40}") {
            let tok = tiny_bpe().build().unwrap();
            let ids = encode(&tok, &text).unwrap();
            proptest::prop_assert_eq!(decode(&tok, &ids, false).unwrap(), text);
        }
    }
}
