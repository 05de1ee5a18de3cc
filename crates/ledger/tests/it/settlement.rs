//! Settlement scenarios: fees, splits, allowances, fallback, receipts,
//! proofs, the payout index and staking rewards.

use trib_ledger::{
    inference_fee, staking_pool_address, treasury_address, verify_proof, Action, Page, PayoutRole,
    StateKey, StateValue, TxError,
};
use trib_types::{split_by_bps, split_by_weight, Amount, Hash, ReceiptId};

use crate::economy::*;
use crate::support::*;

fn rid(tag: &str) -> ReceiptId {
    ReceiptId(Hash::of(tag.as_bytes()))
}

#[test]
fn an_inference_settlement_pays_each_contributor_by_weight_and_the_sums_are_exact() {
    let mut w = world();
    let (p, c) = (1_234u32, 567u32);
    let weights = vec![
        (w.contributions[0].1, 1u64),
        (w.contributions[1].1, 2),
        (w.contributions[2].1, 4),
    ];
    let l = &w.chain.ledger;
    let before: Vec<Amount> = (1..=8)
        .map(|i| l.account(&addr(i)).unwrap().balance)
        .collect();
    let treasury_before = l.account(&treasury_address()).unwrap().balance;
    let action = settle(&w, "r1", p, c, weights.clone());
    ok(&mut w.chain, &user(OPERATOR), action);
    let l = &w.chain.ledger;

    // fee = ceil((p·in + c·out) / 1000), computed here by hand.
    let exact = u128::from(p) * w.price_in.0 + u128::from(c) * w.price_out.0;
    let fee = Amount(exact.div_ceil(1000));
    assert_eq!(inference_fee(p, c, w.price_in, w.price_out), Some(fee));
    let r = l.receipt(&rid("r1")).unwrap().expect("receipt stored");
    assert_eq!(r.fee, fee);
    assert!(!r.fallback);
    let total: u128 = r.lines.iter().map(|x| x.amount.0).sum();
    assert_eq!(total, fee.0, "the lines pay out the whole fee");

    let split = l.params().unwrap().fee_split;
    let parts = split_by_bps(
        fee,
        &[
            split.contributors_bps,
            split.adapter_owner_bps,
            split.base_model_owner_bps,
            split.stakers_bps,
            split.treasury_bps,
        ],
    )
    .unwrap();
    let contributor_lines: Vec<_> = r
        .lines
        .iter()
        .filter(|x| matches!(x.role, PayoutRole::Contributor { .. }))
        .collect();
    assert_eq!(contributor_lines.len(), 3);
    let contributors_sum: u128 = contributor_lines.iter().map(|x| x.amount.0).sum();
    assert_eq!(
        contributors_sum, parts[0].0,
        "contributors get exactly their share"
    );
    // Each line is within one base unit of its exact weight share (1:2:4).
    for (line, (_, wgt)) in contributor_lines.iter().zip(&weights) {
        let floor = parts[0].0 * u128::from(*wgt) / 7;
        assert!(line.amount.0 == floor || line.amount.0 == floor + 1);
    }
    // Recipients are read from state: users 2, 3, 4.
    assert_eq!(
        contributor_lines
            .iter()
            .map(|x| x.recipient)
            .collect::<Vec<_>>(),
        vec![addr(2), addr(3), addr(4)]
    );
    // Balances moved by exactly the lines.
    assert_eq!(
        l.account(&addr(PAYER)).unwrap().balance,
        Amount(before[PAYER as usize - 1].0 - fee.0)
    );
    for (i, line) in contributor_lines.iter().enumerate() {
        let who = i as u8 + 2;
        assert_eq!(
            l.account(&addr(who)).unwrap().balance,
            Amount(before[who as usize - 1].0 + line.amount.0)
        );
    }
    let owner_line = r
        .lines
        .iter()
        .find(|x| x.role == PayoutRole::AdapterOwner)
        .unwrap();
    assert_eq!(
        (owner_line.recipient, owner_line.amount),
        (addr(OWNER), parts[1])
    );
    let base_line = r
        .lines
        .iter()
        .find(|x| x.role == PayoutRole::BaseModelOwner)
        .unwrap();
    assert_eq!(
        (base_line.recipient, base_line.amount),
        (addr(MODEL_OWNER), parts[2])
    );
    let stakers = r
        .lines
        .iter()
        .find(|x| x.role == PayoutRole::Stakers)
        .unwrap();
    assert_eq!(
        (stakers.recipient, stakers.amount),
        (staking_pool_address(), parts[3])
    );
    assert_eq!(
        l.account(&treasury_address()).unwrap().balance,
        Amount(treasury_before.0 + parts[4].0 + crate::economy::fee().0),
        "treasury: its share plus the operator's transaction fee"
    );
    // Allowance went down by the fee; earnings were recorded.
    assert_eq!(
        l.allowance(&addr(PAYER), &addr(OPERATOR)).unwrap(),
        Amount(Amount::open(100).0 - fee.0)
    );
    assert_eq!(
        l.reputation(&w.datanet, &addr(4)).unwrap().earnings,
        contributor_lines[2].amount
    );
    // The same split, recomputed with the shared function, gives the same lines.
    let by_weight = split_by_weight(parts[0], &[1, 2, 4]).unwrap();
    assert_eq!(
        contributor_lines
            .iter()
            .map(|x| x.amount)
            .collect::<Vec<_>>(),
        by_weight
    );
    l.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_settlement_over_the_allowance_is_rejected_with_no_state_change() {
    let mut w = world();
    ok(
        &mut w.chain,
        &user(PAYER),
        Action::ApproveOperator {
            operator: addr(OPERATOR),
            allowance: Amount(5),
        },
    );
    let action = settle(&w, "big", 1_000, 1_000, vec![]);
    let payer_before = w.chain.ledger.account(&addr(PAYER)).unwrap();
    let err = refused_without_trace(&mut w.chain, &user(OPERATOR), action);
    assert_eq!(w.chain.ledger.account(&addr(PAYER)).unwrap(), payer_before);
    match err {
        TxError::AllowanceExceeded { allowance, fee, .. } => {
            assert_eq!(allowance, Amount(5));
            assert_eq!(
                fee,
                inference_fee(1_000, 1_000, w.price_in, w.price_out).unwrap()
            );
        }
        other => panic!("expected AllowanceExceeded, got {other:?}"),
    }
    assert!(w.chain.ledger.receipt(&rid("big")).unwrap().is_none());

    // Over the balance (with allowance): the payer is named.
    ok(
        &mut w.chain,
        &user(PAYER),
        Action::ApproveOperator {
            operator: addr(OPERATOR),
            allowance: Amount::open(10_000),
        },
    );
    // Leave the payer 10 base units.
    let have = w.chain.ledger.account(&addr(PAYER)).unwrap().balance;
    ok(
        &mut w.chain,
        &user(PAYER),
        Action::Transfer {
            to: addr(1),
            amount: Amount(have.0 - fee().0 - 10),
        },
    );
    let huge = settle(&w, "broke", 1_000, 1_000, vec![]);
    let err = refused(&mut w.chain, &user(OPERATOR), huge);
    assert!(
        matches!(err, TxError::InsufficientBalance { address, .. } if address == addr(PAYER)),
        "{err:?}"
    );
    // An operator the payer never approved gets nothing.
    let action = settle(&w, "stranger", 10, 10, vec![]);
    assert!(matches!(
        refused(&mut w.chain, &user(3), action),
        TxError::AllowanceExceeded { allowance, .. } if allowance.is_zero()
    ));
}

#[test]
fn empty_weights_fall_back_to_datanet_contributors_pro_rata_and_say_so() {
    let mut w = world();
    let action = settle(&w, "fb", 2_000, 3_000, vec![]);
    ok(&mut w.chain, &user(OPERATOR), action);
    let r = w.chain.ledger.receipt(&rid("fb")).unwrap().unwrap();
    assert!(r.fallback, "the receipt says the fallback rule paid");
    let lines: Vec<_> = r
        .lines
        .iter()
        .filter(|x| matches!(x.role, PayoutRole::Contributor { .. }))
        .collect();
    // Rows 10 : 30 : 60.
    let share: u128 = lines.iter().map(|x| x.amount.0).sum();
    let expect = split_by_weight(Amount(share), &[10, 30, 60]).unwrap();
    assert_eq!(lines.iter().map(|x| x.amount).collect::<Vec<_>>(), expect);
    assert_eq!(
        lines.iter().map(|x| x.recipient).collect::<Vec<_>>(),
        vec![addr(2), addr(3), addr(4)]
    );
    // All-zero weights are the same as none.
    let zero = vec![(w.contributions[0].1, 0u64)];
    let action = settle(&w, "fb0", 2_000, 3_000, zero);
    ok(&mut w.chain, &user(OPERATOR), action);
    assert!(
        w.chain
            .ledger
            .receipt(&rid("fb0"))
            .unwrap()
            .unwrap()
            .fallback
    );

    // Without an adapter there are no datanets: the share goes to the treasury,
    // and the adapter owner's share to the base model's owner.
    let action = Action::SettleInference {
        receipt: rid("base-only"),
        payer: addr(PAYER),
        adapter: None,
        base: w.base,
        prompt_tokens: 100_000,
        completion_tokens: 100_000,
        weights: vec![],
        method: "none".into(),
        evidence_hash: Hash::ZERO,
        datanets: vec![],
    };
    ok(&mut w.chain, &user(OPERATOR), action);
    let r = w.chain.ledger.receipt(&rid("base-only")).unwrap().unwrap();
    assert!(r.fallback);
    let p = w.chain.ledger.params().unwrap();
    assert_eq!(r.price_in_per_1k, p.base_price_in_per_1k);
    assert!(r
        .lines
        .iter()
        .all(|x| !matches!(x.role, PayoutRole::Contributor { .. })));
    assert_eq!(r.lines.iter().map(|x| x.amount.0).sum::<u128>(), r.fee.0);
}

/// `settle` naming `datanets` instead of the adapter's `med@1`.
fn settle_naming(w: &World, tag: &str, datanets: Vec<(trib_types::DatanetId, u32)>) -> Action {
    let mut a = settle(w, tag, 10, 10, vec![(w.contributions[0].1, 1)]);
    if let Action::SettleInference { datanets: d, .. } = &mut a {
        *d = datanets;
    }
    a
}

/// Submits [`settle_naming`] and returns why it was refused.
fn refused_naming(
    w: &mut World,
    tag: &str,
    datanets: Vec<(trib_types::DatanetId, u32)>,
) -> TxError {
    let a = settle_naming(w, tag, datanets);
    refused(&mut w.chain, &user(OPERATOR), a)
}

#[test]
fn a_receipt_names_the_datanet_versions_it_was_attributed_against_and_the_ledger_checks_them() {
    let mut w = world();
    let d = w.datanet;
    // The adapter's version: accepted and recorded on the receipt.
    let a = settle_naming(&w, "v-ok", vec![(d, 1)]);
    ok(&mut w.chain, &user(OPERATOR), a);
    let r = w.chain.ledger.receipt(&rid("v-ok")).unwrap().unwrap();
    assert_eq!(r.datanets, vec![(d, 1)]);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["datanets"][0][1], 1, "{json}");

    // Version 2 is not published yet: unknown.
    let err = refused_naming(&mut w, "v-unpublished", vec![(d, 2)]);
    assert!(
        matches!(
            err,
            TxError::UnknownDatanetVersion {
                version: 2,
                latest: 1,
                ..
            }
        ),
        "{err}"
    );
    // An unknown datanet.
    let ghost = trib_types::DatanetId(Hash::of(b"ghost"));
    let err = refused_naming(&mut w, "v-ghost", vec![(ghost, 1)]);
    assert!(matches!(err, TxError::UnknownDatanet { .. }), "{err}");
    // Version 2, once published, is still not what the adapter was trained on.
    ok(
        &mut w.chain,
        &user(3),
        contribute(w.datanet, cid("later"), 5),
    );
    ok(&mut w.chain, &user(OWNER), curate(cid("later"), true, "ok"));
    ok(
        &mut w.chain,
        &user(OWNER),
        Action::PublishVersion {
            datanet: w.datanet,
            root: Hash::of(b"med v2"),
            rows: 5,
            contributions: vec![cid("later")],
        },
    );
    let err = refused_naming(&mut w, "v-other", vec![(d, 1), (d, 2)]);
    assert!(
        matches!(err, TxError::NotAdapterVersion { version: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("not among the versions adapter"),
        "{err}"
    );
    // An adapter with training data must name what it was attributed against.
    let err = refused_naming(&mut w, "v-none", vec![]);
    assert!(
        matches!(err, TxError::MissingAttributedVersions { trained: 1, .. }),
        "{err}"
    );
    // The base model alone has no datanet to name.
    let mut base_only = settle_naming(&w, "v-base", vec![(d, 1)]);
    if let Action::SettleInference {
        adapter, weights, ..
    } = &mut base_only
    {
        *adapter = None;
        weights.clear();
    }
    let err = refused(&mut w.chain, &user(OPERATOR), base_only);
    assert!(
        matches!(err, TxError::VersionsWithoutAdapter { count: 1 }),
        "{err}"
    );
    // A version listed twice is refused before any state is read.
    let a = settle_naming(&w, "v-dup", vec![(d, 1), (d, 1)]);
    let tx = w.chain.tx(&user(OPERATOR), a);
    let err = w.chain.ledger.check_tx(&tx).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
    // None of the refused settlements left a receipt.
    for tag in [
        "v-unpublished",
        "v-ghost",
        "v-other",
        "v-none",
        "v-base",
        "v-dup",
    ] {
        assert!(
            w.chain.ledger.receipt(&rid(tag)).unwrap().is_none(),
            "{tag}"
        );
    }
}

#[test]
fn weights_must_name_accepted_contributions_the_adapter_was_trained_on() {
    let mut w = world();
    // A pending contribution in the same datanet, not in version 1.
    ok(
        &mut w.chain,
        &user(3),
        contribute(w.datanet, cid("late"), 5),
    );
    let action = settle(&w, "bad1", 10, 10, vec![(cid("late"), 1)]);
    assert!(matches!(
        refused(&mut w.chain, &user(OPERATOR), action),
        TxError::NotAccepted { .. }
    ));
    ok(&mut w.chain, &user(OWNER), curate(cid("late"), true, ""));
    let action = settle(&w, "bad2", 10, 10, vec![(cid("late"), 1)]);
    assert!(matches!(
        refused(&mut w.chain, &user(OPERATOR), action),
        TxError::NotInAdapterData { .. }
    ));
    let action = settle(&w, "bad3", 10, 10, vec![(cid("nope"), 1)]);
    assert!(matches!(
        refused(&mut w.chain, &user(OPERATOR), action),
        TxError::UnknownContribution { .. }
    ));
    let c = w.contributions[0].1;
    let tx = w.chain.tx(
        &user(OPERATOR),
        settle(&w, "dup", 10, 10, vec![(c, 1), (c, 2)]),
    );
    assert!(matches!(
        w.chain.ledger.check_tx(&tx),
        Err(TxError::DuplicateContribution { .. })
    ));
}

#[test]
fn replaying_a_receipt_id_is_rejected() {
    let mut w = world();
    let action = settle(&w, "once", 10, 10, vec![]);
    ok(&mut w.chain, &user(OPERATOR), action.clone());
    assert!(matches!(
        refused(&mut w.chain, &user(OPERATOR), action),
        TxError::ReceiptExists { .. }
    ));
}

#[test]
fn a_payout_line_can_be_proven_against_the_state_root() {
    let mut w = world();
    let c = w.contributions[1].1;
    let action = settle(&w, "proven", 4_000, 1_000, vec![(c, 3)]);
    ok(&mut w.chain, &user(OPERATOR), action);
    let root = w.chain.ledger.head().state_root;
    let proof = w
        .chain
        .ledger
        .prove(StateKey::Receipt(rid("proven")), None)
        .unwrap();
    verify_proof(root, &proof).unwrap();
    let Some(StateValue::Receipt(r)) = &proof.value else {
        panic!("expected a receipt value, got {:?}", proof.value);
    };
    let line = r
        .lines
        .iter()
        .find(|x| x.role == PayoutRole::Contributor { contribution: c })
        .expect("the contributor's line");
    assert_eq!(line.recipient, addr(3));
    // A forged amount does not verify.
    let mut forged = proof.clone();
    if let Some(StateValue::Receipt(r)) = &mut forged.value {
        r.lines[0].amount = Amount(r.lines[0].amount.0 + 1);
    }
    assert!(verify_proof(root, &forged).is_err());
    // The index entry pointing at it is provable too.
    let idx = w
        .chain
        .ledger
        .prove(StateKey::PayoutIndex(addr(3), 0), None)
        .unwrap();
    verify_proof(root, &idx).unwrap();
    // And the key's text form round-trips for the CLI.
    let text = StateKey::Receipt(rid("proven")).to_string();
    assert_eq!(
        text.parse::<StateKey>().unwrap(),
        StateKey::Receipt(rid("proven"))
    );
}

#[test]
fn payouts_are_indexed_by_recipient_and_paged() {
    let mut w = world();
    let c = w.contributions[2].1;
    for i in 0..5 {
        let action = settle(&w, &format!("p{i}"), 100 + i, 100, vec![(c, 1)]);
        ok(&mut w.chain, &user(OPERATOR), action);
    }
    let l = &w.chain.ledger;
    let first = l
        .payouts_by_contributor(&addr(4), Page { start: 0, limit: 2 })
        .unwrap();
    assert_eq!(
        (first.items.len(), first.total, first.next),
        (2, 5, Some(2))
    );
    let rest = l
        .payouts_by_contributor(
            &addr(4),
            Page {
                start: 2,
                limit: 10,
            },
        )
        .unwrap();
    assert_eq!((rest.items.len(), rest.next), (3, None));
    assert_eq!(rest.items[2].receipt, rid("p4"));
    let lines = l.payouts_by_receipt(&rid("p4")).unwrap().unwrap();
    assert_eq!(rest.items[2].payout, lines[rest.items[2].line as usize]);
    // The adapter owner's lines are indexed too; the treasury's are not.
    assert_eq!(
        l.payouts_by_contributor(&addr(OWNER), Page::default())
            .unwrap()
            .total,
        5
    );
    assert_eq!(
        l.payouts_by_contributor(&treasury_address(), Page::default())
            .unwrap()
            .total,
        0
    );
    assert!(l.payouts_by_receipt(&rid("nope")).unwrap().is_none());
}

#[test]
fn stakers_earn_in_proportion_to_their_gopen_and_claim_it_exactly() {
    let mut w = world();
    // gOPEN: user 8 holds 100, user 2 holds 300.
    let action = settle(&w, "s1", 50_000, 50_000, vec![]);
    ok(&mut w.chain, &user(OPERATOR), action);
    let r = w.chain.ledger.receipt(&rid("s1")).unwrap().unwrap();
    let pool = r
        .lines
        .iter()
        .find(|x| x.role == PayoutRole::Stakers)
        .unwrap()
        .amount;
    let l = &w.chain.ledger;
    let a = l.staking_rewards(&addr(STAKER)).unwrap();
    let b = l.staking_rewards(&addr(2)).unwrap();
    assert!(
        a.0 <= pool.0 / 4 && pool.0 / 4 - a.0 <= 1,
        "{a:?} of {pool:?}"
    );
    assert!(
        b.0 <= pool.0 * 3 / 4 && pool.0 * 3 / 4 - b.0 <= 1,
        "{b:?} of {pool:?}"
    );
    assert_eq!(l.total_supply().unwrap().staking_rewards, pool);

    // Staking more settles first: the earlier rewards are kept, not diluted.
    ok(
        &mut w.chain,
        &user(STAKER),
        Action::Stake {
            amount: Amount::open(200),
        },
    );
    assert_eq!(w.chain.ledger.staking_rewards(&addr(STAKER)).unwrap(), a);
    let before = w.chain.ledger.account(&addr(STAKER)).unwrap().balance;
    ok(&mut w.chain, &user(STAKER), Action::ClaimStakingRewards);
    assert_eq!(
        w.chain.ledger.account(&addr(STAKER)).unwrap().balance,
        Amount(before.0 + a.0 - fee().0)
    );
    assert!(w
        .chain
        .ledger
        .staking_rewards(&addr(STAKER))
        .unwrap()
        .is_zero());
    assert!(matches!(
        refused(&mut w.chain, &user(STAKER), Action::ClaimStakingRewards),
        TxError::NothingToClaim { .. }
    ));
    // Now 300 : 300: the next distribution is split evenly.
    let action = settle(&w, "s2", 50_000, 50_000, vec![]);
    ok(&mut w.chain, &user(OPERATOR), action);
    let a2 = w.chain.ledger.staking_rewards(&addr(STAKER)).unwrap();
    let b2 = w.chain.ledger.staking_rewards(&addr(2)).unwrap();
    assert!(b2.0 - b.0 == a2.0 || b2.0 - b.0 == a2.0 + 1 || b2.0 - b.0 + 1 == a2.0);
    w.chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn an_operator_settling_its_own_usage_needs_its_own_approval_and_pays_both_fees() {
    let mut w = world();
    let mut own = settle(&w, "self", 1_000, 1_000, vec![]);
    if let Action::SettleInference { payer, .. } = &mut own {
        *payer = addr(OPERATOR);
    }
    assert!(matches!(
        refused(&mut w.chain, &user(OPERATOR), own.clone()),
        TxError::AllowanceExceeded { .. }
    ));
    ok(
        &mut w.chain,
        &user(OPERATOR),
        Action::ApproveOperator {
            operator: addr(OPERATOR),
            allowance: Amount::open(1),
        },
    );
    let before = w.chain.ledger.account(&addr(OPERATOR)).unwrap().balance;
    ok(&mut w.chain, &user(OPERATOR), own);
    let r = w.chain.ledger.receipt(&rid("self")).unwrap().unwrap();
    assert_eq!(
        w.chain.ledger.account(&addr(OPERATOR)).unwrap().balance,
        Amount(before.0 - r.fee.0 - crate::economy::fee().0)
    );
}

#[test]
fn a_new_adapter_price_applies_to_the_next_settlement() {
    let mut w = world();
    ok(
        &mut w.chain,
        &user(OWNER),
        Action::SetAdapterPrice {
            adapter: w.adapter,
            price_in_per_1k: Amount(3_000),
            price_out_per_1k: Amount(7_000),
        },
    );
    let action = settle(&w, "repriced", 1_500, 500, vec![]);
    ok(&mut w.chain, &user(OPERATOR), action);
    let r = w.chain.ledger.receipt(&rid("repriced")).unwrap().unwrap();
    // (1,500 × 3,000 + 500 × 7,000) / 1,000 = 8,000 exactly.
    assert_eq!(r.fee, Amount(8_000));
    assert_eq!(
        (r.price_in_per_1k, r.price_out_per_1k),
        (Amount(3_000), Amount(7_000))
    );
}
