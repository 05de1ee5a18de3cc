//! Integration tests: the real engine over trib-model's transformer, on tiny
//! random models written in the real GGUF format, real PEFT adapter files,
//! and the real SmolLM2 when it is present.

mod adapters_in_cache;
mod common;
mod hostile_adapters;
mod mixed_batches;
mod smollm2;
