//! Generation benchmark on the demo model: prompt processing and decode
//! tokens/s per weight format, with the lean decode path (the default: own
//! SIMD kernels, no candle ops per token) and, for comparison in the same
//! run, the candle path it replaced; then batched decode (the serving path)
//! at several batch sizes, the default choice (lean up to 16 sequences) vs
//! candle.
//!
//! Each table row is also printed as a machine-readable line for
//! `scripts/bench/generate_peers.py`, which runs this binary interleaved
//! with llama.cpp and Hugging Face `generate`:
//!
//! `RESULT engine=trib path=<name> threads=<T> kernel=<k> prompt_tokens=<n> prefill_tok_s=<x> new_tokens=<n> decode_tok_s=<x> decode_cpu_ms_per_token=<x>`
//!
//! Decode tok/s is `Generation::decode_tokens_per_sec` (new tokens over the
//! time of the single-token forwards after the prefill), best of 3 after a
//! warm-up. CPU ms per token is this process's user+system time (all
//! threads) over those runs' decode phases, so it stays comparable under
//! load.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p trib-model --example bench_generate [-- TOKENS [quick|batches]]`
//! (`quick`: only the default path, no candle comparison and no batches;
//! `batches`: only the batched-decode table). `TRIB_DECODE_KERNEL=avx2`
//! (or `scalar`) caps the kernel for A/B runs in one build.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use trib_model::{
    generate, ChatMessage, DecodeSlot, GenerationConfig, Model, SamplingConfig, WeightFormat,
    SMOLLM2_FILE,
};

/// User + system CPU seconds of this process so far (all threads), from
/// /proc/self/stat (clock ticks, 100 per second on Linux x86-64).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let tokens: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(128);
    let mode = args.next().unwrap_or_default();
    let quick = mode == "quick";
    // `batches`: only the batched-decode table (serving A/B runs).
    let batches_only = mode == "batches";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(SMOLLM2_FILE);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let mut results = Vec::new();
    println!("| path | threads | prompt tokens | prefill tok/s | new tokens | decode tok/s | decode CPU ms/token |");
    println!("|---|---|---|---|---|---|---|");
    let mut runs = vec![("auto (Q4_1 lean path)", WeightFormat::Auto, true)];
    if !quick {
        runs.extend([
            ("auto, candle decode (before)", WeightFormat::Auto, false),
            ("f32 lean decode", WeightFormat::F32, true),
            ("f32, candle decode (before)", WeightFormat::F32, false),
            ("Q4_1 only, lean decode", WeightFormat::Quantized, true),
        ]);
    }
    if batches_only {
        runs.clear();
    }
    for (name, fmt, lean) in runs {
        let mut m = Model::load(&path, fmt)?;
        m.set_lean_decode(lean);
        let kernel = m.decode_kernel()?;
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
        // CPU time of the prefill alone, to subtract from each run.
        let c0 = cpu_seconds();
        for _ in 0..3 {
            m.prefill(&prompt, &mut m.new_cache(), None)?;
        }
        let prefill_cpu = (cpu_seconds() - c0) / 3.0;
        let mut best = None::<trib_model::Generation>;
        let (mut decode_cpu, mut decoded) = (0.0, 0usize);
        for _ in 0..3 {
            let c0 = cpu_seconds();
            let g = generate(&m, None, &prompt, &cfg, |_| ControlFlow::Continue(()))?;
            decode_cpu += cpu_seconds() - c0 - prefill_cpu;
            decoded += g.tokens.len().saturating_sub(1);
            if best
                .as_ref()
                .is_none_or(|b| g.decode_tokens_per_sec() > b.decode_tokens_per_sec())
            {
                best = Some(g);
            }
        }
        let g = best.expect("ran");
        let cpu_ms = 1e3 * decode_cpu / decoded.max(1) as f64;
        let prefill = g.prompt_tokens as f64 / g.prefill_secs;
        println!(
            "| {name} | {threads} | {} | {prefill:.1} | {} | {:.1} | {cpu_ms:.1} |",
            g.prompt_tokens,
            g.tokens.len(),
            g.decode_tokens_per_sec()
        );
        results.push(format!(
            "RESULT engine=trib path={} threads={threads} kernel={kernel} prompt_tokens={} prefill_tok_s={prefill:.1} new_tokens={} decode_tok_s={:.1} decode_cpu_ms_per_token={cpu_ms:.2}",
            name.split(&[' ', ','][..]).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_").replace(['(', ')'], ""),
            g.prompt_tokens,
            g.tokens.len(),
            g.decode_tokens_per_sec()
        ));
    }
    if !quick {
        // Batched decode (the serving path): B sequences, one decode step
        // for all of them at a time, the default choice vs candle's path,
        // default weights.
        let mut m = Model::load(&path, WeightFormat::Auto)?;
        let prompt = m.encode_chat(&[ChatMessage::new("user", "Tell me about rivers.")])?;
        for batch in [1usize, 8, 16, 32, 64] {
            for lean in [true, false] {
                m.set_lean_decode(lean);
                let mut caches: Vec<_> = (0..batch).map(|_| m.new_cache()).collect();
                for c in caches.iter_mut() {
                    m.prefill(&prompt, c, None)?;
                }
                let steps = 16;
                let c0 = cpu_seconds();
                let start = Instant::now();
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
                let cpu = cpu_seconds() - c0;
                let n = steps * batch;
                // `default` is what serving gets: the lean path up to
                // LEAN_MAX_ROWS (16) sequences, candle's gemm above.
                let name = if lean { "default" } else { "candle" };
                println!(
                    "| decode_batch {batch} sequences, {name} | {threads} | {} | - | {n} | {:.1} (aggregate) | {:.1} |",
                    prompt.len(),
                    n as f64 / secs,
                    1e3 * cpu / n as f64
                );
                results.push(format!(
                    "RESULT engine=trib path=decode_batch_{name} batch={batch} threads={threads} decode_tok_s={:.1} decode_cpu_ms_per_token={:.2}",
                    n as f64 / secs,
                    1e3 * cpu / n as f64
                ));
            }
        }
    }
    for r in results {
        println!("{r}");
    }
    Ok(())
}
