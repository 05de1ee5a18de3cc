//! The rules a paid answer is traced by: the tracer's thresholds and the
//! prompt words that are masked. Settlement and verify call the same
//! functions, so a re-run masks exactly the words the settlement masked.

use serde::Deserialize;

use crate::trace::TraceParams;

/// The span tracer's thresholds for paid answers: the OLMoTrace defaults
/// with a 2-token minimum span, applied after the prompt's words are
/// masked, and no span without a letter. Measured best on planted facts
/// (docs/attribution.md §5): recall@1 1.000 on correct and on borrowed
/// answers, 0 false credit on the base model's answers; at the default
/// 4-token minimum, masking left most correct answers (an invented
/// 2–3-token name plus a full stop) with no span. On the demo data (§8) the
/// 2-token minimum alone let a digit span (`" 1"`: a space and a digit
/// token) credit 6 of 40 unrelated answers: `require_letter` drops those.
pub fn answer_trace_params() -> TraceParams {
    TraceParams {
        min_span_tokens: 2,
        require_letter: true,
        ..TraceParams::default()
    }
}

/// The text whose words are masked in an answer to `prompt` (the prompt as
/// a stored answer keeps it): the messages' contents, one per line, for a
/// chat (stored as the JSON list of `{role, content}` messages), else the
/// prompt itself.
pub fn prompt_words(prompt: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_prompt_gives_its_messages_contents_and_plain_text_stays_as_is() {
        let chat = r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Who conducts?"}]"#;
        assert_eq!(prompt_words(chat), "Be brief.\nWho conducts?");
        assert_eq!(prompt_words("Who conducts?"), "Who conducts?");
        let p = answer_trace_params();
        assert_eq!((p.min_span_tokens, p.require_letter), (2, true));
    }
}
