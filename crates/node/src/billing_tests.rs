//! Paid serving on a running node: fee reservation (concurrent requests
//! never settle more than the payer's allowance, and every admitted request
//! settles), who may load and unload adapters, and a real adapter served
//! over HTTP on SmolLM2.

use std::time::Duration;

use serde_json::{json, Value};
use trib_ledger::{inference_fee, Action};
use trib_types::{AdapterId, Amount, Hash, SecretKey, TxHash};

use crate::api::wire::TxStatus;
use crate::billing::ApiKeys;
use crate::client::NodeClient;
use crate::config::NodeConfig;
use crate::home::{InitOptions, NodeHome};
use crate::node::{NodeOverrides, RunningNode};

/// A dev node home serving the tiny model, its producer (the operator) and
/// the base model's name; [`PaidNode::start`] runs a node on it.
pub(crate) struct PaidHome {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) producer: SecretKey,
    pub(crate) base_name: String,
    /// The served model file.
    model: std::path::PathBuf,
}

/// A running node of a [`PaidHome`], with clients.
pub(crate) struct PaidNode {
    pub(crate) node: RunningNode,
    pub(crate) client: NodeClient,
    pub(crate) http: reqwest::Client,
}

impl PaidHome {
    /// Serving the tiny model (written into the home's temporary directory).
    pub(crate) fn new() -> PaidHome {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        trib_model::write_tiny_gguf(
            &model,
            &trib_model::TinySpec::default(),
            11,
            trib_model::GgmlDType::Q8_0,
        )
        .unwrap();
        Self::serving(dir, model)
    }

    /// Serving the model file `model`.
    pub(crate) fn with_model(model: &std::path::Path) -> PaidHome {
        Self::serving(tempfile::tempdir().unwrap(), model.to_path_buf())
    }

    fn serving(dir: tempfile::TempDir, model: std::path::PathBuf) -> PaidHome {
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
        let producer = NodeHome::new(&root)
            .keystore()
            .unwrap()
            .load("producer", None)
            .unwrap();
        let base_name = crate::models::describe_model(&model).unwrap().name;
        PaidHome {
            dir,
            producer,
            base_name,
            model,
        }
    }

    pub(crate) fn home(&self) -> NodeHome {
        NodeHome::new(self.dir.path().join("home"))
    }

    pub(crate) fn model_path(&self) -> std::path::PathBuf {
        self.model.clone()
    }

    /// Writes a random PEFT adapter (`B` non-zero, so it changes the
    /// output) for the served model into `<home>/adapters/<id>/`, where the
    /// node's adapter store finds a registered adapter; returns its id.
    pub(crate) fn write_adapter(&self, spec: &trib_serve::RandomAdapter) -> AdapterId {
        let served = trib_serve::ServedModel::load(&self.model).unwrap();
        let cfg = served.model().config().clone();
        let tmp = self.dir.path().join("adapter.tmp");
        let id = spec.write(&tmp, &cfg).unwrap();
        let dest = self.home().root().join("adapters").join(id.to_string());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
        id
    }

    /// A random adapter spec for the served model on every projection.
    pub(crate) fn adapter_spec(&self, b_scale: f32, seed: u64) -> trib_serve::RandomAdapter {
        trib_serve::RandomAdapter {
            b_scale,
            targets: trib_model::LoraTarget::ALL.to_vec(),
            ..trib_serve::RandomAdapter::qv_r8(&self.base_name, seed)
        }
    }

    pub(crate) async fn start(&self) -> PaidNode {
        let node = RunningNode::start(
            &self.home(),
            NodeOverrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                block_interval: Some(Duration::from_millis(20)),
            },
        )
        .await
        .unwrap();
        PaidNode {
            client: NodeClient::new(&node.url()).unwrap(),
            node,
            http: reqwest::Client::new(),
        }
    }

    /// An API key for `account`.
    pub(crate) fn key_for(&self, account: trib_types::Address) -> String {
        ApiKeys::create(&ApiKeys::path_in(self.home().root()), account).unwrap()
    }
}

impl PaidNode {
    pub(crate) async fn commit(&self, key: &SecretKey, action: Action) {
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

    /// Registers the base model (settlement needs it).
    pub(crate) async fn register_base(&self, h: &PaidHome) {
        let info = crate::models::describe_model(&h.model_path()).unwrap();
        self.commit(
            &h.producer,
            Action::RegisterBaseModel {
                model: info.id,
                name: info.name,
                architecture: "llama".into(),
                licence: "Apache-2.0".into(),
            },
        )
        .await;
    }

    /// Registers adapter `id` (files already in the home) on the served
    /// base model, owned by the producer, at 0.002 / 0.004 OPEN per 1k tokens.
    pub(crate) async fn register_adapter(&self, h: &PaidHome, id: AdapterId, name: &str) {
        let info = crate::models::describe_model(&h.model_path()).unwrap();
        self.commit(
            &h.producer,
            Action::RegisterAdapter {
                adapter: id,
                base: info.id,
                name: name.into(),
                datanets: Vec::new(),
                config_hash: Hash::of(b"config"),
                metrics_hash: Hash::of(b"metrics"),
                price_in_per_1k: Amount::parse_open("0.002").unwrap(),
                price_out_per_1k: Amount::parse_open("0.004").unwrap(),
            },
        )
        .await;
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.node.url()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A user funded with `fund` OPEN who approved the operator for
    /// `allowance` (base units), and an API key for it.
    pub(crate) async fn user(
        &self,
        h: &PaidHome,
        seed: u8,
        fund: u64,
        allowance: Amount,
    ) -> (SecretKey, String) {
        let user = SecretKey::from_seed([seed; 32]);
        self.commit(
            &h.producer,
            Action::Transfer {
                to: user.address(),
                amount: Amount::open(fund),
            },
        )
        .await;
        self.commit(
            &user,
            Action::ApproveOperator {
                operator: h.producer.address(),
                allowance,
            },
        )
        .await;
        let key = h.key_for(user.address());
        (user, key)
    }

    pub(crate) async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_settle_more_than_the_allowance_and_all_admitted_ones_settle() {
    let h = PaidHome::new();
    let n = h.start().await;
    n.register_base(&h).await;
    let prompt = "the quick brown fox jumps over the lazy dog";
    let max_tokens = 24;
    // Learn the prompt's token count from a rich user's answer.
    let (_, rich) = n.user(&h, 7, 100, Amount::open(100)).await;
    let body = json!({ "model": h.base_name, "prompt": prompt, "max_tokens": max_tokens });
    let (s, v) = n.post("/v1/completions", Some(&rich), body.clone()).await;
    assert_eq!(s, 200, "{v}");
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap() as u32;
    let params = n.client.params().await.unwrap();
    let max_fee = inference_fee(
        prompt_tokens,
        max_tokens,
        params.base_price_in_per_1k,
        params.base_price_out_per_1k,
    )
    .unwrap();
    // Room for three requests at their largest fee, not four.
    let allowance = Amount(max_fee.0 * 3 + max_fee.0 / 2);
    let (user, key) = n.user(&h, 8, 100, allowance).await;
    let before = n.client.account(&user.address()).await.unwrap().balance;

    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (http, url, key, body) = (n.http.clone(), n.node.url(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/v1/completions"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut settled_txs = Vec::new();
    let mut fees = 0u128;
    let mut refused = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => {
                assert!(v.get("settlement_error").is_none(), "{v}");
                let tx: TxHash = serde_json::from_value(v["settlement_tx"].clone()).unwrap();
                settled_txs.push(tx);
                fees += v["fee"]["base_units"]
                    .as_str()
                    .unwrap()
                    .parse::<u128>()
                    .unwrap();
            }
            402 => {
                refused += 1;
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(msg.contains("held for its requests in flight"), "{msg}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(
        refused > 0,
        "the allowance covers at most 3 requests at once"
    );
    assert!(!settled_txs.is_empty());
    assert!(
        fees <= allowance.0,
        "settled {fees} > allowance {}",
        allowance.0
    );
    // Every settlement the node submitted commits (none is dropped for lack
    // of funds), and the ledger charged exactly the reported fees.
    for tx in &settled_txs {
        let view = n
            .client
            .wait_for_commit(tx, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(view.status, TxStatus::Committed);
    }
    let after = n.client.account(&user.address()).await.unwrap().balance;
    assert_eq!(before.0 - after.0, fees);
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_operators_key_may_load_or_unload_adapters() {
    let h = PaidHome::new();
    let n = h.start().await;
    n.register_base(&h).await;
    let id = h.write_adapter(&h.adapter_spec(0.5, 3));
    n.register_adapter(&h, id, "ops-lora").await;
    let (_, user_key) = n.user(&h, 9, 10, Amount::open(1)).await;
    let operator_key = h.key_for(h.producer.address());
    let load = json!({ "action": "load", "model": id.to_string() });
    let unload = json!({ "action": "unload", "model": id.to_string() });

    let (s, v) = n.post("/v1/adapters", None, load.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing API key"),
        "{v}"
    );
    let (s, v) = n
        .post("/v1/adapters", Some("trib-sk-nope"), load.clone())
        .await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = n.post("/v1/adapters", Some(&user_key), load.clone()).await;
    assert_eq!(s, 403, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("only the node operator may load or unload adapters"),
        "{msg}"
    );
    assert!(msg.contains(&h.producer.address().to_string()), "{msg}");
    // Refused requests changed nothing.
    let (_, listed) = n.get("/v1/adapters").await;
    assert_eq!(listed["cache"]["adapters"], json!([]), "{listed}");
    assert_eq!(listed["cache"]["loads"], 0, "{listed}");

    let (s, v) = n.post("/v1/adapters", Some(&operator_key), load).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["loaded"], true);
    let (_, listed) = n.get("/v1/adapters").await;
    assert!(
        listed["cache"].to_string().contains(&id.to_string()),
        "{listed}"
    );

    let (s, v) = n
        .post("/v1/adapters", Some(&user_key), unload.clone())
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = n.post("/v1/adapters", Some(&operator_key), unload).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["loaded"], false);
    assert!(v["freed_bytes"].as_u64().unwrap() > 0, "{v}");
    n.node.shutdown().await.unwrap();
}

/// A chat answer through the node's HTTP API: its text and token count.
async fn chat(n: &PaidNode, key: &str, model: &str) -> Value {
    let body = json!({
        "model": model,
        "messages": [{ "role": "user", "content": "Tell me a short story about a boat." }],
        "max_tokens": 12,
        "temperature": 0,
    });
    let (s, v) = n.post("/v1/chat/completions", Some(key), body).await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_adapter_on_smollm2_answers_over_http_differently_from_the_base_and_its_receipt_settles(
) {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let Ok(model) = trib_model::locate_smollm2(&models) else {
        eprintln!(
            "SKIPPED: no SmolLM2 file in {} (scripts/fetch-model.sh)",
            models.display()
        );
        return;
    };
    let h = PaidHome::with_model(&model);
    // A rank-8 PEFT adapter on all seven projections, B ~ U(-0.3, 0.3).
    let id = h.write_adapter(&h.adapter_spec(0.3, 42));
    let n = h.start().await;
    n.register_base(&h).await;
    n.register_adapter(&h, id, "smol-random-lora").await;
    let (user, key) = n.user(&h, 5, 10, Amount::open(1)).await;
    let before = n.client.account(&user.address()).await.unwrap().balance;

    let base = chat(&n, &key, &h.base_name).await;
    let tuned = chat(&n, &key, &id.to_string()).await;
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(!text(&base).trim().is_empty(), "{base}");
    assert!(!text(&tuned).trim().is_empty(), "{tuned}");
    eprintln!("base: {:?}\nadapter: {:?}", text(&base), text(&tuned));
    assert_ne!(
        text(&base),
        text(&tuned),
        "the adapter changed nothing: {base} {tuned}"
    );
    assert_eq!(tuned["model"], id.to_string(), "{tuned}");

    // The adapter's answer is settled at the adapter's price into a receipt
    // naming the adapter.
    let tx: TxHash = serde_json::from_value(tuned["settlement_tx"].clone()).unwrap();
    let view = n
        .client
        .wait_for_commit(&tx, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(view.status, TxStatus::Committed);
    let receipt = tuned["receipt_id"].as_str().unwrap();
    let (s, r) = n.get(&format!("/v1/receipts/{receipt}")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["receipt"]["adapter"],
        serde_json::to_value(id).unwrap(),
        "{r}"
    );
    let fee: u128 = tuned["fee"]["base_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let usage = &tuned["usage"];
    let expected = inference_fee(
        usage["prompt_tokens"].as_u64().unwrap() as u32,
        usage["completion_tokens"].as_u64().unwrap() as u32,
        Amount::parse_open("0.002").unwrap(),
        Amount::parse_open("0.004").unwrap(),
    )
    .unwrap();
    assert_eq!(fee, expected.0);
    assert_eq!(
        serde_json::from_value::<Amount>(r["receipt"]["fee"].clone())
            .unwrap()
            .0,
        fee
    );
    let base_tx: TxHash = serde_json::from_value(base["settlement_tx"].clone()).unwrap();
    n.client
        .wait_for_commit(&base_tx, Duration::from_secs(30))
        .await
        .unwrap();
    let base_fee: u128 = base["fee"]["base_units"].as_str().unwrap().parse().unwrap();
    let after = n.client.account(&user.address()).await.unwrap().balance;
    assert_eq!(before.0 - after.0, fee + base_fee);
    n.node.shutdown().await.unwrap();
}
