//! The Tributary node: wiring between the libraries and the outside world.
//!
//! It owns the node home (`~/.tributary`: config, genesis, ledger file,
//! keystore), the HTTP API (axum, one module per area under `api/`), block
//! production (the sequencer role: blocks at an interval and whenever the
//! mempool fills) and the end-to-end demo. The ledger itself lives in
//! `trib-ledger`; the API's JSON shapes and the typed HTTP client the `trib`
//! binary, the demo and the tests use live in `trib-client`; datanet,
//! model, OpenAI-compatible and attribution routes sit beside the ledger
//! routes, and answer-time token attribution (an index catalog per datanet
//! version, `trib-attribution` underneath) settles every paid answer by
//! traced weights. See `docs/node.md` and `docs/attribution.md`.

mod api;
mod apikeys;
mod attribution;
mod attribution_gradient;
mod billing;
mod chain;
mod config;
mod datanets;
pub mod demo;
mod error;
mod home;
mod jobs;
mod keystore;
#[cfg(test)]
mod layering_tests;
mod models;
mod node;
mod private;
mod serving;
#[cfg(test)]
mod test_fixtures;

pub use api::{ApiError, AppState};
pub use apikeys::{ApiKeyError, ApiKeyInfo, ApiKeys, NewApiKey, API_KEY_PREFIX};
pub use config::{ConfigError, NodeConfig, ServingConfig};
pub use error::NodeError;
pub use home::{HomeError, InitOptions, InitReport, NodeHome, DEFAULT_PRODUCER_ALLOCATION};
pub use keystore::{KeyInfo, Keystore, KeystoreError};
pub use models::describe_model;
pub use node::{NodeOverrides, RunningNode};
pub use trib_attribution::answer::{verify_stored_answer, StoredAnswer, StoredAttribution};

/// The datanet library (parsers, export verification), re-exported for the
/// `trib` binary.
pub use trib_datanet as datanet;
/// The ledger library, re-exported so the `trib` binary depends on this crate only.
pub use trib_ledger as ledger;
/// The model library (generation, ModelFactory), re-exported for the `trib`
/// binary.
pub use trib_model as model;
/// The shared types, re-exported for the same reason.
pub use trib_types as types;
