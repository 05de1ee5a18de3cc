//! The served model's tokenizer as the catalog and the tracer need it:
//! encoding and decoding through the [`AnswerTokenizer`] trait (the node
//! implements it over `trib-model`, so this crate stays free of
//! tokenizers and candle), plus the piece table and the tokenizer hash
//! every index records.

use std::sync::Arc;

use trib_types::Hash;

use super::catalog::CatalogError;
use crate::trace::PieceTable;

/// Encoding and decoding with the served model's tokenizer.
pub trait AnswerTokenizer: Send + Sync {
    /// The token ids of `text` (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<u32>, String>;
    /// The text of `ids`.
    fn decode(&self, ids: &[u32]) -> Result<String, String>;
}

/// The served tokenizer: the codec, its pieces (for word starts and
/// delimiters), its vocabulary size and its hash.
#[derive(Clone)]
pub struct Tokens {
    tokenizer: Arc<dyn AnswerTokenizer>,
    pub(crate) pieces: PieceTable,
    hash: Hash,
    vocab_size: u32,
}

impl Tokens {
    /// `pieces` holds the piece of every token id (index = id; its length
    /// is the vocabulary size); `serialised` is the tokenizer's serialised
    /// form, whose hash every index records (an index built with another
    /// tokenizer is rebuilt).
    pub fn new(
        tokenizer: Arc<dyn AnswerTokenizer>,
        pieces: &[String],
        serialised: &[u8],
    ) -> Result<Self, CatalogError> {
        let vocab_size = u32::try_from(pieces.len()).map_err(|_| {
            CatalogError::Tokenizer(format!("vocabulary of {} is too large", pieces.len()))
        })?;
        Ok(Tokens {
            hash: Hash::domain("tributary tokenizer v1", &[serialised]),
            pieces: PieceTable::new(pieces),
            tokenizer,
            vocab_size,
        })
    }

    /// The tokenizer hash recorded in every index manifest.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The vocabulary size.
    pub(crate) fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// The token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CatalogError> {
        self.tokenizer.encode(text).map_err(CatalogError::Tokenizer)
    }

    /// The text of `ids`, or the decoder's error.
    pub(crate) fn try_decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer.decode(ids)
    }

    /// The text of `ids` (empty when the decoder fails: display only).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids).unwrap_or_default()
    }
}
