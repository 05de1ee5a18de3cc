//! Loading the same tiny model from GGUF (llama.cpp layout) and safetensors.

use trib_model::{encode, write_tiny_gguf, GgmlDType, Model, ModelFormat, TinySpec, WeightFormat};

use crate::{max_abs_diff, tiny_pair};

fn prompt(m: &Model) -> Vec<u32> {
    m.encode("<|im_start|>user\nhello there, 12 tin<|im_end|>")
        .unwrap()
}

#[test]
fn gguf_with_llama_cpp_qk_permutation_gives_the_same_logits_as_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (hf, gguf) = tiny_pair(dir.path(), &TinySpec::default(), 1);
    let toks = prompt(&hf);
    assert_eq!(toks, prompt(&gguf), "both formats tokenize alike");
    let a = hf.forward_all(&toks, &mut hf.new_cache(), None).unwrap();
    let b = gguf
        .forward_all(&toks, &mut gguf.new_cache(), None)
        .unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(d < 1e-4, "logits differ by {d}");
}

#[test]
fn qwen2_style_biases_survive_the_gguf_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        family: trib_model::Family::Qwen2,
        tie_embeddings: false,
        ..TinySpec::default()
    };
    let (hf, gguf) = tiny_pair(dir.path(), &spec, 3);
    assert!(hf.config().attention_bias && gguf.config().attention_bias);
    let toks = prompt(&hf);
    let a = hf.forward_all(&toks, &mut hf.new_cache(), None).unwrap();
    let b = gguf
        .forward_all(&toks, &mut gguf.new_cache(), None)
        .unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-4);
}

#[test]
fn quantized_gguf_stays_quantized_and_stays_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    let (hf, _) = tiny_pair(dir.path(), &spec, 4);
    let path = dir.path().join("q8.gguf");
    write_tiny_gguf(&path, &spec, 4, GgmlDType::Q8_0).unwrap();
    let q = Model::load(&path, WeightFormat::Quantized).unwrap();
    assert!(q.is_quantized());
    assert_eq!(q.info().quantization, "Q8_0");
    let f = Model::load(&path, WeightFormat::F32).unwrap();
    assert!(!f.is_quantized());
    // Auto is hybrid: the decode kernels pick SIMD at run time.
    let auto = Model::load(&path, WeightFormat::Auto).unwrap();
    assert_eq!(auto.info().weights_in_memory, "Q8_0+F32");
    // Hybrid keeps both: quantized blocks for one-row decode, f32 otherwise.
    let auto = Model::load(&path, WeightFormat::Hybrid).unwrap();
    assert!(!auto.is_quantized());
    assert_eq!(auto.info().weights_in_memory, "Q8_0+F32");
    let toks = prompt(&hf);
    let mut c1 = auto.new_cache();
    auto.prefill(&toks[..toks.len() - 1], &mut c1, None)
        .unwrap();
    let one_row = auto
        .prefill(&toks[toks.len() - 1..], &mut c1, None)
        .unwrap();
    let dense_row = f.prefill(&toks, &mut f.new_cache(), None).unwrap();
    assert!(max_abs_diff(&one_row, &dense_row) < 0.5);
    let toks = prompt(&hf);
    let a = hf.forward_all(&toks, &mut hf.new_cache(), None).unwrap();
    let b = q.forward_all(&toks, &mut q.new_cache(), None).unwrap();
    let c = f.forward_all(&toks, &mut f.new_cache(), None).unwrap();
    // Q8_0 weights (and the q8 activations of the quantized matmul) move the
    // logits a little, not a lot.
    assert!(max_abs_diff(&a, &b) < 0.5, "{}", max_abs_diff(&a, &b));
    assert!(max_abs_diff(&a, &c) < 0.5, "{}", max_abs_diff(&a, &c));
}

#[test]
fn model_info_describes_architecture_size_and_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    let (hf, gguf) = tiny_pair(dir.path(), &spec, 5);
    let cfg = spec.config();
    for m in [&hf, &gguf] {
        let i = m.info();
        assert_eq!(i.architecture, "llama");
        assert_eq!(i.parameters, cfg.parameter_count());
        assert_eq!(i.vocab_size, cfg.vocab_size);
        assert!(i.tokenizer.contains("BPE"));
    }
    assert_eq!(gguf.info().format, ModelFormat::Gguf);
    assert_eq!(gguf.info().license.as_deref(), Some("apache-2.0"));
    assert_eq!(hf.info().format, ModelFormat::HfDir);
    // The id is the content: same seed, same id; another seed, another id.
    let (_, again) = tiny_pair(&dir.path().join("again"), &spec, 5);
    assert_eq!(again.info().id, gguf.info().id);
    let (_, other) = tiny_pair(&dir.path().join("other"), &spec, 6);
    assert_ne!(other.info().id, gguf.info().id);
}

#[test]
fn exported_hf_directory_reloads_with_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let (_, gguf) = tiny_pair(dir.path(), &TinySpec::default(), 7);
    let out = dir.path().join("export");
    gguf.export_hf_dir(&out).unwrap();
    let back = Model::load(&out, WeightFormat::Auto).unwrap();
    let toks = encode(gguf.tokenizer(), "hello world").unwrap();
    assert_eq!(encode(back.tokenizer(), "hello world").unwrap(), toks);
    let a = gguf
        .forward_all(&toks, &mut gguf.new_cache(), None)
        .unwrap();
    let b = back
        .forward_all(&toks, &mut back.new_cache(), None)
        .unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5);
}

#[test]
fn broken_inputs_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Model::load(&dir.path().join("nope.gguf"), WeightFormat::Auto).unwrap_err();
    assert!(missing.to_string().contains("nope.gguf"), "{missing}");
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let e = Model::load(&junk, WeightFormat::Auto).unwrap_err();
    assert!(e.to_string().contains("junk.gguf"), "{e}");
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let e = Model::load(&empty_dir, WeightFormat::Auto).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
}
