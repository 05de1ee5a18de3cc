//! The node's configuration file, `<home>/config.toml`.
//!
//! Every key has a default (`#[serde(default)]`), so an empty file is a valid
//! configuration and `trib init` writes the defaults out in full for the user
//! to edit. Unknown keys are an error, so a typo is not silently ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::home::HomeError;

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
    /// Adapters are read from `<home>/adapters/<ADAPTER_ID>/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<std::path::PathBuf>,
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
        Ok(())
    }

    /// Parses and validates TOML text; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, HomeError> {
        let bad = |reason: String| HomeError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// The TOML text `trib init` writes: every key, with a comment.
    pub fn to_toml(&self) -> String {
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
             # Base model served on /v1/completions and /v1/chat/completions (unset: no serving).\n\
             {}\n",
            self.listen, self.block_interval_ms, self.mempool_max_txs, self.max_request_bytes, self.producer_key,
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
    }
}
