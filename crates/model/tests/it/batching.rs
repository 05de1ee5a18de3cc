//! Batched decode over mixed adapters equals decoding each sequence alone.

use trib_model::{DecodeSlot, LoraAdapter, LoraConfig, LoraTarget, SeqChunk, Tensor};

use crate::{max_abs_diff, tiny_hf};

fn adapter(m: &trib_model::Model, seed: u64, targets: Vec<LoraTarget>, r: usize) -> LoraAdapter {
    let cfg = LoraConfig {
        r,
        alpha: 16.0,
        dropout: 0.0,
        targets,
        use_rslora: seed % 2 == 0,
    };
    let a = LoraAdapter::init(cfg, m.config(), "tiny", seed).unwrap();
    for (i, (_, _, p)) in a.iter_pairs().enumerate() {
        let n = p.b.elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|j| 0.1 * ((j as f32 * 0.731 + (seed * 31 + i as u64) as f32).sin()))
            .collect();
        p.b.set(&Tensor::from_vec(vals, p.b.dims(), &candle_core::Device::Cpu).unwrap())
            .unwrap();
    }
    a
}

#[test]
fn a_batch_mixing_adapters_decodes_the_same_logits_as_each_sequence_alone() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 31);
    let a1 = adapter(&m, 1, vec![LoraTarget::QProj, LoraTarget::VProj], 4);
    let a2 = adapter(&m, 2, LoraTarget::ALL.to_vec(), 8);
    let a3 = adapter(&m, 3, vec![LoraTarget::DownProj, LoraTarget::KProj], 2);
    let prompts = [
        "hello there",
        "the tin",
        "in 12 words",
        "hello",
        "another one here",
    ];
    let adapters: [Option<&LoraAdapter>; 5] = [Some(&a1), None, Some(&a2), Some(&a1), Some(&a3)];
    let next = [7u32, 40, 100, 260, 3];

    // Reference: each sequence alone.
    let mut alone = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let toks = m.encode(p).unwrap();
        let mut cache = m.new_cache();
        m.prefill(&toks, &mut cache, adapters[i]).unwrap();
        alone.push(m.prefill(&[next[i]], &mut cache, adapters[i]).unwrap());
    }

    // Batched: prefill each, then one decode step for all five.
    let mut caches: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut c = m.new_cache();
            m.prefill(&m.encode(p).unwrap(), &mut c, adapters[i])
                .unwrap();
            c
        })
        .collect();
    let mut slots: Vec<DecodeSlot<'_>> = caches
        .iter_mut()
        .enumerate()
        .map(|(i, cache)| DecodeSlot {
            token: next[i],
            cache,
            adapter: adapters[i],
        })
        .collect();
    let logits = m.decode_batch(&mut slots).unwrap();
    assert_eq!(logits.dims(), &[5, m.config().vocab_size]);
    for (i, want) in alone.iter().enumerate() {
        let got = logits.get(i).unwrap();
        let d = max_abs_diff(&got, want);
        assert!(d < 1e-4, "slot {i}: batched and alone differ by {d}");
    }
    for (i, c) in caches.iter().enumerate() {
        assert_eq!(c.len(), m.encode(prompts[i]).unwrap().len() + 1);
    }
}

#[test]
fn a_step_can_mix_a_prefill_chunk_with_decode_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 32);
    let a = adapter(&m, 4, LoraTarget::ALL.to_vec(), 4);
    let long = m.encode("hello the tin in the hello world").unwrap();
    let short = m.encode("the").unwrap();
    let mut c_long = m.new_cache();
    let mut c_short = m.new_cache();
    m.prefill(&short, &mut c_short, None).unwrap();
    let mut chunks = [
        SeqChunk {
            tokens: &long,
            cache: &mut c_long,
            adapter: Some(&a),
        },
        SeqChunk {
            tokens: &[42],
            cache: &mut c_short,
            adapter: None,
        },
    ];
    let logits = m.step(&mut chunks).unwrap();
    let want_long = m.prefill(&long, &mut m.new_cache(), Some(&a)).unwrap();
    let mut c = m.new_cache();
    m.prefill(&short, &mut c, None).unwrap();
    let want_short = m.prefill(&[42], &mut c, None).unwrap();
    assert!(max_abs_diff(&logits.get(0).unwrap(), &want_long) < 1e-4);
    assert!(max_abs_diff(&logits.get(1).unwrap(), &want_short) < 1e-4);
}

#[test]
fn a_failed_step_leaves_every_cache_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 33);
    let mut c1 = m.new_cache();
    let mut c2 = m.new_cache();
    m.prefill(&[5, 6], &mut c1, None).unwrap();
    let vocab = m.config().vocab_size as u32;
    let mut slots = [
        DecodeSlot {
            token: 7,
            cache: &mut c1,
            adapter: None,
        },
        DecodeSlot {
            token: vocab + 5,
            cache: &mut c2,
            adapter: None,
        },
    ];
    let err = m.decode_batch(&mut slots).unwrap_err();
    assert!(
        matches!(err, trib_model::ModelError::TokenOutOfRange { .. }),
        "{err}"
    );
    assert_eq!((c1.len(), c2.len()), (2, 0));
}

#[test]
fn prompts_longer_than_the_context_are_refused_before_any_compute() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 34);
    let too_long = vec![5u32; m.config().max_seq_len + 1];
    let mut c = m.new_cache();
    let err = m.prefill(&too_long, &mut c, None).unwrap_err();
    assert!(
        matches!(err, trib_model::ModelError::ContextOverflow { .. }),
        "{err}"
    );
    assert!(c.is_empty());
    // Chunked prefill of a prompt that fits equals one-shot prefill.
    let toks: Vec<u32> = (0..150u32).map(|i| 3 + (i * 7) % 250).collect();
    let one = m.prefill(&toks, &mut m.new_cache(), None).unwrap();
    let chunked = m
        .prefill_chunked(&toks, &mut m.new_cache(), None, 32)
        .unwrap();
    assert!(max_abs_diff(&one, &chunked) < 1e-4);
}

#[test]
fn decode_steps_give_the_same_logits_with_the_lean_path_on_and_off_at_every_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny_hf(dir.path(), 41);
    let a1 = adapter(&m, 1, LoraTarget::ALL.to_vec(), 4);
    let a2 = adapter(&m, 2, vec![LoraTarget::QProj, LoraTarget::DownProj], 2);
    // 3 sequences take the lean path; 20 are above its limit (16) and take
    // candle's gemm either way, which must stay correct too.
    for batch in [3usize, 20] {
        let adapters: Vec<Option<&LoraAdapter>> = (0..batch)
            .map(|i| [None, Some(&a1), Some(&a2)][i % 3])
            .collect();
        let mut runs = Vec::new();
        for lean in [true, false] {
            m.set_lean_decode(lean);
            let mut caches: Vec<_> = (0..batch).map(|_| m.new_cache()).collect();
            for (i, (c, a)) in caches.iter_mut().zip(&adapters).enumerate() {
                let prompt: Vec<u32> = (0..2 + i as u32 % 5)
                    .map(|t| 5 + (t * 7 + i as u32) % 60)
                    .collect();
                m.prefill(&prompt, c, *a).unwrap();
            }
            let mut logits = Vec::new();
            for step in 0..4u32 {
                let mut slots: Vec<DecodeSlot<'_>> = caches
                    .iter_mut()
                    .zip(&adapters)
                    .enumerate()
                    .map(|(i, (cache, a))| DecodeSlot {
                        token: 10 + (step * 3 + i as u32) % 50,
                        cache,
                        adapter: *a,
                    })
                    .collect();
                logits.push(m.decode_batch(&mut slots).unwrap());
            }
            let lens: Vec<usize> = caches.iter().map(|c| c.len()).collect();
            runs.push((logits, lens));
        }
        let (lean, candle) = (&runs[0], &runs[1]);
        assert_eq!(lean.1, candle.1, "caches advanced differently");
        for (a, b) in lean.0.iter().zip(&candle.0) {
            assert_eq!(a.dims(), [batch, m.config().vocab_size]);
            let d = max_abs_diff(a, b);
            assert!(d < 1e-4, "batch {batch}: lean vs candle max |Δlogit| {d}");
        }
    }
}
