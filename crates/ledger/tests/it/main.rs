//! Integration tests of trib-ledger: one binary, one module per concern.

mod chain;
mod crash;
mod datanets;
mod decode;
mod economy;
mod economy_properties;
mod governance;
mod mempool;
mod models;
mod proofs;
mod properties;
mod settlement;
mod support;
mod tamper;
