//! Decodes arbitrary bytes as a signed transaction (the binary body of
//! `POST /v1/tx` and every transaction read back from a block). Decoding
//! must never panic; whatever decodes must re-encode to exactly the same
//! bytes (the encoding is canonical) and keep the same hash.
//!
//! With `TRIB_FUZZ_WRITE_SEEDS=DIR` the target writes seed inputs (one
//! signed transaction per kind of action, `seeds/tx.rs`) into DIR and exits,
//! before fuzzing starts.
#![no_main]

#[path = "seeds/tx.rs"]
mod seed_tx;
#[path = "seeds/hook.rs"]
mod seeds;

use libfuzzer_sys::fuzz_target;
use trib_ledger::SignedTransaction;
use trib_types::Canonical;

fn write_seeds(out: &std::path::Path) {
    for (i, tx) in seed_tx::transactions().iter().enumerate() {
        std::fs::write(out.join(format!("seed-tx-{i}")), tx.encode()).expect("seed");
    }
}

/// The largest input considered (the default `max_tx_bytes` is 16 KiB).
const MAX: usize = 64 * 1024;

fuzz_target!(
    init: seeds::on_request(write_seeds),
    |data: &[u8]| {
        if let Ok(tx) = SignedTransaction::decode_checked(data, MAX) {
            let again = tx.encode();
            assert_eq!(
                again.as_slice(),
                data,
                "decoded transaction does not re-encode canonically"
            );
            let back =
                SignedTransaction::decode_checked(&again, MAX).expect("re-encoded bytes decode");
            assert_eq!(back.hash(), tx.hash());
            // Signature checking must not panic either, valid or not.
            let _ = tx.verify_signature();
        }
    }
);
