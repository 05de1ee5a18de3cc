//! Shared fixtures of the node's serving tests (`billing_tests.rs`,
//! `serving_tests.rs`, `node.rs`): a dev home serving a model, a running
//! node with its clients, and the ledger set-up a paid request needs (the
//! base model and adapters registered, a funded user who approved the
//! operator, an API key).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use trib_ledger::Action;
use trib_types::{AdapterId, Address, Amount, Hash, SecretKey};

use crate::apikeys::ApiKeys;
use crate::config::NodeConfig;
use crate::home::{InitOptions, NodeHome};
use crate::node::{NodeOverrides, RunningNode};
use trib_client::NodeClient;

/// A dev node home serving a model, its producer (the operator) and the
/// base model's name; [`PaidHome::start`] runs a node on it.
pub(crate) struct PaidHome {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) producer: SecretKey,
    pub(crate) base_name: String,
    /// The served model file.
    model: PathBuf,
}

/// A running node of a [`PaidHome`], with clients and what its requests
/// need from the home.
pub(crate) struct PaidNode {
    pub(crate) node: RunningNode,
    pub(crate) client: NodeClient,
    pub(crate) http: reqwest::Client,
    /// The genesis producer: the operator that settles answers.
    pub(crate) producer: SecretKey,
    /// The served base model's name.
    pub(crate) base_name: String,
    /// The home's API key file.
    pub(crate) keys_path: PathBuf,
    /// The served model file.
    model: PathBuf,
    /// The home, when the node made its own ([`PaidNode::start`]).
    _home: Option<PaidHome>,
}

/// Initialises a dev home (development genesis) at `root` with `config`;
/// returns its producer key (the operator).
pub(crate) fn init_dev_home(root: &Path, config: NodeConfig) -> SecretKey {
    NodeHome::init(
        root,
        InitOptions {
            dev: true,
            config,
            ..Default::default()
        },
    )
    .unwrap();
    NodeHome::new(root)
        .keystore()
        .unwrap()
        .load("producer", None)
        .unwrap()
}

/// Writes the tiny test model (Q8_0) to `path`.
pub(crate) fn write_tiny_model(path: &Path) {
    trib_model::write_tiny_gguf(
        path,
        &trib_model::TinySpec::default(),
        11,
        trib_model::GgmlDType::Q8_0,
    )
    .unwrap();
}

impl PaidHome {
    /// Serving the tiny model (written into the home's temporary directory).
    pub(crate) fn new() -> PaidHome {
        Self::tiny_with(|_| {})
    }

    /// Serving the tiny model, with `edit` applied to the node's
    /// configuration before the home is initialised.
    pub(crate) fn tiny_with(edit: impl FnOnce(&mut NodeConfig)) -> PaidHome {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        write_tiny_model(&model);
        Self::serving(dir, model, edit)
    }

    /// Serving the model file `model`.
    pub(crate) fn with_model(model: &Path) -> PaidHome {
        Self::serving(tempfile::tempdir().unwrap(), model.to_path_buf(), |_| {})
    }

    fn serving(
        dir: tempfile::TempDir,
        model: PathBuf,
        edit: impl FnOnce(&mut NodeConfig),
    ) -> PaidHome {
        let root = dir.path().join("home");
        let mut config = NodeConfig {
            base_model: Some(model.clone()),
            ..NodeConfig::default()
        };
        edit(&mut config);
        let producer = init_dev_home(&root, config);
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

    pub(crate) fn model_path(&self) -> PathBuf {
        self.model.clone()
    }

    /// Writes a random PEFT adapter (`B` non-zero, so it changes the
    /// output) for the served model into `<store>/<id>/`; returns its id.
    pub(crate) fn write_adapter_into(
        &self,
        store: &Path,
        spec: &trib_serve::RandomAdapter,
    ) -> AdapterId {
        let served = trib_serve::ServedModel::load(&self.model).unwrap();
        let cfg = served.model().config().clone();
        let tmp = self.dir.path().join("adapter.tmp");
        let id = spec.write(&tmp, &cfg).unwrap();
        let dest = store.join(id.to_string());
        std::fs::create_dir_all(store).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
        id
    }

    /// [`PaidHome::write_adapter_into`] the home's `adapters/` directory,
    /// where the node's default adapter store finds a registered adapter.
    pub(crate) fn write_adapter(&self, spec: &trib_serve::RandomAdapter) -> AdapterId {
        self.write_adapter_into(&self.home().root().join("adapters"), spec)
    }

    /// A random adapter spec for the served model on every projection.
    pub(crate) fn adapter_spec(&self, b_scale: f32, seed: u64) -> trib_serve::RandomAdapter {
        trib_serve::RandomAdapter {
            b_scale,
            targets: trib_model::LoraTarget::ALL.to_vec(),
            ..trib_serve::RandomAdapter::qv_r8(&self.base_name, seed)
        }
    }

    /// Starts a node on the home (free port, 20 ms blocks).
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
            producer: self.producer.clone(),
            base_name: self.base_name.clone(),
            keys_path: ApiKeys::path_in(self.home().root()),
            model: self.model.clone(),
            _home: None,
        }
    }

    /// An API key for `account`.
    pub(crate) fn key_for(&self, account: Address) -> String {
        ApiKeys::create(&ApiKeys::path_in(self.home().root()), account).unwrap()
    }
}

impl PaidNode {
    /// A node serving the tiny model in a home of its own, with the base
    /// model registered (settlement needs it).
    pub(crate) async fn start() -> PaidNode {
        let h = PaidHome::new();
        let mut n = h.start().await;
        n.register_base().await;
        n._home = Some(h);
        n
    }

    /// Signs `action` with `key` and waits until its block commits.
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

    /// Registers the served base model (settlement needs it).
    pub(crate) async fn register_base(&self) {
        self.commit(&self.producer, register_base_model(&self.model))
            .await;
    }

    /// Registers adapter `id` (its files already in the store) on the
    /// served base model, owned by the producer, at 0.002 / 0.004 OPEN per
    /// 1k tokens.
    pub(crate) async fn register_adapter(&self, id: AdapterId, name: &str) {
        let info = crate::models::describe_model(&self.model).unwrap();
        self.commit(
            &self.producer,
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

    /// A user given `fund` OPEN by the producer who approved the operator
    /// for `allowance` (either step is skipped when zero), and an API key
    /// for it.
    pub(crate) async fn user(&self, seed: u8, fund: u64, allowance: Amount) -> (SecretKey, String) {
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
        if !allowance.is_zero() {
            self.commit(
                &user,
                Action::ApproveOperator {
                    operator: self.producer.address(),
                    allowance,
                },
            )
            .await;
        }
        let key = ApiKeys::create(&self.keys_path, user.address()).unwrap();
        (user, key)
    }

    /// GET `path`: the status and the JSON body (`null` when not JSON).
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

    /// POST `body` to `path` with an optional API key: the status and the
    /// JSON body (`null` when not JSON).
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

/// The `RegisterBaseModel` action for the model file at `path` (a llama
/// model under Apache-2.0, as every test model is), which settlement needs
/// before a paid answer on it can settle.
pub(crate) fn register_base_model(path: &Path) -> Action {
    let info = crate::models::describe_model(path).unwrap();
    Action::RegisterBaseModel {
        model: info.id,
        name: info.name,
        architecture: "llama".into(),
        licence: "Apache-2.0".into(),
    }
}
