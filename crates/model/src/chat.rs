//! Chat templates. Models ship Jinja templates; we recognise the few shapes
//! the Llama family uses and render them in Rust, so no template engine runs
//! untrusted code.
//!
//! - ChatML (`<|im_start|>role\ncontent<|im_end|>\n`): SmolLM2, Qwen2. SmolLM2's
//!   template inserts a default system message when the conversation does not
//!   start with one; we extract that message from the template text.
//! - Llama 3 (`<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`).
//! - Plain: `role: content` lines, for base models without a template.

use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat template, chosen from model metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatTemplate {
    /// ChatML, with the system message inserted when the conversation lacks one.
    ChatMl {
        /// Default system message (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
        default_system: Option<String>,
    },
    /// Llama 3 header/eot format.
    Llama3 {
        /// Whether to start with `<|begin_of_text|>`.
        bos: bool,
    },
    /// `role: content` lines, the answer follows `assistant:`.
    Plain,
}

const CHATML_SYSTEM_OPEN: &str = "<|im_start|>system\n";

impl ChatTemplate {
    /// Picks a template from a Jinja chat template string (GGUF
    /// `tokenizer.chat_template` or `tokenizer_config.json`'s `chat_template`).
    pub fn from_jinja(template: Option<&str>) -> Self {
        let Some(t) = template else {
            return ChatTemplate::Plain;
        };
        if t.contains("<|im_start|>") {
            // The default system message is the literal between the system
            // header and <|im_end|> (in a branch taken when messages[0] is
            // not a system message).
            let default_system = t.find(CHATML_SYSTEM_OPEN).and_then(|start| {
                let rest = &t[start + CHATML_SYSTEM_OPEN.len()..];
                let end = rest.find("<|im_end|>")?;
                let text = &rest[..end];
                // A template that writes the caller's message here has Jinja
                // in the span, not a literal.
                (!text.contains("{{") && !text.contains("{%") && !text.contains('\''))
                    .then(|| text.to_string())
            });
            ChatTemplate::ChatMl { default_system }
        } else if t.contains("<|start_header_id|>") {
            ChatTemplate::Llama3 {
                bos: t.contains("bos_token") || t.contains("<|begin_of_text|>"),
            }
        } else {
            ChatTemplate::Plain
        }
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends
    /// where the assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let Some(sys) = default_system {
                    if messages.first().is_none_or(|m| m.role != "system") {
                        out.push_str(CHATML_SYSTEM_OPEN);
                        out.push_str(sys);
                        out.push_str("<|im_end|>\n");
                    }
                }
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
            }
            ChatTemplate::Llama3 { bos } => {
                if *bos {
                    out.push_str("<|begin_of_text|>");
                }
                for m in messages {
                    out.push_str(&format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                        m.role,
                        m.content.trim()
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            ChatTemplate::Plain => {
                for m in messages {
                    out.push_str(&format!("{}: {}\n", m.role, m.content));
                }
                if add_generation_prompt {
                    out.push_str("assistant:");
                }
            }
        }
        out
    }

    /// Token strings that end an assistant turn under this template.
    pub fn stop_strings(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl { .. } => &["<|im_end|>", "<|endoftext|>"],
            ChatTemplate::Llama3 { .. } => &["<|eot_id|>", "<|end_of_text|>"],
            ChatTemplate::Plain => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_adds_its_default_system_prompt_like_the_jinja_original() {
        let t = ChatTemplate::from_jinja(Some(SMOLLM2));
        let text = t.render(&[ChatMessage::new("user", "Hi")], true);
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_sys = t.render(
            &[
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
            ],
            false,
        );
        assert_eq!(
            with_sys,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn llama3_and_plain_templates_are_recognised() {
        let l3 = ChatTemplate::from_jinja(Some("{{ bos_token }}<|start_header_id|>…"));
        assert_eq!(l3, ChatTemplate::Llama3 { bos: true });
        assert!(l3
            .render(&[ChatMessage::new("user", "x")], true)
            .ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        assert_eq!(ChatTemplate::from_jinja(None), ChatTemplate::Plain);
    }
}
