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
//!
//! Beside it: `trib-types` (ids, amounts, keys) and `trib-ledger`
//! (transactions, blocks, receipts) supply the values inside the views;
//! `trib-node` depends on this crate, never the other way round.

pub mod wire;
