//! `trib factory eval` (base vs adapter on held-out data) and
//! `trib factory export` (merge the adapter into the base weights).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::{JobConfig, SourceRef};
use super::data::{self, DatanetResolver};
use super::error::{FactoryError, Result};
use super::train::{evaluate, job_template, special_tokens, EvalResult};
use crate::{load_peft, AdapterLimits, LoraAdapter, Model, WeightFormat};

/// Loss and perplexity of the base model and of base + adapter on the same
/// held-out examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The held-out sources.
    pub sources: Vec<String>,
    /// The base model alone.
    pub base: EvalResult,
    /// The base model with the adapter.
    pub adapter: EvalResult,
}

impl EvalReport {
    /// `adapter.loss − base.loss` (negative: the adapter fits the data better).
    pub fn loss_delta(&self) -> f64 {
        self.adapter.loss - self.base.loss
    }
}

/// Evaluates `adapter_dir` against the base model of `job` on `heldout`
/// (every row of the given sources, formatted with the job's data settings:
/// format, template, system prompt, max length; no split).
pub fn eval_adapter(
    job: &JobConfig,
    adapter_dir: &Path,
    heldout: &[SourceRef],
    resolver: Option<&dyn DatanetResolver>,
) -> Result<EvalReport> {
    let model = Model::load(Path::new(&job.model.base), WeightFormat::F32)?;
    let model = if model.is_quantized() {
        model.to_f32()?
    } else {
        model
    };
    let adapter = load_peft(adapter_dir, model.config(), &AdapterLimits::default())?;
    eval_with(job, &model, &adapter, heldout, resolver)
}

/// [`eval_adapter`] with an already loaded model and adapter.
pub fn eval_with(
    job: &JobConfig,
    model: &Model,
    adapter: &LoraAdapter,
    heldout: &[SourceRef],
    resolver: Option<&dyn DatanetResolver>,
) -> Result<EvalReport> {
    if heldout.is_empty() {
        return Err(FactoryError::NoData("no held-out source given".into()));
    }
    let (rows, _) = data::read_sources(heldout, resolver)?;
    let template = job_template(job, model);
    let (examples, _) = data::build_examples(
        &rows,
        &job.data,
        &template,
        model.tokenizer(),
        special_tokens(model),
    )?;
    let base = evaluate(model, None, &examples)?;
    let with = evaluate(model, Some(adapter), &examples)?;
    tracing::info!(
        target: "trib::factory",
        base_loss = base.loss, adapter_loss = with.loss, examples = examples.len(),
        "held-out evaluation"
    );
    Ok(EvalReport {
        sources: heldout.iter().map(SourceRef::label).collect(),
        base,
        adapter: with,
    })
}

/// Merges the adapter into the base weights (`W + s·B·A`) and writes a
/// Hugging Face directory (`config.json`, `model.safetensors` in f32,
/// `tokenizer.json`) at `out_dir`.
pub fn export_merged(base: &Path, adapter_dir: &Path, out_dir: &Path) -> Result<()> {
    let model = Model::load(base, WeightFormat::F32)?;
    let model = if model.is_quantized() {
        model.to_f32()?
    } else {
        model
    };
    let adapter = load_peft(adapter_dir, model.config(), &AdapterLimits::default())?;
    let merged = model.merge_adapter(&adapter)?;
    merged.export_hf_dir(out_dir)?;
    tracing::info!(target: "trib::factory", out = %out_dir.display(), "exported merged model");
    Ok(())
}
