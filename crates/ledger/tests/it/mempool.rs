//! The mempool: admission against committed state plus pending nonces.

use trib_ledger::{Action, Mempool, TxError};
use trib_types::Amount;

use crate::support::*;

#[test]
fn the_mempool_queues_consecutive_nonces_and_refuses_gaps_replays_and_duplicates() {
    let mut chain = TestChain::new(&genesis(2));
    let cid = chain.ledger.chain_id().to_string();
    let (a, b) = (user(1), user(2));
    let mut pool = Mempool::new(100);
    let t0 = sign(&cid, &a, 0, transfer(b.address(), 1));
    let t1 = sign(&cid, &a, 1, transfer(b.address(), 1));
    pool.add(t0.clone(), &chain.ledger).unwrap();
    assert!(matches!(
        pool.add(t0.clone(), &chain.ledger),
        Err(TxError::Duplicate { .. })
    ));
    let gap = sign(&cid, &a, 3, transfer(b.address(), 1));
    assert!(matches!(
        pool.add(gap, &chain.ledger),
        Err(TxError::NonceGap {
            expected: 1,
            got: 3,
            ..
        })
    ));
    pool.add(t1.clone(), &chain.ledger).unwrap();
    assert_eq!(pool.next_nonce(&a.address()), Some(2));
    let other = sign(&cid, &b, 0, transfer(a.address(), 2));
    pool.add(other.clone(), &chain.ledger).unwrap();
    assert_eq!(pool.len(), 3);
    let drained = pool.drain(10);
    assert_eq!(drained, vec![t0.clone(), t1, other]);
    assert!(pool.is_empty());
    let out = chain.block(drained);
    assert!(out.rejected.is_empty());
    // Now nonce 0 is used on chain.
    assert!(matches!(
        pool.add(t0, &chain.ledger),
        Err(TxError::NonceReplay {
            expected: 2,
            got: 0,
            ..
        })
    ));
}

#[test]
fn pending_spends_count_against_the_balance() {
    let chain = TestChain::new(&genesis(2));
    let cid = chain.ledger.chain_id().to_string();
    let (a, b) = (user(1), user(2));
    let mut pool = Mempool::new(100);
    assert_eq!(pool.pending_spend(&a.address()), Amount::ZERO);
    let first = sign(&cid, &a, 0, transfer(b.address(), 600));
    let cost = Mempool::spend_of(&first).unwrap();
    assert_eq!(cost, Amount(Amount::open(600).0 + first.tx.fee.0));
    pool.add(first, &chain.ledger).unwrap();
    // The node's admission of paid requests subtracts this from the balance.
    assert_eq!(pool.pending_spend(&a.address()), cost);
    assert_eq!(pool.pending_spend(&b.address()), Amount::ZERO);
    let err = pool
        .add(sign(&cid, &a, 1, transfer(b.address(), 600)), &chain.ledger)
        .unwrap_err();
    match err {
        TxError::InsufficientBalance { have, need, .. } => {
            assert_eq!(have, Amount::open(1_000));
            assert!(need > Amount::open(1_200));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn stateless_failures_are_refused_before_anything_else() {
    let chain = TestChain::new(&genesis(1));
    let mut pool = Mempool::new(1);
    let a = user(1);
    let mut bad = sign(
        chain.ledger.chain_id(),
        &a,
        0,
        transfer(user(2).address(), 1),
    );
    bad.signature.0[0] ^= 1;
    assert!(matches!(
        pool.add(bad, &chain.ledger),
        Err(TxError::BadSignature { .. })
    ));
    let zero = sign(
        chain.ledger.chain_id(),
        &a,
        0,
        Action::Stake {
            amount: Amount::ZERO,
        },
    );
    assert!(matches!(
        pool.add(zero, &chain.ledger),
        Err(TxError::ZeroAmount { .. })
    ));
    pool.add(
        sign(
            chain.ledger.chain_id(),
            &a,
            0,
            transfer(user(2).address(), 1),
        ),
        &chain.ledger,
    )
    .unwrap();
    assert!(pool.is_full());
    let next = sign(
        chain.ledger.chain_id(),
        &a,
        1,
        transfer(user(2).address(), 1),
    );
    assert!(matches!(
        pool.add(next, &chain.ledger),
        Err(TxError::MempoolFull { capacity: 1 })
    ));
}

#[test]
fn add_batch_verifies_signatures_in_bulk_and_matches_add() {
    let chain = TestChain::new(&genesis(30));
    let cid = chain.ledger.chain_id().to_string();
    let mut txs: Vec<_> = (1..=30u8)
        .map(|i| sign(&cid, &user(i), 0, transfer(user(1).address(), 1)))
        .collect();
    txs[4].signature.0[9] ^= 4;
    let mut pool = Mempool::new(100);
    let results = pool.add_batch(txs, &chain.ledger);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 29);
    assert!(matches!(results[4], Err(TxError::BadSignature { .. })));
}

#[test]
fn recheck_drops_transactions_a_block_made_invalid() {
    let mut chain = TestChain::new(&genesis(2));
    let cid = chain.ledger.chain_id().to_string();
    let (a, b) = (user(1), user(2));
    let mut pool = Mempool::new(100);
    pool.add(sign(&cid, &a, 0, transfer(b.address(), 1)), &chain.ledger)
        .unwrap();
    // The same nonce gets committed through another path (another node, a
    // direct block): the pending one is now a replay.
    chain.block(vec![sign(&cid, &a, 0, transfer(b.address(), 2))]);
    let dropped = pool.recheck(&chain.ledger);
    assert_eq!(dropped.len(), 1);
    assert!(matches!(dropped[0].error, TxError::NonceReplay { .. }));
    assert!(pool.is_empty());
}

#[test]
fn producing_from_the_mempool_commits_its_transactions_and_empties_it() {
    let chain = TestChain::new(&genesis(3));
    let cid = chain.ledger.chain_id().to_string();
    let mut pool = Mempool::new(100);
    let mut hashes = Vec::new();
    for i in 1..=3u8 {
        for n in 0..2 {
            hashes.push(
                pool.add(
                    sign(&cid, &user(i), n, transfer(user(1).address(), 1)),
                    &chain.ledger,
                )
                .unwrap(),
            );
        }
    }
    let out = chain
        .ledger
        .produce_block_from(&mut pool, 10, &producer())
        .unwrap();
    assert_eq!(out.included, hashes);
    assert!(pool.is_empty());
    for h in &hashes {
        assert!(chain.ledger.tx(h).unwrap().is_some());
    }
    // Replay re-verifies the signatures the producer skipped.
    chain.ledger.verify_chain(|_, _| {}).unwrap();
}

#[test]
fn a_block_in_flight_keeps_its_nonces_and_spends_counted_until_committed_or_put_back() {
    let chain = TestChain::new(&genesis(2));
    let cid = chain.ledger.chain_id().to_string();
    let (a, b) = (user(1), user(2));
    let mut pool = Mempool::new(100);
    let t0 = sign(&cid, &a, 0, transfer(b.address(), 600));
    pool.add(t0.clone(), &chain.ledger).unwrap();
    let taken = pool.take_block(10);
    assert_eq!(taken, vec![t0.clone()]);
    // Still pending to the outside, and still counted for admission.
    assert_eq!(pool.len(), 1);
    assert!(pool.contains(&t0.hash()));
    assert_eq!(pool.next_nonce(&a.address()), Some(1));
    assert!(matches!(
        pool.add(t0.clone(), &chain.ledger),
        Err(TxError::Duplicate { .. })
    ));
    assert!(matches!(
        pool.add(sign(&cid, &a, 0, transfer(b.address(), 1)), &chain.ledger),
        Err(TxError::NonceReplay {
            expected: 1,
            got: 0,
            ..
        })
    ));
    assert!(matches!(
        pool.add(sign(&cid, &a, 1, transfer(b.address(), 600)), &chain.ledger),
        Err(TxError::InsufficientBalance { .. })
    ));
    let t1 = sign(&cid, &a, 1, transfer(b.address(), 100));
    pool.add(t1.clone(), &chain.ledger).unwrap();
    // One block at a time.
    assert!(pool.take_block(10).is_empty());
    chain
        .ledger
        .produce_taken_block(taken, 10, &producer())
        .unwrap();
    assert!(pool.block_committed(&chain.ledger).is_empty());
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.next_nonce(&a.address()), Some(2));
    assert!(!pool.contains(&t0.hash()));

    // A block that fails puts its transactions back in front.
    assert_eq!(pool.take_block(10), vec![t1.clone()]);
    pool.block_failed(&chain.ledger);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.next_nonce(&a.address()), Some(2));
    assert_eq!(pool.take_block(10), vec![t1]);
}
