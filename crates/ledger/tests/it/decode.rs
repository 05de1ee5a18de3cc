//! Decoding hostile bytes as transactions: errors, never panics.

use proptest::prelude::*;
use trib_ledger::{
    Action, CurationMode, DataType, SignedTransaction, TxError, Visibility, VoteChoice,
};
use trib_types::{
    AdapterId, Amount, Canonical, ContributionId, DatanetId, Hash, ModelId, ReceiptId,
};

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
        Action::CreateDatanet {
            name: "legal".into(),
            metadata_hash: Hash::of(b"m"),
            data_type: DataType::Instruction,
            curation: CurationMode::ValidatorVote { quorum_bps: 3_000 },
            stake_per_contribution: Amount(7),
            visibility: Visibility::Permissioned,
        },
        Action::Contribute {
            datanet: DatanetId(Hash::of(b"d")),
            contribution: ContributionId(Hash::of(b"c")),
            rows_root: Hash::of(b"r"),
            rows: 3,
            bytes: 300,
        },
        Action::Curate {
            contribution: ContributionId(Hash::of(b"c")),
            accept: false,
            reason: "dup".into(),
        },
        Action::PublishVersion {
            datanet: DatanetId(Hash::of(b"d")),
            root: Hash::of(b"v"),
            rows: 3,
            contributions: vec![ContributionId(Hash::of(b"c"))],
        },
        Action::GrantAccess {
            datanet: DatanetId(Hash::of(b"d")),
            to: user(2).address(),
        },
        Action::RevokeAccess {
            datanet: DatanetId(Hash::of(b"d")),
            to: user(2).address(),
        },
        Action::RegisterBaseModel {
            model: ModelId(Hash::of(b"m")),
            name: "n".into(),
            architecture: "llama".into(),
            licence: "MIT".into(),
        },
        Action::RegisterAdapter {
            adapter: AdapterId(Hash::of(b"a")),
            base: ModelId(Hash::of(b"m")),
            name: "n".into(),
            datanets: vec![(DatanetId(Hash::of(b"d")), 1)],
            config_hash: Hash::ZERO,
            metrics_hash: Hash::ZERO,
            price_in_per_1k: Amount(1),
            price_out_per_1k: Amount(2),
        },
        Action::SetAdapterPrice {
            adapter: AdapterId(Hash::of(b"a")),
            price_in_per_1k: Amount(1),
            price_out_per_1k: Amount(2),
        },
        Action::ApproveOperator {
            operator: user(3).address(),
            allowance: Amount(9),
        },
        Action::SettleInference {
            receipt: ReceiptId(Hash::of(b"r")),
            payer: user(2).address(),
            adapter: Some(AdapterId(Hash::of(b"a"))),
            base: ModelId(Hash::of(b"m")),
            prompt_tokens: 10,
            completion_tokens: 20,
            weights: vec![(ContributionId(Hash::of(b"c")), 5)],
            method: "token".into(),
            evidence_hash: Hash::ZERO,
            datanets: vec![(DatanetId(Hash::of(b"d")), 1)],
        },
        Action::ClaimStakingRewards,
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
    let all = samples();
    assert_eq!(all.len(), 19, "one sample per action variant");
    for s in all {
        decode_round_trip(&s).unwrap();
    }
}

#[test]
fn every_action_round_trips_through_json() {
    // The node and CLI move actions as JSON (`{"type": "settle_inference", ...}`).
    for bytes in samples() {
        let tx = SignedTransaction::decode_checked(&bytes, MAX).unwrap();
        let json = serde_json::to_string(&tx).unwrap();
        let back: SignedTransaction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tx, "{json}");
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
    fn mutated_transactions_never_panic(which in 0usize..19, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
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
