//! The node home directory (default `~/.tributary`).
//!
//! ```text
//! <home>/
//!   config.toml     node settings (NodeConfig)
//!   genesis.json    chain id, producer key, initial allocations, parameters
//!   ledger.redb     the ledger database (trib-ledger)
//!   mempool.journal accepted transactions not yet in a block (0600)
//!   keys/           the keystore, one <name>.json per key (0600)
//! ```
//!
//! `init` builds the whole home in a staging directory beside the target and
//! renames it into place, so a failed init leaves nothing behind and an
//! existing home is never overwritten.
//!
//! A development home (`dev`) takes the short periods of `Params::dev`,
//! except the datanet curation period: the ledger counts it in blocks, so at
//! a short block interval ten blocks would expire every contribution before
//! its owner could curate it. It is set to cover [`DEV_CURATION_SECS`] of
//! wall time at the block interval written to `config.toml`
//! ([`dev_curation_period_blocks`]); a node later run faster
//! (`trib node --block-interval-ms`) shortens it in proportion.
//!
//! Private files: the home directory itself is 0700 (it holds keys, API key
//! hashes, stored prompts and answers, contributed files), and the node
//! writes its secret or personal files owner-only (`crate::private`: files
//! 0600, folders 0700): `apikeys.json`,
//! `receipts/`, `mempool.journal`, the keystore. [`NodeHome::make_private`]
//! tightens a home created by an older version at node start.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use trib_ledger::{Genesis, GenesisError, Ledger, LedgerError, Params};
use trib_types::{Address, Amount};

use crate::config::{ConfigError, NodeConfig};
use crate::keystore::{KeyInfo, Keystore, KeystoreError};

/// OPEN given to the producer key when `init` is given no allocation, so a
/// fresh local chain has funds to move.
pub const DEFAULT_PRODUCER_ALLOCATION: Amount = Amount::open(1_000_000);

const CONFIG_FILE: &str = "config.toml";
const GENESIS_FILE: &str = "genesis.json";
const LEDGER_FILE: &str = "ledger.redb";
const KEYS_DIR: &str = "keys";
const MEMPOOL_JOURNAL_FILE: &str = "mempool.journal";

/// Why a home could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// `init` found an existing, non-empty home.
    #[error("{0} already exists and is not empty: refusing to overwrite it (choose another --home or remove it)")]
    AlreadyExists(PathBuf),
    /// The home has not been initialised (a file is missing).
    #[error("{path} not found: is {home} a node home? (run `trib init --home {home}`)")]
    NotInitialised {
        /// The missing file.
        path: PathBuf,
        /// The home.
        home: PathBuf,
    },
    /// The configuration file does not parse or has a bad value (the
    /// file and the key are named).
    #[error(transparent)]
    BadConfig(#[from] ConfigError),
    /// The genesis file is invalid.
    #[error("genesis file {path}: {source}")]
    BadGenesis {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: GenesisError,
    },
    /// The producer key in the keystore is not the genesis producer.
    #[error("keystore key {name:?} ({address}) is not the genesis block producer")]
    ProducerMismatch {
        /// The configured key name.
        name: String,
        /// Its address.
        address: Address,
    },
    /// A keystore operation failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The ledger could not be created or opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Wall time a development chain leaves an owner to curate a contribution
/// (one hour), at the block interval chosen at init.
pub(crate) const DEV_CURATION_SECS: u64 = 3_600;

/// The curation period, in blocks, of a development home producing a block
/// every `block_interval_ms`: [`DEV_CURATION_SECS`] of blocks, and never
/// fewer than `Params::dev`'s.
pub(crate) fn dev_curation_period_blocks(block_interval_ms: u64) -> u64 {
    (DEV_CURATION_SECS * 1_000)
        .div_ceil(block_interval_ms.max(1))
        .max(Params::dev().datanet_curation_period_blocks)
}

/// What `trib init` should create.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Chain id (default `tributary-local`, or `tributary-dev` with `dev`).
    pub chain_id: Option<String>,
    /// Use [`Params::dev`] (short voting, timelock and unbonding periods) and
    /// genesis time 0.
    pub dev: bool,
    /// Initial balances; when empty the producer key gets
    /// [`DEFAULT_PRODUCER_ALLOCATION`].
    pub allocations: Vec<(Address, Amount)>,
    /// Parameters overriding the defaults (the `dev` flag picks the base).
    pub params: Option<Params>,
    /// Node settings to write.
    pub config: NodeConfig,
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The home directory.
    pub home: PathBuf,
    /// The genesis written.
    pub genesis: Genesis,
    /// The producer key.
    pub producer: KeyInfo,
}

/// A node home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHome {
    root: PathBuf,
}

impl NodeHome {
    /// The home at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodeHome { root: root.into() }
    }

    /// `~/.tributary` (the CLI applies `--home` and `TRIB_HOME` first).
    pub fn default_root() -> PathBuf {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".tributary")
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<home>/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `<home>/genesis.json`.
    pub fn genesis_path(&self) -> PathBuf {
        self.root.join(GENESIS_FILE)
    }

    /// `<home>/ledger.redb`.
    pub fn ledger_path(&self) -> PathBuf {
        self.root.join(LEDGER_FILE)
    }

    /// `<home>/mempool.journal`: the accepted transactions no block holds
    /// yet, fsynced before each is acknowledged (`trib_ledger::MempoolJournal`).
    pub fn mempool_journal_path(&self) -> PathBuf {
        self.root.join(MEMPOOL_JOURNAL_FILE)
    }

    /// `<home>/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join(KEYS_DIR)
    }

    /// `<home>/models`: base-model weights (`trib models pull`).
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// `<home>/datanets`: the datanet store and its content-addressed blobs.
    pub fn datanets_dir(&self) -> PathBuf {
        self.root.join("datanets")
    }

    /// `<home>/jobs`: ModelFactory job outputs, one directory per job.
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    /// The keystore (created if absent).
    pub fn keystore(&self) -> Result<Keystore, HomeError> {
        Ok(Keystore::open(self.keys_dir())?)
    }

    /// Reads `config.toml`.
    pub fn load_config(&self) -> Result<NodeConfig, HomeError> {
        let path = self.config_path();
        let text = self.read_file(&path)?;
        Ok(NodeConfig::from_toml(&text, &path)?)
    }

    /// Reads and validates `genesis.json`.
    pub fn load_genesis(&self) -> Result<Genesis, HomeError> {
        let path = self.genesis_path();
        let text = self.read_file(&path)?;
        Genesis::from_json(&text).map_err(|source| HomeError::BadGenesis { path, source })
    }

    /// Opens the ledger database (the node holds it exclusively while it runs).
    pub fn open_ledger(&self) -> Result<Ledger, HomeError> {
        let path = self.ledger_path();
        if !path.is_file() {
            return Err(HomeError::NotInitialised {
                path,
                home: self.root.clone(),
            });
        }
        Ok(Ledger::open(&path)?)
    }

    fn read_file(&self, path: &Path) -> Result<String, HomeError> {
        fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                HomeError::NotInitialised {
                    path: path.to_path_buf(),
                    home: self.root.clone(),
                }
            } else {
                HomeError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }

    /// Creates a node home at `root`: producer key, genesis, config and the
    /// ledger at its genesis block. Refuses an existing non-empty directory;
    /// on any error nothing is left behind.
    pub fn init(root: impl Into<PathBuf>, opts: InitOptions) -> Result<InitReport, HomeError> {
        let root: PathBuf = root.into();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HomeError::Io { path, source }
        };
        if root.exists() && fs::read_dir(&root).map_err(io(&root))?.next().is_some() {
            return Err(HomeError::AlreadyExists(root));
        }
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let staging = tempfile::Builder::new()
            .prefix(".trib-init-")
            .tempdir_in(&parent)
            .map_err(io(&parent))?;
        let stage = NodeHome::new(staging.path());

        let keystore = stage.keystore()?;
        let producer = keystore.generate(&opts.config.producer_key, None)?;
        let mut allocations = opts.allocations.clone();
        if allocations.is_empty() {
            allocations.push((producer.address, DEFAULT_PRODUCER_ALLOCATION));
        }
        let mut genesis = if opts.dev {
            let mut g = Genesis::dev(producer.public_key, allocations);
            g.params.datanet_curation_period_blocks =
                dev_curation_period_blocks(opts.config.block_interval_ms);
            g
        } else {
            Genesis {
                chain_id: "tributary-local".to_string(),
                genesis_time: now_ms(),
                producer: producer.public_key,
                allocations,
                params: Params::default(),
            }
        };
        if let Some(id) = &opts.chain_id {
            genesis.chain_id = id.clone();
        }
        if let Some(params) = &opts.params {
            genesis.params = params.clone();
        }
        genesis.validate().map_err(|source| HomeError::BadGenesis {
            path: root.join(GENESIS_FILE),
            source,
        })?;
        opts.config.validate().map_err(|reason| ConfigError {
            path: root.join(CONFIG_FILE),
            reason,
        })?;

        write_synced(&stage.genesis_path(), genesis.to_json().as_bytes())?;
        write_synced(&stage.config_path(), opts.config.to_toml().as_bytes())?;
        drop(Ledger::create(stage.ledger_path(), &genesis)?);

        // Move into place. rename(2) replaces an empty directory and fails on
        // a non-empty one, so a home created meanwhile is not clobbered.
        let staged = staging.keep();
        if let Err(source) = fs::rename(&staged, &root) {
            let _ = fs::remove_dir_all(&staged);
            return Err(if root.exists() {
                HomeError::AlreadyExists(root)
            } else {
                HomeError::Io { path: root, source }
            });
        }
        fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io(&parent))?;
        crate::private::set_mode(&root, 0o700).map_err(io(&root))?;
        tracing::info!(target: "trib::node", home = %root.display(), chain_id = %genesis.chain_id, producer = %producer.address, "node home initialised");
        Ok(InitReport {
            home: root,
            genesis,
            producer,
        })
    }

    /// Checks that the configured producer key exists and is the genesis
    /// producer, and loads it.
    pub fn load_producer(
        &self,
        config: &NodeConfig,
        genesis: &Genesis,
    ) -> Result<trib_types::SecretKey, HomeError> {
        let key = self.keystore()?.load(&config.producer_key, None)?;
        if key.public_key() != genesis.producer {
            return Err(HomeError::ProducerMismatch {
                name: config.producer_key.clone(),
                address: key.address(),
            });
        }
        Ok(key)
    }
}

impl NodeHome {
    /// Makes the home owner-only: the directory 0700, each of `files` that
    /// exists 0600, each of `dirs` that exists 0700 with its files 0600.
    /// A home made by an older version (world-readable `apikeys.json` and
    /// `receipts/`) is tightened here, with a warning per change.
    pub(crate) fn make_private(
        &self,
        files: &[PathBuf],
        dirs: &[PathBuf],
    ) -> Result<(), HomeError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HomeError::Io { path, source }
        };
        use crate::private::tighten;
        tighten(&self.root, 0o700).map_err(io(&self.root))?;
        for f in files.iter().filter(|f| f.exists()) {
            tighten(f, 0o600).map_err(io(f))?;
        }
        for d in dirs.iter().filter(|d| d.is_dir()) {
            tighten(d, 0o700).map_err(io(d))?;
            for entry in fs::read_dir(d).map_err(io(d))? {
                let entry = entry.map_err(io(d))?;
                if entry.file_type().map_err(io(d))?.is_file() {
                    tighten(&entry.path(), 0o600).map_err(io(&entry.path()))?;
                }
            }
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    use std::io::Write;
    let io = |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_a_complete_home_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let report = NodeHome::init(
            &root,
            InitOptions {
                dev: true,
                ..Default::default()
            },
        )
        .unwrap();
        let home = NodeHome::new(&root);
        assert_eq!(home.load_genesis().unwrap(), report.genesis);
        assert_eq!(
            report.genesis.allocations,
            vec![(report.producer.address, DEFAULT_PRODUCER_ALLOCATION)]
        );
        assert_eq!(home.load_config().unwrap(), NodeConfig::default());
        let cfg = home.load_config().unwrap();
        assert_eq!(
            home.load_producer(&cfg, &report.genesis).unwrap().address(),
            report.producer.address
        );
        assert!(home.ledger_path().is_file());

        let before = fs::read(home.genesis_path()).unwrap();
        let err = NodeHome::init(&root, InitOptions::default()).unwrap_err();
        assert!(matches!(err, HomeError::AlreadyExists(_)), "{err}");
        assert_eq!(fs::read(home.genesis_path()).unwrap(), before);
    }

    #[test]
    fn a_dev_home_leaves_an_hour_to_curate_at_its_block_interval() {
        for interval_ms in [50, 1_000] {
            let dir = tempfile::tempdir().unwrap();
            let config = NodeConfig {
                block_interval_ms: interval_ms,
                ..NodeConfig::default()
            };
            let report = NodeHome::init(
                &dir.path().join("home"),
                InitOptions {
                    dev: true,
                    config,
                    ..Default::default()
                },
            )
            .unwrap();
            let blocks = report.genesis.params.datanet_curation_period_blocks;
            assert_eq!(
                blocks * interval_ms,
                DEV_CURATION_SECS * 1_000,
                "{interval_ms} ms"
            );
            // The other development periods stay short.
            assert_eq!(
                report.genesis.params.gov_voting_period_blocks,
                Params::dev().gov_voting_period_blocks
            );
        }
        // A slow interval never goes below the development default.
        assert_eq!(
            dev_curation_period_blocks(3_600_000),
            Params::dev().datanet_curation_period_blocks
        );
    }

    #[test]
    fn a_failed_init_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let opts = InitOptions {
            chain_id: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(
            NodeHome::init(&root, opts),
            Err(HomeError::BadGenesis { .. })
        ));
        assert!(!root.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "staging directory left behind"
        );
    }

    #[test]
    fn an_uninitialised_home_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = NodeHome::new(dir.path())
            .load_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.toml") && e.contains("trib init"), "{e}");
    }
}
