//! Fee reservation on a running node over the tiny model: concurrent
//! requests never settle more than the payer's allowance, and every admitted
//! request settles.

use std::time::Duration;

use serde_json::{json, Value};
use trib_ledger::{inference_fee, Action};
use trib_types::{Amount, SecretKey, TxHash};

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
}

/// A running node of a [`PaidHome`], with clients.
pub(crate) struct PaidNode {
    pub(crate) node: RunningNode,
    pub(crate) client: NodeClient,
    pub(crate) http: reqwest::Client,
}

impl PaidHome {
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
        }
    }

    pub(crate) fn home(&self) -> NodeHome {
        NodeHome::new(self.dir.path().join("home"))
    }

    pub(crate) fn model_path(&self) -> std::path::PathBuf {
        self.dir.path().join("tiny.gguf")
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
