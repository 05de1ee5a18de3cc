//! The demo's paid-inference steps: the node (started with the demo model as
//! its served base model) serves the adapter trained in the factory step; a
//! user with an API key asks it to quote the Constitution's preamble over
//! the OpenAI-compatible HTTP API, the answer is traced against the token
//! index of the datanet versions the adapter was trained on and settled on
//! the ledger by the traced weights (or by the ledger's fallback rule when
//! no span clears the thresholds, which the demo then says), the receipt's
//! payout lines and each contributor's balance change are shown, and the
//! node re-runs the trace to verify the stored answer against the receipt.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use trib_ledger::{Action, InferenceReceipt, PayoutLine, PayoutRole};
use trib_types::{AdapterId, Address, Amount, ReceiptId, SecretKey};

use super::{Demo, DemoError, TO_STDERR};
use crate::apikeys::ApiKeys;

/// How long to wait for the answer (generation plus settlement).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for the settlement to show up as a receipt.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The question the demo user asks: a quotation, so the answer is likely
/// to hold verbatim spans of the Constitution rows the adapter was trained
/// on (the answer depends on the trained adapter, so the demo says which
/// method settled it either way).
const QUESTION: &str = "What is the first sentence of the US Constitution? Quote it exactly.";
/// Answer length cap, to keep the demo short on a CPU.
const MAX_TOKENS: u32 = 64;

/// The paid request the demo made, for `--json` and for tests.
#[derive(Debug, Clone, Serialize)]
pub struct DemoInference {
    /// The adapter queried.
    pub adapter: String,
    /// The answer text.
    pub answer: String,
    /// The fee charged.
    pub fee: Amount,
    /// The receipt id.
    pub receipt: ReceiptId,
    /// The receipt's attribution method (`token-spans`, `token-spans+datainf`,
    /// `datainf` or `datanet-fallback`).
    pub method: String,
    /// Traced spans of the answer (text, occurrences, contributors of the rows shown).
    pub spans: Vec<(String, u64, Vec<Address>)>,
    /// Traced weights per contribution (parts per billion); empty on the fallback.
    pub weights: Vec<(trib_types::ContributionId, u64)>,
    /// The datanet versions the receipt names (what the answer was traced against).
    pub datanets: Vec<(trib_types::DatanetId, u32)>,
    /// The answer's words masked because the question holds them.
    pub masked_words: Vec<String>,
    /// The on-chain payout lines.
    pub lines: Vec<PayoutLine>,
    /// Each contributor's balance change over the request (name, address, delta in base units).
    pub contributor_gains: Vec<(String, Address, u128)>,
    /// Whether the stored answer verified against the on-chain receipt.
    pub verified: bool,
}

fn role_name(role: &PayoutRole) -> String {
    match role {
        PayoutRole::Contributor { contribution } => {
            let id = contribution.to_string();
            format!("contributor of {}", &id[..id.len().min(8)])
        }
        PayoutRole::AdapterOwner => "adapter owner".into(),
        PayoutRole::BaseModelOwner => "base model owner".into(),
        PayoutRole::Stakers => "stakers".into(),
        PayoutRole::Treasury => "treasury".into(),
    }
}

/// The answer to dave's paid request, as the node returned it.
struct PaidAnswer {
    answer: String,
    fee: Amount,
    receipt: ReceiptId,
    /// The response's `attribution` field.
    attribution: Value,
}

impl Demo {
    /// The paid-inference steps (3 numbered steps). `None` when the
    /// factory step did not train an adapter (no demo model).
    pub(super) async fn paid_inference(
        &mut self,
        home_root: &Path,
        serving: bool,
    ) -> Result<Option<DemoInference>, DemoError> {
        let artifacts = self.artifacts.clone();
        let trained = artifacts
            .as_ref()
            .and_then(|a| Some((a.adapter?, a.adapter_dir.clone()?)));
        self.next_step("OpenLoRA serving: the node serves the adapter; dave gets an API key and approves the operator");
        let Some((adapter, adapter_dir)) = trained.filter(|_| serving) else {
            say!("      no trained adapter or no served base model (run scripts/fetch-model.sh); skipping paid inference");
            self.next_step("paid inference (skipped)");
            self.next_step("receipt verification (skipped)");
            return Ok(None);
        };
        let contributors = artifacts.map(|a| a.contributors).unwrap_or_default();
        self.install_adapter(home_root, adapter, &adapter_dir)?;
        let api_key = self.set_up_dave(home_root).await?;

        self.next_step(
            "paid inference: dave asks the adapter to quote the US Constitution over /v1/chat/completions; the answer is traced to the rows it quotes",
        );
        let mut before = Vec::new();
        for (name, key) in &contributors {
            let a = self.client.account(&key.address()).await?;
            before.push((name.clone(), key.address(), a.balance));
        }
        let http = reqwest::Client::builder()
            .timeout(ANSWER_TIMEOUT)
            .build()
            .map_err(|e| super::unexpected("inference", e.to_string()))?;
        let base = self.client.base_url().trim_end_matches('/').to_string();
        let paid = ask(&http, &base, &api_key, &adapter.to_string()).await?;
        let spans = print_attribution(&paid.attribution, &contributors);
        let on_chain = self.wait_for_receipt(&http, &base, &paid.receipt).await?;
        let lines = payout_lines(&http, &base, &paid.receipt, &on_chain, paid.fee).await?;
        let gains = self.contributor_gains(before, &lines).await?;

        self.next_step("verify the receipt: the node re-runs the trace from the stored answer and checks weights, evidence hash and payout lines");
        let verified = verify_receipt(&http, &base, &paid.receipt, &on_chain).await?;
        Ok(Some(DemoInference {
            adapter: adapter.to_string(),
            answer: paid.answer,
            fee: paid.fee,
            receipt: paid.receipt,
            method: on_chain.method.clone(),
            spans,
            weights: on_chain.weights.clone(),
            datanets: on_chain.datanets.clone(),
            masked_words: paid.attribution["masked_words"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str().map(String::from))
                .collect(),
            lines,
            contributor_gains: gains,
            verified,
        }))
    }

    /// Copies the trained adapter (and its gradient cache, so the answer
    /// can be attributed by DataInf too) where the node serves it from.
    fn install_adapter(
        &self,
        home_root: &Path,
        adapter: AdapterId,
        adapter_dir: &Path,
    ) -> Result<(), DemoError> {
        let gradient_cache = self
            .artifacts
            .as_ref()
            .and_then(|a| a.gradient_cache.clone());
        let target = home_root.join("adapters").join(adapter.to_string());
        let installed =
            crate::jobs::install_adapter(adapter_dir, gradient_cache.as_deref(), &target).map_err(
                |e| super::unexpected("serve adapter", format!("{}: {e}", target.display())),
            )?;
        say!(
            "      {} adapter files and {} gradient-cache files copied to {}",
            installed.adapter_files,
            installed.cache_files,
            target.display()
        );
        Ok(())
    }

    /// Dave: a new key funded with 100 OPEN that approves the operator for
    /// 10 OPEN, and an API key for it (returned).
    async fn set_up_dave(&mut self, home_root: &Path) -> Result<String, DemoError> {
        let dave = self.keystore.generate("dave", None)?;
        let dave_key = self.keystore.load("dave", None)?;
        let operator = self.producer.address();
        self.submit_all(vec![(
            self.producer.clone(),
            Action::Transfer {
                to: dave.address,
                amount: Amount::open(100),
            },
        )])
        .await?;
        self.submit_all(vec![(
            dave_key.clone(),
            Action::ApproveOperator {
                operator,
                allowance: Amount::open(10),
            },
        )])
        .await?;
        let api_key = ApiKeys::create(&ApiKeys::path_in(home_root), dave.address)
            .map_err(|e| super::unexpected("api key", e.to_string()))?;
        say!(
            "      dave {} holds 100 OPEN, allows operator {operator} up to 10 OPEN, API key {}…",
            dave.address,
            &api_key[..api_key.len().min(14)]
        );
        Ok(api_key)
    }

    /// Waits for the settlement to commit and returns the on-chain receipt.
    async fn wait_for_receipt(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        receipt: &ReceiptId,
    ) -> Result<InferenceReceipt, DemoError> {
        // The receipt appears once the settlement transaction commits.
        let url = format!("{base}/v1/receipts/{receipt}");
        let waited = Instant::now();
        let r: Value = loop {
            let resp = http
                .get(&url)
                .send()
                .await
                .map_err(|e| super::unexpected("receipt", e.to_string()))?;
            if resp.status().is_success() {
                break resp
                    .json()
                    .await
                    .map_err(|e| super::unexpected("receipt", e.to_string()))?;
            }
            if waited.elapsed() > RECEIPT_TIMEOUT {
                return Err(super::unexpected(
                    "receipt",
                    format!("receipt {receipt} not on the ledger after {RECEIPT_TIMEOUT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.committed += 1;
        let on_chain: InferenceReceipt = serde_json::from_value(r["receipt"].clone())
            .map_err(|e| super::unexpected("receipt", format!("{e}: {r}")))?;
        say!(
            "      receipt on the ledger: method {:?}, datanet versions [{}], evidence {}, {} payout lines",
            on_chain.method,
            on_chain
                .datanets
                .iter()
                .map(|(d, v)| format!("{}@{v}", d.0.short()))
                .collect::<Vec<_>>()
                .join(", "),
            on_chain.evidence_hash.short(),
            on_chain.lines.len()
        );
        Ok(on_chain)
    }

    /// Each contributor's balance change over the request, printed with
    /// what this receipt paid them.
    async fn contributor_gains(
        &self,
        before: Vec<(String, Address, Amount)>,
        lines: &[PayoutLine],
    ) -> Result<Vec<(String, Address, u128)>, DemoError> {
        let mut gains = Vec::new();
        for (name, address, was) in before {
            let now = self.client.account(&address).await?.balance;
            let delta = now.0.saturating_sub(was.0);
            let paid: u128 = lines
                .iter()
                .filter(|l| l.recipient == address)
                .map(|l| l.amount.0)
                .sum();
            say!(
                "      {name:<6} balance {} -> {} OPEN (+{} OPEN from this receipt)",
                was.to_open_string(),
                now.to_open_string(),
                Amount(paid).to_open_string()
            );
            gains.push((name, address, delta));
        }
        Ok(gains)
    }
}

/// Dave's paid `POST /v1/chat/completions` to `adapter`: prints the
/// answer, its fee and receipt id.
async fn ask(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    adapter: &str,
) -> Result<PaidAnswer, DemoError> {
    say!("      POST {base}/v1/chat/completions  model {adapter}");
    say!("      question: {QUESTION}");
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(api_key)
        .json(&json!({
            "model": adapter,
            "messages": [{ "role": "user", "content": QUESTION }],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
        }))
        .send()
        .await
        .map_err(|e| super::unexpected("inference", e.to_string()))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .map_err(|e| super::unexpected("inference", e.to_string()))?;
    if !status.is_success() {
        return Err(super::unexpected(
            "inference",
            format!("HTTP {status}: {v}"),
        ));
    }
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let fee = v["fee"]["base_units"]
        .as_str()
        .and_then(|s| s.parse::<u128>().ok())
        .map(Amount)
        .ok_or_else(|| super::unexpected("inference", format!("no fee in {v}")))?;
    let receipt: ReceiptId = v["receipt_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| super::unexpected("inference", format!("no receipt id in {v}")))?;
    say!(
        "      answer ({} prompt + {} completion tokens, {:.1?}): {}",
        v["usage"]["prompt_tokens"],
        v["usage"]["completion_tokens"],
        started.elapsed(),
        answer.trim().replace('\n', " ")
    );
    say!("      fee {}  receipt {receipt}", super::fmt_open(fee));
    Ok(PaidAnswer {
        answer,
        fee,
        receipt,
        attribution: v["attribution"].clone(),
    })
}

/// Prints the response's attribution summary (method, spans with the
/// contributors credited, masked words, the fallback's reason); returns
/// the spans.
fn print_attribution(
    attr: &Value,
    contributors: &[(String, SecretKey)],
) -> Vec<(String, u64, Vec<Address>)> {
    let spans: Vec<(String, u64, Vec<Address>)> = attr["spans"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|sp| {
                    let who = sp["rows"]
                        .as_array()
                        .map(|rows| {
                            rows.iter()
                                .filter_map(|r| r["credited_contributor"].as_str()?.parse().ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    (
                        sp["text"].as_str().unwrap_or_default().to_string(),
                        sp["count"].as_u64().unwrap_or(0),
                        who,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    say!(
        "      attribution: method {}, {} span(s) traced in the {}-token answer (trace {:.1} ms), evidence {}",
        attr["method"].as_str().unwrap_or("?"),
        attr["spans_total"].as_u64().unwrap_or(0),
        attr["answer_tokens"].as_u64().unwrap_or(0),
        attr["trace_ms"].as_f64().unwrap_or(0.0),
        attr["evidence_hash"].as_str().unwrap_or("?")
    );
    let name_of = |a: &Address| {
        contributors
            .iter()
            .find(|(_, k)| k.address() == *a)
            .map_or_else(|| a.to_string(), |(n, _)| n.clone())
    };
    for (text, count, who) in &spans {
        let names: Vec<String> = who.iter().map(name_of).collect();
        say!(
            "        span {:?} ({count} occurrence{} in the datanet rows; credited: {})",
            text.trim(),
            if *count == 1 { "" } else { "s" },
            names.join(", ")
        );
    }
    if attr["prompt_masked"] == json!(true) {
        let words: Vec<&str> = attr["masked_words"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::trim))
            .collect();
        say!(
            "      the question's words were masked before tracing ({} answer tokens: {}), so only what the answer adds can earn",
            attr["masked_tokens"],
            words.join(" | ")
        );
    }
    if let Some(reason) = attr["reason"].as_str() {
        say!("      no traced weights: {reason}");
    }
    spans
}

/// The receipt's payout lines from `GET /v1/payouts?receipt=`, checked
/// equal to the on-chain receipt's and printed with their sum.
async fn payout_lines(
    http: &reqwest::Client,
    base: &str,
    receipt: &ReceiptId,
    on_chain: &InferenceReceipt,
    fee: Amount,
) -> Result<Vec<PayoutLine>, DemoError> {
    let page = get_json(
        http,
        &format!("{base}/v1/payouts?receipt={receipt}"),
        "payouts",
    )
    .await?;
    let lines: Vec<PayoutLine> = serde_json::from_value(page["items"].clone())
        .map_err(|e| super::unexpected("payouts", format!("{e}: {page}")))?;
    if lines != on_chain.lines {
        return Err(super::unexpected(
            "payouts",
            "GET /v1/payouts?receipt= disagrees with the receipt's lines",
        ));
    }
    for l in &lines {
        say!(
            "        {:<44} {:<40} {:>16} OPEN",
            l.recipient.to_string(),
            role_name(&l.role),
            l.amount.to_open_string()
        );
    }
    let sum: u128 = lines.iter().map(|l| l.amount.0).sum();
    say!(
        "        total {} OPEN = fee {} OPEN",
        Amount(sum).to_open_string(),
        fee.to_open_string()
    );
    Ok(lines)
}

/// `GET /v1/receipts/{id}/verify`: the node re-runs the trace from the
/// stored answer; anything but `ok` stops the demo.
async fn verify_receipt(
    http: &reqwest::Client,
    base: &str,
    receipt: &ReceiptId,
    on_chain: &InferenceReceipt,
) -> Result<bool, DemoError> {
    let check = get_json(
        http,
        &format!("{base}/v1/receipts/{receipt}/verify"),
        "verify receipt",
    )
    .await?;
    if check["ok"] != json!(true) {
        return Err(super::unexpected(
            "verify receipt",
            format!("the receipt does not verify: {check}"),
        ));
    }
    say!(
        "      receipt {receipt} verified: re-traced evidence {} matches, {} weights, {} lines sum to the fee",
        on_chain.evidence_hash.short(),
        on_chain.weights.len(),
        on_chain.lines.len()
    );
    Ok(true)
}

/// `GET url` as JSON; a failure stops the demo at `step`.
async fn get_json(
    http: &reqwest::Client,
    url: &str,
    step: &'static str,
) -> Result<Value, DemoError> {
    http.get(url)
        .send()
        .await
        .map_err(|e| super::unexpected(step, e.to_string()))?
        .json()
        .await
        .map_err(|e| super::unexpected(step, e.to_string()))
}
