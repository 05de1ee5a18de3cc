//! OpenLoRA: the multi-adapter serving engine. No HTTP here.
//!
//! Fine-tuned adapters only pay their owners and data contributors if they are
//! cheap to serve. This crate serves many LoRA adapters over **one** base model
//! in memory, the way S-LoRA, Punica and LoRAX do on GPUs:
//!
//! - [`AdapterStore`]: where PEFT adapter files come from — a local directory
//!   ([`LocalDirStore`]) or any `object_store` backend ([`ObjectAdapterStore`],
//!   S3-compatible with the `s3` feature). Adapter ids are validated
//!   [`AdapterName`]s: path traversal never reaches a store.
//! - [`AdapterCache`]: loaded adapters bounded in bytes with LRU eviction,
//!   coalesced loads on loader threads, pinning while sequences run.
//! - [`Engine`]: a continuous-batching scheduler on its own thread. Requests
//!   join and leave the running batch between steps; every step runs one
//!   batched decode over all running sequences whatever their adapters (the
//!   model computes the base matmuls once and the LoRA term per adapter group),
//!   and prefills prompts in chunks within a per-step token budget so a long
//!   prompt does not stall the decodes. Limits and back-pressure come back as
//!   typed [`ServeError`]s that name their HTTP status. The scheduler
//!   measures time to first token, time per output token and token counts
//!   ([`EngineMetrics`], vLLM's metric names) for the node's `/metrics`.
//! - [`BatchModel`]: the small surface the engine needs from a model;
//!   implemented for trib-model's transformer by [`ServedModel`].
//!
//! `trib-node` maps the OpenAI-compatible routes onto [`EngineHandle`];
//! `trib-model` owns the transformer, tokenizer, PEFT parsing and validation.
//! The design and measurements are in `docs/serving.md`.

mod cache;
mod engine;
mod error;
mod fixtures;
mod limits;
mod metrics;
mod model;
mod name;
mod sampling;
mod served_model;
mod store;

pub use cache::{
    Acquire, AdapterCache, CacheConfig, CacheError, CacheStats, CachedAdapter, LoadTicket,
    PinnedAdapter,
};
pub use engine::{
    AdmissionCheck, AdmissionInfo, AdmissionToken, Completion, Engine, EngineConfig, EngineHandle,
    EngineStats, FinishReason, GenerateRequest, ModelInfo, Output, Prompt, StreamEvent, Submission,
    Usage,
};
pub use error::ServeError;
pub use fixtures::RandomAdapter;
pub use limits::EngineLimits;
pub use metrics::EngineMetrics;
pub use model::{BatchModel, ChatMessage, DecodeSlot, ModelError};
pub use name::{AdapterName, AdapterNameError, MAX_ADAPTER_NAME_LEN};
pub use sampling::SamplingParams;
pub use served_model::{ServedModel, DEFAULT_MAX_SERVED_RANK};
pub use store::{
    AdapterFiles, AdapterStore, LocalDirStore, ObjectAdapterStore, StoreError, ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE, DEFAULT_MAX_ADAPTER_FILE_BYTES,
};
