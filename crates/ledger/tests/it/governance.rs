//! Governance scenarios, named as sentences.

use trib_ledger::{
    Action, Event, Genesis, ParamChange, Params, ProposalStatus, TxError, VoteChoice,
};
use trib_types::Amount;

use crate::support::*;

/// A chain where users 1–3 stake 100, 100 and 50 OPEN (250 gOPEN in all).
fn staked_chain(params: Params) -> TestChain {
    let mut g: Genesis = genesis(4);
    g.params = params;
    let mut chain = TestChain::new(&g);
    let stakes = [(1u8, 100u64), (2, 100), (3, 50)];
    let txs = stakes
        .iter()
        .map(|(i, n)| {
            chain.tx(
                &user(*i),
                Action::Stake {
                    amount: Amount::open(*n),
                },
            )
        })
        .collect();
    let out = chain.block(txs);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    chain
}

fn propose(chain: &mut TestChain, change: ParamChange, deposit: u64) -> u64 {
    let tx = chain.tx(
        &user(4),
        Action::Propose {
            title: "Lower the minimum fee".into(),
            description: "Fees are too high for small transfers.".into(),
            change,
            deposit: Amount::open(deposit),
        },
    );
    let out = chain.block(vec![tx]);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    chain.ledger.proposals().unwrap().last().unwrap().id
}

fn vote(chain: &mut TestChain, votes: &[(u8, VoteChoice)], id: u64) {
    let txs = votes
        .iter()
        .map(|(i, c)| {
            chain.tx(
                &user(*i),
                Action::Vote {
                    proposal: id,
                    choice: *c,
                },
            )
        })
        .collect();
    let out = chain.block(txs);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

/// Advances until the proposal leaves `status`.
fn run_until_not(chain: &mut TestChain, id: u64, status: ProposalStatus) {
    for _ in 0..50 {
        if chain.ledger.proposal(id).unwrap().unwrap().status != status {
            return;
        }
        chain.advance(1);
    }
    panic!("proposal {id} stuck in {status}");
}

fn supply_is_conserved(chain: &TestChain) {
    let total = chain.ledger.genesis().total_allocated().unwrap();
    assert_eq!(chain.ledger.total_supply().unwrap().total(), Some(total));
}

#[test]
fn a_passed_proposal_changes_a_parameter_after_the_timelock() {
    let params = Params::dev();
    let mut chain = staked_chain(params.clone());
    let new_fee = Amount(params.min_fee.0 * 2);
    let before_balance = chain.ledger.account(&user(4).address()).unwrap().balance;
    let id = propose(&mut chain, ParamChange::MinFee(new_fee), 10);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(
        p.status,
        ProposalStatus::Voting,
        "the minimum deposit opens the vote at once"
    );
    vote(
        &mut chain,
        &[
            (1, VoteChoice::Yes),
            (2, VoteChoice::Yes),
            (3, VoteChoice::No),
        ],
        id,
    );
    run_until_not(&mut chain, id, ProposalStatus::Voting);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::Passed);
    let tally = p.tally.unwrap();
    assert_eq!(
        (tally.yes, tally.no, tally.total_power),
        (Amount::open(200), Amount::open(50), Amount::open(250))
    );
    // Timelocked: the parameter has not changed yet, the deposit is back.
    assert_eq!(chain.ledger.params().unwrap().min_fee, params.min_fee);
    let exec_at = p.execute_height.unwrap();
    assert_eq!(
        exec_at,
        p.voting_end_height.unwrap() + params.gov_timelock_blocks
    );
    let after = chain.ledger.account(&user(4).address()).unwrap().balance;
    assert_eq!(
        after,
        before_balance.checked_sub(params.min_fee).unwrap(),
        "deposit refunded, only the fee spent"
    );
    while chain.ledger.height() < exec_at - 1 {
        chain.advance(1);
        assert_eq!(
            chain.ledger.params().unwrap().min_fee,
            params.min_fee,
            "changed before the timelock ended"
        );
    }
    let out = chain.block(vec![]);
    assert!(out.end_block_events.contains(&Event::ParamsChanged {
        id,
        change: ParamChange::MinFee(new_fee)
    }));
    assert_eq!(chain.ledger.params().unwrap().min_fee, new_fee);
    assert_eq!(
        chain.ledger.proposal(id).unwrap().unwrap().status,
        ProposalStatus::Executed
    );
    // The new minimum is enforced from the next block on.
    let cheap = sign(
        chain.ledger.chain_id(),
        &user(1),
        1,
        transfer(user(2).address(), 1),
    );
    let out = chain.block(vec![cheap]);
    assert!(matches!(
        out.rejected[0].error,
        TxError::FeeBelowMinimum { .. }
    ));
    supply_is_conserved(&chain);
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_proposal_without_quorum_fails_and_its_deposit_is_burned() {
    let mut chain = staked_chain(Params::dev());
    let id = propose(&mut chain, ParamChange::GovQuorumBps(2_000), 12);
    vote(&mut chain, &[(3, VoteChoice::Yes)], id); // 50 of 250 gOPEN = 20% < 33.4%
    run_until_not(&mut chain, id, ProposalStatus::Voting);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::NoQuorum);
    assert!(p.deposits_burned);
    let supply = chain.ledger.total_supply().unwrap();
    assert_eq!(supply.burned, Amount::open(12));
    assert_eq!(supply.deposits, Amount::ZERO);
    assert_eq!(
        chain.ledger.params().unwrap().gov_quorum_bps,
        Params::dev().gov_quorum_bps
    );
    supply_is_conserved(&chain);
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_proposal_without_quorum_is_refunded_when_the_burn_rule_is_off() {
    let params = Params {
        gov_deposit_burn_on_fail: false,
        ..Params::dev()
    };
    let mut chain = staked_chain(params);
    let before = chain.ledger.account(&user(4).address()).unwrap().balance;
    let id = propose(&mut chain, ParamChange::GovQuorumBps(2_000), 12);
    run_until_not(&mut chain, id, ProposalStatus::Voting);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::NoQuorum);
    assert!(!p.deposits_burned);
    let after = chain.ledger.account(&user(4).address()).unwrap().balance;
    assert_eq!(after, before.checked_sub(Params::dev().min_fee).unwrap());
    assert_eq!(chain.ledger.total_supply().unwrap().burned, Amount::ZERO);
    supply_is_conserved(&chain);
}

#[test]
fn a_vetoed_proposal_is_rejected_even_with_a_yes_majority() {
    let mut chain = staked_chain(Params::dev());
    let id = propose(&mut chain, ParamChange::MaxBlockTxs(10), 10);
    // Yes 150, Veto 100 of 250 voted: the veto share (40%) is above 33.4%.
    vote(
        &mut chain,
        &[
            (1, VoteChoice::Yes),
            (2, VoteChoice::Veto),
            (3, VoteChoice::Yes),
        ],
        id,
    );
    run_until_not(&mut chain, id, ProposalStatus::Voting);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::Vetoed);
    assert_eq!(
        chain.ledger.total_supply().unwrap().burned,
        Amount::open(10)
    );
    assert_eq!(
        chain.ledger.params().unwrap().max_block_txs,
        Params::dev().max_block_txs
    );
}

#[test]
fn a_proposal_that_never_reaches_its_minimum_deposit_expires() {
    let mut chain = staked_chain(Params::dev());
    let id = propose(&mut chain, ParamChange::GovTimelockBlocks(1), 3);
    assert_eq!(
        chain.ledger.proposal(id).unwrap().unwrap().status,
        ProposalStatus::DepositPeriod
    );
    // Votes are refused before voting opens.
    let out = chain.block(vec![chain.tx(
        &user(1),
        Action::Vote {
            proposal: id,
            choice: VoteChoice::Yes,
        },
    )]);
    assert!(
        matches!(out.rejected[0].error, TxError::WrongProposalPhase { .. }),
        "{}",
        out.rejected[0].error
    );
    run_until_not(&mut chain, id, ProposalStatus::DepositPeriod);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::Expired);
    assert_eq!(chain.ledger.total_supply().unwrap().burned, Amount::open(3));
    supply_is_conserved(&chain);
}

#[test]
fn deposits_from_others_open_the_vote_and_are_refunded_to_each_depositor() {
    let mut chain = staked_chain(Params::dev());
    let id = propose(&mut chain, ParamChange::GovVotingPeriodBlocks(4), 4);
    let b1 = chain.ledger.account(&user(1).address()).unwrap().balance;
    let out = chain.block(vec![chain.tx(
        &user(1),
        Action::Deposit {
            proposal: id,
            amount: Amount::open(6),
        },
    )]);
    assert!(out.rejected.is_empty());
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::Voting);
    assert_eq!(p.total_deposit, Amount::open(10));
    vote(&mut chain, &[(1, VoteChoice::No), (2, VoteChoice::No)], id);
    run_until_not(&mut chain, id, ProposalStatus::Voting);
    let p = chain.ledger.proposal(id).unwrap().unwrap();
    assert_eq!(p.status, ProposalStatus::Rejected);
    let fee = Params::dev().min_fee;
    let b1_after = chain.ledger.account(&user(1).address()).unwrap().balance;
    // user 1 paid two fees (deposit, vote) and got the 6 OPEN back.
    assert_eq!(b1_after, b1.checked_sub(Amount(fee.0 * 2)).unwrap());
    // A deposit after voting opened is refused.
    let late = chain.tx(
        &user(2),
        Action::Deposit {
            proposal: id,
            amount: Amount::open(1),
        },
    );
    assert!(matches!(
        chain.ledger.check_tx(&late),
        Err(TxError::WrongProposalPhase { .. })
    ));
    supply_is_conserved(&chain);
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn an_invalid_parameter_change_is_refused_at_submission() {
    let mut chain = staked_chain(Params::dev());
    let bad = chain.tx(
        &user(4),
        Action::Propose {
            title: "Break the fee split".into(),
            description: String::new(),
            change: "fee_split=9000,2000,0,0,0".parse().unwrap(),
            deposit: Amount::open(10),
        },
    );
    let err = chain.ledger.check_tx(&bad).unwrap_err();
    assert!(matches!(err, TxError::InvalidParamChange { .. }), "{err}");
    assert!(err.to_string().contains("11000"), "{err}");
    let out = chain.block(vec![bad]);
    assert_eq!(out.rejected.len(), 1);
    assert!(chain.ledger.proposals().unwrap().is_empty());
}
