//! `trib factory train|eval|export|submit|jobs|cancel|register`: ModelFactory
//! LoRA jobs, locally (in this process, with a progress bar) or queued on a
//! node, and the registration of a node job's adapter on the ledger.
//!
//! Progress goes to stderr, the result to stdout (with `--json`, the result
//! as one JSON document; `submit`'s events as JSON lines on stderr).
//!
//! Local jobs resolve `datanet@version` sources through the node: the
//! version's export is fetched (as the signing key's address, so a
//! permissioned datanet refuses readers without access), its Merkle root is
//! recomputed from the rows and compared with the ledger's record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tokio::runtime::Runtime;
use trib_client::wire::JobStatus;
use trib_client::NodeClient;
use trib_node::model::factory::{
    eval_adapter, export_merged, train, DatanetResolver, JobConfig, ResolvedDatanet, SourceRef,
    TrainOptions, TrainingSummary,
};
use trib_node::types::{AdapterId, SecretKey};

use super::datanet::{sign_submit_wait, KeyOpts};
use crate::{output, Global};

/// `trib factory` subcommands.
#[derive(Subcommand, Debug)]
pub enum FactoryCommand {
    /// Train a LoRA adapter locally from a job file.
    Train(TrainArgs),
    /// Held-out loss/perplexity of the base model vs the adapter.
    Eval {
        /// The job file (base model, data format, template).
        job: PathBuf,
        /// The adapter directory [default: <job output>/adapter].
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Held-out sources (`name@version` or files).
        #[arg(long = "data", required = true)]
        data: Vec<String>,
        /// Reader key for datanet sources.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Merge an adapter into the base weights (safetensors directory).
    Export {
        /// Base model path.
        #[arg(long)]
        base: PathBuf,
        /// Adapter directory.
        #[arg(long)]
        adapter: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Queue a job on the node and follow its progress.
    Submit {
        /// The job file.
        job: PathBuf,
        /// Owner key: signs the submission (the node takes jobs only from a
        /// signed request; the signer owns the job and its datanet access is
        /// checked).
        #[arg(long, value_name = "KEY")]
        key: String,
        /// Return at once instead of following the events.
        #[arg(long)]
        detach: bool,
    },
    /// Register the adapter of a finished node job on the ledger
    /// (`RegisterAdapter` from the job's summary and datanet versions,
    /// signed by the owner's key).
    Register {
        /// Job id (`trib factory jobs`).
        id: u64,
        /// Name to register under [default: the job's name].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        key: KeyOpts,
    },
    /// List your jobs on the node (signed by `--key`; the operator's key
    /// lists every job).
    Jobs {
        /// The key whose jobs to list.
        #[arg(long, value_name = "KEY")]
        key: String,
    },
    /// Cancel a node job (signed by its owner's key or the operator's).
    Cancel {
        /// Job id.
        id: u64,
        /// The job owner's key.
        #[arg(long, value_name = "KEY")]
        key: String,
    },
}

/// `trib factory train` options.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The job file (TOML; see docs/factory.md).
    job: PathBuf,
    /// Register the adapter on the ledger when training ends (needs --key).
    #[arg(long)]
    register: bool,
    /// Keystore key: reads permissioned datanets and owns the registered adapter.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Seconds to wait for the registration to be committed.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    #[command(flatten)]
    pass: crate::passphrase::PassphraseArgs,
}

/// Datanet versions fetched and verified before training starts.
struct Prefetched(HashMap<(String, String), ResolvedDatanet>);

impl DatanetResolver for Prefetched {
    fn resolve(&self, name: &str, version: &str) -> Result<ResolvedDatanet, String> {
        self.0
            .get(&(name.to_string(), version.to_string()))
            .cloned()
            .ok_or_else(|| format!("{name}@{version} was not fetched"))
    }
}

/// Fetches every `datanet@version` of `sources` from the node, verified
/// against the ledger; `reader` signs the reads (the node checks its
/// access to permissioned datanets).
async fn prefetch(
    client: &NodeClient,
    sources: &[String],
    base_dir: &Path,
    reader: Option<&SecretKey>,
) -> anyhow::Result<(Prefetched, Vec<(String, u32)>)> {
    let client = match reader {
        Some(k) => client.clone().with_signer(k.clone()),
        None => client.clone(),
    };
    let mut map = HashMap::new();
    let mut used = Vec::new();
    for s in sources {
        let SourceRef::Datanet { name, version } = SourceRef::parse(s, base_dir)? else {
            continue;
        };
        let v: u32 = version.parse().with_context(|| {
            format!("{name}@{version}: only numbered versions resolve through the node")
        })?;
        let resolved = client
            .training_rows(&name, v)
            .await
            .with_context(|| format!("cannot read {name}@{v} for training"))?;
        eprintln!(
            "{name}@{v}: {} rows, root {} (equals the ledger's)",
            resolved.rows.len(),
            resolved.version_root
        );
        map.insert((name.clone(), version.clone()), resolved);
        used.push((name, v));
    }
    Ok((Prefetched(map), used))
}

/// The datanet versions among `sources` fetched and verified (none when
/// no source is a datanet: then no node is needed).
fn resolve_datanets(
    g: &Global,
    rt: &Runtime,
    sources: &[String],
    base_dir: &Path,
    reader: Option<&SecretKey>,
) -> anyhow::Result<(Prefetched, Vec<(String, u32)>)> {
    let any_datanet = sources
        .iter()
        .any(|s| matches!(SourceRef::parse(s, base_dir), Ok(SourceRef::Datanet { .. })));
    if !any_datanet {
        return Ok((Prefetched(HashMap::new()), Vec::new()));
    }
    rt.block_on(prefetch(&g.client()?, sources, base_dir, reader))
}

fn print_summary(s: &TrainingSummary) {
    println!("adapter {} in {}", s.adapter_id, s.adapter_dir.display());
    println!(
        "  steps {}  tokens {}  final train loss {}",
        s.steps,
        s.tokens_trained,
        s.final_train_loss.map_or("-".into(), |l| format!("{l:.4}"))
    );
    if !s.precision.is_empty() {
        println!("  frozen projections {}", s.precision);
    }
    if let (Some(b), Some(a)) = (&s.eval_before, &s.eval_after) {
        println!(
            "  validation loss {:.4} -> {:.4} (perplexity {:.2} -> {:.2})",
            b.loss, a.loss, b.perplexity, a.perplexity
        );
    }
    for src in &s.sources {
        println!(
            "  source {} ({} rows, {})",
            src.source,
            src.rows,
            src.content_hash.short()
        );
    }
}

/// `trib factory train`: trains locally, then registers the adapter when
/// asked.
fn train_locally(g: &Global, rt: &Runtime, a: TrainArgs) -> anyhow::Result<()> {
    let job = JobConfig::load(&a.job)?;
    let key = match &a.key {
        Some(k) => Some((
            a.pass.load_key(&g.home().keystore()?, k)?,
            std::time::Duration::from_secs(a.wait_timeout),
        )),
        None => None,
    };
    if a.register && key.is_none() {
        bail!("--register needs --key (the adapter's owner)");
    }
    let base_dir = a.job.parent().map(PathBuf::from).unwrap_or_default();
    let reader = key.as_ref().map(|(k, _)| k);
    let (resolver, used) = resolve_datanets(g, rt, &job.data.sources, &base_dir, reader)?;
    let opts = TrainOptions {
        resolver: Some(Arc::new(resolver)),
        progress: None,
        cancel: Default::default(),
        progress_bar: !g.json,
        model: None,
    };
    let outcome = train(&job, opts)?;
    let mut registered: Option<AdapterId> = None;
    if a.register {
        let (sk, wait) = key.expect("checked above");
        let action = trib_client::actions::register_adapter(&outcome.summary, &used);
        let view = rt.block_on(sign_submit_wait(&g.client()?, &sk, action, wait))?;
        registered = Some(outcome.summary.adapter_id);
        if !g.json {
            eprintln!(
                "registered adapter {} in block {}",
                outcome.summary.adapter_id,
                view.height.unwrap_or(0)
            );
        }
    }
    if g.json {
        return output::json(
            &serde_json::json!({"summary": outcome.summary, "registered": registered}),
        );
    }
    print_summary(&outcome.summary);
    Ok(())
}

/// `trib factory eval`: held-out loss of the base model and the adapter.
fn eval(
    g: &Global,
    rt: &Runtime,
    job: PathBuf,
    adapter: Option<PathBuf>,
    data: Vec<String>,
    key: Option<String>,
) -> anyhow::Result<()> {
    let cfg = JobConfig::load(&job)?;
    let base_dir = job.parent().map(PathBuf::from).unwrap_or_default();
    let adapter = adapter.unwrap_or_else(|| cfg.output.dir.join("adapter"));
    let heldout = data
        .iter()
        .map(|s| SourceRef::parse(s, &base_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let reader = match &key {
        Some(k) => Some(g.home().keystore()?.load(k, None)?),
        None => None,
    };
    let (resolver, _) = resolve_datanets(g, rt, &data, &base_dir, reader.as_ref())?;
    let r = eval_adapter(&cfg, &adapter, &heldout, Some(&resolver))?;
    if g.json {
        return output::json(&r);
    }
    println!(
        "held-out {}: base loss {:.4} (ppl {:.2}), adapter loss {:.4} (ppl {:.2}), delta {:+.4}",
        r.sources.join(", "),
        r.base.loss,
        r.base.perplexity,
        r.adapter.loss,
        r.adapter.perplexity,
        r.loss_delta()
    );
    Ok(())
}

/// A client signing with keystore key `key` (job routes act for an
/// account).
fn signing_client(g: &Global, key: &str) -> anyhow::Result<NodeClient> {
    Ok(g.client()?
        .with_signer(g.home().keystore()?.load(key, None)?))
}

/// `trib factory submit`: queues the job on the node (signed by the
/// owner's key, which owns the job) and follows its events on stderr; the
/// finished job goes to stdout (its summary, or the job view with `--json`).
fn submit(g: &Global, rt: &Runtime, job: PathBuf, key: String, detach: bool) -> anyhow::Result<()> {
    let toml =
        std::fs::read_to_string(&job).with_context(|| format!("cannot read {}", job.display()))?;
    let client = signing_client(g, &key)?;
    rt.block_on(async {
        let v = client.submit_job(&toml, None).await?;
        eprintln!("job {} queued (output {})", v.id, v.output_dir.display());
        if detach {
            if g.json {
                return output::json(&v);
            }
            println!("{}", v.id);
            return Ok(());
        }
        let last = client
            .follow_job(v.id, |e| {
                if g.json {
                    eprintln!("{e}");
                } else if e["event"] == "step" {
                    eprintln!(
                        "step {} loss {:.4} {:.0} tok/s eta {:.0}s",
                        e["step"],
                        e["loss"].as_f64().unwrap_or(f64::NAN),
                        e["tokens_per_s"].as_f64().unwrap_or(0.0),
                        e["eta_s"].as_f64().unwrap_or(0.0)
                    );
                } else {
                    eprintln!("{e}");
                }
            })
            .await?;
        match last.as_ref().and_then(|e| e["event"].as_str()) {
            Some("done") => {}
            Some(other) => bail!("job {} ended: {other}", v.id),
            None => bail!("job {} event stream ended without a final event", v.id),
        }
        let done = client.job(v.id).await?;
        if g.json {
            return output::json(&done);
        }
        match &done.summary {
            Some(s) => print_summary(s),
            None => println!("job {} done", v.id),
        }
        eprintln!(
            "register its adapter with: trib factory register {} --key KEY",
            v.id
        );
        Ok(())
    })
}

/// `trib factory register`: reads the finished job from the node and signs
/// `RegisterAdapter` from its summary and datanet versions
/// ([`trib_client::actions::register_adapter`], as `train --register`).
fn register_job(
    g: &Global,
    rt: &Runtime,
    id: u64,
    name: Option<String>,
    key: &KeyOpts,
) -> anyhow::Result<()> {
    let (sk, wait) = key.load(g)?;
    let me = sk.address();
    let client = g.client()?.with_signer(sk.clone());
    rt.block_on(async {
        let job = client.job(id).await?;
        if job.status != JobStatus::Done {
            bail!(
                "job {id} is {}: only a finished job's adapter can be registered",
                format!("{:?}", job.status).to_lowercase()
            );
        }
        if let Some(owner) = job.owner.filter(|o| *o != me) {
            bail!("job {id} is owned by {owner}, not by {me}: register it with the owner's key");
        }
        let mut summary = job
            .summary
            .with_context(|| format!("job {id} is done but the node shows no training summary"))?;
        if name.is_some() {
            summary.name = name;
        }
        let datanets: Vec<(String, u32)> = job
            .datanets
            .iter()
            .map(|d| (d.name.clone(), d.version))
            .collect();
        let action = trib_client::actions::register_adapter(&summary, &datanets);
        let view = sign_submit_wait(&client, &sk, action, wait).await?;
        if g.json {
            return output::json(&serde_json::json!({
                "adapter": summary.adapter_id, "job": id, "tx": view.hash, "height": view.height,
            }));
        }
        println!(
            "registered adapter {} ({}) from job {id} in block {}",
            summary.adapter_id,
            summary.name.as_deref().unwrap_or("adapter"),
            view.height.unwrap_or(0)
        );
        Ok(())
    })
}

/// Runs `trib factory …`.
pub fn run(g: &Global, cmd: FactoryCommand) -> anyhow::Result<()> {
    let rt = super::runtime()?;
    match cmd {
        FactoryCommand::Train(a) => train_locally(g, &rt, a),
        FactoryCommand::Eval {
            job,
            adapter,
            data,
            key,
        } => eval(g, &rt, job, adapter, data, key),
        FactoryCommand::Export { base, adapter, out } => {
            export_merged(&base, &adapter, &out)?;
            if g.json {
                return output::json(&serde_json::json!({"out": out}));
            }
            println!(
                "merged {} into {} -> {}",
                adapter.display(),
                base.display(),
                out.display()
            );
            Ok(())
        }
        FactoryCommand::Submit { job, key, detach } => submit(g, &rt, job, key, detach),
        FactoryCommand::Register { id, name, key } => register_job(g, &rt, id, name, &key),
        FactoryCommand::Jobs { key } => rt.block_on(async {
            let jobs = signing_client(g, &key)?.jobs().await?;
            if g.json {
                return output::json(&jobs);
            }
            for j in jobs {
                println!(
                    "{:>4} {:<10} step {}/{} loss {}  {}",
                    j.id,
                    format!("{:?}", j.status).to_lowercase(),
                    j.step,
                    j.total_steps,
                    j.loss.map_or("-".into(), |l| format!("{l:.4}")),
                    j.name.unwrap_or_default()
                );
            }
            Ok(())
        }),
        FactoryCommand::Cancel { id, key } => rt.block_on(async {
            let v = signing_client(g, &key)?.cancel_job(id).await?;
            if g.json {
                return output::json(&v);
            }
            println!("job {id}: {:?}", v.status);
            Ok(())
        }),
    }
}
