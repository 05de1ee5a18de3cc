//! The canonical binary encoding that signatures and state roots commit to.
//!
//! It is borsh: deterministic (one encoding per value), length-prefixed, and
//! strict on decode (trailing bytes are an error). [`Canonical::decode`] also
//! refuses inputs over a caller-given size before parsing anything, so a
//! hostile peer cannot make us allocate from a forged length prefix.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::hash::Hash;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than the limit for this type.
    #[error("encoded {what} is {len} bytes, over the limit of {max}")]
    Oversize {
        /// What was being decoded.
        what: &'static str,
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid encoding (truncated, trailing bytes, bad tag…).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// A type with one canonical byte encoding.
pub trait Canonical: BorshSerialize + BorshDeserialize + Sized {
    /// A name for error messages (`"transaction"`, `"block header"`).
    const NAME: &'static str;

    /// The canonical bytes.
    fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// Decodes canonical bytes, refusing inputs over `max_len` bytes and any
    /// trailing data.
    fn decode(bytes: &[u8], max_len: usize) -> Result<Self, DecodeError> {
        if bytes.len() > max_len {
            return Err(DecodeError::Oversize {
                what: Self::NAME,
                len: bytes.len(),
                max: max_len,
            });
        }
        borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed {
            what: Self::NAME,
            reason: e.to_string(),
        })
    }

    /// blake3 of the canonical bytes, under a per-type domain.
    fn canonical_hash(&self) -> Hash {
        Hash::domain(Self::NAME, &[&self.encode()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(BorshSerialize, BorshDeserialize, Debug, PartialEq)]
    struct Pair {
        a: u64,
        b: Vec<u8>,
    }
    impl Canonical for Pair {
        const NAME: &'static str = "pair";
    }

    #[test]
    fn round_trip_and_strictness() {
        let p = Pair {
            a: 5,
            b: vec![1, 2, 3],
        };
        let bytes = p.encode();
        assert_eq!(Pair::decode(&bytes, 1024).unwrap(), p);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Pair::decode(&trailing, 1024),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            Pair::decode(&bytes[..bytes.len() - 1], 1024),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            Pair::decode(&bytes, 4),
            Err(DecodeError::Oversize { .. })
        ));
    }

    #[test]
    fn forged_length_prefix_does_not_allocate_wildly() {
        // a = 0, then a Vec length of u32::MAX with no data behind it.
        let mut bytes = 0u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pair::decode(&bytes, 1024).is_err());
    }
}
