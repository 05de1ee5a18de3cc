//! Blocks, transactions, receipts and replay.

use trib_ledger::{treasury_address, Action, Event, TxError};
use trib_types::Amount;

use crate::support::*;

#[test]
fn a_transfer_moves_open_and_pays_the_fee_to_the_treasury() {
    let mut chain = TestChain::new(&genesis(2));
    let (a, b) = (user(1), user(2));
    let tx = chain.tx(&a, transfer(b.address(), 10));
    let hash = tx.hash();
    let out = chain.block(vec![tx]);
    assert_eq!(out.included, vec![hash]);
    assert!(out.rejected.is_empty());
    let fee = trib_ledger::Params::dev().min_fee;
    let acc_a = chain.ledger.account(&a.address()).unwrap();
    assert_eq!(acc_a.balance, Amount::open(990).checked_sub(fee).unwrap());
    assert_eq!(acc_a.nonce, 1);
    assert_eq!(
        chain.ledger.account(&b.address()).unwrap().balance,
        Amount::open(1_010)
    );
    assert_eq!(
        chain.ledger.account(&treasury_address()).unwrap().balance,
        fee
    );
    let rec = chain
        .ledger
        .tx(&hash)
        .unwrap()
        .expect("committed tx is queryable");
    assert_eq!((rec.height, rec.index), (1, 0));
    assert!(rec.receipt.events.contains(&Event::Transfer {
        from: a.address(),
        to: b.address(),
        amount: Amount::open(10)
    }));
    let report = chain.ledger.verify_chain(|_, _| {}).unwrap();
    assert_eq!(report.blocks, 2);
    assert_eq!(report.txs, 1);
}

#[test]
fn rejected_transactions_are_left_out_with_precise_errors() {
    let mut chain = TestChain::new(&genesis(2));
    let (a, b) = (user(1), user(2));
    let good = chain.tx(&a, transfer(b.address(), 1));
    let replay = good.clone();
    let gap = sign(chain.ledger.chain_id(), &a, 5, transfer(b.address(), 1));
    let broke = sign(chain.ledger.chain_id(), &b, 0, transfer(a.address(), 5_000));
    let wrong_chain = sign("other-chain", &b, 0, transfer(a.address(), 1));
    let out = chain.block(vec![good.clone(), replay, gap, broke, wrong_chain]);
    assert_eq!(out.included, vec![good.hash()]);
    let errors: Vec<TxError> = out.rejected.iter().map(|r| r.error.clone()).collect();
    assert!(
        matches!(
            errors[0],
            TxError::NonceReplay {
                expected: 1,
                got: 0,
                ..
            }
        ),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(
            errors[1],
            TxError::NonceGap {
                expected: 1,
                got: 5,
                ..
            }
        ),
        "{:?}",
        errors[1]
    );
    assert!(
        matches!(errors[2], TxError::InsufficientBalance { .. }),
        "{:?}",
        errors[2]
    );
    assert!(
        errors[2]
            .to_string()
            .contains("have 1001 OPEN, need 5000.000001 OPEN"),
        "{}",
        errors[2]
    );
    assert!(
        matches!(errors[3], TxError::WrongChainId { .. }),
        "{:?}",
        errors[3]
    );
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn stake_unstake_and_release_after_the_unbonding_period() {
    let mut chain = TestChain::new(&genesis(1));
    let a = user(1);
    chain.block(vec![chain.tx(
        &a,
        Action::Stake {
            amount: Amount::open(100),
        },
    )]);
    let acc = chain.ledger.account(&a.address()).unwrap();
    assert_eq!(acc.staked, Amount::open(100));
    assert_eq!(
        chain.ledger.voting_power(&a.address()).unwrap(),
        Amount::open(100)
    );
    let out = chain.block(vec![chain.tx(
        &a,
        Action::Unstake {
            amount: Amount::open(40),
        },
    )]);
    let release = out.header.height + trib_ledger::Params::dev().unbonding_period_blocks;
    let acc = chain.ledger.account(&a.address()).unwrap();
    assert_eq!(acc.staked, Amount::open(60));
    assert_eq!(acc.unbonding.len(), 1);
    assert_eq!(acc.unbonding[0].release_height, release);
    let supply = chain.ledger.total_supply().unwrap();
    assert_eq!(
        (supply.gopen, supply.unbonding),
        (Amount::open(60), Amount::open(40))
    );
    while chain.ledger.height() < release - 1 {
        chain.advance(1);
    }
    assert_eq!(
        chain.ledger.account(&a.address()).unwrap().unbonding.len(),
        1,
        "not released early"
    );
    let out = chain.block(vec![]);
    assert!(out.end_block_events.contains(&Event::Unbonded {
        account: a.address(),
        amount: Amount::open(40)
    }));
    let acc = chain.ledger.account(&a.address()).unwrap();
    assert!(acc.unbonding.is_empty());
    assert_eq!(chain.ledger.total_supply().unwrap().unbonding, Amount::ZERO);
    // Too much unstaking is refused with the stake named.
    let out = chain.block(vec![chain.tx(
        &a,
        Action::Unstake {
            amount: Amount::open(61),
        },
    )]);
    assert!(matches!(
        out.rejected[0].error,
        TxError::InsufficientStake { .. }
    ));
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn delegation_moves_voting_power() {
    let mut chain = TestChain::new(&genesis(2));
    let (a, b) = (user(1), user(2));
    chain.block(vec![chain.tx(
        &a,
        Action::Stake {
            amount: Amount::open(30),
        },
    )]);
    chain.block(vec![chain.tx(&a, Action::Delegate { to: b.address() })]);
    assert_eq!(
        chain.ledger.voting_power(&a.address()).unwrap(),
        Amount::ZERO
    );
    assert_eq!(
        chain.ledger.voting_power(&b.address()).unwrap(),
        Amount::open(30)
    );
    // Staking more adds to the delegate's power.
    chain.block(vec![chain.tx(
        &a,
        Action::Stake {
            amount: Amount::open(5),
        },
    )]);
    assert_eq!(
        chain.ledger.voting_power(&b.address()).unwrap(),
        Amount::open(35)
    );
    chain.block(vec![chain.tx(&a, Action::Delegate { to: a.address() })]);
    assert_eq!(
        chain.ledger.voting_power(&a.address()).unwrap(),
        Amount::open(35)
    );
    assert_eq!(
        chain.ledger.voting_power(&b.address()).unwrap(),
        Amount::ZERO
    );
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_block_with_one_bad_signature_among_many_rejects_only_that_one() {
    let mut chain = TestChain::new(&genesis(40));
    let mut txs: Vec<_> = (1..=40u8)
        .map(|i| chain.tx(&user(i), transfer(user(1).address(), 1)))
        .collect();
    txs[17].signature.0[5] ^= 0x10;
    let bad = txs[17].hash();
    let out = chain.block(txs);
    assert_eq!(out.included.len(), 39);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].hash, bad);
    assert!(
        matches!(out.rejected[0].error, TxError::BadSignature { sender } if sender == user(18).address())
    );
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn the_ledger_reopens_at_its_head_and_refuses_to_be_created_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.redb");
    let g = genesis(2);
    let head = {
        let ledger = trib_ledger::Ledger::create(&path, &g).unwrap();
        let tx = sign(
            ledger.chain_id(),
            &user(1),
            0,
            transfer(user(2).address(), 3),
        );
        ledger.produce_block(vec![tx], 5, &producer()).unwrap();
        ledger.produce_block(vec![], 6, &producer()).unwrap();
        ledger.head()
    };
    assert!(matches!(
        trib_ledger::Ledger::create(&path, &g),
        Err(trib_ledger::LedgerError::AlreadyExists(_))
    ));
    let ledger = trib_ledger::Ledger::open(&path).unwrap();
    assert_eq!(ledger.head(), head);
    assert_eq!(ledger.height(), 2);
    assert_eq!(ledger.genesis(), &g);
    ledger.verify_chain(|_, _| {}).unwrap();
    let missing = dir.path().join("nope.redb");
    assert!(matches!(
        trib_ledger::Ledger::open(&missing),
        Err(trib_ledger::LedgerError::NotFound(_))
    ));
}

#[test]
fn only_the_genesis_producer_can_produce_blocks() {
    let chain = TestChain::new(&genesis(1));
    let err = chain.ledger.produce_block(vec![], 5, &user(1)).unwrap_err();
    assert!(
        matches!(err, trib_ledger::LedgerError::WrongProducer { .. }),
        "{err}"
    );
    assert_eq!(chain.ledger.height(), 0);
}

#[test]
fn a_ledger_open_elsewhere_is_reported_as_locked() {
    let chain = TestChain::new(&genesis(1));
    let path = chain.ledger.path().to_path_buf();
    let err = trib_ledger::Ledger::open(&path).unwrap_err();
    assert!(matches!(err, trib_ledger::LedgerError::Locked(_)), "{err}");
}

/// ZIP-215 edge case inside a block: a small-order sender key (the identity
/// point) with a degenerate signature. Whatever single verification decides,
/// the block's batch verification must decide the same.
#[test]
fn block_batch_verification_agrees_with_single_verification_on_small_order_keys() {
    let mut chain = TestChain::new(&genesis(40));
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut sig = [0u8; 64];
    sig[0] = 1; // R = identity, s = 0
    let odd = trib_ledger::SignedTransaction {
        tx: trib_ledger::Transaction {
            chain_id: chain.ledger.chain_id().to_string(),
            sender: trib_types::PublicKey(identity),
            nonce: 0,
            fee: trib_ledger::Params::dev().min_fee,
            action: transfer(user(1).address(), 1),
        },
        signature: trib_types::Signature(sig),
    };
    let single_accepts = odd.verify_signature().is_ok();
    // Enough transactions to take the parallel batch path.
    let mut txs: Vec<_> = (1..=40u8)
        .flat_map(|i| (0..8).map(move |n| (i, n)))
        .map(|(i, n)| {
            sign(
                chain.ledger.chain_id(),
                &user(i),
                n,
                transfer(user(2).address(), 1),
            )
        })
        .collect();
    txs.insert(100, odd.clone());
    let out = chain.block(txs);
    let rejected_for_signature = out
        .rejected
        .iter()
        .any(|r| r.hash == odd.hash() && matches!(r.error, TxError::BadSignature { .. }));
    assert_eq!(
        !rejected_for_signature, single_accepts,
        "batch and single verification disagree"
    );
    assert_eq!(out.included.len(), 320);
}
