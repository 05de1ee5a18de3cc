//! Property tests over random sequences mixing every action (bank, staking,
//! datanets, model registry, settlement): total supply is constant and
//! every part matches the accounts and records it sums; every fee is paid
//! out exactly; rejected transactions leave no trace (a second chain that
//! executes only the committed ones reaches the same roots); replay
//! verifies everything.

use proptest::prelude::*;
use trib_ledger::{
    datanet_id, treasury_address, Action, ContributionStatus, CurationMode, DataType, Ledger,
    PayoutRole, SignedTransaction, StateKey, Transaction, Visibility,
};
use trib_types::{split_by_bps, AdapterId, Amount, ContributionId, Hash, ModelId, ReceiptId};

use crate::support::*;

const USERS: u8 = 5;
const CONTRIBUTIONS: u8 = 10;
const DATANETS: [&str; 2] = ["alpha", "beta"];

#[derive(Clone, Debug)]
struct Op {
    user: u8,
    kind: u8,
    a: u8,
    b: u8,
    amount: u64,
    weights: Vec<u8>,
    end_block: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        1..=USERS,
        0u8..14,
        any::<u8>(),
        any::<u8>(),
        prop_oneof![Just(0u64), 1u64..20, 20u64..600],
        proptest::collection::vec(0u8..4, 0..4),
        prop_oneof![2 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(user, kind, a, b, amount, weights, end_block)| Op {
            user,
            kind,
            a,
            b,
            amount,
            weights,
            end_block,
        })
}

fn contribution(i: u8) -> ContributionId {
    ContributionId(Hash::of(&[b'c', i % CONTRIBUTIONS]))
}

fn adapter(i: u8) -> AdapterId {
    AdapterId(Hash::of(&[b'a', i % 3]))
}

fn base() -> ModelId {
    ModelId(Hash::of(b"base"))
}

/// Accepted contributions in the latest version of `name`, if any.
fn latest(ledger: &Ledger, name: &str) -> Option<(u32, Vec<ContributionId>)> {
    let v = ledger.versions(&datanet_id(name)).ok()?.pop()?;
    Some((v.version, v.contributions))
}

fn action(ledger: &Ledger, op: &Op) -> Action {
    let target = user(1 + op.a % USERS).address();
    let name = DATANETS[(op.a % 2) as usize];
    let d = datanet_id(name);
    match op.kind {
        0 => Action::Transfer {
            to: target,
            amount: Amount::open(op.amount),
        },
        1 => Action::Stake {
            amount: Amount::open(op.amount),
        },
        2 => Action::Unstake {
            amount: Amount::open(op.amount / 3),
        },
        3 => Action::CreateDatanet {
            name: name.into(),
            metadata_hash: Hash::ZERO,
            data_type: DataType::Text,
            curation: if op.b % 2 == 0 {
                CurationMode::OwnerApproval
            } else {
                CurationMode::ValidatorVote { quorum_bps: 3_000 }
            },
            stake_per_contribution: Amount(u128::from(op.amount) * 1_000_000_007),
            visibility: if op.b % 3 == 0 {
                Visibility::Permissioned
            } else {
                Visibility::Public
            },
        },
        4 => Action::Contribute {
            datanet: d,
            contribution: contribution(op.b),
            rows_root: Hash::ZERO,
            rows: 1 + u32::from(op.a % 40),
            bytes: 100,
        },
        5 => Action::Curate {
            contribution: contribution(op.b),
            accept: op.a % 3 != 0,
            reason: "random".into(),
        },
        6 => {
            let accepted: Vec<ContributionId> = (0..CONTRIBUTIONS)
                .map(contribution)
                .filter(|c| {
                    ledger
                        .contribution(c)
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.datanet == d && r.status.is_accepted())
                })
                .collect();
            let rows = accepted
                .iter()
                .map(|c| u64::from(ledger.contribution(c).unwrap().unwrap().rows))
                .sum::<u64>();
            Action::PublishVersion {
                datanet: d,
                root: Hash::of(&rows.to_le_bytes()),
                rows: rows.max(1),
                contributions: accepted,
            }
        }
        7 => Action::RegisterBaseModel {
            model: base(),
            name: "base".into(),
            architecture: "llama".into(),
            licence: "MIT".into(),
        },
        8 => Action::RegisterAdapter {
            adapter: adapter(op.b),
            base: base(),
            name: format!("adapter {}", op.b % 3),
            datanets: latest(ledger, name)
                .map(|(v, _)| vec![(d, v)])
                .unwrap_or_default(),
            config_hash: Hash::ZERO,
            metrics_hash: Hash::ZERO,
            price_in_per_1k: Amount(u128::from(op.amount) * 999_983),
            price_out_per_1k: Amount(u128::from(op.a) * 1_000_003),
        },
        9 => Action::ApproveOperator {
            operator: target,
            allowance: Amount::open(op.amount),
        },
        10 | 11 => {
            let a = adapter(op.b);
            let with_adapter = op.kind == 10;
            let pool: Vec<ContributionId> = if with_adapter {
                ledger
                    .adapter(&a)
                    .ok()
                    .flatten()
                    .and_then(|ad| ad.datanets.first().copied())
                    .and_then(|(dn, v)| {
                        ledger
                            .versions(&dn)
                            .ok()
                            .and_then(|vs| vs.into_iter().find(|x| x.version == v))
                    })
                    .map(|v| v.contributions)
                    .unwrap_or_default()
            } else {
                vec![]
            };
            let weights = pool
                .iter()
                .zip(&op.weights)
                .map(|(c, w)| (*c, u64::from(*w) * 1_000 + u64::from(op.a)))
                .collect();
            // The adapter's training versions, as the node sends them.
            let datanets = if with_adapter {
                ledger
                    .adapter(&a)
                    .ok()
                    .flatten()
                    .map(|ad| ad.datanets)
                    .unwrap_or_default()
            } else {
                vec![]
            };
            Action::SettleInference {
                receipt: ReceiptId(Hash::of(&[op.a, op.b, op.user, op.kind])),
                payer: target,
                adapter: with_adapter.then_some(a),
                base: base(),
                prompt_tokens: u32::from(op.a) * 37,
                completion_tokens: op.amount as u32 * 11,
                weights,
                method: "token".into(),
                evidence_hash: Hash::ZERO,
                datanets,
            }
        }
        12 => Action::ClaimStakingRewards,
        _ => Action::GrantAccess {
            datanet: d,
            to: target,
        },
    }
}

fn build(ledger: &Ledger, op: &Op, pending: &mut [u64; USERS as usize + 1]) -> SignedTransaction {
    let key = user(op.user);
    let nonce = ledger.account(&key.address()).unwrap().nonce + pending[op.user as usize];
    pending[op.user as usize] += 1;
    Transaction {
        chain_id: ledger.chain_id().to_string(),
        sender: key.public_key(),
        nonce,
        fee: ledger.params().unwrap().min_fee,
        action: action(ledger, op),
    }
    .sign(&key)
}

/// Supply parts against the accounts and records they summarise.
fn check_supply(ledger: &Ledger, total: Amount) {
    let s = ledger.total_supply().unwrap();
    assert_eq!(
        s.total(),
        Some(total),
        "supply parts must sum to genesis: {s:?}"
    );
    let mut addrs: Vec<_> = (1..=USERS).map(|i| user(i).address()).collect();
    addrs.push(treasury_address());
    let (mut open, mut gopen, mut claimable) = (0u128, 0u128, 0u128);
    for a in &addrs {
        let acc = ledger.account(a).unwrap();
        open += acc.balance.0;
        gopen += acc.staked.0;
        claimable += ledger.staking_rewards(a).unwrap().0;
    }
    assert_eq!(Amount(open), s.open, "OPEN in balances");
    assert_eq!(Amount(gopen), s.gopen, "gOPEN held");
    let escrowed: u128 = (0..CONTRIBUTIONS)
        .filter_map(|i| ledger.contribution(&contribution(i)).unwrap())
        .filter(|c| {
            matches!(
                c.status,
                ContributionStatus::Pending | ContributionStatus::Accepted
            )
        })
        .map(|c| c.stake.0)
        .sum();
    assert_eq!(Amount(escrowed), s.escrowed, "stakes escrowed");
    assert!(
        claimable <= s.staking_rewards.0,
        "stakers can claim {claimable} but the pool holds {:?}",
        s.staking_rewards
    );
}

/// Every receipt pays out its fee exactly, contributors their share exactly.
fn check_receipt(ledger: &Ledger, id: &ReceiptId) {
    let Some(r) = ledger.receipt(id).unwrap() else {
        return;
    };
    let paid: u128 = r.lines.iter().map(|l| l.amount.0).sum();
    assert_eq!(paid, r.fee.0, "lines of {id} sum to its fee");
    let s = ledger.params().unwrap().fee_split;
    let parts = split_by_bps(
        r.fee,
        &[
            s.contributors_bps,
            s.adapter_owner_bps,
            s.base_model_owner_bps,
            s.stakers_bps,
            s.treasury_bps,
        ],
    )
    .unwrap();
    let contributors: u128 = r
        .lines
        .iter()
        .filter(|l| matches!(l.role, PayoutRole::Contributor { .. }))
        .map(|l| l.amount.0)
        .sum();
    if !r.fallback {
        assert_eq!(contributors, parts[0].0, "contributors' lines of {id}");
    } else {
        assert!(contributors == parts[0].0 || contributors == 0);
    }
    // The receipt is in the authenticated state.
    let proof = ledger.prove(StateKey::Receipt(*id), None).unwrap();
    trib_ledger::verify_proof(ledger.head().state_root, &proof).unwrap();
}

fn run(ops: Vec<Op>) -> (tempfile::TempDir, Ledger) {
    let g = genesis(USERS);
    let total = g.total_allocated().unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Ledger::create(da.path().join("a.redb"), &g).unwrap();
    let b = Ledger::create(db.path().join("b.redb"), &g).unwrap();
    let mut time = 0;
    let mut block: Vec<SignedTransaction> = Vec::new();
    let mut pending = [0u64; USERS as usize + 1];
    let mut receipts = Vec::new();
    let n = ops.len();
    for (i, op) in ops.into_iter().enumerate() {
        let stx = build(&a, &op, &mut pending);
        if let Action::SettleInference { receipt, .. } = &stx.tx.action {
            receipts.push(*receipt);
        }
        block.push(stx);
        if op.end_block || i + 1 == n {
            time += 1_000;
            let txs = std::mem::take(&mut block);
            pending = [0; USERS as usize + 1];
            let out_a = a.produce_block(txs.clone(), time, &producer()).unwrap();
            let kept: Vec<SignedTransaction> = txs
                .into_iter()
                .filter(|t| out_a.included.contains(&t.hash()))
                .collect();
            let out_b = b.produce_block(kept, time, &producer()).unwrap();
            assert!(out_b.rejected.is_empty(), "{:?}", out_b.rejected);
            assert_eq!(
                out_a.header.state_root, out_b.header.state_root,
                "rejected transactions {:?} changed the state",
                out_a.rejected
            );
            check_supply(&a, total);
        }
    }
    for r in &receipts {
        check_receipt(&a, r);
    }
    // Let challenge windows, curation periods and unbonding run out.
    for _ in 0..12 {
        time += 1_000;
        let ra = a.produce_block(vec![], time, &producer()).unwrap();
        let rb = b.produce_block(vec![], time, &producer()).unwrap();
        assert_eq!(ra.header.state_root, rb.header.state_root);
        check_supply(&a, total);
    }
    assert_eq!(a.total_supply().unwrap().escrowed, Amount::ZERO);
    a.verify_chain(|_, _| {}).unwrap();
    (da, a)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn supply_is_conserved_fees_are_paid_out_exactly_and_rejections_leave_no_trace(
        ops in proptest::collection::vec(op(), 1..70)
    ) {
        run(ops);
    }
}

/// A fixed sequence that reaches every action at least once with success,
/// so the property above is never vacuous for settlement.
#[test]
fn a_scripted_economy_keeps_every_invariant() {
    let mk = |user: u8, kind: u8, a: u8, b: u8, amount: u64, weights: Vec<u8>| Op {
        user,
        kind,
        a,
        b,
        amount,
        weights,
        end_block: true,
    };
    let ops = vec![
        mk(1, 3, 0, 2, 2, vec![]),       // alpha, owner approval, public
        mk(2, 1, 0, 0, 100, vec![]),     // user 2 stakes
        mk(2, 4, 0, 0, 0, vec![]),       // contribute c0
        mk(3, 4, 2, 1, 0, vec![]),       // contribute c1
        mk(4, 4, 4, 2, 0, vec![]),       // contribute c2
        mk(1, 5, 1, 0, 0, vec![]),       // accept c0
        mk(1, 5, 1, 1, 0, vec![]),       // accept c1
        mk(1, 5, 0, 2, 0, vec![]),       // reject c2 (slash)
        mk(1, 6, 0, 0, 0, vec![]),       // publish alpha v1
        mk(5, 7, 0, 0, 0, vec![]),       // base model
        mk(1, 8, 0, 0, 3, vec![]),       // adapter 0 on alpha v1
        mk(4, 9, 2, 0, 50, vec![]),      // user 4 approves user 3
        mk(3, 10, 3, 0, 40, vec![1, 3]), // settle with weights, payer user 4
        mk(3, 10, 3, 3, 40, vec![]),     // settle, fallback
        mk(3, 11, 3, 0, 40, vec![]),     // settle base only
        mk(2, 12, 0, 0, 0, vec![]),      // user 2 claims
        mk(2, 2, 0, 0, 90, vec![]),      // user 2 unstakes 30
    ];
    let (_dir, ledger) = run(ops);
    let with_weights = ReceiptId(Hash::of(&[3, 0, 3, 10]));
    let fallback = ReceiptId(Hash::of(&[3, 3, 3, 10]));
    let base_only = ReceiptId(Hash::of(&[3, 0, 3, 11]));
    for id in [with_weights, fallback, base_only] {
        assert!(
            ledger.receipt(&id).unwrap().is_some(),
            "settlement {id} did not commit"
        );
    }
    assert!(!ledger.receipt(&with_weights).unwrap().unwrap().fallback);
    assert!(ledger.receipt(&fallback).unwrap().unwrap().fallback);
    let c2 = ledger.contribution(&contribution(2)).unwrap().unwrap();
    assert!(matches!(c2.status, ContributionStatus::Rejected { .. }));
    assert!(!c2.slashed.is_zero());
    let s = ledger.total_supply().unwrap();
    assert_eq!(s.gopen, Amount::open(70));
}
