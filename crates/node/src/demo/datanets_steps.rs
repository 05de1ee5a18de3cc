//! The demo's datanet and ModelFactory steps: two datanets built from small
//! real texts (the US Constitution and the Declaration of Independence,
//! public domain, compiled into the binary so a fresh machine needs nothing
//! else), three contributors with a partly duplicated and a near-duplicate
//! contribution, curation and a published version, the base model
//! registered, a short LoRA job on the version run by the node's job queue,
//! and the adapter registered with prices. [`Demo::datanets_and_factory`]
//! returns what the paid-inference steps need.

use std::path::PathBuf;

use trib_ledger::{datanet_id, Action, CurationMode, DataType, Visibility};
use trib_types::{AdapterId, Amount, ModelId, SecretKey};

use super::{Demo, DemoError, TO_STDERR};
use crate::service_client::{ServiceClient, Upload};
use trib_client::wire::CreateDatanetRequest;

const CONSTITUTION: &str = include_str!("../../../datanet/tests/fixtures/constitution.txt");
const DECLARATION: &str = include_str!("../../../datanet/tests/fixtures/declaration.md");

/// What the datanet and factory steps leave for the steps after them.
#[derive(Debug, Clone)]
pub struct DemoArtifacts {
    /// Published datanet versions (`name`, version).
    pub datanets: Vec<(String, u32)>,
    /// The trained adapter's directory (PEFT files), when training ran.
    pub adapter_dir: Option<PathBuf>,
    /// The registered adapter's id, when training ran.
    pub adapter: Option<AdapterId>,
    /// The job's gradient cache directory, when training wrote one.
    pub gradient_cache: Option<PathBuf>,
    /// The registered base model and its weights file, when found.
    pub base_model: Option<(ModelId, PathBuf)>,
    /// Contributors (name, key) whose rows are in the versions.
    pub contributors: Vec<(String, SecretKey)>,
}

/// The demo base model: `<repo>/models` (where scripts/fetch-model.sh puts
/// it) or `./models`, sha256-verified.
impl Demo {
    /// The datanet and ModelFactory steps (4 numbered steps).
    pub(super) async fn datanets_and_factory(
        &mut self,
        jobs_root: &std::path::Path,
    ) -> Result<DemoArtifacts, DemoError> {
        let svc = ServiceClient::new(&self.client)?;
        let alice = self.user("alice").clone();
        let bob = self.user("bob").clone();
        let carol = self.user("carol").clone();

        self.next_step("datanets: alice creates us-constitution, carol creates us-declaration (stake 1 OPEN per contribution)");
        for (owner, name, desc, tags) in [
            (
                &alice,
                "us-constitution",
                "The US Constitution, paragraph by paragraph.",
                vec!["legal".to_string(), "us".into()],
            ),
            (
                &carol,
                "us-declaration",
                "The Declaration of Independence.",
                vec!["legal".to_string(), "history".into()],
            ),
        ] {
            let plan = svc
                .create_datanet(&CreateDatanetRequest {
                    owner: owner.address(),
                    name: name.into(),
                    description: desc.into(),
                    tags,
                    data_type: DataType::Text,
                    curation: CurationMode::OwnerApproval,
                    stake_per_contribution: Amount::open(1),
                    visibility: Visibility::Public,
                })
                .await?;
            self.submit_all(vec![(owner.clone(), plan.action)]).await?;
            say!(
                "      {name}: descriptor hash {} on the ledger",
                plan.metadata_hash.short()
            );
        }

        self.next_step(
            "contributions: validated row by row on the node, then staked on the ledger",
        );
        let paragraphs: Vec<&str> = CONSTITUTION
            .split("\n\n")
            .filter(|p| p.trim().len() > 120)
            .collect();
        let half = CONSTITUTION.len() / 2;
        let cut = CONSTITUTION[..half].rfind("\n\n").unwrap_or(half);
        let (first, second) = CONSTITUTION.split_at(cut);
        // Carol's file repeats bob's half before adding the rest: partly
        // duplicated (the repeated rows are rejected, the new ones kept).
        let carol_text = format!("{first}\n\n{second}");
        // Alice's file is one of bob's paragraphs with a word changed: a near
        // duplicate, rejected before any stake.
        let near = paragraphs
            .first()
            .map(|p| p.replacen("the", "thee", 1))
            .unwrap_or_default();
        let uploads: Vec<(&SecretKey, &str, &str, String)> = vec![
            (&bob, "bob", "us-constitution", first.to_string()),
            (&carol, "carol", "us-constitution", carol_text),
            (&alice, "alice", "us-constitution", near),
            (&bob, "bob", "us-declaration", DECLARATION.to_string()),
        ];
        let mut accepted: Vec<(String, trib_types::ContributionId)> = Vec::new();
        for (key, who, datanet, text) in uploads {
            let file = format!("{who}-{datanet}.txt");
            let r = svc
                .contribute(
                    datanet,
                    &Upload {
                        contributor: Some(key.address()),
                        file_name: &file,
                        kind: Some("txt"),
                        csv_column: None,
                    },
                    text.into_bytes(),
                )
                .await?;
            let rows = r["report"]["rows"].as_array().map_or(0, |a| a.len());
            let ok = r["report"]["rows_accepted"].as_u64().unwrap_or(0);
            say!(
                "      {who:<6} -> {datanet}: {rows} rows, {ok} accepted, {} duplicates",
                r["report"]["duplicates_rejected"]
            );
            for row in r["report"]["rows"].as_array().into_iter().flatten() {
                if !row["rejection"].is_null() {
                    say!(
                        "        row {} rejected: {}",
                        row["index"],
                        row["rejection"]
                    );
                }
            }
            match serde_json::from_value::<Option<Action>>(r["action"].clone())
                .map_err(|e| super::unexpected("contribute", e.to_string()))?
            {
                Some(action) => {
                    if let Action::Contribute { contribution, .. } = &action {
                        accepted.push((datanet.to_string(), *contribution));
                    }
                    self.submit_all(vec![(key.clone(), action)]).await?;
                }
                None => say!(
                    "        contribution rejected ({}); no stake locked",
                    r["report"]["rejection"]
                ),
            }
        }
        if accepted.len() != 3 {
            return Err(super::unexpected(
                "contribute",
                format!("expected 3 staked contributions, got {}", accepted.len()),
            ));
        }

        self.next_step("curation and versions: the owners accept, the node computes each version root, the owners publish");
        let mut versions = Vec::new();
        for (owner, datanet) in [(&alice, "us-constitution"), (&carol, "us-declaration")] {
            let txs: Vec<(SecretKey, Action)> = accepted
                .iter()
                .filter(|(d, _)| d == datanet)
                .map(|(_, c)| {
                    (
                        owner.clone(),
                        Action::Curate {
                            contribution: *c,
                            accept: true,
                            reason: "on topic".into(),
                        },
                    )
                })
                .collect();
            self.submit_all(txs).await?;
            let plan = svc.publish_plan(datanet).await?;
            self.submit_all(vec![(owner.clone(), plan.action)]).await?;
            say!(
                "      {datanet}@{}: {} rows, root {}",
                plan.version,
                plan.rows,
                plan.root.short()
            );
            versions.push((datanet.to_string(), plan.version));
        }

        self.next_step("ModelFactory: register SmolLM2, train a LoRA adapter on us-constitution@1 in the node's job queue, register it with prices");
        let mut artifacts = DemoArtifacts {
            datanets: versions.clone(),
            adapter_dir: None,
            gradient_cache: None,
            adapter: None,
            base_model: None,
            contributors: vec![("bob".into(), bob.clone()), ("carol".into(), carol.clone())],
        };
        let Some(model) = super::demo_model() else {
            say!("      the demo model is not in models/: run scripts/fetch-model.sh (or `trib models pull smollm2-135m --dir models`); skipping training");
            return Ok(artifacts);
        };
        let info = tokio::task::spawn_blocking({
            let m = model.clone();
            move || crate::models::describe_model(&m)
        })
        .await
        .map_err(|e| super::unexpected("register model", e.to_string()))?
        .map_err(|e| super::unexpected("register model", e.to_string()))?;
        self.submit_all(vec![(
            self.producer.clone(),
            Action::RegisterBaseModel {
                model: info.id,
                name: "SmolLM2-135M-Instruct".into(),
                architecture: info.architecture.clone(),
                licence: trib_model::SMOLLM2_LICENSE.into(),
            },
        )])
        .await?;
        say!(
            "      base model {} ({} parameters, {}) registered",
            info.id.0.short(),
            info.parameters,
            info.quantization
        );
        artifacts.base_model = Some((info.id, model.clone()));

        let job = format!(
            "name = \"us-constitution-lora\"\n[model]\nbase = \"{}\"\n[data]\nsources = [\"us-constitution@1\"]\nformat = \"text\"\nmax_length = 48\npacking = true\nvalidation_fraction = 0.2\n[lora]\nr = 8\nalpha = 16\ndropout = 0.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n[train]\nlearning_rate = 1e-3\nschedule = \"constant\"\nwarmup_steps = 0\nepochs = 1\nbatch_size = 2\ngradient_accumulation = 1\nseed = 7\n[output]\ndir = \"{}\"\n[pricing]\ninput_per_1k = \"0.002\"\noutput_per_1k = \"0.004\"\n",
            model.display(),
            jobs_root.join("demo").display()
        );
        // The node takes the owner only from a request the owner signed.
        let submitted = (svc.clone().with_signer(alice.clone()))
            .submit_job(&job, Some(&alice.address()))
            .await?;
        say!("      job {} queued by alice", submitted.id);
        let last = svc
            .follow_job(submitted.id, |e| match e["event"].as_str() {
                Some("step") => say!(
                    "        step {} loss {:.3} {:.0} tokens/s eta {:.0}s",
                    e["step"],
                    e["loss"].as_f64().unwrap_or(f64::NAN),
                    e["tokens_per_s"].as_f64().unwrap_or(0.0),
                    e["eta_s"].as_f64().unwrap_or(0.0)
                ),
                Some("evaluated") => say!(
                    "        validation ({}) loss {:.3}",
                    e["phase"].as_str().unwrap_or("?"),
                    e["loss"].as_f64().unwrap_or(f64::NAN)
                ),
                Some(other) => say!("        {other}"),
                None => {}
            })
            .await?;
        let done = svc.job(submitted.id).await?;
        let summary = match (
            last.as_ref().and_then(|e| e["event"].as_str()),
            done.summary,
        ) {
            (Some("done"), Some(s)) => s,
            _ => {
                return Err(super::unexpected(
                    "train",
                    format!(
                        "job ended as {:?}: {}",
                        done.status,
                        done.error.unwrap_or_default()
                    ),
                ))
            }
        };
        let metrics = serde_json::json!({"eval_before": summary.eval_before, "eval_after": summary.eval_after, "final_train_loss": summary.final_train_loss});
        let action = Action::RegisterAdapter {
            adapter: summary.adapter_id,
            base: ModelId(summary.base_model_hash),
            name: "us-constitution-lora".into(),
            datanets: vec![(datanet_id("us-constitution"), 1)],
            config_hash: summary.config_hash,
            metrics_hash: trib_types::Hash::of(metrics.to_string().as_bytes()),
            price_in_per_1k: Amount::parse_open("0.002")
                .map_err(|e| super::unexpected("register adapter", e.to_string()))?,
            price_out_per_1k: Amount::parse_open("0.004")
                .map_err(|e| super::unexpected("register adapter", e.to_string()))?,
        };
        self.submit_all(vec![(alice.clone(), action)]).await?;
        say!("      adapter {} registered by alice (0.002 / 0.004 OPEN per 1k tokens in / out), files in {}", summary.adapter_id, summary.adapter_dir.display());
        artifacts.adapter = Some(summary.adapter_id);
        artifacts.adapter_dir = Some(summary.adapter_dir);
        artifacts.gradient_cache = summary.gradient_cache;
        Ok(artifacts)
    }
}
