//! The Tributary ledger.
//!
//! Owns transactions, blocks, execution, the modules (bank, staking/gOPEN,
//! governance, and the datanet, model and settlement registries added by later
//! issues), the authenticated state tree, embedded storage and replay.
//! Depends only on `trib-types`.
