//! JSONL: one record per line.
//!
//! Recognised shapes, tried in this order:
//! `messages` (array of `{role, content}`), `instruction` + `output` (alpaca,
//! optional `input`), `prompt` + `response` (or `completion`), `text`.
//! Unknown extra fields are ignored. Blank lines are skipped.

use serde_json::{Map, Value};

use super::Unit;
use crate::error::{DatanetError, ParseFailure};
use crate::row::{ChatMessage, RowContent};

pub(super) fn parse_jsonl(file: &str, text: &str) -> Result<Vec<Unit>, DatanetError> {
    let mut units = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            DatanetError::parse(file, Some(line_no), ParseFailure::BadJson(e.to_string()))
        })?;
        let content = parse_record(&value)
            .map_err(|r| DatanetError::parse(file, Some(line_no), ParseFailure::BadRecord(r)))?;
        match content {
            RowContent::Text { text } => units.push(Unit::Text {
                line: line_no,
                text,
            }),
            content => units.push(Unit::Record {
                line: line_no,
                content,
            }),
        }
    }
    Ok(units)
}

/// Reads one record object into a row. Also used to read exports back.
pub(crate) fn parse_record(value: &Value) -> Result<RowContent, String> {
    let Value::Object(obj) = value else {
        return Err(format!("expected a JSON object, got {}", kind_of(value)));
    };
    if let Some(m) = obj.get("messages") {
        let Value::Array(items) = m else {
            return Err("`messages` must be an array".into());
        };
        if items.is_empty() {
            return Err("`messages` is empty".into());
        }
        let mut messages = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(mo) = item else {
                return Err(format!("messages[{i}] is not an object"));
            };
            messages.push(ChatMessage {
                role: string_field(mo, "role").map_err(|e| format!("messages[{i}]: {e}"))?,
                content: string_field(mo, "content").map_err(|e| format!("messages[{i}]: {e}"))?,
            });
        }
        return Ok(RowContent::Messages { messages });
    }
    if obj.contains_key("instruction") {
        return Ok(RowContent::Alpaca {
            instruction: string_field(obj, "instruction")?,
            input: optional_string(obj, "input")?,
            output: string_field(obj, "output")?,
        });
    }
    if obj.contains_key("prompt") {
        let response = if obj.contains_key("response") {
            string_field(obj, "response")?
        } else {
            string_field(obj, "completion").map_err(|_| "missing string field `response`")?
        };
        return Ok(RowContent::PromptResponse {
            prompt: string_field(obj, "prompt")?,
            response,
        });
    }
    if obj.contains_key("text") {
        return Ok(RowContent::Text {
            text: string_field(obj, "text")?,
        });
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
    Err(format!(
        "no `text`, `instruction`/`output`, `prompt`/`response` or `messages` field (found: {})",
        keys.join(", ")
    ))
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!(
            "field `{key}` must be a string, got {}",
            kind_of(v)
        )),
        None => Err(format!("missing string field `{key}`")),
    }
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => string_field(obj, key),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_shape_is_recognised() {
        let text = concat!(
            "{\"text\":\"plain\"}\n",
            "\n",
            "{\"instruction\":\"i\",\"output\":\"o\"}\n",
            "{\"prompt\":\"p\",\"completion\":\"c\"}\n",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\r\n",
        );
        let units = parse_jsonl("d.jsonl", text).unwrap();
        assert_eq!(units.len(), 4);
        assert_eq!(
            units[0],
            Unit::Text {
                line: 1,
                text: "plain".into()
            }
        );
        assert!(
            matches!(&units[1], Unit::Record { line: 3, content: RowContent::Alpaca { input, .. } } if input.is_empty())
        );
        assert!(matches!(
            &units[2],
            Unit::Record {
                line: 4,
                content: RowContent::PromptResponse { .. }
            }
        ));
        assert!(matches!(
            &units[3],
            Unit::Record {
                line: 5,
                content: RowContent::Messages { .. }
            }
        ));
    }

    #[test]
    fn bad_lines_name_the_line_and_reason() {
        let e = parse_jsonl("d.jsonl", "{\"text\":\"a\"}\n{\"text\": \n").unwrap_err();
        assert!(e.to_string().starts_with("d.jsonl:2: invalid JSON"), "{e}");
        let e = parse_jsonl("d.jsonl", "{\"title\":\"a\"}").unwrap_err();
        assert!(
            e.to_string()
                .contains("d.jsonl:1: unrecognised record: no `text`"),
            "{e}"
        );
        let e = parse_jsonl("d.jsonl", "[1]").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected a JSON object, got an array"),
            "{e}"
        );
        let e = parse_jsonl("d.jsonl", "{\"text\":5}").unwrap_err();
        assert!(
            e.to_string()
                .contains("field `text` must be a string, got a number"),
            "{e}"
        );
    }
}
