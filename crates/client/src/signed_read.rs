//! Signed requests: the message a reader signs and the `x-trib-*` headers
//! that carry the signature (permissioned datanet reads, owned jobs).
//!
//! The client signs, with its ed25519 key, the text
//! `tributary signed read v1\n{METHOD}\n{path?query}\n{timestamp}\n{nonce}\n{blake3(body) hex}`
//! and sends the public key, its address, the timestamp (Unix seconds),
//! the nonce (random hex) and the signature in the headers below. The node
//! (`trib-node`'s `api::auth::verify`, run once per request by its middleware) rebuilds the same
//! [`message`], so the signed text has one definition: this module. It
//! recomputes the address from the public key, refuses timestamps more
//! than [`READ_SIGNATURE_WINDOW_SECS`] away from its clock, and remembers
//! every signature it accepted until its timestamp leaves the window, so a
//! captured request cannot be replayed.

use trib_types::{Hash, SecretKey};

/// The reader's public key (hex).
pub const HEADER_PUBLIC_KEY: &str = "x-trib-public-key";
/// The reader's address (must be the public key's).
pub const HEADER_ADDRESS: &str = "x-trib-address";
/// Unix seconds at signing.
pub const HEADER_TIMESTAMP: &str = "x-trib-timestamp";
/// A random hex string, unique per request.
pub const HEADER_NONCE: &str = "x-trib-nonce";
/// The ed25519 signature (hex) over [`message`].
pub const HEADER_SIGNATURE: &str = "x-trib-signature";
/// How far (seconds, either way) a timestamp may be from the node's clock.
pub const READ_SIGNATURE_WINDOW_SECS: u64 = 300;

/// The bytes a reader signs.
pub fn message(
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "tributary signed read v1\n{}\n{path_and_query}\n{timestamp}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        Hash::of(body).to_hex()
    )
    .into_bytes()
}

/// The headers of a request signed by `key` at `timestamp` (Unix
/// seconds), with a fresh random nonce.
pub fn sign(
    key: &SecretKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: u64,
) -> Vec<(&'static str, String)> {
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let nonce = hex::encode(nonce);
    let sig = key.sign(&message(method, path_and_query, timestamp, &nonce, body));
    vec![
        (HEADER_PUBLIC_KEY, key.public_key().to_hex()),
        (HEADER_ADDRESS, key.address().to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_NONCE, nonce),
        (HEADER_SIGNATURE, hex::encode(sig.0)),
    ]
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use trib_types::{PublicKey, Signature};

    use super::*;

    #[test]
    fn the_signed_message_is_pinned_text_with_the_method_upper_cased_and_the_body_hashed() {
        let m = message("get", "/v1/jobs?owner=x", 1_000, "ab12", b"");
        let expected = format!(
            "tributary signed read v1\nGET\n/v1/jobs?owner=x\n1000\nab12\n{}",
            Hash::of(b"").to_hex()
        );
        assert_eq!(String::from_utf8(m).unwrap(), expected);
        assert_ne!(
            message("POST", "/p", 1, "n", b"abc"),
            message("POST", "/p", 1, "n", b"abd")
        );
    }

    #[test]
    fn signed_headers_name_the_key_and_verify_over_the_message() {
        let key = SecretKey::from_seed([7; 32]);
        let h = sign(&key, "POST", "/v1/jobs", b"name = 'x'", 1_234);
        let get = |name: &str| h.iter().find(|(k, _)| *k == name).unwrap().1.clone();
        assert_eq!(get(HEADER_ADDRESS), key.address().to_string());
        assert_eq!(get(HEADER_TIMESTAMP), "1234");
        let nonce = get(HEADER_NONCE);
        assert_eq!(nonce.len(), 32);
        let pk: PublicKey = get(HEADER_PUBLIC_KEY).parse().unwrap();
        let sig: Signature = get(HEADER_SIGNATURE).parse().unwrap();
        pk.verify(
            &message("POST", "/v1/jobs", 1_234, &nonce, b"name = 'x'"),
            &sig,
        )
        .unwrap();
        // A fresh nonce per request.
        assert_ne!(
            nonce,
            sign(&key, "POST", "/v1/jobs", b"", 1_234)
                .into_iter()
                .find(|(k, _)| *k == HEADER_NONCE)
                .unwrap()
                .1
        );
    }
}
