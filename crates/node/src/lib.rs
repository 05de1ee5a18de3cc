//! The Tributary node: wires the ledger, datanets, models, attribution and
//! serving behind an HTTP API (axum), the OpenAI-compatible endpoints, the job
//! queue, the web UI and block production.

mod keystore;

pub use keystore::{KeyInfo, Keystore, KeystoreError};
