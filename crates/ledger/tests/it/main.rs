//! Integration tests of trib-ledger: one binary, one module per concern.

mod chain;
mod crash;
mod decode;
mod governance;
mod mempool;
mod proofs;
mod properties;
mod support;
mod tamper;
