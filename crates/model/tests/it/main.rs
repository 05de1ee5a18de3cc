//! Integration tests for trib-model: tiny random models in the real formats,
//! and (when the file is present) the SmolLM2 demo model.

mod batching;
mod factory;
mod factory_smollm2;
mod formats;
mod forwards;
mod hostile_gguf;
mod layering;
mod peft_files;
mod smollm2;

use std::path::Path;

use trib_model::{write_tiny_gguf, write_tiny_hf_dir, GgmlDType, Model, TinySpec, WeightFormat};

/// Writes the default tiny model in both formats and loads both.
pub fn tiny_pair(dir: &Path, spec: &TinySpec, seed: u64) -> (Model, Model) {
    let hf = dir.join("hf");
    let gguf = dir.join("tiny.gguf");
    write_tiny_hf_dir(&hf, spec, seed).unwrap();
    write_tiny_gguf(&gguf, spec, seed, GgmlDType::F32).unwrap();
    (
        Model::load(&hf, WeightFormat::Auto).unwrap(),
        Model::load(&gguf, WeightFormat::Auto).unwrap(),
    )
}

/// A tiny HF model, loaded.
pub fn tiny_hf(dir: &Path, seed: u64) -> Model {
    let hf = dir.join(format!("hf{seed}"));
    write_tiny_hf_dir(&hf, &TinySpec::default(), seed).unwrap();
    Model::load(&hf, WeightFormat::Auto).unwrap()
}

/// Largest absolute difference of two tensors.
pub fn max_abs_diff(a: &trib_model::Tensor, b: &trib_model::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}
