//! `export(NAME@VERSION)`: a version as JSONL with provenance, byte-identical
//! on every machine, and its verification.
//!
//! Line 1 is a header object, then one object per row in canonical order:
//!
//! ```text
//! {"format":"tributary-datanet-export/1","datanet":"us-law","datanet_id":"…","version":1,"root":"…","rows":2}
//! {"index":0,"row_hash":"…","contributor":"trib…","contribution":"…","text":"…"}
//! {"index":1,"row_hash":"…","contributor":"trib…","contribution":"…","record":{"instruction":"…","input":"…","output":"…"}}
//! ```
//!
//! Fields appear in exactly this order; there are no floats; strings are
//! serde_json's escaping (UTF-8 kept, control characters escaped); every line
//! ends with `\n`.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use trib_types::{Address, ContributionId, DatanetId, Hash, RowHash};

use crate::error::DatanetError;
use crate::parse::parse_record;
use crate::row::{ChatMessage, RowContent, StoredRow};
use crate::version::{merkle_root, DatanetVersion, VersionLeaf};

/// The `format` value of the header line.
pub const EXPORT_FORMAT: &str = "tributary-datanet-export/1";

#[derive(Serialize)]
struct Header<'a> {
    format: &'a str,
    datanet: &'a str,
    datanet_id: DatanetId,
    version: u64,
    root: Hash,
    rows: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    index: u64,
    row_hash: RowHash,
    contributor: Address,
    contribution: ContributionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Record<'a>>,
}

/// A structured record, fields in a fixed order (typed structs, never a
/// `serde_json::Map`, whose key order depends on crate features).
#[derive(Serialize)]
#[serde(untagged)]
enum Record<'a> {
    Alpaca {
        instruction: &'a str,
        input: &'a str,
        output: &'a str,
    },
    PromptResponse {
        prompt: &'a str,
        response: &'a str,
    },
    Messages {
        messages: &'a [ChatMessage],
    },
}

impl<'a> Record<'a> {
    fn of(content: &'a RowContent) -> Option<Record<'a>> {
        Some(match content {
            RowContent::Text { .. } => return None,
            RowContent::Alpaca {
                instruction,
                input,
                output,
            } => Record::Alpaca {
                instruction,
                input,
                output,
            },
            RowContent::PromptResponse { prompt, response } => {
                Record::PromptResponse { prompt, response }
            }
            RowContent::Messages { messages } => Record::Messages { messages },
        })
    }
}

fn io(e: std::io::Error) -> DatanetError {
    DatanetError::io("writing export", "<writer>", e)
}

/// Writes `version` of datanet `name` with its rows (in canonical order) as
/// JSONL. Returns the bytes written.
pub fn write_export<W: Write>(
    out: &mut W,
    name: &str,
    version: &DatanetVersion,
    rows: impl IntoIterator<Item = StoredRow>,
) -> Result<u64, DatanetError> {
    let mut written = 0u64;
    let mut put = |out: &mut W, v: &[u8]| -> Result<(), DatanetError> {
        out.write_all(v).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        written += v.len() as u64 + 1;
        Ok(())
    };
    let header = Header {
        format: EXPORT_FORMAT,
        datanet: name,
        datanet_id: version.datanet,
        version: version.number,
        root: version.root,
        rows: version.row_count,
    };
    put(
        out,
        &serde_json::to_vec(&header).expect("header serialises"),
    )?;
    for (i, row) in rows.into_iter().enumerate() {
        let (text, record) = match &row.content {
            RowContent::Text { text } => (Some(text.as_str()), None),
            other => (None, Record::of(other)),
        };
        let line = Line {
            index: i as u64,
            row_hash: row.row_hash,
            contributor: row.contributor,
            contribution: row.contribution,
            text,
            record,
        };
        put(out, &serde_json::to_vec(&line).expect("row serialises"))?;
    }
    out.flush().map_err(io)?;
    Ok(written)
}

/// What [`verify_export`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportCheck {
    /// The root the header claims.
    pub declared_root: Hash,
    /// The root recomputed from the rows' content.
    pub computed_root: Hash,
    /// Rows read.
    pub rows: u64,
    /// The version number in the header.
    pub version: u64,
}

impl ExportCheck {
    /// Whether the recomputed root equals the declared one.
    pub fn is_consistent(&self) -> bool {
        self.declared_root == self.computed_root
    }
}

/// Reads an export back: recomputes every row hash from its content (and
/// refuses a mismatch), checks indices and canonical order, and recomputes
/// the Merkle root.
pub fn verify_export<R: BufRead>(input: R) -> Result<ExportCheck, DatanetError> {
    let bad = |line: u64, reason: String| DatanetError::BadExport { line, reason };
    let mut lines = input.lines();
    let header_line = lines
        .next()
        .ok_or_else(|| bad(1, "empty file".into()))?
        .map_err(|e| bad(1, e.to_string()))?;
    let header: serde_json::Value =
        serde_json::from_str(&header_line).map_err(|e| bad(1, e.to_string()))?;
    if header.get("format").and_then(|f| f.as_str()) != Some(EXPORT_FORMAT) {
        return Err(bad(1, format!("not a {EXPORT_FORMAT} header")));
    }
    let field = |name: &str| {
        header
            .get(name)
            .ok_or_else(|| bad(1, format!("header has no `{name}`")))
    };
    let declared_root: Hash =
        serde_json::from_value(field("root")?.clone()).map_err(|e| bad(1, e.to_string()))?;
    let declared_rows = field("rows")?
        .as_u64()
        .ok_or_else(|| bad(1, "`rows` is not an integer".into()))?;
    let version = field("version")?
        .as_u64()
        .ok_or_else(|| bad(1, "`version` is not an integer".into()))?;

    let mut leaves = Vec::new();
    let mut previous: Option<RowHash> = None;
    for (i, line) in lines.enumerate() {
        let n = i as u64 + 2;
        let line = line.map_err(|e| bad(n, e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(n, e.to_string()))?;
        let get = |k: &str| v.get(k).cloned().ok_or_else(|| bad(n, format!("no `{k}`")));
        let index = get("index")?
            .as_u64()
            .ok_or_else(|| bad(n, "`index` is not an integer".into()))?;
        if index != i as u64 {
            return Err(bad(n, format!("index {index}, expected {i}")));
        }
        let row_hash: RowHash =
            serde_json::from_value(get("row_hash")?).map_err(|e| bad(n, e.to_string()))?;
        let contributor: Address =
            serde_json::from_value(get("contributor")?).map_err(|e| bad(n, e.to_string()))?;
        let contribution: ContributionId =
            serde_json::from_value(get("contribution")?).map_err(|e| bad(n, e.to_string()))?;
        let content = match (v.get("text"), v.get("record")) {
            (Some(serde_json::Value::String(t)), None) => RowContent::Text { text: t.clone() },
            (None, Some(r)) => parse_record(r).map_err(|e| bad(n, e))?,
            _ => {
                return Err(bad(
                    n,
                    "a row needs exactly one of `text` (string) or `record`".into(),
                ))
            }
        };
        let actual = content.row_hash();
        if actual != row_hash {
            return Err(bad(
                n,
                format!("row_hash {row_hash} does not match the content (hashes to {actual})"),
            ));
        }
        if previous.is_some_and(|p| p >= row_hash) {
            return Err(bad(
                n,
                "rows are not in canonical (ascending row hash) order".into(),
            ));
        }
        previous = Some(row_hash);
        leaves.push(
            VersionLeaf {
                row_hash,
                contributor,
                contribution,
            }
            .hash(),
        );
    }
    if leaves.len() as u64 != declared_rows {
        return Err(bad(
            1,
            format!(
                "header says {declared_rows} rows, file has {}",
                leaves.len()
            ),
        ));
    }
    Ok(ExportCheck {
        declared_root,
        computed_root: merkle_root(&leaves),
        rows: declared_rows,
        version,
    })
}

/// One row of an export as a reader (training, a client) takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// Content hash.
    pub row_hash: RowHash,
    /// Who contributed it.
    pub contributor: Address,
    /// The contribution it came from.
    pub contribution: ContributionId,
    /// The row as text: a text row's `text`, a structured row's `record`
    /// as compact JSON.
    pub content: String,
}

/// The rows of an export (the lines after its header), in file order.
/// Parsing only: run [`verify_export`] first on bytes from elsewhere.
pub fn export_rows(bytes: &[u8]) -> Result<Vec<ExportRow>, DatanetError> {
    #[derive(Deserialize)]
    struct Row {
        row_hash: RowHash,
        contributor: Address,
        contribution: ContributionId,
        text: Option<String>,
        record: Option<serde_json::Value>,
    }
    let mut rows = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate().skip(1) {
        if line.is_empty() {
            continue;
        }
        let r: Row = serde_json::from_slice(line).map_err(|e| DatanetError::BadExport {
            line: i as u64 + 1,
            reason: format!("export row does not parse: {e}"),
        })?;
        rows.push(ExportRow {
            row_hash: r.row_hash,
            contributor: r.contributor,
            contribution: r.contribution,
            content: r
                .text
                .unwrap_or_else(|| r.record.map(|r| r.to_string()).unwrap_or_default()),
        });
    }
    Ok(rows)
}
