//! Datanet registry scenarios: staking, curation, slashing, expiry,
//! versions, access and reputation.

use trib_ledger::{
    datanet_id, treasury_address, Action, ContributionStatus, CurationMode, DataType, DatanetRef,
    Params, TxError, Visibility,
};
use trib_types::{Amount, Hash};

use crate::economy::*;
use crate::support::*;

#[test]
fn a_contributor_stakes_gets_accepted_and_gets_the_stake_back_after_the_challenge_window() {
    let mut chain = TestChain::new(&genesis(3));
    let d = create_datanet(
        &mut chain,
        &user(1),
        "legal",
        CurationMode::OwnerApproval,
        Amount::open(10),
        Visibility::Public,
    );
    let start = chain.ledger.account(&addr(2)).unwrap().balance;
    ok(&mut chain, &user(2), contribute(d, cid("a"), 7));
    let after = chain.ledger.account(&addr(2)).unwrap().balance;
    assert_eq!(after, Amount(start.0 - Amount::open(10).0 - fee().0));
    assert_eq!(
        chain.ledger.total_supply().unwrap().escrowed,
        Amount::open(10)
    );
    assert_eq!(
        chain
            .ledger
            .contribution(&cid("a"))
            .unwrap()
            .unwrap()
            .status,
        ContributionStatus::Pending
    );

    ok(&mut chain, &user(1), curate(cid("a"), true, ""));
    let accepted_at = chain.ledger.height();
    let c = chain.ledger.contribution(&cid("a")).unwrap().unwrap();
    assert_eq!(c.status, ContributionStatus::Accepted);
    let window = Params::dev().datanet_challenge_window_blocks;
    assert_eq!(c.release_height, Some(accepted_at + window));

    chain.advance(window - 1);
    assert_eq!(
        chain.ledger.account(&addr(2)).unwrap().balance,
        after,
        "the stake stays escrowed during the challenge window"
    );
    chain.advance(1);
    let c = chain.ledger.contribution(&cid("a")).unwrap().unwrap();
    assert_eq!(c.status, ContributionStatus::Released);
    assert_eq!(
        chain.ledger.account(&addr(2)).unwrap().balance,
        Amount(after.0 + Amount::open(10).0)
    );
    assert_eq!(chain.ledger.total_supply().unwrap().escrowed, Amount::ZERO);
    let rep = chain.ledger.reputation(&d, &addr(2)).unwrap();
    assert_eq!(
        (rep.contributions, rep.accepted, rep.rows_accepted),
        (1, 1, 7)
    );
    let dn = chain
        .ledger
        .datanet(DatanetRef::Name("legal"))
        .unwrap()
        .unwrap();
    assert_eq!((dn.contributions, dn.accepted, dn.rows_accepted), (1, 1, 7));
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_rejected_contribution_is_slashed_by_exactly_the_governed_fraction() {
    let mut chain = TestChain::new(&genesis(3));
    // An odd stake, so the slash is a floor: 10% of 12,345 is 1,234.5 → 1,234.
    let stake = Amount(12_345);
    let d = create_datanet(
        &mut chain,
        &user(1),
        "medical",
        CurationMode::OwnerApproval,
        stake,
        Visibility::Public,
    );
    ok(&mut chain, &user(2), contribute(d, cid("spam"), 3));
    let before = chain.ledger.account(&addr(2)).unwrap().balance;
    let treasury_before = chain.ledger.account(&treasury_address()).unwrap().balance;
    ok(
        &mut chain,
        &user(1),
        curate(cid("spam"), false, "near-duplicates of row 3"),
    );
    let slashed = Amount(12_345 * u128::from(Params::dev().datanet_slash_bps) / 10_000);
    assert_eq!(slashed, Amount(1_234));
    assert_eq!(
        chain.ledger.account(&addr(2)).unwrap().balance,
        Amount(before.0 + stake.0 - slashed.0),
        "the unslashed rest returns at once"
    );
    assert_eq!(
        chain.ledger.account(&treasury_address()).unwrap().balance,
        Amount(treasury_before.0 + slashed.0 + fee().0),
        "the slash goes to the treasury (plus the curate fee)"
    );
    let c = chain.ledger.contribution(&cid("spam")).unwrap().unwrap();
    assert_eq!(
        c.status,
        ContributionStatus::Rejected {
            reason: "near-duplicates of row 3".into()
        }
    );
    assert_eq!(c.slashed, slashed);
    let rep = chain.ledger.reputation(&d, &addr(2)).unwrap();
    assert_eq!((rep.rejected, rep.slashed), (1, slashed));
    assert_eq!(chain.ledger.total_supply().unwrap().escrowed, Amount::ZERO);
    // Decided once: a second curation is refused.
    assert!(matches!(
        refused(&mut chain, &user(1), curate(cid("spam"), true, "")),
        TxError::NotPending { .. }
    ));
}

#[test]
fn only_the_owner_curates_and_a_rejection_needs_a_reason() {
    let mut chain = TestChain::new(&genesis(3));
    let d = create_datanet(
        &mut chain,
        &user(1),
        "owned",
        CurationMode::OwnerApproval,
        Amount::open(1),
        Visibility::Public,
    );
    ok(&mut chain, &user(2), contribute(d, cid("x"), 1));
    assert!(matches!(
        refused(&mut chain, &user(3), curate(cid("x"), true, "")),
        TxError::NotDatanetOwner { .. }
    ));
    let tx = chain.tx(&user(1), curate(cid("x"), false, "  "));
    assert!(matches!(
        chain.ledger.check_tx(&tx),
        Err(TxError::InvalidField {
            field: "reason",
            ..
        })
    ));
}

#[test]
fn a_validator_vote_decides_once_the_quorum_of_gopen_has_voted() {
    let mut chain = TestChain::new(&genesis(4));
    // gOPEN: user 1 holds 100, user 3 holds 300 → total 400; quorum 50% = 200.
    ok(
        &mut chain,
        &user(1),
        Action::Stake {
            amount: Amount::open(100),
        },
    );
    ok(
        &mut chain,
        &user(3),
        Action::Stake {
            amount: Amount::open(300),
        },
    );
    let d = create_datanet(
        &mut chain,
        &user(4),
        "voted",
        CurationMode::ValidatorVote { quorum_bps: 5_000 },
        Amount::open(2),
        Visibility::Public,
    );
    ok(&mut chain, &user(2), contribute(d, cid("v"), 5));
    // The owner has no gOPEN, so it cannot vote.
    assert!(matches!(
        refused(&mut chain, &user(4), curate(cid("v"), true, "")),
        TxError::NoVotingPower { .. }
    ));
    ok(&mut chain, &user(1), curate(cid("v"), true, "fine"));
    assert_eq!(
        chain
            .ledger
            .contribution(&cid("v"))
            .unwrap()
            .unwrap()
            .status,
        ContributionStatus::Pending,
        "100 of 400 gOPEN is below the quorum"
    );
    assert!(matches!(
        refused(
            &mut chain,
            &user(1),
            curate(cid("v"), false, "changed my mind")
        ),
        TxError::AlreadyVoted { .. }
    ));
    ok(&mut chain, &user(3), curate(cid("v"), true, "fine"));
    let c = chain.ledger.contribution(&cid("v")).unwrap().unwrap();
    assert_eq!(c.status, ContributionStatus::Accepted);
    assert_eq!(c.votes.len(), 2);
    assert_eq!(c.votes[1].power, Amount::open(300));
}

#[test]
fn a_contribution_nobody_curates_expires_with_its_stake_returned_in_full() {
    let mut chain = TestChain::new(&genesis(3));
    let d = create_datanet(
        &mut chain,
        &user(1),
        "quiet",
        CurationMode::OwnerApproval,
        Amount::open(5),
        Visibility::Public,
    );
    let start = chain.ledger.account(&addr(2)).unwrap().balance;
    ok(&mut chain, &user(2), contribute(d, cid("q"), 2));
    chain.advance(Params::dev().datanet_curation_period_blocks);
    let c = chain.ledger.contribution(&cid("q")).unwrap().unwrap();
    assert_eq!(c.status, ContributionStatus::Expired);
    assert_eq!(
        chain.ledger.account(&addr(2)).unwrap().balance,
        Amount(start.0 - fee().0)
    );
    assert_eq!(chain.ledger.reputation(&d, &addr(2)).unwrap().expired, 1);
    assert_eq!(chain.ledger.total_supply().unwrap().escrowed, Amount::ZERO);
}

#[test]
fn versions_number_from_one_and_hold_only_accepted_contributions_of_their_datanet() {
    let mut chain = TestChain::new(&genesis(3));
    let d = create_datanet(
        &mut chain,
        &user(1),
        "versions",
        CurationMode::OwnerApproval,
        Amount::open(1),
        Visibility::Public,
    );
    ok(&mut chain, &user(2), contribute(d, cid("p"), 4));
    ok(&mut chain, &user(3), contribute(d, cid("q"), 6));
    ok(&mut chain, &user(1), curate(cid("p"), true, ""));
    let publish = |rows: u64, ids: Vec<_>| Action::PublishVersion {
        datanet: d,
        root: Hash::of(&rows.to_le_bytes()),
        rows,
        contributions: ids,
    };
    assert!(matches!(
        refused(&mut chain, &user(1), publish(10, vec![cid("p"), cid("q")])),
        TxError::NotAccepted { .. }
    ));
    assert!(matches!(
        refused(&mut chain, &user(2), publish(4, vec![cid("p")])),
        TxError::NotDatanetOwner { .. }
    ));
    assert!(matches!(
        refused(&mut chain, &user(1), publish(5, vec![cid("p")])),
        TxError::InvalidField { field: "rows", .. }
    ));
    ok(&mut chain, &user(1), publish(4, vec![cid("p")]));
    ok(&mut chain, &user(1), curate(cid("q"), true, ""));
    ok(&mut chain, &user(1), publish(10, vec![cid("p"), cid("q")]));
    let versions = chain.ledger.versions(&d).unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.rows))
            .collect::<Vec<_>>(),
        vec![(1, 4), (2, 10)]
    );
    // A contribution of another datanet is refused by name.
    let other = create_datanet(
        &mut chain,
        &user(2),
        "other",
        CurationMode::OwnerApproval,
        Amount::ZERO,
        Visibility::Public,
    );
    assert!(matches!(
        refused(
            &mut chain,
            &user(2),
            Action::PublishVersion {
                datanet: other,
                root: Hash::ZERO,
                rows: 1,
                contributions: vec![cid("p")],
            }
        ),
        TxError::WrongDatanet { .. }
    ));
}

#[test]
fn datanet_names_are_unique_and_validated() {
    let mut chain = TestChain::new(&genesis(2));
    create_datanet(
        &mut chain,
        &user(1),
        "dup",
        CurationMode::OwnerApproval,
        Amount::ZERO,
        Visibility::Public,
    );
    let again = Action::CreateDatanet {
        name: "dup".into(),
        metadata_hash: Hash::ZERO,
        data_type: DataType::Text,
        curation: CurationMode::OwnerApproval,
        stake_per_contribution: Amount::ZERO,
        visibility: Visibility::Public,
    };
    assert!(matches!(
        refused(&mut chain, &user(2), again),
        TxError::DatanetExists { .. }
    ));
    for (bad, quorum) in [("Bad Name", 1u16), ("ok-name", 0), ("ok-name", 10_001)] {
        let tx = chain.tx(
            &user(2),
            Action::CreateDatanet {
                name: bad.into(),
                metadata_hash: Hash::ZERO,
                data_type: DataType::Text,
                curation: CurationMode::ValidatorVote { quorum_bps: quorum },
                stake_per_contribution: Amount::ZERO,
                visibility: Visibility::Public,
            },
        );
        assert!(matches!(
            chain.ledger.check_tx(&tx),
            Err(TxError::InvalidField { .. })
        ));
    }
    assert_eq!(chain.ledger.datanets().unwrap().len(), 1);
    assert_eq!(
        chain
            .ledger
            .datanet(DatanetRef::Id(datanet_id("dup")))
            .unwrap()
            .unwrap()
            .owner,
        addr(1)
    );
}

#[test]
fn a_contribution_without_the_stake_is_refused_and_ids_are_unique() {
    let mut chain = TestChain::new(&genesis(3));
    let d = create_datanet(
        &mut chain,
        &user(1),
        "pricey",
        CurationMode::OwnerApproval,
        Amount::open(999),
        Visibility::Public,
    );
    ok(&mut chain, &user(2), contribute(d, cid("one"), 1));
    assert!(matches!(
        refused(&mut chain, &user(3), contribute(d, cid("one"), 1)),
        TxError::ContributionExists { .. }
    ));
    // User 2 has about 1 OPEN left: the stake of 999 is not there.
    assert!(matches!(
        refused(&mut chain, &user(2), contribute(d, cid("two"), 1)),
        TxError::InsufficientBalance { .. }
    ));
}

#[test]
fn the_leaderboard_ranks_contributors_by_earnings_then_accepted_rows() {
    let mut w = world();
    // Settle once with all weight on contributor 3.
    let action = settle(&w, "lb", 1_000, 1_000, vec![(w.contributions[1].1, 1)]);
    ok(&mut w.chain, &user(OPERATOR), action);
    let board = w.chain.ledger.leaderboard(&w.datanet).unwrap();
    let order: Vec<_> = board.iter().map(|(a, _)| *a).collect();
    assert_eq!(order, vec![addr(3), addr(4), addr(2)]);
    assert!(!board[0].1.earnings.is_zero());
    assert_eq!(board[1].1.rows_accepted, 60);
}
