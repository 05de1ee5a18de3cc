//! The kernels: the numeric code every architecture shares, kept apart from
//! the architectures the way candle keeps its core apart from its models.
//!
//! An architecture file (today `llama.rs`; one file per model family)
//! reads a configuration, lays out its layers in the shared weight types
//! and runs its forward passes with these kernels. The rule that keeps the
//! layering: kernels may import each other and the crate's shared types
//! (`config`, `error`, `kv_cache`, `lora`, `step`), never an architecture
//! or a loader (`tests/it/layering.rs` checks it).
//!
//! - [`weights`]: how a projection is held (quantized, f32, both, bf16
//!   tiles) and the weights of one pre-norm decoder block;
//! - [`cpu_f32`]: f32 slices of CPU tensors and the vectorizable dot
//!   product;
//! - [`positions`]: rotary tables and the causal mask;
//! - [`multi_lora`]: the LoRA terms of a batch whose rows carry different
//!   adapters (SGMV / BGMV);
//! - [`qkernel`]: SIMD matrix products over ggml Q4_1 / Q8_0 blocks and
//!   f32;
//! - [`decode`]: the lean inference step as loops over preallocated
//!   buffers, built on `qkernel`;
//! - [`train`]: the training forward's fused element-wise ops with
//!   hand-written backward passes;
//! - [`frozen`]: the frozen-weight linear of the training forward (no
//!   weight gradient);
//! - [`amx`]: bf16 weights and products on AMX tiles, or their emulation;
//! - `reference` (test builds): the same ops from primitive candle ops, the
//!   fused kernels' reference.
//!
//! `unsafe` is allowed only in `qkernel` (`std::arch` intrinsics) and `amx`
//! (tile instructions and the kernel's tile permission), each with a
//! module-level `#![allow(unsafe_code)]` and its reasons; see
//! `docs/model.md`.

pub(crate) mod amx;
pub(crate) mod cpu_f32;
pub(crate) mod decode;
pub(crate) mod frozen;
pub(crate) mod multi_lora;
pub(crate) mod positions;
pub(crate) mod qkernel;
#[cfg(test)]
pub(crate) mod reference;
pub(crate) mod train;
pub(crate) mod weights;
