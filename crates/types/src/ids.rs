//! Typed identifiers. Each is a [`Hash`] underneath; the newtype keeps a datanet
//! id from being passed where a receipt id is expected.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::hash::{Hash, HashParseError};

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
                 BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Hash);

        impl $name {
            /// The underlying hash.
            pub fn hash(&self) -> &Hash {
                &self.0
            }
        }

        impl From<Hash> for $name {
            fn from(h: Hash) -> Self {
                Self(h)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }

        impl FromStr for $name {
            type Err = HashParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

hash_id!(
    /// The hash of a signed transaction's canonical encoding.
    TxHash
);
hash_id!(
    /// The hash of a block header's canonical encoding.
    BlockHash
);
hash_id!(
    /// A datanet, derived from its creator and name at creation.
    DatanetId
);
hash_id!(
    /// A contribution (one uploaded file) to a datanet.
    ContributionId
);
hash_id!(
    /// The blake3 hash of one row's bytes: rows are content-addressed.
    RowHash
);
hash_id!(
    /// A base model, identified by the hash of its weights file(s).
    ModelId
);
hash_id!(
    /// A LoRA adapter, identified by the hash of its PEFT files.
    AdapterId
);
hash_id!(
    /// An inference receipt.
    ReceiptId
);
