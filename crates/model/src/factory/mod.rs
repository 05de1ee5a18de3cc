//! ModelFactory: LoRA fine-tuning jobs.
//!
//! A job is a TOML file ([`JobConfig`]) naming a base model, data sources
//! (`datanet@version` or local files), a data format, the LoRA shape and the
//! optimiser. Running it ([`train`]) reads the rows with their provenance,
//! formats and tokenizes them with a loss mask, splits off a seeded
//! validation set, trains the adapter with AdamW (gradient accumulation,
//! warmup + decay schedule, clipping, LoRA dropout), checkpoints and resumes,
//! evaluates validation loss before and after, saves the adapter in the
//! Hugging Face PEFT format with a `training_summary.json`, and caches
//! per-example gradients for attribution ([`GradientCache`]).
//!
//! The formulas and file formats are documented in `docs/factory.md`.

mod answer_grad;
mod checkpoint;
mod config;
mod data;
mod error;
mod eval;
mod gradcache;
mod loss;
mod optim;
mod progress;
mod rng;
mod train;

pub use answer_grad::{answer_gradient, answer_targets, AnswerGradient, AnswerTokens};
pub use config::{
    ChatTemplateChoice, CheckpointSection, DataFormat, DataSection, GradientCacheSection,
    JobConfig, LoraSection, ModelSection, OutputSection, Precision, PricingSection, ScheduleKind,
    SourceRef, TrainSection, KNOWN_TARGETS,
};
pub use data::{
    DataStats, DatanetResolver, DatanetRow, Example, Provenance, ResolvedDatanet, SourceSummary,
};
pub use error::FactoryError;
pub use eval::{eval_adapter, eval_with, export_merged, EvalReport};
pub use gradcache::{
    CachedExample, GradientCache, GradientCacheIndex, LayerEntry, LayerProjector,
    GRADIENT_CACHE_FORMAT,
};
pub use progress::{CancelFlag, EvalPhase, ProgressEvent, ProgressFn, StepMetrics};
pub use train::{
    encode_pair, evaluate, example_gradient, prepare_data, test_gradient, train, EvalResult,
    PreparedData, TrainOptions, TrainOutcome, TrainingSummary,
};
