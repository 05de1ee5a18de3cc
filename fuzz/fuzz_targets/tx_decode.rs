//! Decodes arbitrary bytes as a signed transaction. Decoding must never
//! panic; whatever decodes must re-encode to exactly the same bytes (the
//! encoding is canonical) and keep the same hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trib_ledger::SignedTransaction;
use trib_types::Canonical;

/// The largest input considered (the default `max_tx_bytes` is 16 KiB).
const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTransaction::decode_checked(data, MAX) {
        let again = tx.encode();
        assert_eq!(again.as_slice(), data, "decoded transaction does not re-encode canonically");
        let back = SignedTransaction::decode_checked(&again, MAX).expect("re-encoded bytes decode");
        assert_eq!(back.hash(), tx.hash());
        // Signature checking must not panic either, valid or not.
        let _ = tx.verify_signature();
    }
});
