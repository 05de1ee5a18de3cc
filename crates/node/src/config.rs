//! The node's configuration file, `<home>/config.toml`.
//!
//! Every key has a default (`#[serde(default)]`), so an empty file is a valid
//! configuration and `trib init` writes the defaults out in full for the user
//! to edit. Unknown keys are an error, so a typo is not silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration file that does not parse or has a bad value.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong: the unknown key, the value out of range.
    pub reason: String,
}

/// The node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Address the HTTP API listens on. Port 0 picks a free port (the bound
    /// address is printed and logged).
    pub listen: SocketAddr,
    /// Milliseconds between produced blocks (a block is also produced as soon
    /// as the mempool holds a full block of transactions). Empty intervals
    /// produce no block.
    pub block_interval_ms: u64,
    /// Most transactions waiting in the mempool; past it, submissions get
    /// 503 mempool-full.
    pub mempool_max_txs: usize,
    /// Largest accepted HTTP request body, in bytes (a hex-encoded transaction
    /// is twice its canonical size). Larger bodies get 413.
    pub max_request_bytes: usize,
    /// Name of the keystore key that signs blocks (it must be the genesis
    /// producer; it is stored unencrypted so the node can start unattended).
    pub producer_key: String,
    /// Base model the OpenAI-compatible endpoints serve (a GGUF file or a
    /// Hugging Face directory). Unset: the node serves no inference.
    /// Adapters are read from `<home>/adapters/<ADAPTER_ID>/` unless
    /// `[serving] adapter_store` names an object store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<std::path::PathBuf>,
    /// Browser origins (`https://app.example`) allowed to call the API
    /// across origins (CORS). Empty: none; browsers then refuse every
    /// cross-origin call, and the node sends no `Access-Control-Allow-*`.
    pub cors_origins: Vec<String>,
    /// The OpenLoRA engine: adapter store, adapter cache and limits.
    pub serving: ServingConfig,
    /// Datanets: where contributed files are kept.
    pub datanets: DatanetsConfig,
    /// Training jobs: how many each owner may have, which host files they
    /// may read.
    pub jobs: JobsConfig,
}

/// The `[jobs]` table: limits of the node's training-job queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Most queued plus running jobs one owner may have at once; past it,
    /// submissions get 429 until one ends.
    pub max_active_per_owner: usize,
    /// Host directories whose `.txt`/`.jsonl` files jobs may train on (a
    /// `[data] sources` entry that is a path). Empty (the default): jobs
    /// train only on datanet versions their owner may read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_dirs: Vec<std::path::PathBuf>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            max_active_per_owner: 2,
            data_dirs: Vec::new(),
        }
    }
}

impl JobsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_active_per_owner == 0 {
            return Err("[jobs] max_active_per_owner must be at least 1".into());
        }
        if let Some(d) = self.data_dirs.iter().find(|d| d.is_relative()) {
            return Err(format!(
                "[jobs] data_dirs: {} is not an absolute path",
                d.display()
            ));
        }
        Ok(())
    }
}

/// The `[datanets]` table: where the raw contributed files go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatanetsConfig {
    /// An object store URL for contributed files (named by their blake3
    /// hash), in the same syntax as `[serving] adapter_store`:
    /// `s3://bucket/prefix` (nodes built with trib-datanet's `s3` feature),
    /// `file:///absolute/dir` or `memory:///`. The environment variable
    /// `TRIB_DATANET_BLOBS`, when set and not empty, takes precedence.
    /// Unset: `<home>/datanets/blobs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_store: Option<String>,
    /// The store's backend options (`aws_region`, `aws_endpoint`, …); see
    /// [`store_options`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub blob_store_options: BTreeMap<String, String>,
}

impl DatanetsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.blob_store.as_deref() == Some("") {
            return Err("[datanets] blob_store is empty: give a URL or leave it out".into());
        }
        Ok(())
    }
}

/// The backend options an object store of the node opens with, the same
/// for the adapter store and the datanet content store: the `AWS_*`
/// variables among `vars`, lower-cased (`AWS_REGION` → `aws_region`), then
/// the config file's `*_options` table, whose keys win.
pub(crate) fn store_options(
    configured: &BTreeMap<String, String>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let mut options = trib_objstore::aws_env_options(vars);
    options.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    options
}

/// The `[serving]` table: where adapters come from, how many bytes of them
/// stay loaded, and the engine's limits and back-pressure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServingConfig {
    /// An object store URL holding the adapters as `<ADAPTER_ID>/` folders
    /// of PEFT files, for several nodes sharing one adapter store:
    /// `s3://bucket/prefix` (nodes built with trib-serve's `s3` feature;
    /// options from the `AWS_*` variables: `AWS_ENDPOINT`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`),
    /// `file:///absolute/dir` or `memory:///`. Unset: `<home>/adapters`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_store: Option<String>,
    /// The adapter store's backend options (`aws_region`, `aws_endpoint`,
    /// …), over those the `AWS_*` variables give; see [`store_options`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub adapter_store_options: BTreeMap<String, String>,
    /// Bytes of loaded adapter weights kept in memory (least recently used
    /// evicted first).
    pub adapter_cache_bytes: u64,
    /// Sequences decoded together at most; more requests wait in the queue.
    pub max_running: usize,
    /// Requests waiting at most; one more gets HTTP 429.
    pub max_queued: usize,
    /// Tokens per scheduler step: one per running decode, the rest for
    /// prompt prefill chunks (so a long prompt never stalls the decodes).
    pub step_token_budget: usize,
    /// Completion length when a request sets no `max_tokens` (capped by
    /// what the context has left).
    pub default_max_tokens: usize,
    /// Requests per minute per API key (its account); 0: no rate limit.
    /// Over the rate: HTTP 429 with `Retry-After`.
    pub rate_limit_per_minute: u32,
    /// Requests a key may make at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Largest prompt in bytes (text, or the chat messages), refused with
    /// HTTP 400 before it is tokenized or its fee checked.
    pub max_prompt_bytes: usize,
    /// Most `stop` strings a request may give (HTTP 400 past it).
    pub max_stop_strings: usize,
    /// Longest `stop` string in bytes (HTTP 400 past it).
    pub max_stop_bytes: usize,
}

impl Default for ServingConfig {
    fn default() -> Self {
        let limits = trib_serve::EngineLimits::default();
        ServingConfig {
            adapter_store: None,
            adapter_store_options: BTreeMap::new(),
            adapter_cache_bytes: trib_serve::CacheConfig::default().capacity_bytes as u64,
            max_running: limits.max_running,
            max_queued: limits.max_queued,
            step_token_budget: limits.step_token_budget,
            default_max_tokens: limits.default_max_tokens,
            rate_limit_per_minute: 0,
            rate_limit_burst: limits.rate_burst as u32,
            max_prompt_bytes: limits.max_prompt_bytes,
            max_stop_strings: limits.max_stop_strings,
            max_stop_bytes: limits.max_stop_bytes,
        }
    }
}

impl ServingConfig {
    /// The engine's configuration.
    pub(crate) fn engine_config(&self) -> trib_serve::EngineConfig {
        trib_serve::EngineConfig {
            limits: trib_serve::EngineLimits {
                max_running: self.max_running,
                max_queued: self.max_queued,
                step_token_budget: self.step_token_budget,
                default_max_tokens: self.default_max_tokens,
                rate_per_sec: f64::from(self.rate_limit_per_minute) / 60.0,
                rate_burst: f64::from(self.rate_limit_burst),
                max_prompt_bytes: self.max_prompt_bytes,
                max_stop_strings: self.max_stop_strings,
                max_stop_bytes: self.max_stop_bytes,
            },
            cache: trib_serve::CacheConfig {
                capacity_bytes: usize::try_from(self.adapter_cache_bytes).unwrap_or(usize::MAX),
                ..trib_serve::CacheConfig::default()
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("max_running", self.max_running),
            ("max_queued", self.max_queued),
            ("step_token_budget", self.step_token_budget),
            ("default_max_tokens", self.default_max_tokens),
            ("max_prompt_bytes", self.max_prompt_bytes),
        ] {
            if value == 0 {
                return Err(format!("[serving] {key} must be at least 1"));
            }
        }
        if self.adapter_cache_bytes == 0 {
            return Err("[serving] adapter_cache_bytes must be at least 1".into());
        }
        if self.rate_limit_per_minute > 0 && self.rate_limit_burst == 0 {
            return Err(
                "[serving] rate_limit_burst must be at least 1 when rate_limit_per_minute is set"
                    .into(),
            );
        }
        if self.adapter_store.as_deref() == Some("") {
            return Err("[serving] adapter_store is empty: give a URL or leave it out".into());
        }
        Ok(())
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            block_interval_ms: 1_000,
            mempool_max_txs: 20_000,
            max_request_bytes: 256 * 1024,
            producer_key: "producer".to_string(),
            base_model: None,
            cors_origins: Vec::new(),
            serving: ServingConfig::default(),
            datanets: DatanetsConfig::default(),
            jobs: JobsConfig::default(),
        }
    }
}

impl NodeConfig {
    /// The block interval as a duration.
    pub fn block_interval(&self) -> Duration {
        Duration::from_millis(self.block_interval_ms)
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_interval_ms == 0 {
            return Err("block_interval_ms must be at least 1".into());
        }
        if self.mempool_max_txs == 0 {
            return Err("mempool_max_txs must be at least 1".into());
        }
        if self.max_request_bytes < 1024 {
            return Err("max_request_bytes must be at least 1024".into());
        }
        for origin in &self.cors_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return Err(format!(
                    "cors_origins: `{origin}` is not an origin: give scheme and host (and port), \
                     like `https://app.example` (no path, no trailing slash)"
                ));
            }
        }
        self.serving.validate()?;
        self.datanets.validate()?;
        self.jobs.validate()
    }

    /// Parses and validates TOML text; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// The TOML text `trib init` writes: every key, with a comment. The
    /// `[serving]`, `[datanets]` and `[jobs]` tables are written only when they differ
    /// from the defaults (keys appended to the file then still land outside
    /// them).
    pub fn to_toml(&self) -> String {
        /// A table under its name, sub-tables (`*_options`) included.
        #[derive(Serialize)]
        struct Table<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            serving: Option<&'a ServingConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            datanets: Option<&'a DatanetsConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            jobs: Option<&'a JobsConfig>,
        }
        let mut text = self.top_level_toml();
        if self.serving != ServingConfig::default() {
            text.push_str("\n# OpenLoRA serving: adapter store, adapter cache and limits.\n");
            let table = Table {
                serving: Some(&self.serving),
                datanets: None,
                jobs: None,
            };
            text.push_str(&toml::to_string(&table).expect("the serving table serialises"));
        }
        if self.datanets != DatanetsConfig::default() {
            text.push_str("\n# Datanets: where contributed files are kept.\n");
            let table = Table {
                serving: None,
                datanets: Some(&self.datanets),
                jobs: None,
            };
            text.push_str(&toml::to_string(&table).expect("the datanets table serialises"));
        }
        if self.jobs != JobsConfig::default() {
            text.push_str("\n# Training jobs: per-owner limit, host directories jobs may read.\n");
            let table = Table {
                serving: None,
                datanets: None,
                jobs: Some(&self.jobs),
            };
            text.push_str(&toml::to_string(&table).expect("the jobs table serialises"));
        }
        text
    }

    fn top_level_toml(&self) -> String {
        format!(
            "# Tributary node configuration. Every key is optional (defaults shown by `trib init`).\n\
             # HTTP API address (port 0 = any free port).\n\
             listen = \"{}\"\n\
             # Milliseconds between blocks; a full mempool also triggers a block.\n\
             block_interval_ms = {}\n\
             # Most pending transactions; past it, POST /v1/tx answers 503.\n\
             mempool_max_txs = {}\n\
             # Largest HTTP request body in bytes (413 past it).\n\
             max_request_bytes = {}\n\
             # Keystore key that signs blocks (must be the genesis producer).\n\
             producer_key = \"{}\"\n\
             # Browser origins allowed to call the API across origins (CORS); empty: none.\n\
             cors_origins = {}\n\
             # Base model served on /v1/completions and /v1/chat/completions (unset: no serving).\n\
             {}\n",
            self.listen, self.block_interval_ms, self.mempool_max_txs, self.max_request_bytes, self.producer_key,
            toml::Value::Array(self.cors_origins.iter().cloned().map(toml::Value::String).collect()),
            match &self.base_model {
                Some(p) => format!("base_model = {}", toml::Value::String(p.display().to_string())),
                None => "# base_model = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"".to_string(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_must_be_origins_and_are_written_back() {
        let cfg = NodeConfig::from_toml("cors_origins = [\"https://app.example\"]", Path::new("c"))
            .unwrap();
        assert_eq!(cfg.cors_origins, vec!["https://app.example".to_string()]);
        assert_eq!(
            NodeConfig::from_toml(&cfg.to_toml(), Path::new("c")).unwrap(),
            cfg
        );
        for bad in ["app.example", "https://app.example/", "*"] {
            let e = NodeConfig::from_toml(&format!("cors_origins = [\"{bad}\"]"), Path::new("c"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not an origin"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_empty_file_is_the_default_configuration() {
        assert_eq!(
            NodeConfig::from_toml("", Path::new("c")).unwrap(),
            NodeConfig::default()
        );
    }

    #[test]
    fn written_config_parses_back_to_itself() {
        let cfg = NodeConfig {
            block_interval_ms: 250,
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(
            NodeConfig::from_toml(&cfg.to_toml(), Path::new("c")).unwrap(),
            cfg
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_problem() {
        let e = NodeConfig::from_toml("blok_interval_ms = 5", Path::new("/h/config.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("blok_interval_ms") && e.contains("/h/config.toml"),
            "{e}"
        );
        let e = NodeConfig::from_toml("block_interval_ms = 0", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("block_interval_ms must be at least 1"), "{e}");
        let e = NodeConfig::from_toml("[serving]\nmax_queued = 0", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[serving] max_queued must be at least 1"), "{e}");
        let e = NodeConfig::from_toml("[serving]\nmax_runing = 3", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_runing"), "{e}");
    }

    #[test]
    fn the_jobs_table_sets_the_owner_cap_and_allowed_dirs_and_round_trips() {
        let cfg = NodeConfig::from_toml(
            "[jobs]\nmax_active_per_owner = 5\ndata_dirs = [\"/srv/corpora\"]",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(cfg.jobs.max_active_per_owner, 5);
        assert_eq!(cfg.jobs.data_dirs, vec![PathBuf::from("/srv/corpora")]);
        assert_eq!(
            NodeConfig::from_toml(&cfg.to_toml(), Path::new("c")).unwrap(),
            cfg
        );
        // The defaults: two active jobs per owner, no host directory.
        let d = JobsConfig::default();
        assert_eq!((d.max_active_per_owner, d.data_dirs.len()), (2, 0));
        for (bad, words) in [
            (
                "[jobs]\nmax_active_per_owner = 0",
                "max_active_per_owner must be at least 1",
            ),
            ("[jobs]\ndata_dirs = [\"corpora\"]", "not an absolute path"),
        ] {
            let e = NodeConfig::from_toml(bad, Path::new("c"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn both_object_stores_take_a_url_and_options_and_round_trip() {
        let cfg = NodeConfig::from_toml(
            "[serving]\nadapter_store = \"s3://models/adapters\"\n\
             [serving.adapter_store_options]\naws_region = \"eu-west-1\"\n\
             [datanets]\nblob_store = \"s3://data/blobs\"\n\
             blob_store_options = { aws_endpoint = \"http://minio:9000\", aws_allow_http = \"true\" }",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(
            cfg.serving.adapter_store.as_deref(),
            Some("s3://models/adapters")
        );
        assert_eq!(cfg.serving.adapter_store_options["aws_region"], "eu-west-1");
        assert_eq!(cfg.datanets.blob_store.as_deref(), Some("s3://data/blobs"));
        assert_eq!(cfg.datanets.blob_store_options.len(), 2);
        assert_eq!(
            NodeConfig::from_toml(&cfg.to_toml(), Path::new("c")).unwrap(),
            cfg
        );
        let e = NodeConfig::from_toml("[datanets]\nblob_store = \"\"", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[datanets] blob_store is empty"), "{e}");
        // The environment's AWS_* variables, then the file's options, which win.
        let vars = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", "http://env"),
            ("HOME", "/h"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let opts = store_options(&cfg.serving.adapter_store_options, vars);
        assert_eq!(
            opts.into_iter().collect::<Vec<_>>(),
            [("aws_endpoint", "http://env"), ("aws_region", "eu-west-1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn the_serving_table_sets_the_engine_limits_and_round_trips() {
        let cfg = NodeConfig::from_toml(
            "[serving]\nadapter_store = \"memory:///\"\nmax_running = 4\nmax_queued = 9\n\
             rate_limit_per_minute = 30\nrate_limit_burst = 2\nadapter_cache_bytes = 1048576",
            Path::new("c"),
        )
        .unwrap();
        let engine = cfg.serving.engine_config();
        assert_eq!(engine.limits.max_running, 4);
        assert_eq!(engine.limits.max_queued, 9);
        assert_eq!(engine.limits.rate_per_sec, 0.5);
        assert_eq!(engine.limits.rate_burst, 2.0);
        assert_eq!(engine.cache.capacity_bytes, 1 << 20);
        // Untouched keys keep the engine's defaults.
        let defaults = trib_serve::EngineLimits::default();
        assert_eq!(engine.limits.step_token_budget, defaults.step_token_budget);
        assert_eq!(
            NodeConfig::default().serving.engine_config().limits,
            trib_serve::EngineLimits {
                rate_per_sec: 0.0,
                ..defaults
            }
        );
        assert_eq!(
            NodeConfig::from_toml(&cfg.to_toml(), Path::new("c")).unwrap(),
            cfg
        );
        // The defaults write no table, so a key appended later is top-level.
        let text = format!(
            "{}base_model = \"m.gguf\"\n",
            NodeConfig::default().to_toml()
        );
        assert!(!text.contains("[serving]"));
        assert!(NodeConfig::from_toml(&text, Path::new("c"))
            .unwrap()
            .base_model
            .is_some());
    }
}
