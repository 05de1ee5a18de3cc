//! Pure types shared by every Tributary crate.
//!
//! This is the bottom of the workspace: it does no I/O, spawns nothing and knows
//! nothing of candle or the network. It owns
//!
//! - [`Hash`] (blake3, 32 bytes) and the typed identifiers built on it,
//! - [`Amount`], OPEN in integer base units (18 decimals, `u128`, checked
//!   arithmetic only: there are no floats anywhere in ledger state),
//! - ed25519 keys, [`Address`]es and [`Signature`]s, verified under the ZIP-215
//!   rules so that batch and single verification always agree,
//! - the [`Canonical`] encoding (borsh) that signatures and state roots commit to,
//! - exact largest-remainder splits ([`split_by_weight`], [`split_by_bps`]) used
//!   by settlement and attribution alike,
//! - the datanet vocabulary the ledger, the datanet crate and the node share
//!   ([`DataType`], [`CurationMode`], [`Visibility`], [`ContributionStatus`],
//!   [`Reputation`], [`datanet_id`]), so the on-chain record and the stored
//!   descriptor cannot drift apart.
//!
//! Every other crate (`trib-ledger`, `trib-datanet`, `trib-model`, …) builds on
//! these definitions rather than inventing its own.
#![deny(missing_docs)]

mod amount;
mod datanet;
mod encoding;
mod hash;
mod ids;
mod keys;
mod split;

pub use amount::{Amount, AmountError, DECIMALS, ONE_OPEN};
pub use datanet::{datanet_id, ContributionStatus, CurationMode, DataType, Reputation, Visibility};
pub use encoding::{Canonical, DecodeError};
pub use hash::{Hash, HashParseError};
pub use ids::{
    AdapterId, BlockHash, ContributionId, DatanetId, ModelId, ReceiptId, RowHash, TxHash,
};
pub use keys::{
    verify_batch, Address, AddressParseError, PublicKey, SecretKey, Signature, SignatureError,
};
pub use split::{split_by_bps, split_by_weight, SplitError};
