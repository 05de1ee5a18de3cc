//! Decoding hostile bytes as transactions: errors, never panics.

use proptest::prelude::*;
use trib_ledger::{Action, SignedTransaction, TxError, VoteChoice};
use trib_types::{Amount, Canonical};

use crate::support::*;

const MAX: usize = 16 * 1024;

fn samples() -> Vec<Vec<u8>> {
    let k = user(1);
    let actions = vec![
        transfer(user(2).address(), 1),
        Action::Stake { amount: Amount(5) },
        Action::Unstake { amount: Amount(5) },
        Action::Delegate {
            to: user(3).address(),
        },
        Action::Propose {
            title: "t".into(),
            description: "d".into(),
            change: "min_fee=1".parse().unwrap(),
            deposit: Amount(1),
        },
        Action::Deposit {
            proposal: 3,
            amount: Amount(9),
        },
        Action::Vote {
            proposal: 3,
            choice: VoteChoice::Veto,
        },
    ];
    actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| sign("tributary-dev", &k, i as u64, a).encode())
        .collect()
}

/// Decodes and, on success, checks that re-encoding gives the same bytes.
fn decode_round_trip(bytes: &[u8]) -> Result<(), TxError> {
    let tx = SignedTransaction::decode_checked(bytes, MAX)?;
    assert_eq!(
        tx.encode(),
        bytes,
        "a decoded transaction must re-encode to the same bytes"
    );
    Ok(())
}

#[test]
fn valid_encodings_of_every_action_round_trip() {
    for s in samples() {
        decode_round_trip(&s).unwrap();
    }
}

#[test]
fn garbage_and_truncations_error_cleanly() {
    assert!(matches!(
        decode_round_trip(&[]),
        Err(TxError::Malformed { .. })
    ));
    assert!(matches!(
        decode_round_trip(&vec![0u8; MAX + 1]),
        Err(TxError::Oversize { .. })
    ));
    // A huge declared chain-id length must not allocate or panic.
    assert!(matches!(
        decode_round_trip(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        Err(TxError::Malformed { .. })
    ));
    for s in samples() {
        for cut in 0..s.len() {
            assert!(
                decode_round_trip(&s[..cut]).is_err(),
                "a truncation to {cut} bytes decoded"
            );
        }
        let mut longer = s.clone();
        longer.push(0);
        assert!(
            decode_round_trip(&longer).is_err(),
            "trailing bytes accepted"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_round_trip(&bytes);
    }

    #[test]
    fn mutated_transactions_never_panic(which in 0usize..7, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut s = samples()[which].clone();
        for (pos, x) in flips {
            let n = s.len();
            s[pos % n] ^= x;
        }
        // Either a clean error or a transaction that re-encodes identically
        // (whose signature then fails, checked elsewhere).
        let _ = decode_round_trip(&s);
    }
}
