//! `trib attribution receipt|payouts|verify`: inference receipts, payout
//! lines and the re-check of a served answer against its receipt.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::Value;
use trib_node::ledger::InferenceReceipt;
use trib_node::StoredAnswer;

use crate::{output, Global};

/// `trib attribution` subcommands.
#[derive(Subcommand, Debug)]
pub enum AttributionCommand {
    /// Show an inference receipt (fee, weights, method, payout lines).
    Receipt {
        /// Receipt id (hex).
        id: String,
    },
    /// Payout lines paid to an address, or of one receipt.
    Payouts {
        /// Contributor (or owner) address.
        #[arg(long, conflicts_with = "receipt")]
        contributor: Option<String>,
        /// Receipt id.
        #[arg(long)]
        receipt: Option<String>,
    },
    /// Re-check a receipt this node served: the stored answer
    /// (`<home>/receipts/ID.json`) against the ledger's receipt.
    Verify {
        /// Receipt id (hex).
        id: String,
    },
}

async fn get(g: &Global, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{path}", g.node.trim_end_matches('/'));
    let resp = reqwest::get(&url)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            v["error"]["message"].as_str().unwrap_or("?")
        );
    }
    Ok(v)
}

/// Runs `trib attribution`.
pub fn run(g: &Global, c: AttributionCommand) -> anyhow::Result<()> {
    super::runtime()?.block_on(async move {
        match c {
            AttributionCommand::Receipt { id } => {
                output::json(&get(g, &format!("/v1/receipts/{id}")).await?["receipt"])
            }
            AttributionCommand::Payouts {
                contributor,
                receipt,
            } => {
                let q = match (contributor, receipt) {
                    (Some(c), None) => format!("contributor={c}"),
                    (None, Some(r)) => format!("receipt={r}"),
                    _ => bail!("give --contributor ADDRESS or --receipt ID"),
                };
                output::json(&get(g, &format!("/v1/payouts?{q}")).await?)
            }
            AttributionCommand::Verify { id } => {
                let path = g.home().root().join("receipts").join(format!("{id}.json"));
                let stored: StoredAnswer = serde_json::from_slice(
                    &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                )
                .with_context(|| format!("{} is not a stored answer", path.display()))?;
                let v = get(g, &format!("/v1/receipts/{id}")).await?;
                let receipt: InferenceReceipt = serde_json::from_value(v["receipt"].clone())
                    .context("the node's receipt does not parse")?;
                match trib_node::verify_stored_answer(&stored, &receipt) {
                    Ok(()) => {
                        if g.json {
                            return output::json(&serde_json::json!({ "receipt": id, "ok": true }));
                        }
                        println!(
                            "receipt {id}: OK (evidence hash {}, fee {}, {} payout lines)",
                            receipt.evidence_hash,
                            output::open(receipt.fee),
                            receipt.lines.len()
                        );
                        Ok(())
                    }
                    Err(errs) => bail!("receipt {id} does NOT verify:\n  {}", errs.join("\n  ")),
                }
            }
        }
    })
}
