//! Generation benchmark on the demo model: decode tokens/s for the quantized
//! (Q4_1 kept in ggml blocks) and dense f32 paths, plus prompt processing.
//! Peers (llama.cpp via llama-cpp-python, HF `generate`) are measured by
//! `scripts/bench-peers-generate.py` on the same prompt and thread count.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p trib-model --example bench_generate [-- TOKENS]`

use std::ops::ControlFlow;
use std::path::PathBuf;

use trib_model::{
    generate, ChatMessage, DecodeSlot, GenerationConfig, Model, SamplingConfig, WeightFormat,
    SMOLLM2_FILE,
};

fn main() -> anyhow::Result<()> {
    let tokens: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(128);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(SMOLLM2_FILE);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!("| path | threads | prompt tokens | prefill tok/s | new tokens | decode tok/s |");
    println!("|---|---|---|---|---|---|");
    for (name, fmt) in [
        ("Q4_1 quantized", WeightFormat::Quantized),
        ("f32 dequantized", WeightFormat::F32),
        ("hybrid (Q4_1 decode, f32 prefill)", WeightFormat::Hybrid),
    ] {
        let m = Model::load(&path, fmt)?;
        let prompt = m.encode_chat(&[ChatMessage::new(
            "user",
            "Write a long story about a dragon who learns to paint.",
        )])?;
        let cfg = GenerationConfig {
            sampling: SamplingConfig::greedy(),
            max_new_tokens: tokens,
            // Never stop early: measure exactly `tokens` new tokens.
            extra_stop_tokens: vec![],
        };
        // Warm-up (page in weights, size the cache).
        generate(
            &m,
            None,
            &prompt,
            &GenerationConfig {
                max_new_tokens: 4,
                ..cfg.clone()
            },
            |_| ControlFlow::Continue(()),
        )?;
        let mut best = None::<trib_model::Generation>;
        for _ in 0..3 {
            let g = generate(&m, None, &prompt, &cfg, |_| ControlFlow::Continue(()))?;
            if best
                .as_ref()
                .is_none_or(|b| g.decode_tokens_per_sec() > b.decode_tokens_per_sec())
            {
                best = Some(g);
            }
        }
        let g = best.expect("ran");
        println!(
            "| {name} | {threads} | {} | {:.1} | {} | {:.1} |",
            g.prompt_tokens,
            g.prompt_tokens as f64 / g.prefill_secs,
            g.tokens.len(),
            g.decode_tokens_per_sec()
        );
    }
    // Batched decode (the serving path): 8 sequences, one decode step for
    // all of them at a time, f32 weights.
    let m = Model::load(&path, WeightFormat::F32)?;
    let prompt = m.encode_chat(&[ChatMessage::new("user", "Tell me about rivers.")])?;
    for batch in [1usize, 8] {
        let mut caches: Vec<_> = (0..batch).map(|_| m.new_cache()).collect();
        for c in caches.iter_mut() {
            m.prefill(&prompt, c, None)?;
        }
        let steps = 32;
        let start = std::time::Instant::now();
        let mut tok = vec![198u32; batch];
        for _ in 0..steps {
            let mut slots: Vec<DecodeSlot<'_>> = caches
                .iter_mut()
                .zip(tok.iter())
                .map(|(cache, &token)| DecodeSlot {
                    token,
                    cache,
                    adapter: None,
                })
                .collect();
            let logits = m.decode_batch(&mut slots)?;
            let v: Vec<Vec<f32>> = logits.to_vec2()?;
            tok = v
                .iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold(0, |b, (i, x)| if *x > row[b] { i } else { b })
                        as u32
                })
                .collect();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| f32 decode_batch, {batch} sequences | {threads} | {} | - | {} | {:.1} (aggregate) |",
            prompt.len(),
            steps * batch,
            (steps * batch) as f64 / secs
        );
    }
    Ok(())
}
