//! Rows: the unit a datanet stores, hashes, deduplicates and pays for.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Canonical, ContributionId, Hash, RowHash};

/// One message of a chat transcript (`messages` records).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, … (kept as given).
    pub role: String,
    /// The message text.
    pub content: String,
}

/// What a row holds. Instruction-tuning records keep their structure so that
/// ModelFactory can apply a chat template; plain text is a paragraph-based chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum RowContent {
    /// A chunk of plain text.
    Text {
        /// The normalised text (see `docs/datanets.md`, chunker rules).
        text: String,
    },
    /// An alpaca-style record.
    Alpaca {
        /// The task.
        instruction: String,
        /// Optional context (empty when absent).
        input: String,
        /// The expected answer.
        output: String,
    },
    /// A prompt/response pair.
    PromptResponse {
        /// The prompt.
        prompt: String,
        /// The response.
        response: String,
    },
    /// A chat transcript.
    Messages {
        /// The messages in order.
        messages: Vec<ChatMessage>,
    },
}

impl Canonical for RowContent {
    const NAME: &'static str = "datanet row";
}

impl RowContent {
    /// The row's canonical bytes: its borsh encoding (an enum tag, then
    /// length-prefixed UTF-8 fields).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        Canonical::encode(self)
    }

    /// The row's content address: blake3 of [`RowContent::canonical_bytes`].
    pub fn row_hash(&self) -> RowHash {
        RowHash(Hash::of(&self.canonical_bytes()))
    }

    /// Whether this is plain text (as opposed to an instruction record).
    pub fn is_text(&self) -> bool {
        matches!(self, RowContent::Text { .. })
    }

    /// Short name of the shape: `text`, `alpaca`, `prompt_response`, `messages`.
    pub fn shape(&self) -> &'static str {
        match self {
            RowContent::Text { .. } => "text",
            RowContent::Alpaca { .. } => "alpaca",
            RowContent::PromptResponse { .. } => "prompt_response",
            RowContent::Messages { .. } => "messages",
        }
    }

    /// All text fields joined by newlines: what near-duplicate detection and
    /// the quality score look at.
    pub fn plain_text(&self) -> String {
        match self {
            RowContent::Text { text } => text.clone(),
            RowContent::Alpaca {
                instruction,
                input,
                output,
            } => [instruction.as_str(), input.as_str(), output.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n"),
            RowContent::PromptResponse { prompt, response } => format!("{prompt}\n{response}"),
            RowContent::Messages { messages } => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Total UTF-8 bytes of the text fields (roles included for messages):
    /// the size checked against the datanet's maximum row size.
    pub fn text_bytes(&self) -> usize {
        match self {
            RowContent::Text { text } => text.len(),
            RowContent::Alpaca {
                instruction,
                input,
                output,
            } => instruction.len() + input.len() + output.len(),
            RowContent::PromptResponse { prompt, response } => prompt.len() + response.len(),
            RowContent::Messages { messages } => messages
                .iter()
                .map(|m| m.role.len() + m.content.len())
                .sum(),
        }
    }
}

/// A row as it sits in a datanet: content plus provenance.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StoredRow {
    /// Content address of `content`.
    pub row_hash: RowHash,
    /// Who contributed it.
    pub contributor: Address,
    /// In which contribution.
    pub contribution: ContributionId,
    /// Position within that contribution (0-based, over all of its rows,
    /// rejected ones included, so it matches the validation report).
    pub index: u32,
    /// The content.
    pub content: RowContent,
}

impl Canonical for StoredRow {
    const NAME: &'static str = "datanet stored row";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hash_is_blake3_of_borsh_and_depends_on_shape() {
        let t = RowContent::Text {
            text: "hello".into(),
        };
        assert_eq!(t.row_hash().0, Hash::of(&borsh::to_vec(&t).unwrap()));
        let p = RowContent::PromptResponse {
            prompt: "hello".into(),
            response: String::new(),
        };
        assert_ne!(t.row_hash(), p.row_hash());
    }

    #[test]
    fn plain_text_joins_fields() {
        let a = RowContent::Alpaca {
            instruction: "Add".into(),
            input: String::new(),
            output: "4".into(),
        };
        assert_eq!(a.plain_text(), "Add\n4");
        assert_eq!(a.text_bytes(), 4);
    }
}
