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
use trib_ledger::LedgerError;

use crate::api::{self, AppState};
use crate::chain::Chain;
use crate::home::{HomeError, NodeHome};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The home directory is missing or invalid.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// Block production failed (storage error); the node stops rather than
    /// run on with a ledger it cannot write.
    #[error("block production failed: {0}")]
    Produce(#[from] LedgerError),
    /// A node task panicked.
    #[error("node task failed: {0}")]
    Task(String),
}

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
}

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
        let producer = home.load_producer(&config, &genesis)?;
        let ledger = home.open_ledger()?;
        let chain = Arc::new(Chain::new(
            ledger,
            &genesis,
            producer,
            config.mempool_max_txs,
        ));

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

        let app = api::router(
            AppState {
                chain: chain.clone(),
            },
            config.max_request_bytes,
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
    /// block being produced (if any) and closes the ledger.
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
                flatten(r)
            }
            r = &mut self.server => {
                let _ = self.stop.send(true);
                let _ = (&mut self.producer).await;
                flatten(r)
            }
        }
    }

    async fn join(self) -> Result<(), NodeError> {
        let s = flatten(self.server.await);
        let p = flatten(self.producer.await);
        tracing::info!(target: "trib::node", "node stopped");
        s.and(p)
    }
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
