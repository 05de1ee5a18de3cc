//! Dumps what `scripts/peft_logits_check.py` needs to check that an adapter
//! saved by us gives, in Python PEFT, the same logits as our own forward.
//!
//! It loads SmolLM2-135M-Instruct from the GGUF file with f32 weights, makes
//! a non-trivial LoRA adapter (r = 8, alpha = 16, all seven target modules,
//! `A` as initialised by us, `B` random and non-zero so that the LoRA term
//! changes the logits), and writes into OUT_DIR:
//!
//! - `adapter/`: the adapter in PEFT format (`save_peft`);
//! - `hf/`: the base model exported as a Hugging Face directory
//!   (`Model::export_hf_dir`: q/k rows back in the HF layout);
//! - `logits.safetensors`: for each prompt `i`, `tokens.i` (the token ids, as
//!   i64), `adapter.i` and `base.i` (our logits `[tokens, vocab]`, f32, from
//!   `Model::forward_all` with and without the adapter).
//!
//! ```text
//! cargo run --release -p trib-model --example peft_logits_dump -- OUT_DIR [B_SCALE]
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trib_model::{
    locate_smollm2, save_peft, ChatMessage, LoraAdapter, LoraConfig, LoraTarget, Model, Tensor,
    WeightFormat,
};

/// Prompts of different kinds and lengths: plain text, code, a chat turn.
const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "fn main() {\n    let xs: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", xs",
    "In the beginning the river valley was covered by a shallow sea, and the first settlers",
];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: peft_logits_dump OUT_DIR [B_SCALE]"))?,
    );
    let b_scale: f32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0.05);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let path = locate_smollm2(&models)?;
    let model = Model::load(&path, WeightFormat::F32)?;

    let config = LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        targets: LoraTarget::ALL.to_vec(),
        use_rslora: false,
    };
    let adapter = LoraAdapter::init(config, model.config(), "SmolLM2-135M-Instruct", 7)?;
    let mut rng = StdRng::seed_from_u64(11);
    for (_, _, pair) in adapter.iter_pairs() {
        let shape = pair.b.as_tensor().dims().to_vec();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-b_scale..b_scale)).collect();
        pair.b.set(&Tensor::from_vec(
            values,
            shape.as_slice(),
            &model.device(),
        )?)?;
    }
    std::fs::create_dir_all(&out)?;
    let id = save_peft(&adapter, &out.join("adapter"))?;
    model.export_hf_dir(&out.join("hf"))?;

    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| model.encode(p))
        .collect::<Result<_, _>>()?;
    prompts.push(model.encode_chat(&[ChatMessage::new("user", "What is the capital of France?")])?);
    for (i, tokens) in prompts.iter().enumerate() {
        let with = model.forward_all(tokens, &mut model.new_cache(), Some(&adapter))?;
        let without = model.forward_all(tokens, &mut model.new_cache(), None)?;
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let len = ids.len();
        tensors.insert(
            format!("tokens.{i}"),
            Tensor::from_vec(ids, len, &model.device())?,
        );
        let diff = (&with - &without)?.abs()?.max_all()?.to_scalar::<f32>()?;
        println!("prompt {i}: {len} tokens, max |adapter - base| logit difference {diff:.3}");
        tensors.insert(format!("adapter.{i}"), with);
        tensors.insert(format!("base.{i}"), without);
    }
    candle_core::safetensors::save(&tensors, out.join("logits.safetensors"))?;
    println!(
        "wrote {} (adapter {id}, {} LoRA parameters, B ~ U(-{b_scale}, {b_scale}))",
        out.display(),
        adapter.num_parameters()
    );
    Ok(())
}
