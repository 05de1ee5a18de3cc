//! The training job: data → LoRA training → evaluation → adapter, summary and
//! gradient cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use trib_types::{AdapterId, Amount, Hash};

use super::checkpoint::{self, CheckpointState};
use super::config::{ChatTemplateChoice, DataFormat, JobConfig, Precision};
use super::data::{self, Batch, DataStats, DatanetResolver, Example, SourceSummary, SpecialTokens};
use super::error::{FactoryError, Result};
use super::gradcache::{
    self, CachedExample, GradientCache, GradientCacheIndex, LayerEntry, LayerProjector,
};
use super::loss::{masked_ce_sum, masked_ce_sum_train};
use super::optim::{self, AdamW};
use super::progress::{CancelFlag, EvalPhase, ProgressEvent, ProgressFn, Reporter, StepMetrics};
use crate::chat::ChatTemplate;
use crate::kernels::amx::{self, Bf16Kernel};
use crate::lora::{LoraAdapter, LoraConfig, LoraDropout, LoraTarget};
use crate::{Model, ModelError, WeightFormat};

impl From<ModelError> for FactoryError {
    fn from(e: ModelError) -> Self {
        FactoryError::Model(e.to_string())
    }
}

/// How a job is run (as opposed to what it trains).
#[derive(Clone, Default)]
pub struct TrainOptions {
    /// Resolves `datanet@version` sources (and enforces access); `None` allows
    /// only local files.
    pub resolver: Option<Arc<dyn DatanetResolver>>,
    /// Receives every progress event.
    pub progress: Option<ProgressFn>,
    /// Stops the job at the next micro-batch.
    pub cancel: CancelFlag,
    /// Draw an indicatif bar on stderr (only when it is a terminal).
    pub progress_bar: bool,
    /// Use this already-loaded base model instead of loading `model.base`
    /// (it is converted to f32 when quantized).
    pub model: Option<Arc<Model>>,
}

impl std::fmt::Debug for TrainOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainOptions")
            .field("resolver", &self.resolver.is_some())
            .field("progress", &self.progress.is_some())
            .field("progress_bar", &self.progress_bar)
            .finish_non_exhaustive()
    }
}

/// Validation loss and perplexity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean cross-entropy per target token (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Target tokens evaluated.
    pub tokens: u64,
    /// Examples evaluated.
    pub examples: u64,
}

/// `training_summary.json`: what registration on the ledger records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Summary format version.
    pub format: u32,
    /// The job's name.
    pub name: Option<String>,
    /// Hash of the whole job config.
    pub config_hash: Hash,
    /// Hash of the settings that determine the weights.
    pub training_hash: Hash,
    /// Base model path as given.
    pub base_model: String,
    /// Base model content hash (its `ModelId`).
    pub base_model_hash: Hash,
    /// Sources with their version roots / file hashes.
    pub sources: Vec<SourceSummary>,
    /// Pipeline counts.
    pub data: DataStats,
    /// Training examples.
    pub train_examples: u64,
    /// Validation examples.
    pub validation_examples: u64,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Real tokens processed by training in this job (all runs).
    pub tokens_trained: u64,
    /// Mean training loss of the last step.
    pub final_train_loss: Option<f64>,
    /// Validation before training.
    pub eval_before: Option<EvalResult>,
    /// Validation after training.
    pub eval_after: Option<EvalResult>,
    /// The frozen projections' number format as run: `F32`, or
    /// `BF16 (amx-bf16)` / `BF16 (bf16-emulated)` (see `[train] precision`).
    #[serde(default)]
    pub precision: String,
    /// The adapter directory (PEFT files).
    pub adapter_dir: PathBuf,
    /// The adapter's content id (as `trib_model::adapter_content_hash`).
    pub adapter_id: AdapterId,
    /// blake3 of `adapter_model.safetensors`.
    pub adapter_hash: Hash,
    /// blake3 of `adapter_config.json`.
    pub adapter_config_hash: Hash,
    /// The gradient cache directory, when computed.
    pub gradient_cache: Option<PathBuf>,
    /// OPEN per 1k prompt tokens.
    pub price_input_per_1k: Amount,
    /// OPEN per 1k completion tokens.
    pub price_output_per_1k: Amount,
    /// Seconds spent in this run.
    pub elapsed_s: f64,
}

impl TrainingSummary {
    /// The `metrics_hash` an adapter's registration commits to: blake3 of
    /// the compact JSON object of `eval_before`, `eval_after` and
    /// `final_train_loss` as serde_json writes it.
    pub fn metrics_hash(&self) -> Hash {
        let metrics = serde_json::json!({
            "eval_before": self.eval_before,
            "eval_after": self.eval_after,
            "final_train_loss": self.final_train_loss,
        });
        Hash::of(metrics.to_string().as_bytes())
    }
}

/// The files a finished job leaves in its output directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// `<output>/adapter`.
    pub adapter_dir: PathBuf,
    /// `<output>/training_summary.json`.
    pub summary_path: PathBuf,
    /// The summary.
    pub summary: TrainingSummary,
}

/// Data ready for training: examples split, with their provenance.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training examples (canonical order; shuffled per epoch by seed).
    pub train: Vec<Example>,
    /// Validation examples.
    pub validation: Vec<Example>,
    /// Pipeline counts.
    pub stats: DataStats,
    /// Per-source hashes and row counts.
    pub sources: Vec<SourceSummary>,
}

/// The template a job uses.
pub(crate) fn job_template(job: &JobConfig, model: &Model) -> ChatTemplate {
    match job.model.chat_template {
        ChatTemplateChoice::Auto => model.chat_template().clone(),
        ChatTemplateChoice::Chatml => ChatTemplate::ChatMl {
            default_system: None,
        },
        ChatTemplateChoice::Llama3 => ChatTemplate::Llama3 { bos: true },
        ChatTemplateChoice::Plain => ChatTemplate::Plain,
    }
}

pub(crate) fn special_tokens(model: &Model) -> SpecialTokens {
    let cfg = model.config();
    // Only models whose tokenizer prepends BOS (Llama) get one; SmolLM2's
    // GGUF records bos = <|endoftext|> but its HF tokenizer adds none.
    let bos = match model.chat_template() {
        ChatTemplate::Llama3 { bos: true } => cfg.bos_token_id,
        _ => None,
    };
    SpecialTokens {
        bos,
        eos: cfg.eos_token_ids.first().copied(),
    }
}

/// Reads the sources and runs the data pipeline (no model forward needed).
pub fn prepare_data(
    job: &JobConfig,
    model: &Model,
    resolver: Option<&dyn DatanetResolver>,
) -> Result<PreparedData> {
    let sources = job.sources()?;
    let (rows, summaries) = data::read_sources(&sources, resolver)?;
    let template = job_template(job, model);
    let (examples, stats) = data::build_examples(
        &rows,
        &job.data,
        &template,
        model.tokenizer(),
        special_tokens(model),
    )?;
    let (train, validation) = data::split(examples, job.data.validation_fraction, job.train.seed);
    tracing::info!(
        target: "trib::factory",
        rows = stats.rows, examples = stats.examples, truncated = stats.truncated,
        dropped = stats.dropped_no_targets, train = train.len(), validation = validation.len(),
        "data prepared"
    );
    Ok(PreparedData {
        train,
        validation,
        stats,
        sources: summaries,
    })
}

/// One optimiser step: its epoch and micro-batches (sequence lists).
#[derive(Debug, Clone)]
pub(crate) struct StepPlan {
    pub(crate) epoch: u32,
    pub(crate) micro: Vec<Vec<data::Sequence>>,
}

/// Every step of the job, derived from the seed only (so resume replays it).
pub(crate) fn plan_steps(job: &JobConfig, train: &[Example]) -> Vec<StepPlan> {
    let t = &job.train;
    let mut steps = Vec::new();
    'epochs: for epoch in 0..t.epochs {
        let order = data::epoch_order(train.len(), t.seed, epoch);
        let seqs = data::sequences(train, &order, job.data.max_length, job.data.packing);
        let micro: Vec<Vec<data::Sequence>> =
            seqs.chunks(t.batch_size).map(|c| c.to_vec()).collect();
        for group in micro.chunks(t.gradient_accumulation) {
            steps.push(StepPlan {
                epoch,
                micro: group.to_vec(),
            });
            if t.max_steps.is_some_and(|m| steps.len() as u64 >= m) {
                break 'epochs;
            }
        }
    }
    steps
}

fn pad_id(model: &Model) -> u32 {
    model.config().eos_token_ids.first().copied().unwrap_or(0)
}

/// Mean loss over the target tokens of `examples` (one sequence at a time,
/// no dropout, no packing). Runs the inference forward (`Model::forward_all`:
/// fused kernels, no autograd graph), which agrees with the training forward
/// to float rounding.
pub fn evaluate(
    model: &Model,
    adapter: Option<&LoraAdapter>,
    examples: &[Example],
) -> Result<EvalResult> {
    let mut sum = 0f64;
    let mut n = 0u64;
    for e in examples {
        let batch = Batch::pad(
            &[&data::Sequence {
                tokens: e.tokens.clone(),
                targets: e.targets.clone(),
                examples: vec![],
            }],
            pad_id(model),
        );
        let mut cache = model.new_cache();
        let logits = model.forward_all(&e.tokens, &mut cache, adapter)?;
        let logits = logits.reshape((1, e.tokens.len(), model.config().vocab_size))?;
        let (s, k) = masked_ce_sum(&logits, &batch)?;
        sum += s.to_scalar::<f32>()? as f64;
        n += k as u64;
    }
    let loss = if n == 0 { f64::NAN } else { sum / n as f64 };
    Ok(EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens: n,
        examples: examples.len() as u64,
    })
}

fn lora_config(job: &JobConfig) -> Result<LoraConfig> {
    let targets = job
        .lora
        .target_modules
        .iter()
        .map(|t| t.parse::<LoraTarget>())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(LoraConfig {
        r: job.lora.r,
        alpha: job.lora.alpha,
        dropout: job.lora.dropout,
        targets,
        use_rslora: job.lora.rslora,
    })
}

fn dropout_seed(seed: u64, step: u64, micro: usize) -> u64 {
    let h = Hash::domain(
        "trib.factory.dropout.v1",
        &[
            &seed.to_le_bytes(),
            &step.to_le_bytes(),
            &(micro as u64).to_le_bytes(),
        ],
    );
    u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
}

/// The models of one training run. Validation and the gradient cache run
/// in f32 (the numbers `trib factory eval` and answer-time attribution see);
/// the steps run in `[train] precision`. With bf16 steps over a quantized
/// GGUF base, no full f32 copy stays resident: the bf16 tiles are packed
/// one dequantized weight at a time, and validation before and after the
/// steps dequantizes a copy that is dropped again (the same f32 values an
/// f32 load gives).
struct RunModels {
    /// As loaded, or as the caller shared it: tokenizer, config, identity,
    /// and the source of the f32 and bf16 copies.
    base: Arc<Model>,
    /// The bf16 kernel when the steps run in bf16.
    kernel: Option<Bf16Kernel>,
    /// The resident f32 model: the base when it is dense, or its f32 copy
    /// when the steps run in f32.
    dense: Option<Arc<Model>>,
}

impl RunModels {
    fn load(job: &JobConfig, opts: &TrainOptions) -> Result<Self> {
        let kernel = match job.train.precision {
            Precision::F32 => None,
            Precision::Auto => amx::amx_usable().then_some(Bf16Kernel::Amx),
            Precision::Bf16 => Some(Bf16Kernel::detect()),
        };
        let base = match &opts.model {
            Some(m) => m.clone(),
            None => {
                // bf16 steps never need the whole model in f32 at once.
                let format = if kernel.is_some() {
                    WeightFormat::Quantized
                } else {
                    WeightFormat::F32
                };
                Arc::new(Model::load(Path::new(&job.model.base), format)?)
            }
        };
        let dense = if !base.is_quantized() {
            Some(base.clone())
        } else if kernel.is_none() {
            Some(Arc::new(base.to_f32()?))
        } else {
            None
        };
        match kernel {
            Some(k) => tracing::info!(
                target: "trib::factory",
                precision = "bf16",
                kernel = k.name(),
                "frozen projections in bf16"
            ),
            None => {
                tracing::info!(target: "trib::factory", precision = "f32", "frozen projections in f32")
            }
        }
        Ok(RunModels {
            base,
            kernel,
            dense,
        })
    }

    /// An f32 model: the resident one, or a fresh copy the caller drops.
    fn dense(&self) -> Result<Arc<Model>> {
        match &self.dense {
            Some(d) => Ok(d.clone()),
            None => Ok(Arc::new(self.base.to_f32()?)),
        }
    }

    /// The model the steps run through (built by the caller once, after
    /// validation, and dropped before the final validation).
    fn steps(&self) -> Result<Arc<Model>> {
        let Some(kernel) = self.kernel else {
            return self.dense();
        };
        let source = self.dense.as_ref().unwrap_or(&self.base);
        Ok(Arc::new(source.to_bf16_training(kernel)?))
    }
}

fn hash_file(p: &Path) -> Result<Hash> {
    let bytes = std::fs::read(p).map_err(|e| FactoryError::io(p, e))?;
    Ok(Hash::of(&bytes))
}

/// Runs a training job to completion (or cancellation).
///
/// On success the output directory holds `adapter/` (PEFT files),
/// `training_summary.json`, `metrics.jsonl`, `gradient_cache/` (when enabled)
/// and `checkpoints/` (when enabled).
pub fn train(job: &JobConfig, opts: TrainOptions) -> Result<TrainOutcome> {
    let started = Instant::now();
    // Keep freed step buffers mapped for the next step (no page faults).
    crate::malloc_tuning::retain_freed_memory();
    let out = job.output.dir.clone();
    // Everything that can be refused (model, data, resume target) is checked
    // before the output directory is touched.
    let models = RunModels::load(job, &opts)?;
    let model = &models.base;
    let prepared = prepare_data(job, model, opts.resolver.as_deref())?;
    let resume = match &job.checkpoint.resume_from {
        Some(r) => checkpoint::resolve(&out, r)?,
        None => None,
    };
    std::fs::create_dir_all(&out).map_err(|e| FactoryError::io(&out, e))?;
    let adapter = LoraAdapter::init(
        lora_config(job)?,
        model.config(),
        job.model.base.clone(),
        job.train.seed,
    )?;
    // A fresh run starts a new metrics file; a resumed run continues it.
    let mut reporter = Reporter::new(
        &out.join("metrics.jsonl"),
        resume.is_some(),
        opts.progress.clone(),
        opts.progress_bar,
    )?;
    let result = run_loop(
        LoopInputs {
            job,
            opts: &opts,
            models: &models,
            adapter: &adapter,
            prepared: &prepared,
            resume,
            started,
        },
        &mut reporter,
    )?;
    // The step model was dropped with the loop: validation and the
    // gradient cache run on an f32 model.
    finish(
        job,
        &*models.dense()?,
        &adapter,
        &prepared,
        &mut reporter,
        result,
        started,
    )
}

struct LoopResult {
    steps: u64,
    tokens: u64,
    final_loss: Option<f64>,
    eval_before: Option<EvalResult>,
    /// The step model's weight format (`F32`, `BF16 (amx-bf16)`, ...).
    precision: String,
}

#[derive(Serialize, Deserialize)]
struct RunState {
    eval_before: Option<EvalResult>,
    tokens: u64,
}

struct LoopInputs<'a> {
    job: &'a JobConfig,
    opts: &'a TrainOptions,
    models: &'a RunModels,
    adapter: &'a LoraAdapter,
    prepared: &'a PreparedData,
    resume: Option<PathBuf>,
    started: Instant,
}

fn run_loop(inputs: LoopInputs<'_>, reporter: &mut Reporter) -> Result<LoopResult> {
    let LoopInputs {
        job,
        opts,
        models,
        adapter,
        prepared,
        resume,
        started,
    } = inputs;
    let plan = plan_steps(job, &prepared.train);
    let total = plan.len() as u64;
    let vars: Vec<Var> = adapter.vars();
    let names: Vec<String> = adapter
        .named_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut opt = AdamW::new(&vars, &job.train)?;
    let checkpoints = Checkpoints {
        job,
        names: &names,
        vars: &vars,
        total,
        training_hash: job.training_hash(),
    };
    let (start, mut run) = checkpoints.resume(resume, &mut opt)?;
    reporter.emit(ProgressEvent::Started {
        total_steps: total,
        start_step: start,
        train_examples: prepared.train.len() as u64,
        validation_examples: prepared.validation.len() as u64,
    })?;
    if start == 0 && !prepared.validation.is_empty() {
        let ev = evaluate(&*models.dense()?, Some(adapter), &prepared.validation)?;
        reporter.emit(ProgressEvent::Evaluated {
            phase: EvalPhase::Before,
            loss: ev.loss,
            perplexity: ev.perplexity,
            tokens: ev.tokens,
        })?;
        run.eval_before = Some(ev);
    }
    let step_model = models.steps()?;
    let micro = MicroBatches {
        job,
        model: &step_model,
        adapter,
        vars: &vars,
        pad: pad_id(&models.base),
    };
    let mut final_loss = None;
    let mut last_ckpt = start;
    for (si, sp) in plan.iter().enumerate().skip(start as usize) {
        let step_no = si as u64;
        let t0 = Instant::now();
        let cancelled = || opts.cancel.is_cancelled();
        let Some(step) = micro.gradients(sp, step_no, cancelled)? else {
            return Err(cancel(
                step_no,
                last_ckpt,
                &checkpoints,
                &opt,
                &run,
                reporter,
            )?);
        };
        let StepGradients {
            loss_sum,
            tokens: step_tokens,
            mut grads,
        } = step;
        let norm = optim::clip(&mut grads, job.train.max_grad_norm)?;
        if !norm.is_finite() {
            return Err(FactoryError::Diverged {
                step: step_no + 1,
                what: "gradient norm",
            });
        }
        let lr = optim::learning_rate(&job.train, step_no, total);
        opt.step(&vars, &grads, lr)?;
        run.tokens += step_tokens;
        final_loss = Some(loss_sum);
        let secs = t0.elapsed().as_secs_f64();
        let m = StepMetrics {
            step: step_no + 1,
            epoch: sp.epoch,
            loss: loss_sum,
            lr,
            grad_norm: norm,
            tokens: step_tokens,
            tokens_per_s: step_tokens as f64 / secs.max(1e-9),
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        tracing::debug!(target: "trib::factory", step = m.step, loss = m.loss, lr = m.lr, "step");
        reporter.emit(ProgressEvent::Step(m))?;
        let done = step_no + 1;
        if job.checkpoint.every_steps > 0 && done % job.checkpoint.every_steps == 0 && done < total
        {
            let dir = checkpoints.save(done, &opt, &run)?;
            last_ckpt = done;
            reporter.emit(ProgressEvent::Checkpoint {
                step: done,
                path: dir,
            })?;
        }
    }
    Ok(LoopResult {
        steps: total,
        tokens: run.tokens,
        final_loss,
        eval_before: run.eval_before,
        precision: step_model.info().weights_in_memory.clone(),
    })
}

/// What a checkpoint of this run saves and restores: the adapter's tensors
/// by name, the optimizer, and the run state beside them.
struct Checkpoints<'a> {
    job: &'a JobConfig,
    names: &'a [String],
    vars: &'a [Var],
    total: u64,
    training_hash: Hash,
}

impl Checkpoints<'_> {
    /// Loads the checkpoint in `resume` (if any) into the adapter and `opt`:
    /// the step to start from and the run state saved with it.
    fn resume(&self, resume: Option<PathBuf>, opt: &mut AdamW) -> Result<(u64, RunState)> {
        let mut run = RunState {
            eval_before: None,
            tokens: 0,
        };
        let Some(dir) = resume else {
            return Ok((0, run));
        };
        let st = checkpoint::load(&dir, self.names, self.vars, opt, self.training_hash)?;
        if let Ok(bytes) = std::fs::read(dir.join("run_state.json")) {
            run = serde_json::from_slice(&bytes)
                .map_err(|e| FactoryError::format(dir.join("run_state.json"), e))?;
        }
        tracing::info!(target: "trib::factory", step = st.step, dir = %dir.display(), "resumed from checkpoint");
        Ok((st.step, run))
    }

    /// Saves the state after `step` steps; returns the checkpoint directory.
    fn save(&self, step: u64, opt: &AdamW, run: &RunState) -> Result<PathBuf> {
        let st = CheckpointState {
            format: 1,
            step,
            total_steps: self.total,
            adam_t: opt.t,
            training_hash: self.training_hash,
        };
        let dir = checkpoint::save(
            &self.job.output.dir,
            self.names,
            self.vars,
            opt,
            &st,
            self.job.checkpoint.keep_last,
        )?;
        let p = dir.join("run_state.json");
        std::fs::write(&p, serde_json::to_vec(run).expect("run state serialises"))
            .map_err(|e| FactoryError::io(&p, e))?;
        Ok(dir)
    }
}

/// A cancellation seen before step `step_no`'s next micro-batch: saves a
/// checkpoint when checkpoints are on and the last one is older, reports,
/// and returns the error that ends the run.
fn cancel(
    step_no: u64,
    last_ckpt: u64,
    checkpoints: &Checkpoints<'_>,
    opt: &AdamW,
    run: &RunState,
    reporter: &mut Reporter,
) -> Result<FactoryError> {
    if checkpoints.job.checkpoint.every_steps > 0 && step_no > last_ckpt {
        let dir = checkpoints.save(step_no, opt, run)?;
        reporter.emit(ProgressEvent::Checkpoint {
            step: step_no,
            path: dir,
        })?;
    }
    reporter.emit(ProgressEvent::Cancelled { step: step_no })?;
    tracing::info!(target: "trib::factory", step = step_no, "training cancelled");
    Ok(FactoryError::Cancelled { step: step_no })
}

/// One optimizer step's summed loss, tokens and accumulated gradients (one
/// per adapter tensor, zeros where no micro-batch reached it).
struct StepGradients {
    loss_sum: f64,
    tokens: u64,
    grads: Vec<Tensor>,
}

/// What the micro-batches of a step run on.
struct MicroBatches<'a> {
    job: &'a JobConfig,
    model: &'a Model,
    adapter: &'a LoraAdapter,
    vars: &'a [Var],
    pad: u32,
}

impl MicroBatches<'_> {
    /// Forward and backward over every micro-batch of `sp`, the loss of each
    /// divided by the step's target count, gradients summed. `None` when
    /// `cancelled()` turns true before a micro-batch.
    fn gradients(
        &self,
        sp: &StepPlan,
        step_no: u64,
        cancelled: impl Fn() -> bool,
    ) -> Result<Option<StepGradients>> {
        let job = self.job;
        let step_targets: usize = sp
            .micro
            .iter()
            .flatten()
            .map(|s| s.targets.iter().filter(|&&x| x).count())
            .sum();
        let mut acc: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let mut loss_sum = 0f64;
        let mut step_tokens = 0u64;
        for (mi, micro) in sp.micro.iter().enumerate() {
            if cancelled() {
                return Ok(None);
            }
            let refs: Vec<&data::Sequence> = micro.iter().collect();
            let batch = Batch::pad(&refs, self.pad);
            step_tokens += batch.real_tokens as u64;
            let mut dropout =
                LoraDropout::new(job.lora.dropout, dropout_seed(job.train.seed, step_no, mi));
            let drop = (job.lora.dropout > 0.0).then_some(&mut dropout);
            let (sum, n) = masked_ce_sum_train(self.model, &batch, Some(self.adapter), drop)?;
            if n == 0 {
                continue;
            }
            let loss = (sum / step_targets as f64)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(FactoryError::Diverged {
                    step: step_no + 1,
                    what: "loss",
                });
            }
            loss_sum += value;
            let grads = loss.backward()?;
            for (i, v) in self.vars.iter().enumerate() {
                if let Some(g) = grads.get(v.as_tensor()) {
                    acc[i] = Some(match acc[i].take() {
                        Some(a) => (a + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let grads: Vec<Tensor> = acc
            .into_iter()
            .zip(self.vars)
            .map(|(g, v)| g.map(Ok).unwrap_or_else(|| v.as_tensor().zeros_like()))
            .collect::<candle_core::Result<_>>()?;
        Ok(Some(StepGradients {
            loss_sum,
            tokens: step_tokens,
            grads,
        }))
    }
}

fn finish(
    job: &JobConfig,
    model: &Model,
    adapter: &LoraAdapter,
    prepared: &PreparedData,
    reporter: &mut Reporter,
    r: LoopResult,
    started: Instant,
) -> Result<TrainOutcome> {
    let out = &job.output.dir;
    let eval_after = if prepared.validation.is_empty() {
        None
    } else {
        let ev = evaluate(model, Some(adapter), &prepared.validation)?;
        reporter.emit(ProgressEvent::Evaluated {
            phase: EvalPhase::After,
            loss: ev.loss,
            perplexity: ev.perplexity,
            tokens: ev.tokens,
        })?;
        Some(ev)
    };
    let adapter_dir = out.join("adapter");
    let adapter_id = crate::save_peft(adapter, &adapter_dir)?;
    let adapter_hash = hash_file(&adapter_dir.join(crate::ADAPTER_WEIGHTS_FILE))?;
    let adapter_config_hash = hash_file(&adapter_dir.join(crate::ADAPTER_CONFIG_FILE))?;
    let gradient_cache = if job.gradient_cache.enabled {
        let dir = out.join("gradient_cache");
        let total = prepared.train.len() as u64;
        let mut cb = |done: u64| reporter.emit(ProgressEvent::GradientCache { done, total });
        let formatting = Formatting {
            data_format: job.data.format,
            chat_template: job_template(job, model),
            system_prompt: job.data.system_prompt.clone(),
        };
        build_gradient_cache(
            model,
            adapter,
            &prepared.train,
            CacheSettings {
                k: job.gradient_cache.projection_dim,
                seed: job.train.seed,
                adapter_hash,
                formatting,
            },
            &dir,
            &mut cb,
        )?;
        Some(dir)
    } else {
        None
    };
    let summary = TrainingSummary {
        format: 1,
        name: job.name.clone(),
        config_hash: job.config_hash(),
        training_hash: job.training_hash(),
        base_model: job.model.base.clone(),
        base_model_hash: model.info().id.0,
        sources: prepared.sources.clone(),
        data: prepared.stats.clone(),
        train_examples: prepared.train.len() as u64,
        validation_examples: prepared.validation.len() as u64,
        steps: r.steps,
        tokens_trained: r.tokens,
        final_train_loss: r.final_loss,
        eval_before: r.eval_before,
        eval_after,
        precision: r.precision.clone(),
        adapter_dir: adapter_dir.clone(),
        adapter_id,
        adapter_hash,
        adapter_config_hash,
        gradient_cache,
        price_input_per_1k: job.pricing.input_per_1k,
        price_output_per_1k: job.pricing.output_per_1k,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let summary_path = out.join("training_summary.json");
    let tmp = out.join(".training_summary.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&summary).expect("summary serialises"),
    )
    .map_err(|e| FactoryError::io(&tmp, e))?;
    std::fs::rename(&tmp, &summary_path).map_err(|e| FactoryError::io(&summary_path, e))?;
    reporter.emit(ProgressEvent::Finished {
        adapter_dir: adapter_dir.clone(),
    })?;
    tracing::info!(target: "trib::factory", adapter = %adapter_dir.display(), steps = summary.steps, "training finished");
    Ok(TrainOutcome {
        adapter_dir,
        summary_path,
        summary,
    })
}

/// The raw per-layer gradient of one example's mean target loss: one vector
/// per layer, flattened as documented in `docs/factory.md` (per module in
/// q, k, v, o, gate, up, down order: ∂A row-major, then ∂B row-major).
/// Returns the loss too.
pub fn example_gradient(
    model: &Model,
    adapter: &LoraAdapter,
    tokens: &[u32],
    targets: &[bool],
) -> Result<(f64, Vec<Vec<f32>>)> {
    let seq = data::Sequence {
        tokens: tokens.to_vec(),
        targets: targets.to_vec(),
        examples: vec![],
    };
    let batch = Batch::pad(&[&seq], pad_id(model));
    let (sum, n) = masked_ce_sum_train(model, &batch, Some(adapter), None)?;
    if n == 0 {
        return Err(FactoryError::NoData(
            "the example has no target token to take a gradient of".into(),
        ));
    }
    let loss = (sum / n as f64)?;
    let grads = loss.backward()?;
    let mut layers = vec![Vec::new(); adapter.num_layers()];
    for (l, _t, p) in adapter.iter_pairs() {
        for v in [&p.a, &p.b] {
            let g = match grads.get(v.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                None => vec![0f32; v.elem_count()],
            };
            layers[l].extend(g);
        }
    }
    Ok((loss.to_scalar::<f32>()? as f64, layers))
}

fn layer_entries(adapter: &LoraAdapter, k: usize) -> Vec<LayerEntry> {
    (0..adapter.num_layers())
        .map(|l| {
            let mut modules = Vec::new();
            let mut dim = 0;
            for (_, t, p) in adapter.iter_pairs().filter(|(pl, _, _)| *pl == l) {
                modules.push(t.name().to_string());
                dim += p.a.elem_count() + p.b.elem_count();
            }
            LayerEntry {
                layer: l,
                modules,
                dim,
                stored_dim: dim.min(k),
                projected: dim > k,
            }
        })
        .collect()
}

/// How training rows were formatted (recorded in the cache index).
#[derive(Debug, Clone)]
pub(crate) struct Formatting {
    pub(crate) data_format: DataFormat,
    pub(crate) chat_template: ChatTemplate,
    pub(crate) system_prompt: Option<String>,
}

/// Projection and identity settings of a cache.
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    pub(crate) k: usize,
    pub(crate) seed: u64,
    pub(crate) adapter_hash: Hash,
    pub(crate) formatting: Formatting,
}

/// Computes and writes the gradient cache of `examples` at `adapter`.
pub(crate) fn build_gradient_cache(
    model: &Model,
    adapter: &LoraAdapter,
    examples: &[Example],
    settings: CacheSettings,
    dir: &Path,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<GradientCacheIndex> {
    let CacheSettings {
        k,
        seed,
        adapter_hash,
        formatting,
    } = settings;
    let layers = layer_entries(adapter, k);
    let dims: Vec<usize> = layers.iter().map(|e| e.dim).collect();
    let projector = LayerProjector::new(&dims, k, seed);
    let mut rows = Vec::with_capacity(examples.len());
    let mut cached = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        let (loss, raw) = example_gradient(model, adapter, &e.tokens, &e.targets)?;
        rows.push(
            raw.iter()
                .enumerate()
                .map(|(l, g)| projector.project(l, g))
                .collect::<Vec<_>>(),
        );
        cached.push(CachedExample {
            provenance: e.provenance.clone(),
            loss,
            target_tokens: e.target_count() as u64,
        });
        if (i + 1) % 16 == 0 || i + 1 == examples.len() {
            progress((i + 1) as u64)?;
        }
    }
    let index = GradientCacheIndex {
        format: gradcache::GRADIENT_CACHE_FORMAT,
        projection: "count_sketch".into(),
        projection_dim: k,
        seed,
        adapter_hash,
        data_format: formatting.data_format,
        chat_template: formatting.chat_template,
        system_prompt: formatting.system_prompt,
        layers,
        examples: cached,
    };
    gradcache::write(dir, &index, &rows)?;
    tracing::info!(target: "trib::factory", examples = examples.len(), dir = %dir.display(), "gradient cache written");
    Ok(index)
}

/// Tokens and loss mask of a (prompt, answer) pair, formatted as the cache's
/// training rows were: chat formats render `[system?, user: prompt,
/// assistant: answer]` with the job's template; plain text concatenates
/// prompt and answer. Only the answer's tokens are targets.
pub fn encode_pair(
    model: &Model,
    index: &GradientCacheIndex,
    prompt: &str,
    answer: &str,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let enc = |t: &str| {
        crate::tokenizer::encode(model.tokenizer(), t)
            .map_err(|e| FactoryError::Tokenizer(e.to_string()))
    };
    let mut tokens = Vec::new();
    let mut targets = Vec::new();
    let segments = match index.data_format {
        DataFormat::Text => vec![
            data::Segment {
                text: prompt.to_string(),
                trainable: false,
            },
            data::Segment {
                text: answer.to_string(),
                trainable: true,
            },
        ],
        DataFormat::Alpaca | DataFormat::Messages => {
            let mut msgs = Vec::new();
            if let Some(s) = &index.system_prompt {
                msgs.push(crate::chat::ChatMessage::new("system", s.as_str()));
            }
            msgs.push(crate::chat::ChatMessage::new("user", prompt));
            msgs.push(crate::chat::ChatMessage::new("assistant", answer));
            let p = data::Provenance {
                source: "<test>".into(),
                row: 0,
                row_hash: trib_types::RowHash::default(),
                contribution: None,
                contributor: None,
            };
            data::chat_segments(&index.chat_template, &msgs, &p)?
        }
    };
    for seg in segments {
        let ids = enc(&seg.text)?;
        targets.extend(ids.iter().map(|_| seg.trainable));
        tokens.extend(ids);
    }
    if let Some(t) = targets.first_mut() {
        *t = false;
    }
    Ok((tokens, targets))
}

/// The test gradient of an answer (DataInf's `v`, TracIn's test vector): the
/// gradient of the mean loss over the answer's tokens at `adapter`, per layer,
/// projected exactly as the cache's training gradients were.
pub fn test_gradient(
    model: &Model,
    adapter: &LoraAdapter,
    cache: &GradientCache,
    prompt: &str,
    answer: &str,
) -> Result<Vec<Vec<f32>>> {
    let (tokens, targets) = encode_pair(model, &cache.index, prompt, answer)?;
    let (_, raw) = example_gradient(model, adapter, &tokens, &targets)?;
    if raw.len() != cache.index.layers.len() {
        return Err(FactoryError::Model(format!(
            "the adapter has {} layers, the gradient cache {}",
            raw.len(),
            cache.index.layers.len()
        )));
    }
    for (g, e) in raw.iter().zip(&cache.index.layers) {
        if g.len() != e.dim {
            return Err(FactoryError::Model(format!(
                "layer {}: adapter gradient has {} coordinates, the cache was built from {}",
                e.layer,
                g.len(),
                e.dim
            )));
        }
    }
    let projector = cache.projector();
    Ok(raw
        .iter()
        .enumerate()
        .map(|(l, g)| projector.project(l, g))
        .collect())
}
