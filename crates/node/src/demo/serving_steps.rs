//! The demo's paid-inference steps: the node (started with the demo model as
//! its served base model) serves the adapter trained in the factory step; a
//! user with an API key asks it a question about the US Constitution over
//! the OpenAI-compatible HTTP API, the answer is settled on the ledger, the
//! receipt's payout lines and each contributor's balance change are shown,
//! and the stored answer is verified against the on-chain receipt.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use trib_ledger::{Action, InferenceReceipt, PayoutLine, PayoutRole};
use trib_types::{Address, Amount, ReceiptId};

use super::{Demo, DemoError, TO_STDERR};
use crate::billing::ApiKeys;
use crate::serving::{verify_stored_answer, StoredAnswer};

/// How long to wait for the answer (generation plus settlement).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for the settlement to show up as a receipt.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The question the demo user asks.
const QUESTION: &str = "What does the US Constitution say about the powers of Congress?";
/// Answer length cap, to keep the demo short on a CPU.
const MAX_TOKENS: u32 = 48;

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
    /// The receipt's attribution method.
    pub method: String,
    /// The on-chain payout lines.
    pub lines: Vec<PayoutLine>,
    /// Each contributor's balance change over the request (name, address, delta in base units).
    pub contributor_gains: Vec<(String, Address, u128)>,
    /// Whether the stored answer verified against the on-chain receipt.
    pub verified: bool,
}

/// Copies the PEFT files of `from` (files only, no sub-folders) into `to`.
fn copy_adapter(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            n += 1;
        }
    }
    Ok(n)
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
        let target = home_root.join("adapters").join(adapter.to_string());
        let copied = copy_adapter(&adapter_dir, &target).map_err(|e| {
            super::unexpected("serve adapter", format!("{}: {e}", target.display()))
        })?;
        say!(
            "      {copied} adapter files copied to {}",
            target.display()
        );
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

        self.next_step(
            "paid inference: dave asks the adapter about the US Constitution over /v1/chat/completions",
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
        say!("      POST {base}/v1/chat/completions  model {adapter}");
        say!("      question: {QUESTION}");
        let started = Instant::now();
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&api_key)
            .json(&json!({
                "model": adapter.to_string(),
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
        let attr = &v["attribution"];
        say!(
            "      attribution: method {}, fallback {}, {} traced contributions, evidence {}",
            attr["method"],
            attr["fallback"],
            attr["contributions"].as_array().map_or(0, Vec::len),
            attr["evidence_hash"].as_str().unwrap_or("?")
        );

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
            "      receipt on the ledger: method {:?}, {} payout lines",
            on_chain.method,
            on_chain.lines.len()
        );
        let page: Value = http
            .get(format!("{base}/v1/payouts?receipt={receipt}"))
            .send()
            .await
            .map_err(|e| super::unexpected("payouts", e.to_string()))?
            .json()
            .await
            .map_err(|e| super::unexpected("payouts", e.to_string()))?;
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

        self.next_step("verify the receipt: the stored answer hashes to the on-chain evidence and the payouts sum to the fee");
        let stored: StoredAnswer = serde_json::from_value(r["answer"].clone())
            .map_err(|e| super::unexpected("verify receipt", format!("no stored answer: {e}")))?;
        let verified = match verify_stored_answer(&stored, &on_chain) {
            Ok(()) => {
                say!(
                    "      receipt {receipt} verified: evidence {} matches, {} lines sum to the fee",
                    on_chain.evidence_hash.short(),
                    on_chain.lines.len()
                );
                true
            }
            Err(problems) => {
                return Err(super::unexpected("verify receipt", problems.join("; ")));
            }
        };
        Ok(Some(DemoInference {
            adapter: adapter.to_string(),
            answer,
            fee,
            receipt,
            method: on_chain.method.clone(),
            lines,
            contributor_gains: gains,
            verified,
        }))
    }
}
