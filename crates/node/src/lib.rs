//! The Tributary node: wiring between the libraries and the outside world.
//!
//! It owns the node home (`~/.tributary`: config, genesis, ledger file,
//! keystore), the HTTP API (axum, one module per area under `api/`), block
//! production (the sequencer role: blocks at an interval and whenever the
//! mempool fills), the typed HTTP client the `trib` binary uses, and the
//! end-to-end demo. The ledger itself lives in `trib-ledger`; later issues
//! add datanet, model, OpenAI-compatible and attribution routes beside the
//! ledger routes. See `docs/node.md`.

mod api;
mod chain;
mod client;
mod config;
pub mod demo;
mod home;
mod keystore;
mod node;

pub use api::wire::{
    AccountView, BlockView, StatusView, SubmitResponse, SupplyView, TxStatus, TxView,
};
pub use api::{ApiError, AppState, ErrorBody, ErrorDetail};
pub use client::{ClientError, NodeClient};
pub use config::NodeConfig;
pub use home::{HomeError, InitOptions, InitReport, NodeHome, DEFAULT_PRODUCER_ALLOCATION};
pub use keystore::{KeyInfo, Keystore, KeystoreError};
pub use node::{NodeError, NodeOverrides, RunningNode};

/// The ledger library, re-exported so the `trib` binary depends on this crate only.
pub use trib_ledger as ledger;
/// The shared types, re-exported for the same reason.
pub use trib_types as types;
