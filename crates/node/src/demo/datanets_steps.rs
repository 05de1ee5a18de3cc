//! The demo's datanet and ModelFactory steps: two datanets built from small
//! real texts (the US Constitution and the Declaration of Independence,
//! public domain, compiled into the binary so a fresh machine needs nothing
//! else), three contributors with a partly duplicated and a near-duplicate
//! contribution, curation and a published version, the base model
//! registered, a short LoRA job on the version run by the node's job queue,
//! and the adapter registered with prices. [`Demo::datanets_and_factory`]
//! returns what the paid-inference steps need.

use std::path::{Path, PathBuf};

use trib_ledger::{datanet_id, Action, CurationMode, DataType, Visibility};
use trib_model::factory::TrainingSummary;
use trib_types::{AdapterId, Amount, ContributionId, ModelId, SecretKey};

use super::{Demo, DemoError, TO_STDERR};
use trib_client::wire::CreateDatanetRequest;
use trib_client::{NodeClient, Upload};

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

/// The datanets the demo creates: owner, name, description, tags.
const DATANETS: [(&str, &str, &str, [&str; 2]); 2] = [
    (
        "alice",
        "us-constitution",
        "The US Constitution, paragraph by paragraph.",
        ["legal", "us"],
    ),
    (
        "carol",
        "us-declaration",
        "The Declaration of Independence.",
        ["legal", "history"],
    ),
];

/// The demo's LoRA job on `us-constitution@1` (TOML), trained from `model`
/// (named by its file name: the node's jobs read base models from its
/// models directory, where the demo linked it) with its output under
/// `jobs_root`.
fn demo_job(model: &Path, jobs_root: &Path) -> String {
    format!(
        "name = \"us-constitution-lora\"\n[model]\nbase = \"{}\"\n[data]\nsources = [\"us-constitution@1\"]\nformat = \"text\"\nmax_length = 48\npacking = true\nvalidation_fraction = 0.2\n[lora]\nr = 8\nalpha = 16\ndropout = 0.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n[train]\nlearning_rate = 1e-3\nschedule = \"constant\"\nwarmup_steps = 0\nepochs = 1\nbatch_size = 2\ngradient_accumulation = 1\nseed = 7\n[output]\ndir = \"{}\"\n[pricing]\ninput_per_1k = \"0.002\"\noutput_per_1k = \"0.004\"\n",
        model.file_name().unwrap_or_default().to_string_lossy(),
        jobs_root.join("demo").display()
    )
}

/// The four contribution files: who uploads what to which datanet. Bob
/// uploads the first half of the Constitution; carol's file repeats bob's
/// half before adding the rest (partly duplicated: the repeated rows are
/// rejected, the new ones kept); alice's is one of bob's paragraphs with a
/// word changed (a near duplicate, rejected before any stake); bob uploads
/// the Declaration.
fn demo_uploads() -> Vec<(&'static str, &'static str, String)> {
    let paragraphs: Vec<&str> = CONSTITUTION
        .split("\n\n")
        .filter(|p| p.trim().len() > 120)
        .collect();
    let half = CONSTITUTION.len() / 2;
    let cut = CONSTITUTION[..half].rfind("\n\n").unwrap_or(half);
    let (first, second) = CONSTITUTION.split_at(cut);
    let carol_text = format!("{first}\n\n{second}");
    let near = paragraphs
        .first()
        .map(|p| p.replacen("the", "thee", 1))
        .unwrap_or_default();
    vec![
        ("bob", "us-constitution", first.to_string()),
        ("carol", "us-constitution", carol_text),
        ("alice", "us-constitution", near),
        ("bob", "us-declaration", DECLARATION.to_string()),
    ]
}

impl Demo {
    /// The datanet and ModelFactory steps (4 numbered steps): create,
    /// contribute, curate and publish, then train and register.
    pub(super) async fn datanets_and_factory(
        &mut self,
        jobs_root: &Path,
    ) -> Result<DemoArtifacts, DemoError> {
        let svc = self.client.clone();
        self.create_datanets(&svc).await?;
        let accepted = self.contribute(&svc).await?;
        let versions = self.curate_and_publish(&svc, &accepted).await?;
        let mut artifacts = DemoArtifacts {
            datanets: versions,
            adapter_dir: None,
            gradient_cache: None,
            adapter: None,
            base_model: None,
            contributors: vec![
                ("bob".into(), self.user("bob").clone()),
                ("carol".into(), self.user("carol").clone()),
            ],
        };
        self.factory(&svc, jobs_root, &mut artifacts).await?;
        Ok(artifacts)
    }

    /// Each owner stores a descriptor on the node (a request it signs) and
    /// signs `CreateDatanet`.
    async fn create_datanets(&mut self, svc: &NodeClient) -> Result<(), DemoError> {
        self.next_step("datanets: alice creates us-constitution, carol creates us-declaration (stake 1 OPEN per contribution)");
        for (owner, name, desc, tags) in DATANETS {
            let owner = self.user(owner).clone();
            let plan = (svc.clone().with_signer(owner.clone()))
                .create_datanet(&CreateDatanetRequest {
                    owner: owner.address(),
                    name: name.into(),
                    description: desc.into(),
                    tags: tags.map(String::from).to_vec(),
                    data_type: DataType::Text,
                    curation: CurationMode::OwnerApproval,
                    stake_per_contribution: Amount::open(1),
                    visibility: Visibility::Public,
                })
                .await?;
            self.submit_all(vec![(owner, plan.action)]).await?;
            say!(
                "      {name}: descriptor hash {} on the ledger",
                plan.metadata_hash.short()
            );
        }
        Ok(())
    }

    /// Uploads the four files, prints each validation report and signs
    /// `Contribute` for the accepted ones; returns them (datanet, id).
    async fn contribute(
        &mut self,
        svc: &NodeClient,
    ) -> Result<Vec<(String, ContributionId)>, DemoError> {
        self.next_step(
            "contributions: validated row by row on the node, then staked on the ledger",
        );
        let mut accepted = Vec::new();
        for (who, datanet, text) in demo_uploads() {
            let key = self.user(who).clone();
            let file = format!("{who}-{datanet}.txt");
            // Uploads are signed by their contributor.
            let r = (svc.clone().with_signer(key.clone()))
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
            print_report(who, datanet, &r);
            match serde_json::from_value::<Option<Action>>(r["action"].clone())
                .map_err(|e| super::unexpected("contribute", e.to_string()))?
            {
                Some(action) => {
                    if let Action::Contribute { contribution, .. } = &action {
                        accepted.push((datanet.to_string(), *contribution));
                    }
                    self.submit_all(vec![(key, action)]).await?;
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
        Ok(accepted)
    }

    /// Each owner accepts the contributions to its datanet, asks the node
    /// for the version to publish and signs `PublishVersion`; returns the
    /// published versions.
    async fn curate_and_publish(
        &mut self,
        svc: &NodeClient,
        accepted: &[(String, ContributionId)],
    ) -> Result<Vec<(String, u32)>, DemoError> {
        self.next_step("curation and versions: the owners accept, the node computes each version root, the owners publish");
        let mut versions = Vec::new();
        for (owner, datanet, _, _) in DATANETS {
            let owner = self.user(owner).clone();
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
            self.submit_all(vec![(owner, plan.action)]).await?;
            say!(
                "      {datanet}@{}: {} rows, root {}",
                plan.version,
                plan.rows,
                plan.root.short()
            );
            versions.push((datanet.to_string(), plan.version));
        }
        Ok(versions)
    }

    /// Registers the demo model, trains alice's job in the node's queue and
    /// registers the adapter, filling `artifacts`; skipped (with the fix
    /// printed) when the demo model is not in `models/`.
    async fn factory(
        &mut self,
        svc: &NodeClient,
        jobs_root: &Path,
        artifacts: &mut DemoArtifacts,
    ) -> Result<(), DemoError> {
        self.next_step("ModelFactory: register SmolLM2, train a LoRA adapter on us-constitution@1 in the node's job queue, register it with prices");
        let Some(model) = super::demo_model() else {
            say!("      the demo model is not in models/: run scripts/fetch-model.sh (or `trib models pull smollm2-135m --dir models`); skipping training");
            return Ok(());
        };
        let base = self.register_base_model(&model).await?;
        artifacts.base_model = Some((base, model.clone()));
        let summary = self.train(svc, &demo_job(&model, jobs_root)).await?;
        self.register_adapter(&summary).await?;
        artifacts.adapter = Some(summary.adapter_id);
        artifacts.adapter_dir = Some(summary.adapter_dir);
        artifacts.gradient_cache = summary.gradient_cache;
        Ok(())
    }

    /// The producer registers the demo model by its content hash.
    async fn register_base_model(&mut self, model: &Path) -> Result<ModelId, DemoError> {
        let info = tokio::task::spawn_blocking({
            let m = model.to_path_buf();
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
        Ok(info.id)
    }

    /// Alice submits `job` (signed: the node takes the owner only from a
    /// request the owner signed) and follows its events to the end.
    async fn train(&mut self, svc: &NodeClient, job: &str) -> Result<TrainingSummary, DemoError> {
        let alice = self.user("alice").clone();
        // Every job route acts for the job's owner: alice signs them all.
        let svc = svc.clone().with_signer(alice.clone());
        let submitted = svc.submit_job(job, Some(&alice.address())).await?;
        say!("      job {} queued by alice", submitted.id);
        let last = svc.follow_job(submitted.id, print_job_event).await?;
        let done = svc.job(submitted.id).await?;
        match (
            last.as_ref().and_then(|e| e["event"].as_str()),
            done.summary,
        ) {
            (Some("done"), Some(s)) => Ok(s),
            _ => Err(super::unexpected(
                "train",
                format!(
                    "job ended as {:?}: {}",
                    done.status,
                    done.error.unwrap_or_default()
                ),
            )),
        }
    }

    /// Alice registers the trained adapter with its datanet version and
    /// prices.
    async fn register_adapter(&mut self, summary: &TrainingSummary) -> Result<(), DemoError> {
        let action = Action::RegisterAdapter {
            adapter: summary.adapter_id,
            base: ModelId(summary.base_model_hash),
            name: "us-constitution-lora".into(),
            datanets: vec![(datanet_id("us-constitution"), 1)],
            config_hash: summary.config_hash,
            metrics_hash: summary.metrics_hash(),
            price_in_per_1k: Amount::parse_open("0.002")
                .map_err(|e| super::unexpected("register adapter", e.to_string()))?,
            price_out_per_1k: Amount::parse_open("0.004")
                .map_err(|e| super::unexpected("register adapter", e.to_string()))?,
        };
        let alice = self.user("alice").clone();
        self.submit_all(vec![(alice, action)]).await?;
        say!("      adapter {} registered by alice (0.002 / 0.004 OPEN per 1k tokens in / out), files in {}", summary.adapter_id, summary.adapter_dir.display());
        Ok(())
    }
}

/// One upload's validation report: rows, accepted, duplicates, and each
/// rejected row.
fn print_report(who: &str, datanet: &str, r: &serde_json::Value) {
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
}

/// One event of the training job as the demo prints it.
fn print_job_event(e: &serde_json::Value) {
    match e["event"].as_str() {
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
    }
}
