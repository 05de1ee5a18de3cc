//! ed25519 keys, addresses and signatures.
//!
//! Verification follows ZIP-215 (via `ed25519-zebra`): the cofactored equation
//! with permissive point decoding, for single and batch verification alike.
//! That makes the two agree on every input, which a ledger needs: a node that
//! batch-verifies a block must accept exactly the transactions that a node
//! verifying one at a time accepts.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_zebra::{batch, SigningKey, VerificationKey, VerificationKeyBytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::Hash;

/// The prefix of every textual address.
const ADDRESS_PREFIX: &str = "trib";

/// An ed25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// An account address: the first 20 bytes of a domain-separated blake3 hash of
/// the public key, written `trib` + 40 hex characters.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

/// A signing key. Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key bytes are not a valid curve point encoding.
    #[error("malformed public key {0}")]
    MalformedKey(String),
    /// The signature does not verify for this key and message.
    #[error("invalid signature for public key {0}")]
    Invalid(String),
}

/// Text that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {0:?}: expected 'trib' followed by 40 hex characters")]
pub struct AddressParseError(pub String);

impl PublicKey {
    /// The account address of this key.
    pub fn address(&self) -> Address {
        let h = Hash::domain("tributary address v1", &[&self.0]);
        let mut a = [0u8; 20];
        a.copy_from_slice(&h.0[..20]);
        Address(a)
    }

    /// Verifies `sig` over `msg` under ZIP-215 rules.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let vk = VerificationKey::try_from(self.0)
            .map_err(|_| SignatureError::MalformedKey(hex::encode(self.0)))?;
        vk.verify(&ed25519_zebra::Signature::from_bytes(&sig.0), msg)
            .map_err(|_| SignatureError::Invalid(hex::encode(self.0)))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl SecretKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        SecretKey(SigningKey::new(rand_core::OsRng))
    }

    /// A key from a 32-byte seed (deterministic: tests, genesis fixtures).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from(seed))
    }

    /// The 32-byte seed, for the keystore. Handle with care.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.into()
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        let vk = VerificationKey::from(&self.0);
        PublicKey(vk.into())
    }

    /// The address of the public key.
    pub fn address(&self) -> Address {
        self.public_key().address()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<{}>)", self.address())
    }
}

/// Verifies many `(key, message, signature)` triples at once.
///
/// Returns one verdict per item, in order. The fast path is one ZIP-215 batch
/// equation; if it fails (or any key is malformed), every item is re-verified
/// singly so that each verdict is exactly what [`PublicKey::verify`] says.
pub fn verify_batch(items: &[(PublicKey, &[u8], Signature)]) -> Vec<bool> {
    let mut verifier = batch::Verifier::new();
    let mut all_keys_ok = true;
    for (pk, msg, sig) in items {
        match VerificationKeyBytes::try_from(pk.0.as_slice()) {
            Ok(vkb) => verifier.queue((vkb, ed25519_zebra::Signature::from_bytes(&sig.0), msg)),
            Err(_) => all_keys_ok = false,
        }
    }
    if all_keys_ok && verifier.verify(rand_core::OsRng).is_ok() {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|(pk, msg, sig)| pk.verify(msg, sig).is_ok())
        .collect()
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ADDRESS_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = AddressParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddressParseError(s.chars().take(80).collect());
        let body = s.strip_prefix(ADDRESS_PREFIX).ok_or_else(err)?;
        let bytes = hex::decode(body).map_err(|_| err())?;
        Ok(Address(bytes.try_into().map_err(|_| err())?))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..8])
    }
}

impl FromStr for PublicKey {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SignatureError::MalformedKey(s.chars().take(80).collect());
        let bytes = hex::decode(s).map_err(|_| err())?;
        Ok(PublicKey(bytes.try_into().map_err(|_| err())?))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

macro_rules! serde_via_string {
    ($t:ty, $to:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[allow(clippy::redundant_closure_call)]
                s.serialize_str(&($to)(self))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(Address, |a: &Address| a.to_string());
serde_via_string!(PublicKey, |k: &PublicKey| k.to_hex());
serde_via_string!(Signature, |s: &Signature| hex::encode(s.0));

impl FromStr for Signature {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            SignatureError::Invalid(format!(
                "malformed signature hex {:?}",
                s.chars().take(40).collect::<String>()
            ))
        };
        let bytes = hex::decode(s).map_err(|_| err())?;
        Ok(Signature(bytes.try_into().map_err(|_| err())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let sk = SecretKey::from_seed([7; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        pk.verify(b"hello", &sig).unwrap();
        assert!(matches!(
            pk.verify(b"hellp", &sig),
            Err(SignatureError::Invalid(_))
        ));
        let mut bad = sig;
        bad.0[3] ^= 1;
        assert!(pk.verify(b"hello", &bad).is_err());
    }

    #[test]
    fn address_text_round_trip() {
        let a = SecretKey::from_seed([1; 32]).address();
        let s = a.to_string();
        assert!(s.starts_with("trib") && s.len() == 44);
        assert_eq!(s.parse::<Address>().unwrap(), a);
        assert!("trab00".parse::<Address>().is_err());
        assert!(format!("{s}00").parse::<Address>().is_err());
    }

    #[test]
    fn seed_round_trip() {
        let sk = SecretKey::generate();
        assert_eq!(
            SecretKey::from_seed(sk.to_seed()).public_key(),
            sk.public_key()
        );
    }

    #[test]
    fn batch_agrees_with_single_on_mixed_input() {
        let keys: Vec<SecretKey> = (0..16u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 10]).collect();
        let mut items: Vec<(PublicKey, &[u8], Signature)> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| (k.public_key(), m.as_slice(), k.sign(m)))
            .collect();
        assert!(verify_batch(&items).iter().all(|v| *v));
        items[5].2 .0[0] ^= 0x40; // corrupt one signature
        items[9].0 = PublicKey([0xff; 32]); // a key that is not a valid point
        let batch = verify_batch(&items);
        let single: Vec<bool> = items
            .iter()
            .map(|(k, m, s)| k.verify(m, s).is_ok())
            .collect();
        assert_eq!(batch, single);
        assert!(!batch[5] && !batch[9] && batch[0]);
    }

    /// ZIP-215 edge case: a small-order public key (the identity point) with an
    /// all-zero-ish signature. Whatever single verification decides, batch
    /// verification must decide the same.
    #[test]
    fn batch_agrees_with_single_on_small_order_keys() {
        let mut identity = [0u8; 32];
        identity[0] = 1; // compressed identity point
        let mut sig = [0u8; 64];
        sig[0] = 1; // R = identity, s = 0
        let items = vec![(PublicKey(identity), b"any".as_slice(), Signature(sig))];
        let single = PublicKey(identity).verify(b"any", &Signature(sig)).is_ok();
        assert_eq!(verify_batch(&items), vec![single]);
    }
}
