//! The training job file (TOML): every key, its default and its validation.
//!
//! The reference for users is `docs/factory.md`; the examples live in
//! `examples/jobs/*.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use trib_types::{Amount, Hash};

use super::error::{FactoryError, Result};

/// A ModelFactory training job, as read from a TOML file.
///
/// Obtain one with [`JobConfig::from_toml_str`] or [`JobConfig::load`]: both
/// validate every key, so a `JobConfig` in hand is always a runnable job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// A human name for the job (used in logs and the summary).
    #[serde(default)]
    pub name: Option<String>,
    /// The base model and chat template.
    pub model: ModelSection,
    /// Where the training rows come from and how they become token sequences.
    pub data: DataSection,
    /// The LoRA adapter's shape.
    #[serde(default)]
    pub lora: LoraSection,
    /// Optimiser, schedule, epochs, batches, seed.
    #[serde(default)]
    pub train: TrainSection,
    /// Checkpoint interval and resume.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Where the adapter, metrics, checkpoints and summary go.
    pub output: OutputSection,
    /// The owner's price, recorded for registration of the adapter.
    #[serde(default)]
    pub pricing: PricingSection,
    /// Per-example gradients cached for attribution after training.
    #[serde(default)]
    pub gradient_cache: GradientCacheSection,
}

/// `[model]`: the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A path to a GGUF file or a Hugging Face model directory.
    pub base: String,
    /// How instruction and chat rows are turned into text.
    #[serde(default)]
    pub chat_template: ChatTemplateChoice,
}

/// Which chat template formats `alpaca` and `messages` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplateChoice {
    /// The base model's own template (from its tokenizer config or GGUF
    /// metadata); ChatML when the model has none.
    #[default]
    Auto,
    /// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen2),
    /// without a default system message.
    Chatml,
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`.
    Llama3,
    /// `role: content` lines, for base models without chat tokens.
    Plain,
}

/// How the rows of the sources are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Plain text: every token carries loss.
    #[default]
    Text,
    /// Alpaca records `{instruction, input, output}`: only `output` carries loss.
    Alpaca,
    /// Chat records `{messages: [{role, content}, …]}` (OpenAI style; ShareGPT
    /// `{conversations: [{from, value}]}` is accepted too): only assistant
    /// turns carry loss.
    Messages,
}

/// `[data]`: sources and the token pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// One or more sources: `name@version` (a datanet version) or a path to a
    /// local `.txt` or `.jsonl` file (relative paths are relative to the job
    /// file).
    pub sources: Vec<String>,
    /// How rows are interpreted.
    #[serde(default)]
    pub format: DataFormat,
    /// For `format = "text"` with `.jsonl` rows: the field holding the text.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// A system prompt prepended to `alpaca` rows (and to `messages` rows that
    /// have none). No loss is computed on it.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// The longest token sequence fed to the model; longer examples are
    /// truncated (the tail is dropped).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Pack several examples into each `max_length` sequence.
    #[serde(default)]
    pub packing: bool,
    /// Fraction of examples held out for validation (seeded split).
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// Append the end-of-sequence token to every example (it carries loss, so
    /// the adapter learns to stop).
    #[serde(default = "default_true")]
    pub add_eos: bool,
}

/// `[lora]`: the adapter's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank.
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scaling numerator: the update is `alpha / r · B·A·x` (`alpha / sqrt(r)`
    /// with rsLoRA).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout probability on the LoRA input during training.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Adapted projections; short forms `q k v o gate up down` are accepted and
    /// stored as `q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// rsLoRA scaling (`alpha / sqrt(r)`).
    #[serde(default)]
    pub rslora: bool,
}

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Constant after warmup.
    Constant,
    /// Linear decay to `min_lr_ratio · learning_rate` after warmup.
    Linear,
    /// Cosine decay to `min_lr_ratio · learning_rate` after warmup.
    #[default]
    Cosine,
}

/// `[train] precision`: the number format of the frozen base projections'
/// products (forward `x·Wᵀ` and input gradient `g·W`). LoRA matrices, their
/// gradients, norms, softmax, the loss and the optimiser are f32 in every
/// mode. See docs/factory.md ("Training precision").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 where the CPU multiplies bf16 in hardware (AMX), f32 elsewhere.
    #[default]
    Auto,
    /// f32 weights and products.
    F32,
    /// bf16 weights and product inputs with f32 accumulation: on AMX tiles
    /// where available, else emulated through the f32 gemm (same numbers,
    /// not faster).
    Bf16,
}

impl Precision {
    fn is_auto(&self) -> bool {
        *self == Precision::Auto
    }
}

/// `[train]`: optimiser and loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Schedule after warmup.
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Linear warmup length in optimiser steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Warmup as a fraction of all optimiser steps (exclusive with `warmup_steps`).
    #[serde(default)]
    pub warmup_ratio: Option<f64>,
    /// Final learning rate of the linear/cosine decay, as a fraction of the peak.
    #[serde(default)]
    pub min_lr_ratio: f64,
    /// Passes over the training examples.
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Stop after this many optimiser steps even if epochs remain.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Sequences per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[serde(default = "default_one")]
    pub gradient_accumulation: usize,
    /// AdamW decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW β₁.
    #[serde(default = "default_beta1")]
    pub adam_beta1: f64,
    /// AdamW β₂.
    #[serde(default = "default_beta2")]
    pub adam_beta2: f64,
    /// AdamW ε.
    #[serde(default = "default_eps")]
    pub adam_eps: f64,
    /// Clip the global gradient norm to this value (0 disables clipping).
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// Seed for the split, shuffling, LoRA initialisation and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number format of the frozen projections (`auto`, `f32`, `bf16`).
    /// Left out of the serialised config when `auto`, so the training hash
    /// of a job written before this option existed does not change.
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
}

/// `[checkpoint]`: interval and resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Save a checkpoint every this many optimiser steps (0: never).
    #[serde(default)]
    pub every_steps: u64,
    /// Keep only the newest this many checkpoints.
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Resume: `"latest"` (the newest checkpoint under the output dir, if any)
    /// or a checkpoint directory.
    #[serde(default)]
    pub resume_from: Option<String>,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// The run directory (relative paths are relative to the job file).
    pub dir: PathBuf,
}

/// `[pricing]`: the owner's price, in OPEN, recorded for registration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSection {
    /// OPEN per 1,000 prompt tokens, written as a decimal string (`"0.002"`).
    #[serde(default, with = "open_amount")]
    pub input_per_1k: Amount,
    /// OPEN per 1,000 completion tokens.
    #[serde(default, with = "open_amount")]
    pub output_per_1k: Amount,
}

/// `[gradient_cache]`: per-example gradients for attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientCacheSection {
    /// Compute the cache after training.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Layers whose LoRA gradient has more coordinates than this are projected
    /// down to this many (CountSketch, see docs/factory.md).
    #[serde(default = "default_proj_dim")]
    pub projection_dim: usize,
}

fn default_text_field() -> String {
    "text".into()
}
fn default_max_length() -> usize {
    512
}
fn default_validation_fraction() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_dropout() -> f64 {
    0.05
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}
fn default_lr() -> f64 {
    2e-4
}
fn default_epochs() -> u32 {
    1
}
fn default_batch() -> usize {
    4
}
fn default_one() -> usize {
    1
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_clip() -> f64 {
    1.0
}
fn default_seed() -> u64 {
    42
}
fn default_keep() -> usize {
    2
}
fn default_proj_dim() -> usize {
    2048
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            r: default_r(),
            alpha: default_alpha(),
            dropout: default_dropout(),
            target_modules: default_targets(),
            rslora: false,
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            learning_rate: default_lr(),
            schedule: ScheduleKind::default(),
            warmup_steps: 0,
            warmup_ratio: None,
            min_lr_ratio: 0.0,
            epochs: default_epochs(),
            max_steps: None,
            batch_size: default_batch(),
            gradient_accumulation: 1,
            weight_decay: 0.0,
            adam_beta1: default_beta1(),
            adam_beta2: default_beta2(),
            adam_eps: default_eps(),
            max_grad_norm: default_clip(),
            seed: default_seed(),
            precision: Precision::Auto,
        }
    }
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            every_steps: 0,
            keep_last: default_keep(),
            resume_from: None,
        }
    }
}

impl Default for GradientCacheSection {
    fn default() -> Self {
        GradientCacheSection {
            enabled: true,
            projection_dim: default_proj_dim(),
        }
    }
}

/// Prices are written in human OPEN (`"0.002"`) in job files.
mod open_amount {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        a: &Amount,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_open_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Amount, D::Error> {
        let s = String::deserialize(d)?;
        Amount::parse_open(&s).map_err(|e| {
            serde::de::Error::custom(format!("price {s:?} is not an OPEN amount: {e}"))
        })
    }
}

/// The projections a LoRA adapter may target, in the names PEFT uses.
pub const KNOWN_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// A parsed `[data].sources` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceRef {
    /// A datanet version, resolved through a [`super::data::DatanetResolver`].
    Datanet {
        /// The datanet's name (or id).
        name: String,
        /// The version (a number or a Merkle root).
        version: String,
    },
    /// A local `.txt` or `.jsonl` file.
    File {
        /// The path, resolved against the job file's directory.
        path: PathBuf,
    },
}

impl SourceRef {
    /// Parses `name@version` or a local path ending in `.txt` / `.jsonl`.
    pub fn parse(s: &str, base_dir: &Path) -> Result<SourceRef> {
        let bad = |m: &str| FactoryError::InvalidSource {
            source_ref: s.to_string(),
            message: m.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty source"));
        }
        let looks_like_path =
            t.contains('/') || t.contains('\\') || t.ends_with(".txt") || t.ends_with(".jsonl");
        if let (Some((name, version)), false) = (t.split_once('@'), looks_like_path) {
            let ok = |x: &str| {
                !x.is_empty()
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if !ok(name) {
                return Err(bad(
                    "datanet name must be non-empty and use only letters, digits, '-', '_' or '.'",
                ));
            }
            if !ok(version) {
                return Err(bad(
                    "datanet version must be a number or a hash (letters, digits, '-', '_', '.')",
                ));
            }
            return Ok(SourceRef::Datanet {
                name: name.into(),
                version: version.into(),
            });
        }
        let ext = Path::new(t)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        if ext != "txt" && ext != "jsonl" {
            return Err(bad(
                "expected `datanet@version` or a path to a .txt or .jsonl file",
            ));
        }
        let p = Path::new(t);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        Ok(SourceRef::File { path })
    }

    /// How the source is written in summaries and provenance records.
    pub fn label(&self) -> String {
        match self {
            SourceRef::Datanet { name, version } => format!("{name}@{version}"),
            SourceRef::File { path } => path.display().to_string(),
        }
    }
}

impl JobConfig {
    /// Parses and validates a job from TOML text. Relative paths (sources,
    /// output dir, base model) are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<JobConfig> {
        let mut cfg: JobConfig = toml::from_str(text).map_err(|e| FactoryError::JobSyntax {
            path: "<string>".into(),
            message: e.to_string(),
        })?;
        cfg.resolve_paths(base_dir);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a job file.
    pub fn load(path: &Path) -> Result<JobConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| FactoryError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg: JobConfig = toml::from_str(&text).map_err(|e| FactoryError::JobSyntax {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base_dir: &Path) {
        if self.output.dir.is_relative() && !base_dir.as_os_str().is_empty() {
            self.output.dir = base_dir.join(&self.output.dir);
        }
        let base = Path::new(&self.model.base);
        if base.is_relative() && !base_dir.as_os_str().is_empty() {
            let candidate = base_dir.join(base);
            if candidate.exists() {
                self.model.base = candidate.display().to_string();
            }
        }
        if let Some(r) = &self.checkpoint.resume_from {
            if r != "latest" && Path::new(r).is_relative() && !base_dir.as_os_str().is_empty() {
                self.checkpoint.resume_from = Some(base_dir.join(r).display().to_string());
            }
        }
        for s in &mut self.data.sources {
            let p = Path::new(s.as_str());
            if !s.contains('@') && p.is_relative() && !base_dir.as_os_str().is_empty() {
                *s = base_dir.join(p).display().to_string();
            }
        }
        self.lora.target_modules = self
            .lora
            .target_modules
            .iter()
            .map(|t| normalise_target(t))
            .collect();
    }

    /// Checks every key; the first problem found is returned (model, data,
    /// lora, train, then checkpoint, output and gradient cache, in that
    /// order).
    pub fn validate(&self) -> Result<()> {
        use FactoryError as E;
        if self.model.base.trim().is_empty() {
            return Err(E::invalid(
                "model.base",
                "must name a GGUF file or a model directory",
            ));
        }
        self.data.validate()?;
        self.lora.validate()?;
        self.train.validate()?;
        self.validate_outputs()
    }

    /// The `checkpoint`, `output` and `gradient_cache` keys.
    fn validate_outputs(&self) -> Result<()> {
        use FactoryError as E;
        if self.checkpoint.keep_last == 0 {
            return Err(E::invalid("checkpoint.keep_last", "must be at least 1"));
        }
        if let Some(r) = &self.checkpoint.resume_from {
            if r.trim().is_empty() {
                return Err(E::invalid(
                    "checkpoint.resume_from",
                    "must be \"latest\" or a checkpoint directory",
                ));
            }
        }
        if self.output.dir.as_os_str().is_empty() {
            return Err(E::invalid("output.dir", "must not be empty"));
        }
        if self.gradient_cache.projection_dim == 0 {
            return Err(E::invalid(
                "gradient_cache.projection_dim",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The parsed sources, in job order.
    pub fn sources(&self) -> Result<Vec<SourceRef>> {
        self.data
            .sources
            .iter()
            .map(|s| SourceRef::parse(s, Path::new("")))
            .collect()
    }

    /// The LoRA scaling factor: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn lora_scaling(&self) -> f64 {
        if self.lora.rslora {
            self.lora.alpha / (self.lora.r as f64).sqrt()
        } else {
            self.lora.alpha / self.lora.r as f64
        }
    }

    /// A hash of everything that determines the trained weights (data, model,
    /// LoRA, optimiser, seed), excluding run-time choices (output dir, resume,
    /// checkpoint interval, pricing). A checkpoint only resumes a job with the
    /// same hash.
    pub fn training_hash(&self) -> Hash {
        let mut c = self.clone();
        c.output.dir = PathBuf::new();
        c.checkpoint = CheckpointSection::default();
        c.pricing = PricingSection::default();
        c.name = None;
        c.gradient_cache = GradientCacheSection::default();
        let json = serde_json::to_vec(&c).expect("job config serialises");
        Hash::domain("trib.factory.job.v1", &[&json])
    }

    /// A hash of the whole job as written (recorded in the summary).
    pub fn config_hash(&self) -> Hash {
        let json = serde_json::to_vec(self).expect("job config serialises");
        Hash::domain("trib.factory.job.v1", &[&json])
    }
}

impl DataSection {
    /// The `data` keys.
    fn validate(&self) -> Result<()> {
        use FactoryError as E;
        let d = self;
        if d.sources.is_empty() {
            return Err(E::invalid(
                "data.sources",
                "at least one source is required (`name@version` or a .txt/.jsonl path)",
            ));
        }
        for s in &d.sources {
            SourceRef::parse(s, Path::new(""))?;
        }
        if d.format == DataFormat::Text && d.text_field.trim().is_empty() {
            return Err(E::invalid("data.text_field", "must not be empty"));
        }
        if d.max_length < 2 || d.max_length > 131_072 {
            return Err(E::invalid(
                "data.max_length",
                format!("{} is outside 2..=131072", d.max_length),
            ));
        }
        if !(0.0..1.0).contains(&d.validation_fraction) || !d.validation_fraction.is_finite() {
            return Err(E::invalid(
                "data.validation_fraction",
                format!("{} is outside [0, 1)", d.validation_fraction),
            ));
        }
        Ok(())
    }
}

impl LoraSection {
    /// The `lora` keys.
    fn validate(&self) -> Result<()> {
        use FactoryError as E;
        let l = self;
        if l.r == 0 || l.r > 1024 {
            return Err(E::invalid("lora.r", format!("{} is outside 1..=1024", l.r)));
        }
        if !(l.alpha.is_finite() && l.alpha > 0.0) {
            return Err(E::invalid(
                "lora.alpha",
                format!("{} must be a positive number", l.alpha),
            ));
        }
        if !(0.0..1.0).contains(&l.dropout) {
            return Err(E::invalid(
                "lora.dropout",
                format!("{} is outside [0, 1)", l.dropout),
            ));
        }
        if l.target_modules.is_empty() {
            return Err(E::invalid(
                "lora.target_modules",
                "at least one module is required",
            ));
        }
        for (i, t) in l.target_modules.iter().enumerate() {
            if !KNOWN_TARGETS.contains(&t.as_str()) {
                return Err(E::invalid(
                    "lora.target_modules",
                    format!("unknown module {t:?}; expected one of q k v o gate up down (or their *_proj names)"),
                ));
            }
            if l.target_modules[..i].contains(t) {
                return Err(E::invalid(
                    "lora.target_modules",
                    format!("{t:?} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

impl TrainSection {
    /// The `train` keys.
    fn validate(&self) -> Result<()> {
        use FactoryError as E;
        let t = self;
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return Err(E::invalid(
                "train.learning_rate",
                format!("{} must be a positive number", t.learning_rate),
            ));
        }
        if let Some(r) = t.warmup_ratio {
            if !(0.0..1.0).contains(&r) {
                return Err(E::invalid(
                    "train.warmup_ratio",
                    format!("{r} is outside [0, 1)"),
                ));
            }
            if t.warmup_steps > 0 {
                return Err(E::invalid(
                    "train.warmup_ratio",
                    "set either warmup_steps or warmup_ratio, not both",
                ));
            }
        }
        if !(0.0..=1.0).contains(&t.min_lr_ratio) {
            return Err(E::invalid(
                "train.min_lr_ratio",
                format!("{} is outside [0, 1]", t.min_lr_ratio),
            ));
        }
        if t.epochs == 0 {
            return Err(E::invalid("train.epochs", "must be at least 1"));
        }
        if t.max_steps == Some(0) {
            return Err(E::invalid("train.max_steps", "must be at least 1 when set"));
        }
        if t.batch_size == 0 {
            return Err(E::invalid("train.batch_size", "must be at least 1"));
        }
        if t.gradient_accumulation == 0 {
            return Err(E::invalid(
                "train.gradient_accumulation",
                "must be at least 1",
            ));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(E::invalid(
                "train.weight_decay",
                format!("{} must be >= 0", t.weight_decay),
            ));
        }
        if !(0.0..1.0).contains(&t.adam_beta1) {
            return Err(E::invalid(
                "train.adam_beta1",
                format!("{} is outside [0, 1)", t.adam_beta1),
            ));
        }
        if !(0.0..1.0).contains(&t.adam_beta2) {
            return Err(E::invalid(
                "train.adam_beta2",
                format!("{} is outside [0, 1)", t.adam_beta2),
            ));
        }
        if !(t.adam_eps.is_finite() && t.adam_eps > 0.0) {
            return Err(E::invalid(
                "train.adam_eps",
                format!("{} must be positive", t.adam_eps),
            ));
        }
        if !(t.max_grad_norm.is_finite() && t.max_grad_norm >= 0.0) {
            return Err(E::invalid(
                "train.max_grad_norm",
                format!("{} must be >= 0 (0 disables clipping)", t.max_grad_norm),
            ));
        }
        Ok(())
    }
}

fn normalise_target(t: &str) -> String {
    match t.trim() {
        "q" => "q_proj".into(),
        "k" => "k_proj".into(),
        "v" => "v_proj".into(),
        "o" => "o_proj".into(),
        "gate" => "gate_proj".into(),
        "up" => "up_proj".into(),
        "down" => "down_proj".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
base = "m.gguf"
[data]
sources = ["legal@3", "data/a.jsonl"]
[output]
dir = "out"
"#;

    #[test]
    fn minimal_job_gets_defaults_and_resolved_paths() {
        let c = JobConfig::from_toml_str(MINIMAL, Path::new("/jobs")).unwrap();
        assert_eq!(c.lora.r, 8);
        assert_eq!(c.lora.target_modules, vec!["q_proj", "v_proj"]);
        assert_eq!(c.output.dir, PathBuf::from("/jobs/out"));
        let s = c.sources().unwrap();
        assert_eq!(
            s[0],
            SourceRef::Datanet {
                name: "legal".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            s[1],
            SourceRef::File {
                path: PathBuf::from("/jobs/data/a.jsonl")
            }
        );
        assert_eq!(c.lora_scaling(), 2.0);
    }

    #[test]
    fn short_target_names_are_normalised() {
        let t = MINIMAL.replace(
            "[output]",
            "[lora]\ntarget_modules = [\"q\", \"gate\"]\n[output]",
        );
        let c = JobConfig::from_toml_str(&t, Path::new("")).unwrap();
        assert_eq!(c.lora.target_modules, vec!["q_proj", "gate_proj"]);
    }

    #[test]
    fn prices_are_human_open() {
        let t = MINIMAL.to_string() + "[pricing]\ninput_per_1k = \"0.5\"\noutput_per_1k = \"2\"\n";
        let c = JobConfig::from_toml_str(&t, Path::new("")).unwrap();
        assert_eq!(c.pricing.input_per_1k, Amount::parse_open("0.5").unwrap());
        assert_eq!(c.pricing.output_per_1k, Amount::parse_open("2").unwrap());
        let bad = MINIMAL.to_string() + "[pricing]\ninput_per_1k = \"cheap\"\n";
        let e = JobConfig::from_toml_str(&bad, Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an OPEN amount"), "{e}");
    }

    #[test]
    fn training_hash_ignores_run_time_keys() {
        let a = JobConfig::from_toml_str(MINIMAL, Path::new("")).unwrap();
        let mut b = a.clone();
        b.output.dir = "elsewhere".into();
        b.checkpoint.every_steps = 7;
        assert_eq!(a.training_hash(), b.training_hash());
        b.train.seed = 1;
        assert_ne!(a.training_hash(), b.training_hash());
    }
}
