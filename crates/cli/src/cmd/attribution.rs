//! `trib attribution receipt|payouts|verify|trace`: inference receipts,
//! payout lines, the re-check of a served answer against its receipt (the
//! node re-runs the token attribution) and the trace of any text against
//! the datanet versions a model was trained on.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use trib_client::wire::TraceRequest;
use trib_client::PayoutFilter;

use crate::{output, Global};

/// `trib attribution` subcommands.
#[derive(Subcommand, Debug)]
pub enum AttributionCommand {
    /// Show an inference receipt (fee, weights, method, payout lines).
    Receipt {
        /// Receipt id (hex).
        id: String,
    },
    /// Payout lines paid to an address, or of one receipt (also
    /// `trib query payouts`).
    Payouts(PayoutsArgs),
    /// Re-check a receipt the node served: the node re-runs the token
    /// attribution of the stored answer (`<home>/receipts/ID.json`) and
    /// checks the evidence hash, weights and payout lines of the receipt.
    Verify {
        /// Receipt id (hex).
        id: String,
    },
    /// Trace a text against the datanet versions a model was trained on:
    /// spans, their rows and contributors, and the weights a paid answer
    /// with this text would get.
    Trace {
        /// The base model's name or a registered adapter's id or name.
        #[arg(long)]
        model: String,
        /// The text to trace (at most 16 KiB).
        #[arg(long)]
        text: String,
        /// The question the text answers: the words the text repeats from
        /// it are masked first, as for a paid answer (at most 16 KiB).
        #[arg(long)]
        prompt: Option<String>,
        /// Spans to show, rarest first.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Sign the trace with this keystore key: rows of permissioned
        /// datanets it has a grant for show their contributors (anonymous
        /// traces show "withheld" for them).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
}

/// The filters of `trib attribution payouts` and `trib query payouts`.
#[derive(Args, Debug)]
pub struct PayoutsArgs {
    /// Contributor (or owner) address, or a keystore key name.
    #[arg(long, conflicts_with = "receipt")]
    contributor: Option<String>,
    /// Receipt id.
    #[arg(long)]
    receipt: Option<String>,
}

/// `GET /v1/payouts` with the filters of `a`: the node's JSON answer.
pub(crate) async fn payouts(g: &Global, a: PayoutsArgs) -> anyhow::Result<Value> {
    let filter = match (a.contributor, a.receipt) {
        (Some(c), None) => PayoutFilter::Contributor(super::query::resolve(g, &c)?),
        (None, Some(r)) => PayoutFilter::Receipt(r),
        _ => bail!("give --contributor ADDRESS|KEY or --receipt ID"),
    };
    Ok(g.client()?.payouts(&filter).await?)
}

fn print_trace(v: &Value) {
    println!(
        "model {}: method {}, {} span(s) over {} answer tokens, trace {:.1} ms",
        v["model"].as_str().unwrap_or("?"),
        v["method"].as_str().unwrap_or("?"),
        v["spans_total"],
        v["answer_tokens"],
        v["trace_ms"].as_f64().unwrap_or(0.0)
    );
    if let Some(reason) = v["reason"].as_str() {
        println!("  {reason}");
    }
    if v["prompt_masked"] == json!(true) {
        let words: Vec<&str> = v["masked_words"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::trim))
            .collect();
        println!(
            "  prompt words masked ({} tokens): {}",
            v["masked_tokens"],
            words.join(" | ")
        );
    }
    for sp in v["spans"].as_array().into_iter().flatten() {
        println!(
            "  span {:?}  ({} occurrence(s), tokens {}..{})",
            sp["text"].as_str().unwrap_or_default().trim(),
            sp["count"],
            sp["start"],
            sp["end"]
        );
        for r in sp["rows"].as_array().into_iter().flatten() {
            println!(
                "    row {}  contributor {}  credited {}  {:?}",
                r["row_hash"]
                    .as_str()
                    .map_or("?", |h| &h[..h.len().min(16)]),
                r["contributor"].as_str().unwrap_or("?"),
                r["credited_contributor"].as_str().unwrap_or("?"),
                r["snippet"].as_str().unwrap_or_default().trim()
            );
        }
    }
    for c in v["contributions"].as_array().into_iter().flatten() {
        let ppb = c["weight_ppb"].as_u64().unwrap_or(0);
        println!(
            "  weight {:>7.3}%  contribution {}  contributor {}",
            ppb as f64 / 1e7,
            c["contribution"].as_str().unwrap_or("?"),
            c["contributor"].as_str().unwrap_or("?")
        );
    }
}

/// Runs `trib attribution`.
pub fn run(g: &Global, c: AttributionCommand) -> anyhow::Result<()> {
    let client = g.client()?;
    super::runtime()?.block_on(async move {
        match c {
            AttributionCommand::Receipt { id } => {
                output::json(&client.receipt(&id).await?["receipt"])
            }
            AttributionCommand::Payouts(a) => output::json(&payouts(g, a).await?),
            AttributionCommand::Verify { id } => {
                let v = client.verify_receipt(&id).await?;
                if g.json {
                    output::json(&v)?;
                }
                if v["ok"] != json!(true) {
                    let problems: Vec<String> = v["problems"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect();
                    bail!("receipt {id} does NOT verify:\n  {}", problems.join("\n  "));
                }
                if !g.json {
                    let versions: Vec<String> = v["datanets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| format!("{}@{}", d[0].as_str().unwrap_or("?"), d[1]))
                        .collect();
                    println!(
                        "receipt {id}: OK (method {}, datanet versions {}, {} weights, evidence hash {}, re-traced; {} payout lines match)",
                        v["method"].as_str().unwrap_or("?"),
                        if versions.is_empty() { "none".into() } else { versions.join(", ") },
                        v["weights"].as_array().map_or(0, Vec::len),
                        v["evidence_hash"].as_str().unwrap_or("?"),
                        v["lines"]
                    );
                }
                Ok(())
            }
            AttributionCommand::Trace {
                model,
                text,
                prompt,
                top,
                key,
            } => {
                let client = match key {
                    Some(k) => client.with_signer(g.home().keystore()?.load(&k, None)?),
                    None => client,
                };
                let v = client
                    .trace(&TraceRequest {
                        model,
                        text,
                        prompt,
                        top: Some(top),
                    })
                    .await?;
                if g.json {
                    return output::json(&v);
                }
                print_trace(&v);
                Ok(())
            }
        }
    })
}
