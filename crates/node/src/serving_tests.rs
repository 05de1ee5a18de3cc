//! The OpenAI-compatible endpoints end to end on a running node over the
//! tiny model: authentication, the 402 pre-check, errors, a paid answer
//! settled into a receipt with payout lines.

use std::time::Duration;

use serde_json::{json, Value};
use trib_ledger::Action;
use trib_types::{Amount, ReceiptId, SecretKey};

use crate::billing::ApiKeys;
use crate::client::NodeClient;
use crate::config::NodeConfig;
use crate::home::{InitOptions, NodeHome};
use crate::node::{NodeOverrides, RunningNode};

struct Fixture {
    _dir: tempfile::TempDir,
    node: RunningNode,
    client: NodeClient,
    http: reqwest::Client,
    producer: SecretKey,
    keys_path: std::path::PathBuf,
    base_name: String,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        trib_model::write_tiny_gguf(
            &model,
            &trib_model::TinySpec::default(),
            11,
            trib_model::GgmlDType::Q8_0,
        )
        .unwrap();
        let root = dir.path().join("home");
        NodeHome::init(
            &root,
            InitOptions {
                dev: true,
                config: NodeConfig {
                    base_model: Some(model.clone()),
                    ..NodeConfig::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let home = NodeHome::new(&root);
        let producer = home.keystore().unwrap().load("producer", None).unwrap();
        let node = RunningNode::start(
            &home,
            NodeOverrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                block_interval: Some(Duration::from_millis(20)),
            },
        )
        .await
        .unwrap();
        let client = NodeClient::new(&node.url()).unwrap();
        let info = crate::models::describe_model(&model).unwrap();
        let f = Fixture {
            _dir: dir,
            node,
            client,
            http: reqwest::Client::new(),
            producer,
            keys_path: ApiKeys::path_in(&root),
            base_name: info.name.clone(),
        };
        // The base model must be registered for settlement.
        f.commit(
            &f.producer.clone(),
            Action::RegisterBaseModel {
                model: info.id,
                name: info.name,
                architecture: "llama".into(),
                licence: "Apache-2.0".into(),
            },
        )
        .await;
        f
    }

    async fn commit(&self, key: &SecretKey, action: Action) {
        let stx = self
            .client
            .sign_and_submit(key, None, action)
            .await
            .unwrap();
        self.client
            .wait_for_commit(&stx.hash(), Duration::from_secs(30))
            .await
            .unwrap();
    }

    /// A user with `fund` OPEN who approved the operator for `allowance`,
    /// and an API key for it.
    async fn user(&self, seed: u8, fund: u64, allowance: u64) -> (SecretKey, String) {
        let user = SecretKey::from_seed([seed; 32]);
        if fund > 0 {
            self.commit(
                &self.producer,
                Action::Transfer {
                    to: user.address(),
                    amount: Amount::open(fund),
                },
            )
            .await;
        }
        if allowance > 0 {
            self.commit(
                &user,
                Action::ApproveOperator {
                    operator: self.producer.address(),
                    allowance: Amount::open(allowance),
                },
            )
            .await;
        }
        let key = ApiKeys::create(&self.keys_path, user.address()).unwrap();
        (user, key)
    }

    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.node.url()))
            .json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn requests_without_a_known_key_are_401_and_unknown_models_are_404() {
    let f = Fixture::start().await;
    let body = json!({ "model": f.base_name, "prompt": "hello", "max_tokens": 4 });
    let (s, v) = f.post("/v1/completions", None, body.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing API key"));
    let (s, _) = f.post("/v1/completions", Some("trib-sk-00"), body).await;
    assert_eq!(s, 401);
    let (_, key) = f.user(3, 10, 10).await;
    let (s, v) = f
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({ "model": "no-such-adapter", "messages": [{"role": "user", "content": "hi"}] }),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-adapter"));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unfunded_account_gets_402_naming_have_and_need_and_nothing_changes() {
    let f = Fixture::start().await;
    let (user, key) = f.user(4, 0, 0).await;
    let before = f.client.account(&user.address()).await.unwrap();
    let (s, v) = f
        .post(
            "/v1/completions",
            Some(&key),
            json!({ "model": f.base_name, "prompt": "hello there", "max_tokens": 8 }),
        )
        .await;
    assert_eq!(s, 402, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("can pay at most 0 OPEN") && msg.contains("may cost up to"),
        "{msg}"
    );
    // No settlement was submitted: the mempool is empty and the account is as before.
    assert_eq!(f.client.status().await.unwrap().mempool_size, 0);
    assert!(!f.keys_path.parent().unwrap().join("receipts").exists());
    assert_eq!(f.client.account(&user.address()).await.unwrap(), before);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_request_is_400_with_the_numbers() {
    let f = Fixture::start().await;
    let (_, key) = f.user(5, 10, 10).await;
    let (s, v) = f
        .post(
            "/v1/completions",
            Some(&key),
            json!({ "model": f.base_name, "prompt": "hello", "max_tokens": 100000 }),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("maximum context length is 256") && msg.contains("100000"),
        "{msg}"
    );
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_paid_answer_is_settled_into_a_receipt_whose_payouts_sum_to_the_fee() {
    let f = Fixture::start().await;
    let (user, key) = f.user(6, 10, 5).await;
    let before = f.client.account(&user.address()).await.unwrap().balance;
    let (s, v) = f
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({ "model": f.base_name, "messages": [{"role": "user", "content": "hello"}],
                    "max_tokens": 6, "temperature": 0 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let usage = &v["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);
    let fee: u128 = v["fee"]["base_units"].as_str().unwrap().parse().unwrap();
    let receipt: ReceiptId = v["receipt_id"].as_str().unwrap().parse().unwrap();

    // The receipt appears once the settlement commits.
    let url = format!("{}/v1/receipts/{receipt}", f.node.url());
    let mut r = Value::Null;
    for _ in 0..500 {
        let resp = f.http.get(&url).send().await.unwrap();
        if resp.status() == 200 {
            r = resp.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rec = &r["receipt"];
    assert_eq!(rec["payer"], json!(user.address()), "{r}");
    assert_eq!(rec["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(rec["completion_tokens"], usage["completion_tokens"]);
    let fee_on_chain: u128 = serde_json::from_value::<Amount>(rec["fee"].clone())
        .unwrap()
        .0;
    assert_eq!(fee_on_chain, fee);
    let lines: Vec<trib_ledger::PayoutLine> = serde_json::from_value(rec["lines"].clone()).unwrap();
    assert_eq!(lines.iter().map(|l| l.amount.0).sum::<u128>(), fee);
    assert_eq!(r["answer"]["answer"], v["choices"][0]["message"]["content"]);

    // The stored answer verifies against the receipt; a tampered one does not.
    let on_chain: trib_ledger::InferenceReceipt = serde_json::from_value(rec.clone()).unwrap();
    let mut stored: crate::serving::StoredAnswer =
        serde_json::from_value(r["answer"].clone()).unwrap();
    crate::serving::verify_stored_answer(&stored, &on_chain).unwrap();
    stored.answer.push_str(" (edited)");
    let errs = crate::serving::verify_stored_answer(&stored, &on_chain).unwrap_err();
    assert!(errs.iter().any(|e| e.contains("evidence hash")), "{errs:?}");

    // The base-model owner's line is queryable by address.
    let page: Value = f
        .http
        .get(format!(
            "{}/v1/payouts?contributor={}",
            f.node.url(),
            f.producer.address()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["receipt"] == json!(receipt)),
        "{page}"
    );
    // The user paid exactly the fee.
    let acc = f.client.account(&user.address()).await.unwrap();
    assert_eq!(acc.balance, Amount(before.0 - fee));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn streaming_answers_end_with_usage_receipt_and_done() {
    let f = Fixture::start().await;
    let (_, key) = f.user(7, 10, 5).await;
    let resp = f
        .http
        .post(format!("{}/v1/completions", f.node.url()))
        .bearer_auth(&key)
        .json(&json!({ "model": f.base_name, "prompt": "once upon", "max_tokens": 5, "stream": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    let datas: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{body}");
    let last: Value = serde_json::from_str(datas[datas.len() - 2]).unwrap();
    assert!(last["receipt_id"].is_string(), "{last}");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    f.node.shutdown().await.unwrap();
}

/// Runs `scripts/tests/openai_client.py` (the official `openai` package,
/// unchanged) against the node; skips with a message when the package is
/// not installed (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_works_unchanged() {
    let f = Fixture::start().await;
    let (_, key) = f.user(8, 10, 5).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/tests/openai_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(f.node.url())
        .arg(&key)
        .arg(&f.base_name)
        .output()
        .await
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED: {stderr}");
        f.node.shutdown().await.unwrap();
        return;
    }
    assert!(
        out.status.success(),
        "openai client failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    f.node.shutdown().await.unwrap();
}
