//! A PEFT adapter directory as an uploader or a remote adapter store hands it
//! to the serving node: `adapter_config.json` and
//! `adapter_model.safetensors`, read by `trib_model::load_peft` against a
//! small Llama configuration. The input is `u32 LE config length`, the
//! config bytes, then the safetensors bytes (`fuzz/corpus/peft_adapter/`
//! holds real adapters in this framing). Loading must never panic nor
//! allocate beyond what the file holds; an adapter that loads must fit the
//! model it was loaded against.
//!
//! With `TRIB_FUZZ_WRITE_SEEDS=DIR` the target writes seed inputs (adapters
//! saved by `save_peft` for the same configuration) into DIR and exits,
//! before fuzzing starts.
#![no_main]

#[path = "seeds/hook.rs"]
mod seeds;
#[path = "seeds/tiny.rs"]
mod tiny;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trib_model::{
    load_peft, save_peft, AdapterLimits, LlamaConfig, LoraAdapter, LoraConfig, LoraTarget,
    ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
};

fn model() -> LlamaConfig {
    tiny::spec().config()
}

/// Limits small enough that the fuzzer reaches the checks.
fn limits() -> AdapterLimits {
    AdapterLimits {
        max_rank: 16,
        max_file_bytes: 1 << 20,
    }
}

/// One directory per process, rewritten for every input.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("trib-fuzz-peft-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

fn frame(config: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = (config.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(config);
    out.extend_from_slice(weights);
    out
}

fn write_seeds(out: &std::path::Path) {
    let cfg = model();
    let cases: [(usize, &[LoraTarget], bool); 3] = [
        (2, &[LoraTarget::QProj, LoraTarget::VProj], false),
        (4, &LoraTarget::ALL, true),
        (1, &[LoraTarget::DownProj], false),
    ];
    for (i, (r, targets, rslora)) in cases.into_iter().enumerate() {
        let lora = LoraConfig {
            r,
            alpha: 2.0 * r as f64,
            dropout: 0.0,
            targets: targets.to_vec(),
            use_rslora: rslora,
        };
        let adapter = LoraAdapter::init(lora, &cfg, "tiny", i as u64).expect("adapter");
        let d = out.join(format!("adapter-{i}"));
        save_peft(&adapter, &d).expect("save");
        let c = std::fs::read(d.join(ADAPTER_CONFIG_FILE)).expect("config");
        let w = std::fs::read(d.join(ADAPTER_WEIGHTS_FILE)).expect("weights");
        std::fs::remove_dir_all(&d).expect("clean");
        std::fs::write(out.join(format!("seed-peft-{i}")), frame(&c, &w)).expect("seed");
    }
}

fuzz_target!(
    init: seeds::on_request(write_seeds),
    |data: &[u8]| {
        let Some((len, rest)) = data.split_first_chunk::<4>() else {
            return;
        };
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        let (config, weights) = rest.split_at(len);
        let d = dir();
        std::fs::write(d.join(ADAPTER_CONFIG_FILE), config).expect("write config");
        std::fs::write(d.join(ADAPTER_WEIGHTS_FILE), weights).expect("write weights");
        let cfg = model();
        if let Ok(adapter) = load_peft(d, &cfg, &limits()) {
            adapter.check_fits(&cfg).expect("a loaded adapter fits its model");
            assert!(adapter.config().r <= limits().max_rank);
        }
    }
);
