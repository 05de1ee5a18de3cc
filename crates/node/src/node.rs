//! Running a node: open the home, bind the API, produce blocks, shut down
//! cleanly.
//!
//! Block production policy: one block every `block_interval_ms` (empty ones
//! included, because governance and unbonding periods are counted in
//! blocks), and immediately whenever the mempool holds `max_block_txs`
//! transactions. Each block is committed durably by the ledger before any
//! query can see it, so "committed" in the API means "survives `kill -9`".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::chain::Chain;
use crate::error::NodeError;
use crate::home::NodeHome;

/// Settings that override the home's `config.toml` (command-line flags).
#[derive(Debug, Clone, Default)]
pub struct NodeOverrides {
    /// Listen address instead of `listen`.
    pub listen: Option<SocketAddr>,
    /// Block interval instead of `block_interval_ms`.
    pub block_interval: Option<Duration>,
}

/// A node running in this process (the `trib node` command, the demo, tests).
pub struct RunningNode {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), NodeError>>,
    producer: JoinHandle<Result<(), NodeError>>,
    /// The eager token indexer (serving nodes only).
    indexer: Option<JoinHandle<()>>,
    /// Threads joined at shutdown, after the HTTP server has drained: the
    /// serving engine (scheduler and adapter loaders) and the job thread.
    threads: NodeThreads,
}

/// The node's OS threads, so that shutdown can wait for them: when
/// [`RunningNode::shutdown`] returns none of them runs, so none holds the
/// ledger and the home can be reopened at once.
#[derive(Clone)]
struct NodeThreads {
    engine: Option<trib_serve::EngineHandle>,
    jobs: crate::jobs::JobQueue,
}

impl NodeThreads {
    /// Stops and joins the threads (idempotent).
    async fn join(&self) -> Result<(), NodeError> {
        let threads = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(engine) = &threads.engine {
                engine.shutdown();
            }
            threads.jobs.shutdown();
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))
    }
}

/// How often the eager token indexer looks for newly published versions.
const INDEXER_INTERVAL: Duration = Duration::from_secs(2);

impl RunningNode {
    /// Opens the home, binds the API and starts block production.
    pub async fn start(
        home: &NodeHome,
        overrides: NodeOverrides,
    ) -> Result<RunningNode, NodeError> {
        let mut config = home.load_config()?;
        if let Some(l) = overrides.listen {
            config.listen = l;
        }
        if let Some(i) = overrides.block_interval {
            config.block_interval_ms = i.as_millis().max(1) as u64;
        }
        let genesis = home.load_genesis()?;
        // Secrets and users' data stay owner-only, in homes made before too.
        home.make_private(
            &[
                crate::apikeys::ApiKeys::path_in(home.root()),
                home.mempool_journal_path(),
            ],
            &[crate::serving::receipts_dir(home)],
        )?;
        let producer = home.load_producer(&config, &genesis)?;
        let ledger = home.open_ledger()?;
        let chain = Arc::new(
            Chain::open(
                ledger,
                &genesis,
                producer,
                config.mempool_max_txs,
                &home.mempool_journal_path(),
            )
            .map_err(|e| NodeError::Mempool(e.to_string()))?,
        );

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);

        let services = start_services(home, &config, chain.clone())?;
        // The eager token indexer (attribution.rs) of a serving node,
        // stopped with the node.
        let indexer = services.serving.as_ref().map(|s| {
            crate::attribution::spawn_indexer(
                s.attribution.catalog().clone(),
                INDEXER_INTERVAL,
                stop_rx.clone(),
            )
        });
        let threads = NodeThreads {
            engine: services.serving.as_ref().map(|s| s.engine.clone()),
            jobs: services.jobs.clone(),
        };
        let app = api::router_with(
            AppState {
                chain: chain.clone(),
            },
            Some(services),
            config.max_request_bytes,
            &config.cors_origins,
        );
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await
                .map_err(NodeError::Serve)
        });
        let producer = tokio::spawn(produce_blocks(
            chain.clone(),
            config.block_interval(),
            stop_rx,
        ));
        tracing::info!(target: "trib::node", %addr, chain_id = %genesis.chain_id, height = chain.height(),
            interval_ms = config.block_interval_ms, "node started");
        Ok(RunningNode {
            addr,
            stop,
            server,
            producer,
            indexer,
            threads,
        })
    }

    /// The bound API address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets in-flight ones finish, finishes the
    /// block being produced (if any), stops and joins the serving engine's
    /// and the job queue's threads (a running training job is cancelled at
    /// its next micro-batch) and closes the ledger: when this returns the
    /// home can be reopened.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Runs until `signal` resolves, then shuts down; returns early with the
    /// error if a node task fails first.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        tokio::select! {
            _ = signal => {
                tracing::info!(target: "trib::node", "shutdown requested");
                self.shutdown().await
            }
            r = &mut self.producer => {
                let _ = self.stop.send(true);
                let _ = (&mut self.server).await;
                let _ = self.threads.join().await;
                flatten(r)
            }
            r = &mut self.server => {
                let _ = self.stop.send(true);
                let _ = (&mut self.producer).await;
                let _ = self.threads.join().await;
                flatten(r)
            }
        }
    }

    async fn join(self) -> Result<(), NodeError> {
        let s = flatten(self.server.await);
        let p = flatten(self.producer.await);
        if let Some(i) = self.indexer {
            let _ = i.await;
        }
        // Only now: in-flight requests needed the engine until the server
        // drained.
        let t = self.threads.join().await;
        tracing::info!(target: "trib::node", "node stopped");
        s.and(p).and(t)
    }
}

/// The datanet store, the model catalogue, the job queue and, when a base
/// model is configured, the serving engine of a node.
fn start_services(
    home: &NodeHome,
    config: &crate::config::NodeConfig,
    chain: Arc<Chain>,
) -> Result<api::Services, NodeError> {
    let datanets = Arc::new(
        crate::datanets::DatanetService::open_configured(
            &home.datanets_dir(),
            chain.clone(),
            &config.datanets,
        )
        .map_err(|e| NodeError::Services(e.to_string()))?,
    );
    let models = Arc::new(crate::models::ModelService::new(
        home.models_dir(),
        chain.clone(),
    ));
    // Finished adapters are installed where the node serves them from, when
    // that is the home's own directory.
    let install_to = config
        .serving
        .adapter_store
        .is_none()
        .then(|| home.root().join("adapters"));
    let jobs = crate::jobs::JobQueue::start(
        &home.jobs_dir(),
        models.dir(),
        datanets.clone(),
        install_to,
        config.jobs.clone(),
    );
    let serving = crate::serving::Serving::start(home, config, chain, datanets.clone())?;
    let apikeys = crate::apikeys::ApiKeys::open(crate::apikeys::ApiKeys::path_in(home.root()))
        .map_err(|e| NodeError::Services(e.to_string()))?;
    let replays = api::auth::ReplayGuard::open(
        &home.root().join("signed-requests.log"),
        trib_client::signed_read::now(),
    )
    .map_err(|e| NodeError::Services(e.to_string()))?;
    Ok(api::Services {
        datanets,
        models,
        jobs,
        receipts_dir: crate::serving::receipts_dir(home),
        serving,
        apikeys: Arc::new(apikeys),
        replays: Arc::new(replays),
    })
}

fn flatten(r: Result<Result<(), NodeError>, tokio::task::JoinError>) -> Result<(), NodeError> {
    r.map_err(|e| NodeError::Task(e.to_string()))?
}

async fn produce_blocks(
    chain: Arc<Chain>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = ticker.tick() => {}
            _ = chain.full.notified() => { ticker.reset(); }
        }
        let c = chain.clone();
        let outcome = tokio::task::spawn_blocking(move || c.produce_block())
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?;
        match outcome {
            Ok(o) => {
                tracing::info!(target: "trib::producer", height = o.header.height, txs = o.included.len(),
                    rejected = o.rejected.len(), state_root = %o.header.state_root.short(), "block committed");
                for r in &o.rejected {
                    tracing::warn!(target: "trib::producer", hash = %r.hash, error = %r.error, "transaction dropped from block");
                }
            }
            Err(e) => {
                tracing::error!(target: "trib::producer", error = %e, "block production failed; stopping the node");
                return Err(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::home::InitOptions;
    use trib_client::NodeClient;
    use trib_ledger::Action;
    use trib_types::{Amount, SecretKey};

    async fn dev_node(
        dir: &std::path::Path,
        config: NodeConfig,
        interval: Duration,
    ) -> (RunningNode, SecretKey) {
        let root = dir.join("home");
        let producer = crate::test_fixtures::init_dev_home(&root, config);
        let home = NodeHome::new(&root);
        let overrides = NodeOverrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            block_interval: Some(interval),
        };
        (
            RunningNode::start(&home, overrides).await.unwrap(),
            producer,
        )
    }

    #[tokio::test]
    async fn a_full_mempool_triggers_a_block_before_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            mempool_max_txs: 3,
            ..NodeConfig::default()
        };
        // An hour-long interval: only the full mempool can produce the block.
        let (node, key) = dev_node(dir.path(), config, Duration::from_secs(3600)).await;
        let client = NodeClient::new(&node.url()).unwrap();
        let to = SecretKey::from_seed([5; 32]).address();
        let mut hashes = Vec::new();
        for _ in 0..3 {
            let stx = client
                .sign_and_submit(
                    &key,
                    None,
                    Action::Transfer {
                        to,
                        amount: Amount::open(1),
                    },
                )
                .await
                .unwrap();
            hashes.push(stx.hash());
        }
        for h in &hashes {
            let v = client
                .wait_for_commit(h, Duration::from_secs(30))
                .await
                .unwrap();
            assert_eq!(v.height, Some(1));
        }
        assert_eq!(client.status().await.unwrap().mempool_size, 0);
        node.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn blocks_are_produced_at_the_interval_even_when_empty_and_shutdown_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let (node, _) =
            dev_node(dir.path(), NodeConfig::default(), Duration::from_millis(10)).await;
        let client = NodeClient::new(&node.url()).unwrap();
        let mut height = 0;
        for _ in 0..500 {
            height = client.status().await.unwrap().height;
            if height >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(height >= 3, "only {height} blocks");
        node.shutdown().await.unwrap();
        // The ledger file is closed: it can be opened and verified.
        let ledger = NodeHome::new(dir.path().join("home"))
            .open_ledger()
            .unwrap();
        assert!(ledger.verify_chain(|_, _| {}).unwrap().blocks >= 4);
    }

    /// A long text LoRA job on the tiny model (runs until cancelled).
    fn long_job(model: &std::path::Path, data: &std::path::Path) -> String {
        format!(
            r#"name = "long"
[model]
base = "{}"
[data]
sources = ["{}"]
format = "text"
max_length = 32
packing = true
validation_fraction = 0.2
[lora]
r = 4
alpha = 8
dropout = 0.0
target_modules = ["q_proj", "v_proj"]
[train]
learning_rate = 1e-3
schedule = "constant"
warmup_steps = 0
epochs = 10000
batch_size = 2
gradient_accumulation = 1
seed = 1
[output]
dir = "ignored"
"#,
            model.display(),
            data.display()
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn shutdown_joins_the_engine_and_job_threads_so_the_ledger_reopens_at_once() {
        let h = crate::test_fixtures::PaidHome::new();
        // The operator allows jobs to read `data/` and puts the model into
        // the models directory.
        let data_dir = h.dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let data = data_dir.join("text.txt");
        std::fs::write(
            &data,
            "a small text to train on, again and again. ".repeat(40),
        )
        .unwrap();
        let config = h.home().root().join("config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[jobs]\ndata_dirs = [{:?}]\n",
            data_dir.display().to_string()
        ));
        std::fs::write(&config, text).unwrap();
        std::fs::create_dir_all(h.home().models_dir()).unwrap();
        std::os::unix::fs::symlink(h.model_path(), h.home().models_dir().join("tiny.gguf"))
            .unwrap();
        let owner = SecretKey::from_seed([9; 32]);
        let mut key = None;
        for round in 0..3 {
            let n = h.start().await;
            if round == 0 {
                n.register_base().await;
                key = Some(n.user(9, 100, Amount::open(100)).await.1);
            }
            // A training job running on the job thread...
            let jobs = n.client.clone().with_signer(owner.clone());
            let job = jobs
                .submit_job(&long_job(std::path::Path::new("tiny.gguf"), &data), None)
                .await
                .unwrap();
            let id = job.id;
            for _ in 0..3000 {
                let v = jobs.job(id).await.unwrap();
                assert!(!v.status.is_final(), "{v:?}");
                if v.status == trib_client::wire::JobStatus::Running {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // ... and the engine has served (its scheduler and a loader ran).
            let (s, v) = n
                .post(
                    "/v1/completions",
                    key.as_deref(),
                    serde_json::json!({ "model": h.base_name, "prompt": "hello", "max_tokens": 4 }),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            n.node.shutdown().await.unwrap();
            // No retry: the ledger must be free the moment shutdown returns.
            let ledger = h.home().open_ledger().unwrap_or_else(|e| {
                panic!("round {round}: the ledger is still held after shutdown: {e}")
            });
            assert!(ledger.height() > 0);
        }
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_keys_stored_answers_and_the_mempool_journal_are_owner_only_even_in_an_old_home() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let h = crate::test_fixtures::PaidHome::new();
        let home = h.home();
        let receipts = crate::serving::receipts_dir(&home);
        let check = |home: &NodeHome| {
            assert_eq!(mode(home.root()), 0o700, "home");
            assert_eq!(
                mode(&crate::apikeys::ApiKeys::path_in(home.root())),
                0o600,
                "apikeys.json"
            );
            assert_eq!(mode(&home.mempool_journal_path()), 0o600, "mempool.journal");
            assert_eq!(mode(&receipts), 0o700, "receipts/");
            let answers: Vec<_> = std::fs::read_dir(&receipts)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(!answers.is_empty(), "a stored answer");
            for a in &answers {
                assert_eq!(mode(a), 0o600, "{}", a.display());
            }
            answers
        };
        let n = h.start().await;
        n.register_base().await;
        let (_, key) = n.user(9, 100, Amount::open(100)).await;
        let (s, v) = n
            .post(
                "/v1/completions",
                Some(&key),
                serde_json::json!({ "model": h.base_name, "prompt": "hello", "max_tokens": 2 }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        n.node.shutdown().await.unwrap();
        let answers = check(&home);

        // A home left open by an older version is tightened at start.
        let open = |p: &std::path::Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        open(home.root(), 0o755);
        open(&crate::apikeys::ApiKeys::path_in(home.root()), 0o644);
        open(&receipts, 0o755);
        open(&answers[0], 0o644);
        let n = h.start().await;
        n.node.shutdown().await.unwrap();
        check(&home);
    }

    #[tokio::test]
    async fn a_busy_port_is_a_clear_bind_error() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let root = dir.path().join("home");
        NodeHome::init(
            &root,
            InitOptions {
                dev: true,
                ..Default::default()
            },
        )
        .unwrap();
        let overrides = NodeOverrides {
            listen: Some(taken.local_addr().unwrap()),
            block_interval: None,
        };
        let err = RunningNode::start(&NodeHome::new(&root), overrides)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, NodeError::Bind { .. }), "{err}");
        assert!(err.to_string().contains("cannot listen on"));
    }
}
