//! The error of starting and running a node ([`NodeError`]).
//!
//! It sits apart from `node.rs` because two modules return it: `node.rs`,
//! which starts everything, and `serving.rs`, whose engine start is one of
//! the node's start steps. Both import it from here and it imports neither,
//! so the dependency between `node.rs` and `serving.rs` points one way
//! (`node.rs` starts `serving.rs`).

use std::net::SocketAddr;

use trib_ledger::LedgerError;

use crate::home::HomeError;

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
    /// The mempool journal could not be read or rewritten at start (the
    /// message names the file and the operation).
    #[error("cannot restore the mempool from its journal: {0}")]
    Mempool(String),
    /// The datanet store could not be opened.
    #[error("cannot open the node's datanet store: {0}")]
    Services(String),
    /// A node task panicked.
    #[error("node task failed: {0}")]
    Task(String),
}
