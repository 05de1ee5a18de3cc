//! The node's side of answer-time attribution
//! ([`trib_attribution::answer`]): the rows of each published datanet
//! version from the datanet store and the ledger ([`NodeRows`]), the served
//! model's tokenizer ([`model_tokens`]), and the eager indexer task that
//! keeps every published version indexed ([`spawn_indexer`]). The catalog,
//! the trace and the evidence live in `trib-attribution`; the gradient
//! share's model side is in [`crate::attribution_gradient`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trib_attribution::answer::{
    AnswerTokenizer, CatalogError, DatanetRows, IndexCatalog, PublishedDatanet, Tokens, VersionRow,
};
use trib_attribution::RowProvenance;
use trib_ledger::{Datanet, DatanetRef, Visibility};
use trib_model::Model;
use trib_types::DatanetId;

use crate::chain::Chain;
use crate::datanets::DatanetService;

/// The catalog's rows: the datanet store's rows of a version (root-checked
/// against the ledger) and the ledger's datanet records.
pub(crate) struct NodeRows {
    pub(crate) datanets: Arc<DatanetService>,
    pub(crate) chain: Arc<Chain>,
}

impl DatanetRows for NodeRows {
    fn rows(&self, datanet: &DatanetId, version: u32) -> Result<Vec<VersionRow>, String> {
        let rows = self
            .datanets
            .index_rows(datanet, version)
            .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|r| VersionRow {
                provenance: RowProvenance {
                    row: r.row,
                    contribution: r.contribution,
                    contributor: r.contributor,
                    first_seen: r.first_seen,
                },
                text: r.text,
            })
            .collect())
    }

    fn published(&self) -> Result<Vec<PublishedDatanet>, String> {
        let datanets = self.chain.ledger().datanets().map_err(|e| e.to_string())?;
        Ok(datanets
            .into_iter()
            .map(|d| PublishedDatanet {
                id: d.id,
                name: d.name,
                latest_version: d.latest_version,
            })
            .collect())
    }

    fn is_public(&self, datanet: &DatanetId) -> bool {
        matches!(
            self.chain.ledger().datanet(DatanetRef::Id(*datanet)),
            Ok(Some(Datanet {
                visibility: Visibility::Public,
                ..
            }))
        )
    }
}

/// The served model's tokenizer behind [`AnswerTokenizer`].
pub(crate) struct ModelTokenizer(pub(crate) Arc<Model>);

impl AnswerTokenizer for ModelTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.0.encode(text).map_err(|e| e.to_string())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.0.decode(ids).map_err(|e| e.to_string())
    }
}

/// The pieces of `model`'s vocabulary (the larger of the tokenizer's and
/// the model's vocabulary size) and the tokenizer's serialised form.
pub(crate) fn tokenizer_parts(model: &Model) -> Result<(Vec<String>, String), CatalogError> {
    let tok = model.tokenizer();
    let vocab = tok.get_vocab_size(true).max(model.config().vocab_size);
    let pieces: Vec<String> = (0..vocab as u32)
        .map(|id| tok.id_to_token(id).unwrap_or_default())
        .collect();
    let json = tok
        .to_string(false)
        .map_err(|e| CatalogError::Tokenizer(format!("serialising: {e}")))?;
    Ok((pieces, json))
}

/// The served tokenizer as the catalog needs it: `model`'s codec, pieces
/// and hash (an index built with another tokenizer is rebuilt).
pub(crate) fn model_tokens(model: Arc<Model>) -> Result<Tokens, CatalogError> {
    let (pieces, json) = tokenizer_parts(&model)?;
    Tokens::new(Arc::new(ModelTokenizer(model)), &pieces, json.as_bytes())
}

/// The catalog of `<home>/indexes` (`root`) over the node's rows.
pub(crate) fn node_catalog(
    root: PathBuf,
    datanets: Arc<DatanetService>,
    chain: Arc<Chain>,
    tokens: Tokens,
) -> IndexCatalog {
    IndexCatalog::new(
        root,
        Arc::new(NodeRows { datanets, chain }),
        Arc::new(tokens),
    )
}

/// Starts the eager indexer: it indexes every published version not yet
/// indexed at once, then again every `interval` (so a newly published
/// version is indexed within one interval), until `stop` turns true. The
/// builds run on the blocking pool, never on the runtime's workers.
pub(crate) fn spawn_indexer(
    catalog: Arc<IndexCatalog>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let c = catalog.clone();
            match tokio::task::spawn_blocking(move || c.index_missing()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(target: "trib::attribution", built = n, "indexed newly published versions")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(target: "trib::attribution", error = %e, "indexer task failed");
                    return;
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    //! The catalog on a real node home (tiny model, in-process ledger and
    //! datanet store), and the world the serving tests settle answers in.

    use super::*;
    use crate::config::NodeConfig;
    use crate::home::{InitOptions, NodeHome};
    use crate::serving::Serving;
    use std::path::Path;
    use std::time::Instant;
    use trib_attribution::answer::{
        answer_trace_params, SpanRowView, CHECKSUMS, DATANET_FALLBACK, INDEX_FILES, TOKEN_SPANS,
    };
    use trib_attribution::{SuffixIndex, TraceParams};
    use trib_client::wire::CreateDatanetRequest;
    use trib_ledger::{Action, CurationMode, DataType, Transaction, Visibility};
    use trib_types::{AdapterId, Amount, SecretKey};
    use trib_types::{Address, ContributionId, Hash};

    /// A sentence no other row holds: an answer quoting it must pay alice.
    pub(crate) const DISTINCTIVE: &str = "The quokka orchestra rehearses beneath the violet lighthouse every second Tuesday of the month.";

    pub(crate) fn alice_file() -> String {
        format!(
            "{DISTINCTIVE} Its conductor insists that every musician brings a lantern, a spare reed and a thermos of nettle tea to the cliff top before the tide turns.\n\n\
             Our village keeps a ledger of every storm since the harbour wall was rebuilt, and the older fishermen still argue about which winter brought the worst of the gales ashore."
        )
    }

    fn bob_file() -> String {
        // Bob re-uploads alice's paragraph (rejected as a duplicate at
        // validation) next to a paragraph of his own.
        format!(
            "{DISTINCTIVE} Its conductor insists that every musician brings a lantern, a spare reed and a thermos of nettle tea to the cliff top before the tide turns.\n\n\
             Copper kettles hang above the bakery door in the square, and the baker polishes them each Sunday while the bread cools on racks by the open window."
        )
    }

    /// A node home with the tiny model served, an in-process ledger that
    /// produces a block per call, and the datanet service.
    pub(crate) struct World {
        _dir: tempfile::TempDir,
        pub(crate) home: NodeHome,
        pub(crate) chain: Arc<Chain>,
        pub(crate) datanets: Arc<DatanetService>,
        pub(crate) serving: Arc<Serving>,
        pub(crate) producer: SecretKey,
        pub(crate) alice: SecretKey,
        pub(crate) bob: SecretKey,
        pub(crate) carol: SecretKey,
    }

    /// What [`World::publish_and_register`] made.
    pub(crate) struct Published {
        pub(crate) datanet: DatanetId,
        pub(crate) alice_contribution: ContributionId,
        pub(crate) bob_contribution: ContributionId,
    }

    impl World {
        pub(crate) fn new() -> World {
            Self::serving(None)
        }

        /// Carol pays for `answer` to `prompt` from `model`; after the next
        /// block, the stored answer and its committed ledger receipt.
        pub(crate) fn settle(
            &self,
            model: &str,
            prompt: &str,
            answer: &str,
        ) -> (
            trib_attribution::answer::StoredAnswer,
            trib_ledger::InferenceReceipt,
        ) {
            use crate::serving::{answer_path, receipts_dir, AnswerToSettle};
            let target = self.serving.resolve(model).unwrap().unwrap();
            let done = self
                .serving
                .settle_answer(AnswerToSettle {
                    payer: self.carol.address(),
                    target: &target,
                    model,
                    prompt,
                    answer,
                    prompt_tokens: 20,
                    completion_tokens: 40,
                })
                .unwrap();
            self.block();
            let receipt = self
                .chain
                .ledger()
                .receipt(&done.settled.receipt)
                .unwrap()
                .expect("the settlement committed");
            let stored = serde_json::from_slice(
                &std::fs::read(answer_path(&receipts_dir(&self.home), &receipt.id)).unwrap(),
            )
            .unwrap();
            (stored, receipt)
        }

        /// A world serving `model` (`None`: a tiny random model).
        fn serving(model: Option<PathBuf>) -> World {
            let dir = tempfile::tempdir().unwrap();
            let model = model.unwrap_or_else(|| {
                let tiny = dir.path().join("tiny.gguf");
                trib_model::write_tiny_gguf(
                    &tiny,
                    &trib_model::TinySpec::default(),
                    11,
                    trib_model::GgmlDType::Q8_0,
                )
                .unwrap();
                tiny
            });
            let root = dir.path().join("home");
            let config = NodeConfig {
                base_model: Some(model),
                ..NodeConfig::default()
            };
            NodeHome::init(
                &root,
                InitOptions {
                    dev: true,
                    config: config.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            let home = NodeHome::new(&root);
            let genesis = home.load_genesis().unwrap();
            let producer = home.load_producer(&config, &genesis).unwrap();
            let chain = Arc::new(Chain::new(
                home.open_ledger().unwrap(),
                &genesis,
                producer.clone(),
                1_000,
            ));
            let datanets =
                Arc::new(DatanetService::open(&home.datanets_dir(), chain.clone()).unwrap());
            let serving = Serving::start(&home, &config, chain.clone(), datanets.clone())
                .unwrap()
                .unwrap();
            World {
                _dir: dir,
                home,
                chain,
                datanets,
                serving,
                producer,
                alice: SecretKey::from_seed([21; 32]),
                bob: SecretKey::from_seed([22; 32]),
                carol: SecretKey::from_seed([23; 32]),
            }
        }

        /// Signs `action` by `key`, submits it and commits a block with it.
        pub(crate) fn commit(&self, key: &SecretKey, action: Action) {
            self.submit(key, action);
            self.block();
        }

        pub(crate) fn submit(&self, key: &SecretKey, action: Action) {
            let nonce = self.chain.account(&key.address()).unwrap().next_nonce;
            let stx = Transaction {
                chain_id: self.home.load_genesis().unwrap().chain_id,
                sender: key.public_key(),
                nonce,
                fee: self.chain.ledger().params().unwrap().min_fee,
                action,
            }
            .sign(key);
            self.chain.submit(stx).unwrap();
        }

        pub(crate) fn block(&self) {
            let o = self.chain.produce_block().unwrap();
            assert!(o.rejected.is_empty(), "{:?}", o.rejected);
        }

        /// Creates datanet `name` (owner: the producer), contributes each
        /// `(key, file, text)` in order, accepts them all and publishes v1;
        /// returns the datanet and the contribution ids in order.
        pub(crate) fn publish_datanet(
            &self,
            name: &str,
            files: &[(&SecretKey, &str, String)],
        ) -> (DatanetId, Vec<ContributionId>) {
            self.publish_datanet_as(name, Visibility::Public, files)
        }

        /// [`World::publish_datanet`] with the given visibility.
        pub(crate) fn publish_datanet_as(
            &self,
            name: &str,
            visibility: Visibility,
            files: &[(&SecretKey, &str, String)],
        ) -> (DatanetId, Vec<ContributionId>) {
            let created = self
                .datanets
                .create(CreateDatanetRequest {
                    owner: self.producer.address(),
                    name: name.into(),
                    description: "village facts".into(),
                    tags: vec![],
                    data_type: DataType::Text,
                    curation: CurationMode::OwnerApproval,
                    stake_per_contribution: Amount::open(1),
                    visibility,
                })
                .unwrap();
            self.commit(&self.producer, created.action);
            let mut ids = Vec::new();
            for (key, file, text) in files {
                let r = self
                    .datanets
                    .contribute(name, key.address(), file, None, None, text.as_bytes())
                    .unwrap();
                ids.push(r.report.contribution);
                self.commit(key, r.action.expect("contribution accepted at validation"));
            }
            for c in &ids {
                self.submit(
                    &self.producer,
                    Action::Curate {
                        contribution: *c,
                        accept: true,
                        reason: "on topic".into(),
                    },
                );
            }
            self.block();
            let plan = self.datanets.plan_publish(name).unwrap();
            self.commit(&self.producer, plan.action);
            (created.id, ids)
        }

        /// Registers the served base model once, then adapter `name`
        /// trained on `datanets`.
        pub(crate) fn register_adapter(&self, name: &str, datanets: Vec<(DatanetId, u32)>) {
            let info = crate::models::describe_model(
                self.home
                    .load_config()
                    .unwrap()
                    .base_model
                    .as_ref()
                    .unwrap(),
            )
            .unwrap();
            if self.chain.ledger().base_model(&info.id).unwrap().is_none() {
                self.commit(
                    &self.producer,
                    Action::RegisterBaseModel {
                        model: info.id,
                        name: info.name,
                        architecture: "llama".into(),
                        licence: "Apache-2.0".into(),
                    },
                );
            }
            self.commit(
                &self.producer,
                Action::RegisterAdapter {
                    adapter: AdapterId(Hash::of(name.as_bytes())),
                    base: info.id,
                    name: name.into(),
                    datanets,
                    config_hash: Hash::of(b"config"),
                    metrics_hash: Hash::of(b"metrics"),
                    price_in_per_1k: Amount::parse_open("0.002").unwrap(),
                    price_out_per_1k: Amount::parse_open("0.004").unwrap(),
                },
            );
        }

        /// Funds alice, bob and carol, publishes datanet `facts` v1 from
        /// alice's file and bob's partly duplicated one, registers the base
        /// model and an adapter `facts-lora` trained on `facts@1`, and lets
        /// carol pay the operator.
        pub(crate) fn publish_and_register(&self) -> Published {
            for k in [&self.alice, &self.bob, &self.carol] {
                self.submit(
                    &self.producer,
                    Action::Transfer {
                        to: k.address(),
                        amount: Amount::open(100),
                    },
                );
            }
            self.block();
            let (datanet, ids) = self.publish_datanet(
                "facts",
                &[
                    (&self.alice, "alice.txt", alice_file()),
                    (&self.bob, "bob.txt", bob_file()),
                ],
            );
            self.register_adapter("facts-lora", vec![(datanet, 1)]);
            self.commit(
                &self.carol,
                Action::ApproveOperator {
                    operator: self.producer.address(),
                    allowance: Amount::open(10),
                },
            );
            Published {
                datanet,
                alice_contribution: ids[0],
                bob_contribution: ids[1],
            }
        }

        pub(crate) fn catalog(&self) -> &IndexCatalog {
            self.serving.attribution.catalog()
        }

        /// A second catalog over the same home, as after a restart.
        pub(crate) fn fresh_catalog(&self, tokens: Tokens) -> IndexCatalog {
            node_catalog(
                self.home.root().join("indexes"),
                self.datanets.clone(),
                self.chain.clone(),
                tokens,
            )
        }

        /// The served tokenizer, as a restarted node reads it.
        fn tokens(&self) -> Tokens {
            self.catalog().tokens().clone()
        }

        /// The served model's tokenizer under another identity, as if
        /// another tokenizer were served.
        fn other_tokens(&self) -> Tokens {
            let path = self.home.load_config().unwrap().base_model.unwrap();
            let model = Arc::new(Model::load(&path, trib_model::WeightFormat::Quantized).unwrap());
            let (pieces, _) = tokenizer_parts(&model).unwrap();
            Tokens::new(
                Arc::new(ModelTokenizer(model)),
                &pieces,
                b"another tokenizer",
            )
            .unwrap()
        }
    }

    #[test]
    fn an_index_is_built_once_then_served_from_disk() {
        let w = World::new();
        let p = w.publish_and_register();
        let dir = w.catalog().ensure(&p.datanet, 1).unwrap();
        assert_eq!(w.catalog().builds(), 1);
        assert_eq!(
            dir,
            w.home
                .root()
                .join("indexes")
                .join(p.datanet.to_string())
                .join("1")
        );
        for f in INDEX_FILES.iter().chain([&CHECKSUMS]) {
            assert!(dir.join(f).is_file(), "{f}");
        }
        // Same process: no rebuild.
        w.catalog().ensure(&p.datanet, 1).unwrap();
        assert_eq!(w.catalog().builds(), 1);
        // A restarted node finds it on disk, checks it and builds nothing.
        let again = w.fresh_catalog(w.tokens());
        again.ensure(&p.datanet, 1).unwrap();
        assert_eq!(again.builds(), 0);
        // Rows carry contribution and contributor; alice's rows come first.
        let index = SuffixIndex::open(&dir).unwrap();
        let rows: Vec<RowProvenance> = (0..index.documents()).map(|d| index.row(d)).collect();
        assert_eq!(rows.len(), 3, "alice's two rows and bob's own row");
        assert_eq!(rows[0].contributor, w.alice.address());
        assert_eq!(rows[0].contribution, p.alice_contribution);
        assert!(rows.windows(2).all(|r| r[0].first_seen < r[1].first_seen));
        assert_eq!(rows[2].contributor, w.bob.address());
        assert_eq!(index.manifest().tokenizer_hash, w.catalog().tokens().hash());
    }

    #[test]
    fn the_eager_indexer_builds_every_published_version_once() {
        let w = World::new();
        let p = w.publish_and_register();
        assert_eq!(w.catalog().index_missing(), 1);
        assert_eq!(w.catalog().index_missing(), 0);
        assert!(w.catalog().dir(&p.datanet, 1).join(CHECKSUMS).is_file());
    }

    #[tokio::test]
    async fn a_version_published_while_the_node_runs_is_indexed_in_the_background() {
        let w = World::new();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let catalog = w.serving.attribution.catalog().clone();
        let task = spawn_indexer(catalog.clone(), Duration::from_millis(20), stop);
        // Nothing is published yet; publishing runs on the blocking pool
        // while the indexer keeps polling.
        let p = tokio::task::spawn_blocking(move || {
            let p = w.publish_and_register();
            (w, p)
        });
        let (w, p) = p.await.unwrap();
        let ready = w.catalog().dir(&p.datanet, 1).join(CHECKSUMS);
        let mut polls = 0;
        while !ready.is_file() {
            polls += 1;
            assert!(polls < 1_000, "the indexer did not index facts@1");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        // The answer-time path finds it built: no second build.
        let before = w.catalog().builds();
        w.catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                DISTINCTIVE,
                &TraceParams::default(),
            )
            .unwrap();
        assert_eq!(w.catalog().builds(), before);
        assert_eq!(before, 1);
    }

    #[test]
    fn a_different_tokenizer_triggers_a_rebuild() {
        let w = World::new();
        let p = w.publish_and_register();
        w.catalog().ensure(&p.datanet, 1).unwrap();
        let other = w.other_tokens();
        let other_hash = other.hash();
        assert_ne!(other_hash, w.tokens().hash());
        let c = w.fresh_catalog(other);
        let dir = c.ensure(&p.datanet, 1).unwrap();
        assert_eq!(c.builds(), 1);
        let m = SuffixIndex::open(&dir).unwrap();
        assert_eq!(m.manifest().tokenizer_hash, other_hash);
    }

    #[test]
    fn corrupted_or_half_written_index_files_are_rebuilt_not_trusted() {
        let w = World::new();
        let p = w.publish_and_register();
        let dir = w.catalog().ensure(&p.datanet, 1).unwrap();
        let good = SuffixIndex::open(&dir).unwrap().manifest().content_hash;
        type Damage = (&'static str, fn(&Path));
        let damage: [Damage; 4] = [
            ("table.0", |f| {
                let mut b = std::fs::read(f).unwrap();
                b[0] ^= 0xff;
                std::fs::write(f, b).unwrap();
            }),
            ("tokenized.0", |f| {
                let b = std::fs::read(f).unwrap();
                std::fs::write(f, &b[..b.len() / 2]).unwrap();
            }),
            ("manifest.json", |f| {
                std::fs::write(f, b"{ not json").unwrap()
            }),
            (CHECKSUMS, |f| std::fs::remove_file(f).unwrap()),
        ];
        for (file, hurt) in damage {
            hurt(&dir.join(file));
            let c = w.fresh_catalog(w.tokens());
            let problem = c.problem(&dir).expect("the damage is found");
            assert!(!problem.is_empty(), "{file}");
            c.ensure(&p.datanet, 1).unwrap();
            assert_eq!(c.builds(), 1, "{file} was not rebuilt");
            assert_eq!(
                SuffixIndex::open(&dir).unwrap().manifest().content_hash,
                good
            );
        }
    }

    #[test]
    fn an_unpublished_version_is_a_clear_error_and_leaves_no_directory() {
        let w = World::new();
        let p = w.publish_and_register();
        let err = w.catalog().ensure(&p.datanet, 2).unwrap_err();
        assert!(err.to_string().contains("not published"), "{err}");
        assert!(!w.catalog().dir(&p.datanet, 2).exists());
    }

    #[test]
    fn a_quoted_sentence_is_traced_to_its_first_contributor() {
        let w = World::new();
        let p = w.publish_and_register();
        let t = w
            .catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                &format!("As the notes say: {DISTINCTIVE}"),
                &TraceParams::default(),
            )
            .unwrap();
        assert_eq!(t.method(), TOKEN_SPANS);
        assert!(!t.spans.is_empty());
        let paid: Vec<Address> = t.evidence.weights.iter().map(|w| w.contributor).collect();
        assert_eq!(paid, vec![w.alice.address()]);
        assert_eq!(
            t.ledger_weights(),
            vec![(p.alice_contribution, 1_000_000_000)]
        );
        assert!(t.spans[0].rows[0]
            .snippet
            .as_deref()
            .unwrap()
            .contains("quokka"));
        // Text with no rare span: no weights, the fallback, and it says why.
        let none = w
            .catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                "Nothing here matches at all, friend.",
                &TraceParams::default(),
            )
            .unwrap();
        assert_eq!(none.method(), DATANET_FALLBACK);
        assert!(none.view(5)["reason"]
            .as_str()
            .unwrap()
            .contains("thresholds"));
        // No datanet (the base model alone): the fallback.
        let base = w
            .catalog()
            .trace(&[], None, DISTINCTIVE, &TraceParams::default())
            .unwrap();
        assert_eq!(base.method(), DATANET_FALLBACK);
        assert!(base.view(5)["reason"]
            .as_str()
            .unwrap()
            .contains("no datanet"));
    }

    #[test]
    fn rows_of_a_permissioned_datanet_are_credited_but_their_text_is_not_shown() {
        let w = World::new();
        let p = w.publish_and_register();
        let secret = "The keeper's private almanac lists nineteen hidden coves between the basalt cape and the reed estuary.";
        let (private, ids) = w.publish_datanet_as(
            "almanac",
            Visibility::Permissioned,
            &[(&w.producer, "almanac.txt", secret.to_string())],
        );
        let t = w
            .catalog()
            .trace(
                &[(p.datanet, 1), (private, 1)],
                None,
                &format!("{DISTINCTIVE} Also, {secret}"),
                &TraceParams::default(),
            )
            .unwrap();
        let paid: Vec<ContributionId> = t.ledger_weights().iter().map(|w| w.0).collect();
        assert!(
            paid.contains(&ids[0]) && paid.contains(&p.alice_contribution),
            "{paid:?}"
        );
        let rows: Vec<&SpanRowView> = t.spans.iter().flat_map(|s| &s.rows).collect();
        let (hidden, shown): (Vec<&SpanRowView>, Vec<&SpanRowView>) =
            rows.iter().copied().partition(|r| r.contribution == ids[0]);
        assert!(!hidden.is_empty() && !shown.is_empty(), "{rows:?}");
        assert!(hidden.iter().all(|r| r.snippet.is_none()), "{hidden:?}");
        assert!(shown.iter().all(|r| r.snippet.is_some()), "{shown:?}");
        // The response shows the span (the answer's own words) and who is
        // credited, never the row's text around it.
        let v = t.view(10);
        let shown_rows: Vec<&serde_json::Value> = v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["rows"].as_array().unwrap())
            .filter(|r| r["contribution"] == serde_json::json!(ids[0]))
            .collect();
        assert!(!shown_rows.is_empty());
        assert!(shown_rows.iter().all(|r| r["snippet"].is_null()), "{v}");
    }

    #[test]
    fn the_rows_shown_for_a_span_are_ordered_by_bm25_relevance_to_the_prompt_and_answer() {
        // Six rows open with the same formula; only one names the mason.
        let w = World::new();
        let p = w.publish_and_register();
        const FORMULA: &str = "By order of the harbour council of the old town";
        // Distinct rows of over 200 bytes (shorter ones merge with the next
        // paragraph, near-identical ones are rejected as duplicates).
        let jobs = [
            ("potter", "glazes the blue jugs before the fair, then stacks them in straw crates that the carters take inland on the first dry morning of April"),
            ("smith", "sharpens the boat hooks and forges new hinges for the chapel gate, charging the vestry in eggs and firewood rather than coin"),
            ("mason", "repairs the sea wall near the dolphins' cove, setting each granite block by hand and testing the mortar with a thumbnail"),
            ("weaver", "mends the nets in the loft above the chandlery, humming ballads her grandmother learned from sailors out of Brittany"),
            ("miller", "grinds the winter oats at the tide mill and sends the bran to the piggery on the hill above the churchyard lane"),
            ("cooper", "hoops the herring barrels in the yard behind the inn and marks each one with a hot iron shaped like an anchor"),
        ];
        let text: Vec<String> = jobs
            .iter()
            .map(|(who, what)| {
                format!("{FORMULA}, the {who} {what}. Ask for the {who} at the office.")
            })
            .collect();
        let (orders, _) = w.publish_datanet("orders", &[(&w.bob, "orders.txt", text.join("\n\n"))]);
        let rows = w.datanets.index_rows(&orders, 1).unwrap();
        assert_eq!(rows.len(), jobs.len());
        let mason = rows.iter().find(|r| r.text.contains("mason")).unwrap().row;
        let versions = [(p.datanet, 1), (orders, 1)];
        let params = TraceParams::default();
        // No prompt: the answer's own words are the BM25 query.
        let t = w
            .catalog()
            .trace(
                &versions,
                None,
                &format!("{FORMULA}, and it is the mason who keeps the sea wall."),
                &params,
            )
            .unwrap();
        let span = t
            .spans
            .iter()
            .find(|s| s.count == jobs.len() as u64)
            .expect("the formula is a span of every row");
        assert_eq!(span.rows_total, jobs.len());
        assert_eq!(span.rows[0].row_hash, mason, "{:?}", span.rows);
        assert!(span.rows[0].bm25 > span.rows[1].bm25, "{:?}", span.rows);
        assert!(span.rows.windows(2).all(|r| r[0].bm25 >= r[1].bm25));
        // With a question about the potter, the potter's row comes first.
        let potter = rows.iter().find(|r| r.text.contains("potter")).unwrap().row;
        let t = w
            .catalog()
            .trace(
                &versions,
                Some("What does the potter glaze?"),
                &format!("{FORMULA}, blue jugs."),
                &params,
            )
            .unwrap();
        let span = t
            .spans
            .iter()
            .find(|s| s.count == jobs.len() as u64)
            .expect("the formula is a span of every row");
        assert_eq!(span.rows[0].row_hash, potter, "{:?}", span.rows);
    }

    /// The trace latency per answer on the demo data (the Constitution and
    /// Declaration fixtures, SmolLM2's tokenizer), recorded in
    /// `docs/attribution.md`: `cargo test -p trib-node --lib
    /// trace_latency_on_the_demo_data -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: needs the SmolLM2 file, prints timings"]
    fn trace_latency_on_the_demo_data() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        let Ok(model) = trib_model::locate_smollm2(&models) else {
            eprintln!(
                "SKIPPED: no SmolLM2 file in {} (scripts/fetch-model.sh)",
                models.display()
            );
            return;
        };
        let w = World::serving(Some(model));
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datanet/tests/fixtures");
        let constitution = std::fs::read_to_string(fixtures.join("constitution.txt")).unwrap();
        let declaration = std::fs::read_to_string(fixtures.join("declaration.md")).unwrap();
        w.commit(
            &w.producer,
            Action::Transfer {
                to: w.alice.address(),
                amount: Amount::open(100),
            },
        );
        let created = w
            .datanets
            .create(CreateDatanetRequest {
                owner: w.producer.address(),
                name: "founding".into(),
                description: "demo data".into(),
                tags: vec![],
                data_type: DataType::Text,
                curation: CurationMode::OwnerApproval,
                stake_per_contribution: Amount::open(1),
                visibility: Visibility::Public,
            })
            .unwrap();
        w.commit(&w.producer, created.action);
        let mut ids = Vec::new();
        for (file, text) in [
            ("constitution.txt", &constitution),
            ("declaration.md", &declaration),
        ] {
            let r = w
                .datanets
                .contribute(
                    "founding",
                    w.alice.address(),
                    file,
                    None,
                    None,
                    text.as_bytes(),
                )
                .unwrap();
            ids.push(r.report.contribution);
            w.commit(&w.alice, r.action.unwrap());
        }
        for c in ids {
            w.commit(
                &w.producer,
                Action::Curate {
                    contribution: c,
                    accept: true,
                    reason: "ok".into(),
                },
            );
        }
        let plan = w.datanets.plan_publish("founding").unwrap();
        w.commit(&w.producer, plan.action);
        let build = Instant::now();
        let dir = w.catalog().ensure(&created.id, 1).unwrap();
        let build = build.elapsed();
        let m = SuffixIndex::open(&dir).unwrap().manifest().clone();
        // Answers: 64-token windows of the fixtures with a sentence of
        // filler in front (what a quoting answer looks like), and the same
        // count of windows of unrelated text.
        let toks = w.catalog().tokens().encode(&constitution).unwrap();
        let mut answers = Vec::new();
        for i in 0..40 {
            let at = (i * 97) % toks.len().saturating_sub(64).max(1);
            answers.push(format!(
                "Here is the text: {}",
                w.catalog().tokens().decode(&toks[at..at + 64])
            ));
        }
        for i in 0..40 {
            answers.push(format!("Answer {i}: the weather was mild, the trains ran late and nobody in the office could find the stapler before lunch."));
        }
        // The first 40 answers quote; the last 40 do not. Each answer is
        // traced as OLMoTrace's defaults would (no prompt, spans ≥ 4) and as
        // a paid answer is (its question's words masked, spans ≥ 2).
        let questions = [
            "What does the US Constitution say? Quote a passage.",
            "How was the day at the office?",
        ];
        let configs: [(&str, TraceParams, bool); 2] = [
            (
                "OLMoTrace defaults, no prompt",
                TraceParams::default(),
                false,
            ),
            (
                "answer time: prompt masked, spans >= 2 holding a letter",
                answer_trace_params(),
                true,
            ),
        ];
        for (label, params, masked) in configs {
            let mut times = Vec::new();
            let (mut quoting, mut unrelated, mut credited_unrelated) = (0, 0, 0);
            let cpu = cpu_seconds();
            for (i, a) in answers.iter().enumerate() {
                let q = questions[usize::from(i >= 40)];
                let t = w
                    .catalog()
                    .trace(&[(created.id, 1)], masked.then_some(q), a, &params)
                    .unwrap();
                if i < 40 {
                    quoting += t.spans.len();
                } else {
                    unrelated += t.spans.len();
                    credited_unrelated += usize::from(!t.evidence.weights.is_empty());
                }
                times.push(t.elapsed);
            }
            let cpu = cpu_seconds() - cpu;
            times.sort();
            let median = times[times.len() / 2];
            let p90 = times[times.len() * 9 / 10];
            eprintln!(
                "[{label}] index: {} rows, {} tokens, built in {:.1} ms; trace over {} answers (~64-75 tokens): median {:.2} ms, p90 {:.2} ms, max {:.2} ms; spans kept: {quoting} over the 40 quoting answers, {unrelated} over the 40 unrelated ones ({credited_unrelated} of them credited someone); {:.3} CPU-s in total (1 thread)",
                m.documents, m.tokens, build.as_secs_f64() * 1e3, answers.len(),
                median.as_secs_f64() * 1e3, p90.as_secs_f64() * 1e3,
                times.last().unwrap().as_secs_f64() * 1e3, cpu
            );
            assert!(quoting > 0, "the quoting answers hold spans");
        }
    }

    /// User plus system CPU seconds of this process (Linux `/proc`).
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }
}
