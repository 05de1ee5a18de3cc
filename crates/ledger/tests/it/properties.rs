//! Property tests over random sequences of valid and invalid transactions:
//! supply is conserved, rejected transactions leave no trace, replay
//! reproduces every state root.

use proptest::prelude::*;
use trib_ledger::{
    treasury_address, Action, Genesis, Ledger, ParamChange, ProposalStatus, SignedTransaction,
    Transaction, VoteChoice,
};
use trib_types::{Address, Amount};

use crate::support::*;

const USERS: u8 = 4;

#[derive(Clone, Debug)]
struct Op {
    user: u8,
    kind: u8,
    amount: u64,
    target: u8,
    proposal: u64,
    choice: u8,
    /// 0: right nonce; 1: replay; 2: gap.
    nonce_fault: u8,
    /// 0: fine; 1: bad signature; 2: wrong chain id; 3: fee below minimum.
    fault: u8,
    /// Close the block after this transaction.
    end_block: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        1..=USERS,
        0u8..8,
        prop_oneof![Just(0u64), 1u64..50, 50u64..1_500],
        1..=USERS,
        0u64..3,
        0u8..4,
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![12 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        prop_oneof![3 => Just(false), 1 => Just(true)],
    )
        .prop_map(
            |(user, kind, amount, target, proposal, choice, nonce_fault, fault, end_block)| Op {
                user,
                kind,
                amount,
                target,
                proposal,
                choice,
                nonce_fault,
                fault,
                end_block,
            },
        )
}

fn action(op: &Op) -> Action {
    let amount = Amount::open(op.amount);
    let to = user(op.target).address();
    match op.kind {
        0 | 1 => Action::Transfer { to, amount },
        2 => Action::Stake { amount },
        3 => Action::Unstake {
            amount: Amount::open(op.amount / 4),
        },
        4 => Action::Delegate { to },
        5 => Action::Propose {
            title: format!("proposal {}", op.amount),
            description: String::new(),
            change: match op.choice {
                0 => ParamChange::GovVotingPeriodBlocks(1 + op.amount % 4),
                1 => ParamChange::MaxBlockTxs(1 + op.amount as u32),
                2 => ParamChange::GovQuorumBps(20_000), // invalid: > 10,000
                _ => ParamChange::UnbondingPeriodBlocks(1 + op.amount % 3),
            },
            deposit: Amount::open(op.amount % 15),
        },
        6 => Action::Deposit {
            proposal: op.proposal,
            amount: Amount::open(op.amount % 10),
        },
        _ => Action::Vote {
            proposal: op.proposal,
            choice: [
                VoteChoice::Yes,
                VoteChoice::No,
                VoteChoice::Abstain,
                VoteChoice::Veto,
            ][op.choice as usize],
        },
    }
}

fn build_tx(
    ledger: &Ledger,
    op: &Op,
    pending: &mut [u64; USERS as usize + 1],
) -> SignedTransaction {
    let key = user(op.user);
    let base = ledger.account(&key.address()).unwrap().nonce + pending[op.user as usize];
    let nonce = match op.nonce_fault {
        1 if base > 0 => base - 1,
        2 => base + 2,
        _ => base,
    };
    let params = ledger.params().unwrap();
    let tx = Transaction {
        chain_id: if op.fault == 2 {
            "elsewhere".into()
        } else {
            ledger.chain_id().to_string()
        },
        sender: key.public_key(),
        nonce,
        fee: if op.fault == 3 {
            Amount(params.min_fee.0 - 1)
        } else {
            params.min_fee
        },
        action: action(op),
    };
    let mut stx = tx.sign(&key);
    if op.fault == 1 {
        stx.signature.0[10] ^= 0x20;
    }
    if nonce == base && op.fault == 0 {
        pending[op.user as usize] += 1;
    }
    stx
}

fn addresses() -> Vec<Address> {
    let mut v: Vec<Address> = (1..=USERS).map(|i| user(i).address()).collect();
    v.push(treasury_address());
    v
}

/// Every part of the supply equals the sum over accounts and proposals, and
/// the parts sum to the genesis total.
fn check_supply(ledger: &Ledger, total: Amount) {
    let s = ledger.total_supply().unwrap();
    assert_eq!(
        s.total(),
        Some(total),
        "supply parts must sum to the genesis total: {s:?}"
    );
    let (mut open, mut gopen, mut unbonding, mut power) = (0u128, 0u128, 0u128, 0u128);
    for a in addresses() {
        let acc = ledger.account(&a).unwrap();
        open += acc.balance.0;
        gopen += acc.staked.0;
        unbonding += acc.unbonding_total().unwrap().0;
        power += ledger.voting_power(&a).unwrap().0;
    }
    assert_eq!(Amount(open), s.open, "OPEN in balances");
    assert_eq!(Amount(gopen), s.gopen, "gOPEN held");
    assert_eq!(Amount(unbonding), s.unbonding, "OPEN unbonding");
    assert_eq!(
        Amount(power),
        s.gopen,
        "voting power is the gOPEN, counted once"
    );
    let held: u128 = ledger
        .proposals()
        .unwrap()
        .iter()
        .filter(|p| {
            matches!(
                p.status,
                ProposalStatus::DepositPeriod | ProposalStatus::Voting
            )
        })
        .map(|p| p.total_deposit.0)
        .sum();
    assert_eq!(Amount(held), s.deposits, "deposits held by open proposals");
}

fn run(ops: Vec<Op>) {
    let g: Genesis = genesis(USERS);
    let total = g.total_allocated().unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Ledger::create(da.path().join("a.redb"), &g).unwrap();
    let b = Ledger::create(db.path().join("b.redb"), &g).unwrap();
    let mut time = 0;
    let mut block: Vec<SignedTransaction> = Vec::new();
    let mut pending = [0u64; USERS as usize + 1];
    let n = ops.len();
    for (i, op) in ops.into_iter().enumerate() {
        block.push(build_tx(&a, &op, &mut pending));
        if op.end_block || i + 1 == n {
            time += 1_000;
            let txs = std::mem::take(&mut block);
            pending = [0; USERS as usize + 1];
            let out_a = a.produce_block(txs, time, &producer()).unwrap();
            // B executes only what A committed: no rejections, same root.
            // Read the committed transactions back from A's store rather than
            // matching by hash: the tx hash does not cover the signature, so a
            // bad-signature copy of a committed transaction shares its hash.
            let kept: Vec<SignedTransaction> = out_a
                .included
                .iter()
                .map(|h| a.tx(h).unwrap().expect("committed tx is stored").tx)
                .collect();
            let out_b = b.produce_block(kept, time, &producer()).unwrap();
            assert!(
                out_b.rejected.is_empty(),
                "a transaction committed on A was rejected on B: {:?}",
                out_b.rejected
            );
            assert_eq!(
                out_a.header.state_root, out_b.header.state_root,
                "rejected transactions {:?} changed the state",
                out_a.rejected
            );
            check_supply(&a, total);
        }
    }
    // Let deposit, voting, timelock and unbonding periods run out.
    for _ in 0..12 {
        time += 1_000;
        let ra = a
            .produce_block(vec![], time, &producer())
            .unwrap()
            .header
            .state_root;
        let rb = b
            .produce_block(vec![], time, &producer())
            .unwrap()
            .header
            .state_root;
        assert_eq!(ra, rb);
        check_supply(&a, total);
    }
    let report = a.verify_chain(|_, _| {}).unwrap();
    assert_eq!(report.state_root, a.head().state_root);
    b.verify_chain(|_, _| {}).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn supply_is_conserved_and_rejections_leave_no_trace(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

#[test]
fn a_block_of_only_rejected_transactions_keeps_the_state_root() {
    let mut chain = TestChain::new(&genesis(2));
    let root = chain.ledger.head().state_root;
    let cid = chain.ledger.chain_id().to_string();
    let txs = vec![
        sign(&cid, &user(1), 3, transfer(user(2).address(), 1)), // nonce gap
        sign(&cid, &user(2), 0, transfer(user(1).address(), 10_000)), // balance
        sign(
            &cid,
            &user(1),
            0,
            Action::Unstake {
                amount: Amount::open(1),
            },
        ), // no stake
        sign(
            &cid,
            &user(1),
            0,
            Action::Vote {
                proposal: 9,
                choice: VoteChoice::Yes,
            },
        ), // no proposal
    ];
    let out = chain.block(txs);
    assert_eq!(out.rejected.len(), 4);
    assert_eq!(out.header.state_root, root);
}
