//! The data pipeline: sources → rows (with provenance) → formatted segments →
//! tokens with a loss mask → truncation → seeded split → seeded per-epoch
//! shuffle → packing → padded batches.
//!
//! Label masking: a token "is a target" when the model is trained to predict
//! it (the loss at position `t-1` uses token `t`). Plain text: every token
//! except the first. Alpaca and chat: only the tokens of assistant turns,
//! including the template's end-of-turn marker (so the adapter learns to
//! stop); the system prompt, the user turns and the template's role headers
//! carry no loss.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;
use trib_types::{Address, ContributionId, Hash, RowHash};

use super::config::{DataFormat, DataSection, SourceRef};
use super::error::{FactoryError, Result};
use super::rng::FactoryRng;
use crate::chat::{ChatMessage, ChatTemplate};

/// Where a training example came from: what attribution credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The source as written in the job (`legal@3`, or a file path).
    pub source: String,
    /// 0-based row index within the source.
    pub row: u64,
    /// The row's content hash (datanet rows: as the datanet computed it; local
    /// files: blake3 of the row's UTF-8 bytes).
    pub row_hash: RowHash,
    /// The contribution (uploaded file) the row belongs to, when known.
    pub contribution: Option<ContributionId>,
    /// The contributor's address, when known.
    pub contributor: Option<Address>,
}

/// One row of a datanet version, as handed over by a [`DatanetResolver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatanetRow {
    /// The row's text (a JSON object for `alpaca` / `messages` datanets).
    pub content: String,
    /// The row's content hash.
    pub row_hash: RowHash,
    /// The contribution it belongs to.
    pub contribution: Option<ContributionId>,
    /// The contributor.
    pub contributor: Option<Address>,
}

/// A datanet version's rows, in their canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDatanet {
    /// The version's Merkle root (recorded in the training summary).
    pub version_root: Hash,
    /// The accepted rows of that version.
    pub rows: Vec<DatanetRow>,
}

/// Resolves `name@version` sources; supplied by the node (which also checks
/// that the job's owner may read a permissioned datanet and refuses otherwise).
pub trait DatanetResolver: Send + Sync {
    /// The rows of `name` at `version`, or a message explaining the refusal.
    fn resolve(&self, name: &str, version: &str) -> std::result::Result<ResolvedDatanet, String>;
}

/// What a source contributed, for the training summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// The source label.
    pub source: String,
    /// Datanet version root, or the blake3 hash of a local file's bytes.
    pub content_hash: Hash,
    /// Rows read.
    pub rows: u64,
}

/// A row's content before formatting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRow {
    pub(crate) provenance: Provenance,
    pub(crate) content: RowContent,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowContent {
    Text(String),
    Json(Value),
}

/// Reads every source into rows with provenance.
pub(crate) fn read_sources(
    sources: &[SourceRef],
    resolver: Option<&dyn DatanetResolver>,
) -> Result<(Vec<RawRow>, Vec<SourceSummary>)> {
    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    for src in sources {
        let label = src.label();
        match src {
            SourceRef::Datanet { name, version } => {
                let r = resolver.ok_or_else(|| FactoryError::NoResolver {
                    source_ref: label.clone(),
                })?;
                let resolved =
                    r.resolve(name, version)
                        .map_err(|message| FactoryError::Resolve {
                            datanet: name.clone(),
                            version: version.clone(),
                            message,
                        })?;
                summaries.push(SourceSummary {
                    source: label.clone(),
                    content_hash: resolved.version_root,
                    rows: resolved.rows.len() as u64,
                });
                for (i, row) in resolved.rows.into_iter().enumerate() {
                    let content = match serde_json::from_str::<Value>(&row.content) {
                        Ok(v @ Value::Object(_)) => RowContent::Json(v),
                        _ => RowContent::Text(row.content),
                    };
                    rows.push(RawRow {
                        provenance: Provenance {
                            source: label.clone(),
                            row: i as u64,
                            row_hash: row.row_hash,
                            contribution: row.contribution,
                            contributor: row.contributor,
                        },
                        content,
                    });
                }
            }
            SourceRef::File { path } => {
                let bytes = std::fs::read(path).map_err(|e| FactoryError::io(path, e))?;
                let text = String::from_utf8(bytes).map_err(|e| FactoryError::InvalidSource {
                    source_ref: label.clone(),
                    message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
                })?;
                let before = rows.len();
                read_local(path, &label, &text, &mut rows)?;
                summaries.push(SourceSummary {
                    source: label.clone(),
                    content_hash: Hash::of(text.as_bytes()),
                    rows: (rows.len() - before) as u64,
                });
            }
        }
    }
    Ok((rows, summaries))
}

fn local_provenance(label: &str, row: u64, bytes: &str) -> Provenance {
    Provenance {
        source: label.to_string(),
        row,
        row_hash: RowHash(Hash::of(bytes.as_bytes())),
        contribution: None,
        contributor: None,
    }
}

/// `.txt`: rows are paragraphs (separated by blank lines). `.jsonl`: one JSON
/// object per non-empty line.
fn read_local(path: &Path, label: &str, text: &str, rows: &mut Vec<RawRow>) -> Result<()> {
    let jsonl = path.extension().and_then(|e| e.to_str()) == Some("jsonl");
    if jsonl {
        let mut row = 0u64;
        for (line_no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).map_err(|e| FactoryError::BadRow {
                source_ref: label.to_string(),
                row: line_no as u64,
                message: format!("line {} is not JSON: {e}", line_no + 1),
            })?;
            if !v.is_object() {
                return Err(FactoryError::BadRow {
                    source_ref: label.to_string(),
                    row: line_no as u64,
                    message: format!("line {} is not a JSON object", line_no + 1),
                });
            }
            rows.push(RawRow {
                provenance: local_provenance(label, row, line),
                content: RowContent::Json(v),
            });
            row += 1;
        }
    } else {
        let mut para = String::new();
        let mut row = 0u64;
        let mut flush = |para: &mut String, rows: &mut Vec<RawRow>| {
            let p = para.trim();
            if !p.is_empty() {
                rows.push(RawRow {
                    provenance: local_provenance(label, row, p),
                    content: RowContent::Text(p.to_string()),
                });
                row += 1;
            }
            para.clear();
        };
        for line in text.lines() {
            if line.trim().is_empty() {
                flush(&mut para, rows);
            } else {
                para.push_str(line);
                para.push('\n');
            }
        }
        flush(&mut para, rows);
    }
    Ok(())
}

/// One piece of formatted text and whether its tokens carry loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) text: String,
    pub(crate) trainable: bool,
}

fn bad_row(p: &Provenance, message: impl Into<String>) -> FactoryError {
    FactoryError::BadRow {
        source_ref: p.source.clone(),
        row: p.row,
        message: message.into(),
    }
}

fn json_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Turns a row into messages (alpaca / messages formats).
pub(crate) fn row_messages(
    row: &RawRow,
    format: DataFormat,
    system: Option<&str>,
) -> Result<Vec<ChatMessage>> {
    let p = &row.provenance;
    let RowContent::Json(v) = &row.content else {
        return Err(bad_row(
            p,
            format!("format {format:?} needs JSON rows (a .jsonl file or a JSON datanet)"),
        ));
    };
    let mut msgs = Vec::new();
    match format {
        DataFormat::Alpaca => {
            let instruction = json_str(v, "instruction")
                .ok_or_else(|| bad_row(p, "missing string field `instruction`"))?;
            let output =
                json_str(v, "output").ok_or_else(|| bad_row(p, "missing string field `output`"))?;
            if output.trim().is_empty() {
                return Err(bad_row(p, "`output` is empty: nothing to learn"));
            }
            let input = json_str(v, "input").unwrap_or("");
            if let Some(s) = system {
                msgs.push(ChatMessage::new("system", s));
            }
            let user = if input.trim().is_empty() {
                instruction.to_string()
            } else {
                format!("{instruction}\n\n{input}")
            };
            msgs.push(ChatMessage::new("user", user));
            msgs.push(ChatMessage::new("assistant", output));
        }
        DataFormat::Messages => {
            let (list, role_key, content_key) = if let Some(Value::Array(a)) = v.get("messages") {
                (a, "role", "content")
            } else if let Some(Value::Array(a)) = v.get("conversations") {
                (a, "from", "value")
            } else {
                return Err(bad_row(
                    p,
                    "missing array `messages` (or ShareGPT `conversations`)",
                ));
            };
            for (i, m) in list.iter().enumerate() {
                let role = json_str(m, role_key)
                    .ok_or_else(|| bad_row(p, format!("message {i} has no string `{role_key}`")))?;
                let content = json_str(m, content_key).ok_or_else(|| {
                    bad_row(p, format!("message {i} has no string `{content_key}`"))
                })?;
                let role = match role {
                    "system" => "system",
                    "user" | "human" => "user",
                    "assistant" | "gpt" => "assistant",
                    other => {
                        return Err(bad_row(
                            p,
                            format!(
                                "message {i} has unknown role {other:?} (system, user, assistant)"
                            ),
                        ))
                    }
                };
                msgs.push(ChatMessage::new(role, content));
            }
            if let (Some(s), false) = (system, msgs.first().is_some_and(|m| m.role == "system")) {
                msgs.insert(0, ChatMessage::new("system", s));
            }
            if !msgs
                .iter()
                .any(|m| m.role == "assistant" && !m.content.trim().is_empty())
            {
                return Err(bad_row(
                    p,
                    "no non-empty assistant message: nothing to learn",
                ));
            }
        }
        DataFormat::Text => unreachable!("text rows are not messages"),
    }
    Ok(msgs)
}

/// Splits a conversation into prompt and answer segments by rendering
/// growing prefixes: for each assistant turn, the text up to the generation
/// prompt carries no loss and the turn itself (content + end-of-turn) does.
pub(crate) fn chat_segments(
    template: &ChatTemplate,
    msgs: &[ChatMessage],
    p: &Provenance,
) -> Result<Vec<Segment>> {
    let mut segs = Vec::new();
    let mut done = String::new();
    for (i, m) in msgs.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let prompt = template.render(&msgs[..i], true);
        let full = template.render(&msgs[..=i], false);
        if !prompt.starts_with(&done) || !full.starts_with(&prompt) {
            return Err(bad_row(
                p,
                "the chat template is not prefix-stable; cannot mask prompt tokens",
            ));
        }
        segs.push(Segment {
            text: prompt[done.len()..].to_string(),
            trainable: false,
        });
        segs.push(Segment {
            text: full[prompt.len()..].to_string(),
            trainable: true,
        });
        done = full;
    }
    let all = template.render(msgs, false);
    if all.len() > done.len() && all.starts_with(&done) {
        segs.push(Segment {
            text: all[done.len()..].to_string(),
            trainable: false,
        });
    }
    segs.retain(|s| !s.text.is_empty());
    Ok(segs)
}

/// A tokenized example with its loss mask and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Token ids (at most `max_length`).
    pub tokens: Vec<u32>,
    /// `targets[t]`: token `t` is predicted with loss (always false at 0).
    pub targets: Vec<bool>,
    /// Where the row came from.
    pub provenance: Provenance,
}

impl Example {
    /// Number of tokens that carry loss.
    pub fn target_count(&self) -> usize {
        self.targets.iter().filter(|&&t| t).count()
    }
}

/// Counts from the pipeline, for logs and the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStats {
    /// Rows read from all sources.
    pub rows: u64,
    /// Examples kept.
    pub examples: u64,
    /// Examples cut at `max_length`.
    pub truncated: u64,
    /// Rows dropped because no target token survived truncation.
    pub dropped_no_targets: u64,
    /// Tokens in kept examples.
    pub tokens: u64,
    /// Target tokens in kept examples.
    pub target_tokens: u64,
}

/// The special tokens the pipeline needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpecialTokens {
    /// Prepended to every example when the model expects it.
    pub(crate) bos: Option<u32>,
    /// Appended to text examples (`add_eos`) and used as padding.
    pub(crate) eos: Option<u32>,
}

fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    crate::tokenizer::encode(tok, text).map_err(|e| FactoryError::Tokenizer(e.to_string()))
}

/// Formats, tokenizes, masks and truncates one row.
pub(crate) fn tokenize_row(
    row: &RawRow,
    data: &DataSection,
    template: &ChatTemplate,
    tok: &Tokenizer,
    special: SpecialTokens,
) -> Result<(Example, bool)> {
    let p = &row.provenance;
    let mut tokens = Vec::new();
    let mut targets = Vec::new();
    if let Some(b) = special.bos {
        tokens.push(b);
        targets.push(false);
    }
    match data.format {
        DataFormat::Text => {
            let text = match &row.content {
                RowContent::Text(t) => t.as_str(),
                RowContent::Json(v) => json_str(v, &data.text_field).ok_or_else(|| {
                    bad_row(p, format!("missing string field `{}`", data.text_field))
                })?,
            };
            let ids = encode(tok, text)?;
            targets.extend(ids.iter().map(|_| true));
            tokens.extend(ids);
            if data.add_eos {
                if let Some(e) = special.eos {
                    tokens.push(e);
                    targets.push(true);
                }
            }
        }
        DataFormat::Alpaca | DataFormat::Messages => {
            let msgs = row_messages(row, data.format, data.system_prompt.as_deref())?;
            for seg in chat_segments(template, &msgs, p)? {
                let ids = encode(tok, &seg.text)?;
                targets.extend(ids.iter().map(|_| seg.trainable));
                tokens.extend(ids);
            }
        }
    }
    if let Some(t) = targets.first_mut() {
        *t = false;
    }
    let truncated = tokens.len() > data.max_length;
    tokens.truncate(data.max_length);
    targets.truncate(data.max_length);
    Ok((
        Example {
            tokens,
            targets,
            provenance: p.clone(),
        },
        truncated,
    ))
}

/// Tokenizes every row; rows left without a target token are dropped and counted.
pub(crate) fn build_examples(
    rows: &[RawRow],
    data: &DataSection,
    template: &ChatTemplate,
    tok: &Tokenizer,
    special: SpecialTokens,
) -> Result<(Vec<Example>, DataStats)> {
    let mut stats = DataStats {
        rows: rows.len() as u64,
        ..DataStats::default()
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (ex, truncated) = tokenize_row(row, data, template, tok, special)?;
        if ex.target_count() == 0 {
            stats.dropped_no_targets += 1;
            continue;
        }
        stats.truncated += truncated as u64;
        stats.tokens += ex.tokens.len() as u64;
        stats.target_tokens += ex.target_count() as u64;
        out.push(ex);
    }
    stats.examples = out.len() as u64;
    if out.is_empty() {
        return Err(FactoryError::NoData(format!(
            "{} rows read, {} dropped because no answer token survived truncation at max_length = {}",
            stats.rows, stats.dropped_no_targets, data.max_length
        )));
    }
    Ok((out, stats))
}

/// Splits examples into (train, validation) by seed.
///
/// Each example is ranked by `blake3(seed, source, row, row_hash)` and the
/// first `round(n · fraction)` go to validation (at least one when the
/// fraction is positive and there are two or more examples; never all). A
/// row's side depends only on the seed and its own identity, so the split is
/// reproducible and independent of the order of the sources.
pub(crate) fn split(
    examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let n = examples.len();
    let mut n_val = (n as f64 * fraction).round() as usize;
    if fraction > 0.0 && n_val == 0 && n >= 2 {
        n_val = 1;
    }
    n_val = n_val.min(n.saturating_sub(1));
    let mut keyed: Vec<(Hash, Example)> = examples
        .into_iter()
        .map(|e| {
            let p = &e.provenance;
            let k = Hash::domain(
                "trib.factory.split.v1",
                &[
                    &seed.to_le_bytes(),
                    p.source.as_bytes(),
                    &p.row.to_le_bytes(),
                    p.row_hash.0.as_bytes(),
                ],
            );
            (k, e)
        })
        .collect();
    keyed.sort_by_key(|a| a.0);
    let mut val = Vec::with_capacity(n_val);
    let mut train = Vec::with_capacity(n - n_val);
    for (i, (_, e)) in keyed.into_iter().enumerate() {
        if i < n_val {
            val.push(e);
        } else {
            train.push(e);
        }
    }
    // Training order is re-shuffled per epoch; keep a canonical order here.
    train.sort_by(|a, b| {
        (&a.provenance.source, a.provenance.row).cmp(&(&b.provenance.source, b.provenance.row))
    });
    val.sort_by(|a, b| {
        (&a.provenance.source, a.provenance.row).cmp(&(&b.provenance.source, b.provenance.row))
    });
    (train, val)
}

/// The order of training examples in `epoch`: a Fisher–Yates shuffle seeded
/// by `(seed, epoch)`.
pub(crate) fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    FactoryRng::new(seed, 0x5348_5546_0000_0000 | epoch as u64).shuffle(&mut order);
    order
}

/// One model input row: one example, or several packed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sequence {
    pub(crate) tokens: Vec<u32>,
    pub(crate) targets: Vec<bool>,
    /// Indices (into the training examples) of the examples it holds.
    pub(crate) examples: Vec<usize>,
}

/// Builds the sequences of one epoch from an example order.
///
/// Without packing, each example is its own sequence. With packing, examples
/// are appended greedily (in the shuffled order) while they fit in
/// `max_length`; an example that does not fit starts the next sequence
/// (examples are never split). The first token of each packed example is not a
/// target (it cannot be predicted from the unrelated example before it).
/// Attention is causal over the whole packed sequence: a packed example sees
/// the examples before it in the same sequence (as in GPT-style pre-training
/// and TRL's default packing); see docs/factory.md.
pub(crate) fn sequences(
    examples: &[Example],
    order: &[usize],
    max_length: usize,
    packing: bool,
) -> Vec<Sequence> {
    let mut out: Vec<Sequence> = Vec::new();
    for &i in order {
        let e = &examples[i];
        if packing {
            if let Some(last) = out.last_mut() {
                if last.tokens.len() + e.tokens.len() <= max_length {
                    last.tokens.extend(&e.tokens);
                    last.targets.push(false);
                    last.targets.extend(&e.targets[1..]);
                    last.examples.push(i);
                    continue;
                }
            }
        }
        out.push(Sequence {
            tokens: e.tokens.clone(),
            targets: e.targets.clone(),
            examples: vec![i],
        });
    }
    out
}

/// A padded micro-batch: `tokens` and `targets` are `[rows, len]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    pub(crate) rows: usize,
    pub(crate) len: usize,
    pub(crate) tokens: Vec<u32>,
    pub(crate) targets: Vec<bool>,
    /// Number of real (non-padding) tokens.
    pub(crate) real_tokens: usize,
}

impl Batch {
    /// Right-pads sequences to the longest; padding is never a target and,
    /// under causal attention, never seen by real tokens.
    pub(crate) fn pad(seqs: &[&Sequence], pad: u32) -> Batch {
        let len = seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(seqs.len() * len);
        let mut targets = Vec::with_capacity(seqs.len() * len);
        let mut real = 0;
        for s in seqs {
            real += s.tokens.len();
            tokens.extend(&s.tokens);
            targets.extend(&s.targets);
            tokens.extend(std::iter::repeat_n(pad, len - s.tokens.len()));
            targets.extend(std::iter::repeat_n(false, len - s.tokens.len()));
        }
        Batch {
            rows: seqs.len(),
            len,
            tokens,
            targets,
            real_tokens: real,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov(row: u64) -> Provenance {
        local_provenance("t", row, &format!("row {row}"))
    }

    fn ex(row: u64, n: usize) -> Example {
        let mut targets = vec![true; n];
        targets[0] = false;
        Example {
            tokens: (0..n as u32).map(|t| t + 10 * row as u32).collect(),
            targets,
            provenance: prov(row),
        }
    }

    #[test]
    fn txt_rows_are_paragraphs_and_jsonl_rows_are_lines() {
        let mut rows = Vec::new();
        read_local(
            Path::new("a.txt"),
            "a",
            "one\nline two\n\n\nthree\n",
            &mut rows,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].content, RowContent::Text("one\nline two".into()));
        assert_eq!(rows[1].provenance.row, 1);
        assert_eq!(rows[1].provenance.row_hash, RowHash(Hash::of(b"three")));
        let mut rows = Vec::new();
        read_local(
            Path::new("b.jsonl"),
            "b",
            "{\"text\":\"x\"}\n\n{\"text\":\"y\"}\n",
            &mut rows,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].provenance.row, 1);
        let e = read_local(
            Path::new("b.jsonl"),
            "b",
            "{\"text\":1}\nnot json\n",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2 is not JSON"), "{e}");
    }

    #[test]
    fn chatml_segments_mask_everything_but_the_assistant_turns() {
        let t = ChatTemplate::ChatMl {
            default_system: Some("sys".into()),
        };
        let msgs = vec![
            ChatMessage::new("user", "hi"),
            ChatMessage::new("assistant", "hello"),
            ChatMessage::new("user", "more"),
            ChatMessage::new("assistant", "sure"),
        ];
        let segs = chat_segments(&t, &msgs, &prov(0)).unwrap();
        let trained: Vec<&str> = segs
            .iter()
            .filter(|s| s.trainable)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(trained, vec!["hello<|im_end|>\n", "sure<|im_end|>\n"]);
        let joined: String = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, t.render(&msgs, false));
        assert!(segs[0].text.starts_with("<|im_start|>system\nsys"));
        assert!(segs[0].text.ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn alpaca_and_sharegpt_rows_become_messages() {
        let row = |v: Value| RawRow {
            provenance: prov(0),
            content: RowContent::Json(v),
        };
        let m = row_messages(
            &row(serde_json::json!({"instruction": "Add", "input": "1+1", "output": "2"})),
            DataFormat::Alpaca,
            Some("Be exact."),
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].content, "Add\n\n1+1");
        let m = row_messages(
            &row(serde_json::json!({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})),
            DataFormat::Messages,
            None,
        )
        .unwrap();
        assert_eq!(m[1], ChatMessage::new("assistant", "a"));
        let e = row_messages(
            &row(serde_json::json!({"instruction": "x"})),
            DataFormat::Alpaca,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`output`"), "{e}");
        let e = row_messages(
            &row(serde_json::json!({"messages": [{"role": "user", "content": "q"}]})),
            DataFormat::Messages,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no non-empty assistant"), "{e}");
        let e = row_messages(
            &row(serde_json::json!({"messages": [{"role": "robot", "content": "q"}]})),
            DataFormat::Messages,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown role \"robot\""), "{e}");
    }

    #[test]
    fn packing_fills_sequences_and_unmasks_no_boundary_token() {
        let exs = vec![ex(0, 4), ex(1, 3), ex(2, 5), ex(3, 2)];
        let seqs = sequences(&exs, &[0, 1, 2, 3], 8, true);
        assert_eq!(seqs.len(), 2);
        assert_eq!(seqs[0].examples, vec![0, 1]);
        assert_eq!(seqs[0].tokens.len(), 7);
        assert_eq!(
            seqs[0].targets,
            vec![false, true, true, true, false, true, true]
        );
        assert_eq!(seqs[1].examples, vec![2, 3]);
        let unpacked = sequences(&exs, &[3, 2, 1, 0], 8, false);
        assert_eq!(unpacked.len(), 4);
        assert_eq!(unpacked[0].examples, vec![3]);
        let total: usize = seqs
            .iter()
            .map(|s| s.targets.iter().filter(|&&t| t).count())
            .sum();
        let want: usize = exs.iter().map(|e| e.target_count()).sum::<usize>();
        assert_eq!(total, want, "packing keeps every target of every example");
    }

    #[test]
    fn split_is_deterministic_by_seed_and_disjoint() {
        let exs: Vec<Example> = (0..50).map(|i| ex(i, 3)).collect();
        let (t1, v1) = split(exs.clone(), 0.2, 9);
        let (t2, v2) = split(exs.clone(), 0.2, 9);
        let (_, v3) = split(exs.clone(), 0.2, 10);
        assert_eq!((t1.len(), v1.len()), (40, 10));
        assert_eq!(v1, v2);
        assert_eq!(t1, t2);
        assert_ne!(v1, v3);
        let rows: std::collections::HashSet<u64> =
            t1.iter().chain(&v1).map(|e| e.provenance.row).collect();
        assert_eq!(rows.len(), 50);
        let (t, v) = split(exs[..2].to_vec(), 0.01, 1);
        assert_eq!((t.len(), v.len()), (1, 1));
        let (t, v) = split(exs[..1].to_vec(), 0.5, 1);
        assert_eq!((t.len(), v.len()), (1, 0));
    }

    #[test]
    fn epoch_orders_differ_between_epochs_but_repeat_per_seed() {
        assert_eq!(epoch_order(20, 1, 0), epoch_order(20, 1, 0));
        assert_ne!(epoch_order(20, 1, 0), epoch_order(20, 1, 1));
    }

    proptest::proptest! {
        #[test]
        fn packing_respects_max_length_and_keeps_every_example_and_target(
            lens in proptest::collection::vec(2usize..40, 1..40),
            max_length in 40usize..100,
            seed in 0u64..1000,
        ) {
            let exs: Vec<Example> = lens.iter().enumerate().map(|(i, &n)| ex(i as u64, n)).collect();
            let order = epoch_order(exs.len(), seed, 0);
            let seqs = sequences(&exs, &order, max_length, true);
            let mut seen: Vec<usize> = seqs.iter().flat_map(|s| s.examples.clone()).collect();
            proptest::prop_assert_eq!(seen.clone(), order.clone());
            seen.sort();
            proptest::prop_assert_eq!(seen, (0..exs.len()).collect::<Vec<_>>());
            for s in &seqs {
                proptest::prop_assert!(s.tokens.len() <= max_length);
                proptest::prop_assert_eq!(s.tokens.len(), s.targets.len());
                let want: usize = s.examples.iter().map(|&i| exs[i].target_count()).sum();
                proptest::prop_assert_eq!(s.targets.iter().filter(|&&t| t).count(), want);
            }
        }

        #[test]
        fn the_split_partitions_the_examples(n in 1usize..60, fraction in 0.0f64..0.95, seed in 0u64..1000) {
            let exs: Vec<Example> = (0..n as u64).map(|i| ex(i, 3)).collect();
            let (t, v) = split(exs, fraction, seed);
            proptest::prop_assert_eq!(t.len() + v.len(), n);
            proptest::prop_assert!(!t.is_empty());
            let mut rows: Vec<u64> = t.iter().chain(&v).map(|e| e.provenance.row).collect();
            rows.sort();
            proptest::prop_assert_eq!(rows, (0..n as u64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn padding_is_never_a_target() {
        let a = Sequence {
            tokens: vec![1, 2, 3],
            targets: vec![false, true, true],
            examples: vec![0],
        };
        let b = Sequence {
            tokens: vec![4],
            targets: vec![false],
            examples: vec![1],
        };
        let batch = Batch::pad(&[&a, &b], 0);
        assert_eq!(batch.len, 3);
        assert_eq!(batch.tokens, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(batch.targets, vec![false, true, true, false, false, false]);
        assert_eq!(batch.real_tokens, 4);
    }
}
