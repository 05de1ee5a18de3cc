//! The real demo model, SmolLM2-135M-Instruct (GGUF Q4_1). CI fetches it with
//! `scripts/fetch-model.sh`; when the file is absent these tests print why
//! and return without checking anything.

use std::path::PathBuf;
use std::sync::OnceLock;

use trib_model::{
    generate, ChatMessage, DecodeSlot, FinishReason, GenerationConfig, Model, SamplingConfig,
    WeightFormat, SMOLLM2_FILE,
};

fn model_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(SMOLLM2_FILE);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; run scripts/fetch-model.sh to run the SmolLM2 tests",
            p.display()
        );
        None
    }
}

fn smollm2() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| model_path().map(|p| Model::load(&p, WeightFormat::Auto).unwrap()))
        .as_ref()
}

#[test]
fn smollm2_answers_that_the_capital_of_france_is_paris() {
    let Some(m) = smollm2() else { return };
    let prompt = m
        .encode_chat(&[ChatMessage::new("user", "What is the capital of France?")])
        .unwrap();
    let cfg = GenerationConfig {
        sampling: SamplingConfig::greedy(),
        max_new_tokens: 24,
        extra_stop_tokens: vec![],
    };
    let mut streamed = String::new();
    let out = generate(m, None, &prompt, &cfg, |ev| {
        streamed.push_str(ev.text);
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(out.text.contains("Paris"), "answer was {:?}", out.text);
    assert_eq!(streamed, out.text, "streamed pieces add up to the answer");
    assert!(matches!(
        out.finish_reason,
        FinishReason::Stop | FinishReason::Length
    ));
}

#[test]
fn smollm2_tokenizer_matches_the_hugging_face_vocabulary() {
    let Some(m) = smollm2() else { return };
    // Ids read from the GGUF vocabulary (tokenizer.ggml.tokens), which is
    // the HF tokenizer.json vocabulary in order.
    assert_eq!(m.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(m.encode("<|im_end|>").unwrap(), vec![2]);
    assert_eq!(m.encode("<|endoftext|>").unwrap(), vec![0]);
    assert_eq!(m.encode(" Paris").unwrap(), vec![7042]);
    assert_eq!(
        m.encode(" capital of France").unwrap(),
        vec![3575, 282, 4649]
    );
    // Digits are split one by one (SmolLM2's Digits pre-tokenizer).
    assert_eq!(m.encode("2024").unwrap(), vec![34, 32, 34, 36]);
    let text = "Hello, world! Ünïcödé 😀 12.5%\n\n  indented";
    assert_eq!(m.decode(&m.encode(text).unwrap()).unwrap(), text);
    assert_eq!(m.stop_tokens(), vec![0, 2]);
    let info = m.info();
    assert_eq!(info.parameters, 134_515_008);
    assert_eq!(info.quantization, "Q4_1");
    assert_eq!(info.license.as_deref(), Some("apache-2.0"));
}

/// The logits of decoding `tokens` one at a time after `prompt`.
fn decode_logits(m: &Model, prompt: &[u32], tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = m.new_cache();
    m.prefill(prompt, &mut cache, None).unwrap();
    tokens
        .iter()
        .map(|&t| {
            m.prefill(&[t], &mut cache, None)
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

/// [`decode_logits`] for `n` copies of the sequence decoded as one batch
/// (prompt prefilled as one step of `n` chunks); row 0's logits, after
/// checking that every row got the same.
fn batched_decode_logits(m: &Model, prompt: &[u32], tokens: &[u32], n: usize) -> Vec<Vec<f32>> {
    let mut caches: Vec<_> = (0..n).map(|_| m.new_cache()).collect();
    for c in caches.iter_mut() {
        m.prefill(prompt, c, None).unwrap();
    }
    tokens
        .iter()
        .map(|&token| {
            let mut slots: Vec<DecodeSlot<'_>> = caches
                .iter_mut()
                .map(|cache| DecodeSlot {
                    token,
                    cache,
                    adapter: None,
                })
                .collect();
            let rows: Vec<Vec<f32>> = m.decode_batch(&mut slots).unwrap().to_vec2().unwrap();
            assert!(
                rows.iter().all(|r| r == &rows[0]),
                "rows of identical sequences differ"
            );
            rows[0].clone()
        })
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max)
}

#[test]
fn smollm2_lean_decode_is_as_close_to_exact_f32_logits_as_candles_q4_1_path() {
    let Some(m) = smollm2() else { return };
    let prompt = m
        .encode_chat(&[ChatMessage::new("user", "Name three rivers in Europe.")])
        .unwrap();
    // Exact reference: the same weights dequantized, candle f32 decode.
    let mut exact = m.to_f32().unwrap();
    exact.set_lean_decode(false);
    let mut cache = exact.new_cache();
    let mut logits: Vec<f32> = exact
        .prefill(&prompt, &mut cache, None)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut tokens = Vec::new();
    let mut reference = Vec::new();
    for _ in 0..10 {
        let next = argmax(&logits) as u32;
        tokens.push(next);
        logits = exact
            .prefill(&[next], &mut cache, None)
            .unwrap()
            .to_vec1()
            .unwrap();
        reference.push(logits.clone());
    }
    let lean = decode_logits(m, &prompt, &tokens);
    let mut candle_q = m.clone();
    candle_q.set_lean_decode(false);
    let candle = decode_logits(&candle_q, &prompt, &tokens);
    let batched = batched_decode_logits(m, &prompt, &tokens, 3);
    let (lean_err, candle_err) = (max_diff(&lean, &reference), max_diff(&candle, &reference));
    let batched_err = max_diff(&batched, &reference);
    eprintln!(
        "max |Δlogit| vs exact f32: lean {lean_err}, lean batch of 3 {batched_err}, candle Q4_1 {candle_err}"
    );
    // A batch takes the many-row kernels (the AVX-512 tile kernel where
    // present); it must be as close to f32 as one sequence alone.
    assert!(
        batched_err <= candle_err * 1.25,
        "batched decode drifts further from f32 ({batched_err}) than candle's Q4_1 path ({candle_err})"
    );
    // Both round activations to 8 bits for the Q4_1 projections (candle
    // also rounds the q8_1 scales to f16); the lean head is exact.
    assert!(
        lean_err <= candle_err * 1.25,
        "lean decode drifts further from f32 ({lean_err}) than candle's Q4_1 path ({candle_err})"
    );
    assert!(
        lean_err < 1.0,
        "lean decode: max |Δlogit| {lean_err} vs exact f32"
    );
    let agree = lean
        .iter()
        .zip(&reference)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    assert!(
        agree >= 9,
        "the greedy token differs from exact f32 at {} of 10 steps",
        10 - agree
    );
}
