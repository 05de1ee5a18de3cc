//! `trib generate`: chat-templated generation with a local base model and
//! an optional LoRA adapter, streamed to the terminal (in-process; no node).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use trib_node::model::{
    generate, load_peft, AdapterLimits, ChatMessage, GenerationConfig, Model, SamplingConfig,
    WeightFormat,
};

use crate::{output, Global};

/// `trib generate` options.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// `BASE[:ADAPTER_DIR]`: a model path, a file in <home>/models or
    /// `smollm2-135m`, optionally with a PEFT adapter directory.
    #[arg(long)]
    model: String,
    /// The user message.
    #[arg(long)]
    prompt: String,
    /// An optional system message.
    #[arg(long)]
    system: Option<String>,
    /// Softmax temperature (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Most new tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
}

/// Splits `BASE[:ADAPTER]`: the adapter part is taken only when it names a
/// directory (so `C:\…` or a colon in a file name is not misread).
fn split_model(spec: &str) -> (String, Option<PathBuf>) {
    if let Some((base, adapter)) = spec.rsplit_once(':') {
        let dir = PathBuf::from(adapter);
        if !base.is_empty() && dir.is_dir() {
            return (base.to_string(), Some(dir));
        }
    }
    (spec.to_string(), None)
}

/// Runs `trib generate`.
pub fn run(g: &Global, a: GenerateArgs) -> anyhow::Result<()> {
    let (base, adapter_dir) = split_model(&a.model);
    let path = super::models::resolve_model(g, &base)?;
    let model = Model::load(&path, WeightFormat::Auto)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let adapter = match &adapter_dir {
        Some(d) => Some(
            load_peft(d, model.config(), &AdapterLimits::default())
                .with_context(|| format!("cannot load the adapter in {}", d.display()))?,
        ),
        None => None,
    };
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage::new("system", s.clone()));
    }
    messages.push(ChatMessage::new("user", a.prompt.clone()));
    let prompt = model.encode_chat(&messages)?;
    let cfg = GenerationConfig {
        sampling: SamplingConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
        },
        max_new_tokens: a.max_tokens,
        ..GenerationConfig::default()
    };
    let mut stdout = std::io::stdout().lock();
    let mut text = String::new();
    let gen = generate(&model, adapter.as_ref(), &prompt, &cfg, |ev| {
        text.push_str(ev.text);
        if !g.json {
            // A closed pipe ends generation rather than failing it.
            if stdout
                .write_all(ev.text.as_bytes())
                .and_then(|_| stdout.flush())
                .is_err()
            {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    drop(stdout);
    if g.json {
        return output::json(&serde_json::json!({
            "text": text,
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.tokens.len(),
            "finish_reason": format!("{:?}", gen.finish_reason).to_lowercase(),
            "tokens_per_s": gen.decode_tokens_per_sec(),
        }));
    }
    println!();
    eprintln!(
        "[{} prompt + {} completion tokens, {:.1} tokens/s, {:?}]",
        gen.prompt_tokens,
        gen.tokens.len(),
        gen.decode_tokens_per_sec(),
        gen.finish_reason
    );
    Ok(())
}
