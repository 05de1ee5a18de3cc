//! The differentiable training forward agrees with the inference forward,
//! and gradients reach every LoRA tensor.

use trib_model::{LoraAdapter, LoraConfig, LoraDropout, LoraTarget, Tensor, Var};

use crate::{max_abs_diff, tiny_hf};

fn all_targets(r: usize) -> LoraConfig {
    LoraConfig {
        r,
        alpha: 2.0 * r as f64,
        dropout: 0.0,
        targets: LoraTarget::ALL.to_vec(),
        use_rslora: false,
    }
}

/// Gives every B small deterministic pseudo-random values so the adapter is
/// not the identity.
fn randomise_b(adapter: &LoraAdapter, seed: u64) {
    for (i, (_, _, p)) in adapter.iter_pairs().enumerate() {
        let n = p.b.elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|j| 0.05 * ((j as f32 * 12.9898 + (i as u64 + seed) as f32 * 78.233).sin()))
            .collect();
        let b = Tensor::from_vec(vals, p.b.dims(), &candle_core::Device::Cpu).unwrap();
        p.b.set(&b).unwrap();
    }
}

#[test]
fn training_forward_matches_inference_forward_with_and_without_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 21);
    let toks = m
        .encode("<|im_start|>user\nhello there, the 12 winners<|im_end|>")
        .unwrap();
    let adapter = LoraAdapter::init(all_targets(4), m.config(), "tiny", 3).unwrap();
    randomise_b(&adapter, 1);
    for ad in [None, Some(&adapter)] {
        let infer = m.forward_all(&toks, &mut m.new_cache(), ad).unwrap();
        let batch = Tensor::new(toks.as_slice(), &candle_core::Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let train = m
            .forward_train(&batch, ad, None)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let d = max_abs_diff(&infer, &train);
        assert!(d < 1e-4, "training and inference logits differ by {d}");
    }
    // And the adapter really changes the output.
    let base = m.forward_all(&toks, &mut m.new_cache(), None).unwrap();
    let adapted = m
        .forward_all(&toks, &mut m.new_cache(), Some(&adapter))
        .unwrap();
    assert!(max_abs_diff(&base, &adapted) > 1e-3);
}

#[test]
fn incremental_decoding_with_the_cache_matches_one_full_pass() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 22);
    let toks = m.encode("hello world, in the tin").unwrap();
    let full = m.forward_all(&toks, &mut m.new_cache(), None).unwrap();
    let mut cache = m.new_cache();
    // A prompt of 3, then chunks of 2, then single tokens: the cache grows
    // past its initial capacity on the way in longer sequences too.
    let mut rows = vec![m.prefill(&toks[..3], &mut cache, None).unwrap()];
    let mut i = 3;
    while i < toks.len() {
        let end = (i + if i < 7 { 2 } else { 1 }).min(toks.len());
        rows.push(m.prefill(&toks[i..end], &mut cache, None).unwrap());
        i = end;
    }
    assert_eq!(cache.len(), toks.len());
    let last = full.get(toks.len() - 1).unwrap();
    assert!(max_abs_diff(&last, rows.last().unwrap()) < 1e-4);
}

#[test]
fn every_lora_tensor_receives_a_finite_nonzero_gradient_through_the_training_forward() {
    // B starts at zero, which makes A's gradient exactly zero at step 0
    // (dL/dA = s·Bᵀ·dL/dy·xᵀ). We set B to small random values first, as an
    // adapter has after one optimiser step, so both A and B must get signal.
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 23);
    let adapter = LoraAdapter::init(all_targets(2), m.config(), "tiny", 5).unwrap();
    randomise_b(&adapter, 2);
    let toks = m.encode("the hello in the tin, 12 apples").unwrap();
    let n = toks.len();
    let batch = Tensor::new(toks.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut dropout = LoraDropout::new(0.1, 9);
    let logits = m
        .forward_train(&batch, Some(&adapter), Some(&mut dropout))
        .unwrap();
    let inputs = logits.squeeze(0).unwrap().narrow(0, 0, n - 1).unwrap();
    let targets = Tensor::new(&toks[1..], &candle_core::Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&inputs, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let vars: Vec<Var> = adapter.vars();
    assert_eq!(vars.len(), m.config().num_layers * 7 * 2);
    for (i, v) in vars.iter().enumerate() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("LoRA tensor {i} got no gradient"));
        let vals: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            vals.iter().all(|x| x.is_finite()),
            "tensor {i}: non-finite gradient"
        );
        let norm: f32 = vals.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(norm > 0.0, "tensor {i}: zero gradient");
    }
}

#[test]
fn a_few_sgd_steps_lower_the_training_loss_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 24);
    let adapter = LoraAdapter::init(all_targets(4), m.config(), "tiny", 6).unwrap();
    let toks = m
        .encode("hello the tin hello the tin hello the tin")
        .unwrap();
    let n = toks.len();
    let batch = Tensor::new(toks.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let targets = Tensor::new(&toks[1..], &candle_core::Device::Cpu).unwrap();
    let loss_of = || {
        let logits = m.forward_train(&batch, Some(&adapter), None).unwrap();
        let inputs = logits.squeeze(0).unwrap().narrow(0, 0, n - 1).unwrap();
        candle_nn::loss::cross_entropy(&inputs, &targets).unwrap()
    };
    use candle_nn::Optimizer;
    let mut opt = candle_nn::SGD::new(adapter.vars(), 0.05).unwrap();
    let first: f32 = loss_of().to_scalar().unwrap();
    for _ in 0..5 {
        opt.backward_step(&loss_of()).unwrap();
    }
    let last: f32 = loss_of().to_scalar().unwrap();
    assert!(last < first, "loss {first} -> {last}");
}

#[test]
fn the_training_forward_refuses_quantized_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.gguf");
    trib_model::write_tiny_gguf(
        &path,
        &trib_model::TinySpec::default(),
        1,
        trib_model::GgmlDType::Q8_0,
    )
    .unwrap();
    let m = trib_model::Model::load(&path, trib_model::WeightFormat::Quantized).unwrap();
    let batch = Tensor::new(&[[5u32, 6, 7]], &candle_core::Device::Cpu).unwrap();
    assert!(matches!(
        m.forward_train(&batch, None, None),
        Err(trib_model::ModelError::NeedsDenseWeights)
    ));
    let dense = m.to_f32().unwrap();
    assert!(dense.forward_train(&batch, None, None).is_ok());
}
