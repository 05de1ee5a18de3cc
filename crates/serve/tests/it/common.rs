//! Shared fixtures: a tiny GGUF model and random PEFT adapters in a store directory.

use std::path::PathBuf;
use std::sync::Arc;

use trib_model::{GgmlDType, LlamaConfig, TinySpec};
use trib_serve::{
    AdapterName, BatchModel, CacheConfig, Engine, EngineConfig, EngineHandle, EngineLimits,
    GenerateRequest, LocalDirStore, Prompt, RandomAdapter, SamplingParams, ServedModel,
};

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub model: Arc<ServedModel>,
    pub cfg: LlamaConfig,
    pub store_root: PathBuf,
}

impl Fixture {
    /// A tiny Llama (2 layers, width 64, Q8_0 projections) written as GGUF and loaded back.
    pub fn tiny() -> Self {
        Self::tiny_with(GgmlDType::Q8_0)
    }

    /// The tiny Llama with projections stored as `dtype`.
    pub fn tiny_with(dtype: GgmlDType) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        trib_model::write_tiny_gguf(&path, &TinySpec::default(), 11, dtype).unwrap();
        let model = ServedModel::load(&path).unwrap();
        let cfg = model.model().config().clone();
        let store_root = dir.path().join("adapters");
        std::fs::create_dir_all(&store_root).unwrap();
        Self {
            _dir: dir,
            model: Arc::new(model),
            cfg,
            store_root,
        }
    }

    /// A random r8 adapter on every projection, strong enough to change the
    /// tiny model's greedy outputs.
    pub fn spec(&self, seed: u64) -> RandomAdapter {
        RandomAdapter {
            b_scale: 2.0,
            targets: trib_model::LoraTarget::ALL.to_vec(),
            ..RandomAdapter::qv_r8(self.model.name(), seed)
        }
    }

    /// Writes `spec` as PEFT files under the store root as `name`.
    pub fn add(&self, name: &str, spec: &RandomAdapter) -> AdapterName {
        spec.write(&self.store_root.join(name), &self.cfg).unwrap();
        AdapterName::parse(name).unwrap()
    }

    pub fn engine(&self, limits: EngineLimits, capacity_bytes: usize) -> EngineHandle {
        Engine::start(
            self.model.clone(),
            Arc::new(LocalDirStore::new(&self.store_root)),
            EngineConfig {
                limits,
                cache: CacheConfig {
                    capacity_bytes,
                    loader_threads: 2,
                },
            },
        )
    }
}

pub fn greedy(prompt: &str, adapter: Option<&AdapterName>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Text(prompt.into()),
        adapter: adapter.cloned(),
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        stop: vec![],
        rate_key: None,
    }
}
