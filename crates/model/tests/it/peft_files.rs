//! PEFT adapter files: round trip, interop-critical names and hostile input.

use std::path::Path;

use trib_model::{
    load_peft, save_peft, AdapterLimits, LoraAdapter, LoraConfig, LoraTarget, Model, ModelError,
    Tensor, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
};

use crate::{max_abs_diff, tiny_hf};

fn trained_adapter(m: &Model) -> LoraAdapter {
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.05,
        targets: vec![
            LoraTarget::QProj,
            LoraTarget::KProj,
            LoraTarget::VProj,
            LoraTarget::DownProj,
        ],
        use_rslora: false,
    };
    let a = LoraAdapter::init(cfg, m.config(), "HuggingFaceTB/SmolLM2-135M-Instruct", 1).unwrap();
    for (i, (_, _, p)) in a.iter_pairs().enumerate() {
        let n = p.b.elem_count();
        let v: Vec<f32> = (0..n).map(|j| 0.02 * ((i * 7 + j) as f32).cos()).collect();
        p.b.set(&Tensor::from_vec(v, p.b.dims(), &candle_core::Device::Cpu).unwrap())
            .unwrap();
    }
    a
}

fn read_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(ADAPTER_CONFIG_FILE)).unwrap()).unwrap()
}

fn write_json(dir: &Path, v: &serde_json::Value) {
    std::fs::write(
        dir.join(ADAPTER_CONFIG_FILE),
        serde_json::to_vec(v).unwrap(),
    )
    .unwrap();
}

fn rewrite_tensors(dir: &Path, f: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let path = dir.join(ADAPTER_WEIGHTS_FILE);
    let mut t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    f(&mut t);
    candle_core::safetensors::save(&t, &path).unwrap();
}

#[test]
fn an_adapter_round_trips_through_peft_files_with_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 41);
    let a = trained_adapter(&m);
    let out = dir.path().join("adapter");
    let id = save_peft(&a, &out).unwrap();
    let cfg = read_json(&out);
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(cfg["bias"], "none");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["use_dora"], false);
    assert_eq!(cfg["fan_in_fan_out"], false);
    assert_eq!(
        cfg["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );
    let tensors =
        candle_core::safetensors::load(out.join(ADAPTER_WEIGHTS_FILE), &candle_core::Device::Cpu)
            .unwrap();
    let h = m.config().hidden_size;
    assert_eq!(
        tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"].dims(),
        &[4, h]
    );
    assert_eq!(
        tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].dims(),
        &[h, 4]
    );
    assert_eq!(tensors.len(), m.config().num_layers * 4 * 2);

    let back = load_peft(&out, m.config(), &AdapterLimits::default()).unwrap();
    assert_eq!(back.config(), a.config());
    assert_eq!(trib_model::adapter_content_hash(&out).unwrap(), id);
    let toks = m.encode("hello the tin").unwrap();
    let x = m.forward_all(&toks, &mut m.new_cache(), Some(&a)).unwrap();
    let y = m
        .forward_all(&toks, &mut m.new_cache(), Some(&back))
        .unwrap();
    assert!(max_abs_diff(&x, &y) < 1e-6);
}

#[test]
fn merging_an_adapter_into_the_weights_gives_the_adapted_logits() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 42);
    let a = trained_adapter(&m);
    let toks = m.encode("hello the tin").unwrap();
    let want = m.forward_all(&toks, &mut m.new_cache(), Some(&a)).unwrap();
    let merged = m.merge_adapter(&a).unwrap();
    let got = merged
        .forward_all(&toks, &mut merged.new_cache(), None)
        .unwrap();
    assert!(max_abs_diff(&want, &got) < 1e-4);
    // Exported merged weights reload to the same logits.
    let out = dir.path().join("merged");
    merged.export_hf_dir(&out).unwrap();
    let re = Model::load(&out, trib_model::WeightFormat::Auto).unwrap();
    let again = re.forward_all(&toks, &mut re.new_cache(), None).unwrap();
    assert!(max_abs_diff(&want, &again) < 1e-4);
}

/// Saves a good adapter, lets `break_it` damage it, loads it back.
fn load_damaged(break_it: impl FnOnce(&Path)) -> ModelError {
    load_damaged_with(AdapterLimits::default(), break_it)
}

fn load_damaged_with(limits: AdapterLimits, break_it: impl FnOnce(&Path)) -> ModelError {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 43);
    let out = dir.path().join("adapter");
    save_peft(&trained_adapter(&m), &out).unwrap();
    break_it(&out);
    load_peft(&out, m.config(), &limits).unwrap_err()
}

fn assert_refused(err: ModelError, needle: &str) {
    assert!(
        err.to_string().contains(needle),
        "expected {needle:?} in: {err}"
    );
}

#[test]
fn hostile_adapter_files_are_refused_with_a_precise_reason() {
    assert_refused(
        load_damaged(|d| std::fs::remove_file(d.join(ADAPTER_WEIGHTS_FILE)).unwrap()),
        "missing file",
    );
    assert_refused(
        load_damaged(|d| std::fs::remove_file(d.join(ADAPTER_CONFIG_FILE)).unwrap()),
        ADAPTER_CONFIG_FILE,
    );
    assert_refused(
        load_damaged(|d| std::fs::write(d.join(ADAPTER_CONFIG_FILE), b"{not json").unwrap()),
        "invalid JSON",
    );
    assert_refused(
        load_damaged(|d| {
            std::fs::write(d.join(ADAPTER_WEIGHTS_FILE), b"\x08\0\0\0\0\0\0\0{}").unwrap()
        }),
        "not a readable safetensors",
    );
    let edit = |key: &'static str, value: serde_json::Value| {
        move |d: &Path| {
            let mut v = read_json(d);
            v[key] = value;
            write_json(d, &v);
        }
    };
    assert_refused(
        load_damaged(edit("use_dora", serde_json::json!(true))),
        "DoRA",
    );
    assert_refused(load_damaged(edit("bias", serde_json::json!("all"))), "bias");
    assert_refused(
        load_damaged(edit("peft_type", serde_json::json!("IA3"))),
        "IA3",
    );
    assert_refused(
        load_damaged(edit("target_modules", serde_json::json!(".*proj"))),
        "regex",
    );
    assert_refused(
        load_damaged(edit(
            "target_modules",
            serde_json::json!(["q_proj", "dense_h_to_4h"]),
        )),
        "dense_h_to_4h",
    );
    assert_refused(
        load_damaged(edit("modules_to_save", serde_json::json!(["lm_head"]))),
        "modules_to_save",
    );
    assert_refused(
        load_damaged(edit("r", serde_json::json!(100_000))),
        "above the limit",
    );
    // Rank in the config that does not match the tensors.
    assert_refused(load_damaged(edit("r", serde_json::json!(8))), "has shape");
}

#[test]
fn hostile_adapter_tensors_are_refused_with_the_tensor_named() {
    let key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    let cpu = candle_core::Device::Cpu;
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                let mut v: Vec<f32> = t[key].flatten_all().unwrap().to_vec1().unwrap();
                v[3] = f32::NAN;
                t.insert(
                    key.into(),
                    Tensor::from_vec(v, t[key].dims(), &cpu).unwrap(),
                );
            })
        }),
        "non-finite",
    );
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                t.insert(
                    key.into(),
                    Tensor::zeros((4, 7), candle_core::DType::F32, &cpu).unwrap(),
                );
            })
        }),
        "has shape [4, 7]",
    );
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                t.remove(key);
            })
        }),
        &format!("missing tensor `{key}`"),
    );
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                t.insert(
                    "base_model.model.model.embed_tokens.weight".into(),
                    Tensor::zeros((2, 2), candle_core::DType::F32, &cpu).unwrap(),
                );
            })
        }),
        "embed_tokens",
    );
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                let v = t[key].clone();
                t.insert(
                    "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight".into(),
                    v,
                );
            })
        }),
        "layer 9 does not exist",
    );
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                let v = t["base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"].clone();
                t.insert(
                    "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight".into(),
                    v,
                );
            })
        }),
        "not listed in target_modules",
    );
    assert_refused(
        load_damaged(|d| {
            rewrite_tensors(d, |t| {
                let v = t[key].clone();
                t.insert(
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector".into(),
                    v,
                );
            })
        }),
        "DoRA",
    );
    let tiny_limit = AdapterLimits {
        max_rank: 256,
        max_file_bytes: 1000,
    };
    assert_refused(
        load_damaged_with(tiny_limit, |_| {}),
        "above the limit of 1000",
    );
}

#[test]
fn an_adapter_for_another_base_model_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_hf(dir.path(), 44);
    let out = dir.path().join("adapter");
    save_peft(&trained_adapter(&m), &out).unwrap();
    let mut other = m.config().clone();
    other.hidden_size = 128;
    other.head_dim = 32;
    let err = load_peft(&out, &other, &AdapterLimits::default()).unwrap_err();
    assert_refused(err, "has shape");
    // Applying an adapter built for more layers fails cleanly too.
    let mut deeper = m.config().clone();
    deeper.num_layers = 3;
    let big = LoraAdapter::init(LoraConfig::default(), &deeper, "x", 1).unwrap();
    let err = m
        .forward_all(&[5, 6], &mut m.new_cache(), Some(&big))
        .unwrap_err();
    assert!(matches!(err, ModelError::AdapterMismatch(_)), "{err}");
}
