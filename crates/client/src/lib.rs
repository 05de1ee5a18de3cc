//! The client side of the Tributary node's HTTP API.
//!
//! Why a crate of its own: the `trib` binary, the node's demo and its tests,
//! and any future front end talk to a node over HTTP; none of them should
//! need the node's server code to do it, and the node's services should not
//! own the JSON shapes they are shown in. This crate owns:
//!
//! - [`wire`]: every JSON body the API sends or accepts (ledger views,
//!   datanet requests and views, jobs, base models, the error body and the
//!   page envelope). `trib-node`'s HTTP layer serialises these; clients
//!   deserialise them.
//! - [`NodeClient`]: the typed HTTP client of every route, with one error
//!   type, [`ClientError`], that keeps the node's HTTP status, error code
//!   and message.
//! - [`signed_read`]: the message a reader signs and the headers that carry
//!   the signature (the node's verifier rebuilds the same message).
//! - Exports as a client trusts them ([`NodeClient::verified_export`]: the
//!   rows' root must equal the ledger's) and the actions a client builds
//!   from a node's or a local run's output ([`actions`]).
//!
//! Beside it: `trib-types` (ids, amounts, keys) and `trib-ledger`
//! (transactions, blocks, receipts) supply the values inside the views;
//! `trib-datanet` parses and verifies exports; `trib-node` depends on this
//! crate, never the other way round. The `trib` binary is a thin layer of
//! flags and output over it.

pub mod actions;
mod client;
mod error;
pub mod signed_read;
pub mod wire;

pub use client::{ChatTiming, NodeClient, PayoutFilter, Upload, VerifiedExport};
pub use error::ClientError;
