//! Adapters on disk in the Hugging Face PEFT format, so they interoperate with
//! PEFT, vLLM and LoRAX: `adapter_config.json` and `adapter_model.safetensors`
//! with keys `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`
//! (`[r, in]`) and `….lora_B.weight` (`[out, r]`), `mlp.*` for gate/up/down.
//!
//! Loading treats every adapter as hostile: it checks sizes before reading,
//! every JSON field we rely on, every tensor name, shape and value, and
//! refuses features we do not run (DoRA, biases, full `embed_tokens` /
//! `lm_head` tensors, regex targets, per-layer patterns) with an error that
//! names the offending entry. Nothing is half-built on failure.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use trib_types::{AdapterId, Hash};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::lora::{LoraAdapter, LoraConfig, LoraPair, LoraTarget};

/// File holding the adapter's configuration.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File holding the adapter's tensors.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Limits applied when loading untrusted adapters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdapterLimits {
    /// Highest rank accepted.
    pub max_rank: usize,
    /// Largest `adapter_model.safetensors` accepted, bytes.
    pub max_file_bytes: u64,
}

impl Default for AdapterLimits {
    fn default() -> Self {
        Self {
            max_rank: 256,
            max_file_bytes: 1 << 30,
        }
    }
}

/// `adapter_config.json` as PEFT writes it (the fields we read or refuse).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PeftConfigFile {
    peft_type: String,
    r: usize,
    lora_alpha: f64,
    lora_dropout: f64,
    target_modules: Vec<String>,
    bias: String,
    task_type: String,
    base_model_name_or_path: String,
    use_rslora: bool,
    use_dora: bool,
    fan_in_fan_out: bool,
    inference_mode: bool,
    modules_to_save: Option<Vec<String>>,
    layers_to_transform: Option<Vec<usize>>,
    rank_pattern: BTreeMap<String, serde_json::Value>,
    alpha_pattern: BTreeMap<String, serde_json::Value>,
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`
/// (temporary names, then renamed) and returns the adapter's content id.
pub fn save_peft(adapter: &LoraAdapter, dir: &Path) -> Result<AdapterId> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let c = adapter.config();
    let mut targets: Vec<String> = c.targets.iter().map(|t| t.name().to_string()).collect();
    targets.sort();
    let file = PeftConfigFile {
        peft_type: "LORA".into(),
        r: c.r,
        lora_alpha: c.alpha,
        lora_dropout: c.dropout,
        target_modules: targets,
        bias: "none".into(),
        task_type: "CAUSAL_LM".into(),
        base_model_name_or_path: adapter.base_model().to_string(),
        use_rslora: c.use_rslora,
        use_dora: false,
        fan_in_fan_out: false,
        inference_mode: true,
        modules_to_save: None,
        layers_to_transform: None,
        rank_pattern: BTreeMap::new(),
        alpha_pattern: BTreeMap::new(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| ModelError::Config(e.to_string()))?;
    let tensors: HashMap<String, Tensor> = adapter
        .named_tensors()
        .into_iter()
        .map(|(k, t)| Ok((k, t.contiguous()?)))
        .collect::<Result<_>>()?;
    let tmp_w = dir.join(format!(".{ADAPTER_WEIGHTS_FILE}.tmp"));
    let tmp_c = dir.join(format!(".{ADAPTER_CONFIG_FILE}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp_w)?;
    std::fs::write(&tmp_c, &json).map_err(|e| ModelError::io(&tmp_c, e))?;
    let wpath = dir.join(ADAPTER_WEIGHTS_FILE);
    let cpath = dir.join(ADAPTER_CONFIG_FILE);
    std::fs::rename(&tmp_w, &wpath).map_err(|e| ModelError::io(&wpath, e))?;
    std::fs::rename(&tmp_c, &cpath).map_err(|e| ModelError::io(&cpath, e))?;
    let id = adapter_content_hash(dir)?;
    tracing::info!(target: "trib::model", dir = %dir.display(), %id, params = adapter.num_parameters(), "saved PEFT adapter");
    Ok(id)
}

/// blake3 (context "tributary adapter v1") over the two PEFT files.
pub fn adapter_content_hash(dir: &Path) -> Result<AdapterId> {
    let mut h = blake3::Hasher::new_derive_key("tributary adapter v1");
    for name in [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| ModelError::io(&p, e))?;
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(AdapterId(Hash(*h.finalize().as_bytes())))
}

fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    if !path.is_file() {
        return Err(ModelError::MissingFile(path.to_path_buf()));
    }
    let len = std::fs::metadata(path)
        .map_err(|e| ModelError::io(path, e))?
        .len();
    if len > limit {
        return Err(ModelError::adapter(
            path,
            format!("{what} is {len} bytes, above the limit of {limit}"),
        ));
    }
    std::fs::read(path).map_err(|e| ModelError::io(path, e))
}

fn parse_config(path: &Path, bytes: &[u8], limits: &AdapterLimits) -> Result<(LoraConfig, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let bad = |m: String| Err(ModelError::adapter(path, m));
    let obj = match v.as_object() {
        Some(o) => o,
        None => return bad("adapter_config.json is not a JSON object".into()),
    };
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    match get("peft_type").and_then(|v| v.as_str()) {
        Some("LORA") => {}
        Some(other) => return bad(format!("peft_type `{other}` is not supported (only LORA)")),
        None => return bad("peft_type is missing".into()),
    }
    if let Some(t) = get("task_type").and_then(|v| v.as_str()) {
        if t != "CAUSAL_LM" {
            return bad(format!("task_type `{t}` is not supported (only CAUSAL_LM)"));
        }
    }
    let r = match get("r").and_then(|v| v.as_u64()) {
        Some(r) if r >= 1 => r as usize,
        _ => return bad("r must be a positive integer".into()),
    };
    if r > limits.max_rank {
        return bad(format!(
            "rank {r} is above the limit of {}",
            limits.max_rank
        ));
    }
    let alpha = match get("lora_alpha") {
        None => 8.0, // PEFT's default
        Some(a) => match a.as_f64() {
            Some(a) if a.is_finite() && a > 0.0 => a,
            _ => return bad(format!("lora_alpha {a} must be a positive number")),
        },
    };
    let dropout = get("lora_dropout").and_then(|v| v.as_f64()).unwrap_or(0.0);
    if get("use_dora").and_then(|v| v.as_bool()) == Some(true) {
        return bad("DoRA adapters (use_dora: true) are not supported".into());
    }
    if let Some(b) = get("bias").and_then(|v| v.as_str()) {
        if b != "none" {
            return bad(format!("bias `{b}` is not supported (only \"none\")"));
        }
    }
    if get("fan_in_fan_out").and_then(|v| v.as_bool()) == Some(true) {
        return bad("fan_in_fan_out: true is not supported (Llama uses [out, in] weights)".into());
    }
    if let Some(m) = get("modules_to_save") {
        if m.as_array().is_none_or(|a| !a.is_empty()) {
            return bad(format!(
                "modules_to_save {m} is not supported (full-tensor modules)"
            ));
        }
    }
    if get("layers_to_transform").is_some() {
        return bad("layers_to_transform is not supported".into());
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if let Some(p) = get(k) {
            if p.as_object().is_none_or(|o| !o.is_empty()) {
                return bad(format!("{k} is not supported"));
            }
        }
    }
    let targets = match get("target_modules") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|t| {
                let s = t.as_str().ok_or_else(|| {
                    ModelError::adapter(path, format!("target module {t} is not a string"))
                })?;
                s.parse::<LoraTarget>()
                    .map_err(|e| ModelError::adapter(path, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(serde_json::Value::String(s)) => {
            return bad(format!(
                "target_modules as a regex (`{s}`) is not supported; list the module names"
            ))
        }
        _ => return bad("target_modules is missing".into()),
    };
    let mut targets = targets;
    targets.sort();
    targets.dedup();
    let config = LoraConfig {
        r,
        alpha,
        dropout: dropout.clamp(0.0, 0.99),
        targets,
        use_rslora: get("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    config
        .validate()
        .map_err(|e| ModelError::adapter(path, e.to_string()))?;
    let base = get("base_model_name_or_path")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    Ok((config, base))
}

/// Which pair member a tensor is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Half {
    A,
    B,
}

fn parse_key(key: &str, path: &Path, num_layers: usize) -> Result<(usize, LoraTarget, Half)> {
    let bad = |m: String| ModelError::adapter(path, m);
    if key.contains("embed_tokens") || key.contains("lm_head") {
        return Err(bad(format!(
            "tensor `{key}`: full embed_tokens / lm_head tensors are not supported"
        )));
    }
    if key.contains("lora_magnitude_vector") {
        return Err(bad(format!(
            "tensor `{key}`: DoRA magnitude vectors are not supported"
        )));
    }
    if key.ends_with(".bias") {
        return Err(bad(format!(
            "tensor `{key}`: LoRA biases are not supported"
        )));
    }
    let rest = key
        .strip_prefix("base_model.model.model.layers.")
        .ok_or_else(|| bad(format!("unknown tensor `{key}`")))?;
    let parts: Vec<&str> = rest.split('.').collect();
    // N, parent, module, lora_X, weight
    if parts.len() != 5 || parts[4] != "weight" {
        return Err(bad(format!("unknown tensor `{key}`")));
    }
    let layer: usize = parts[0].parse().map_err(|_| {
        bad(format!(
            "tensor `{key}`: layer `{}` is not a number",
            parts[0]
        ))
    })?;
    if layer >= num_layers {
        return Err(bad(format!(
            "tensor `{key}`: layer {layer} does not exist (the base model has {num_layers})"
        )));
    }
    let target: LoraTarget = parts[2]
        .parse()
        .map_err(|_| bad(format!("tensor `{key}`: unknown module `{}`", parts[2])))?;
    if target.parent() != parts[1] {
        return Err(bad(format!(
            "tensor `{key}`: `{}` is not under `{}`",
            parts[2], parts[1]
        )));
    }
    let half = match parts[3] {
        "lora_A" => Half::A,
        "lora_B" => Half::B,
        other => return Err(bad(format!("tensor `{key}`: unknown part `{other}`"))),
    };
    Ok((layer, target, half))
}

/// Loads and validates a PEFT adapter directory against a base model's
/// configuration.
pub fn load_peft(dir: &Path, model: &LlamaConfig, limits: &AdapterLimits) -> Result<LoraAdapter> {
    if !dir.is_dir() {
        return Err(ModelError::MissingFile(dir.to_path_buf()));
    }
    let cpath = dir.join(ADAPTER_CONFIG_FILE);
    let wpath: PathBuf = dir.join(ADAPTER_WEIGHTS_FILE);
    let cbytes = read_limited(&cpath, MAX_CONFIG_BYTES, ADAPTER_CONFIG_FILE)?;
    let (config, base) = parse_config(&cpath, &cbytes, limits)?;
    let wbytes = read_limited(&wpath, limits.max_file_bytes, ADAPTER_WEIGHTS_FILE)?;
    let tensors = candle_core::safetensors::load_buffer(&wbytes, &Device::Cpu).map_err(|e| {
        ModelError::adapter(&wpath, format!("not a readable safetensors file: {e}"))
    })?;
    let mut found: HashMap<(usize, LoraTarget, bool), Tensor> = HashMap::new();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        let (layer, target, half) = parse_key(key, &wpath, model.num_layers)?;
        if !config.targets.contains(&target) {
            return Err(ModelError::adapter(
                &wpath,
                format!("tensor `{key}`: module {target} is not listed in target_modules"),
            ));
        }
        let t = tensors[key].to_dtype(DType::F32)?;
        let (inp, out) = target.dims(model);
        let expected = match half {
            Half::A => [config.r, inp],
            Half::B => [out, config.r],
        };
        if t.dims() != expected {
            return Err(ModelError::adapter(
                &wpath,
                format!(
                    "tensor `{key}` has shape {:?}, the base model needs {:?} (r = {})",
                    t.dims(),
                    expected,
                    config.r
                ),
            ));
        }
        let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::adapter(
                &wpath,
                format!(
                    "tensor `{key}` holds a non-finite value ({}) at index {i}",
                    values[i]
                ),
            ));
        }
        found.insert((layer, target, half == Half::A), t);
    }
    let mut layers = Vec::with_capacity(model.num_layers);
    for l in 0..model.num_layers {
        let mut slots: [Option<LoraPair>; 7] = Default::default();
        for &t in &config.targets {
            let mut take = |is_a: bool| {
                found.remove(&(l, t, is_a)).ok_or_else(|| {
                    ModelError::adapter(
                        &wpath,
                        format!(
                            "missing tensor `{}.lora_{}.weight`",
                            LoraAdapter::peft_prefix(l, t),
                            if is_a { "A" } else { "B" }
                        ),
                    )
                })
            };
            let a = take(true)?;
            let b = take(false)?;
            slots[t.index()] = Some(LoraPair {
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
            });
        }
        layers.push(slots);
    }
    let adapter = LoraAdapter::from_parts(config, base, layers);
    tracing::info!(target: "trib::model", dir = %dir.display(), r = adapter.config().r,
        params = adapter.num_parameters(), "loaded PEFT adapter");
    Ok(adapter)
}
