//! State proofs, verified with the independent `verify_proof`.

use trib_ledger::{verify_proof, Account, ProofError, StateKey, StateProof, StateValue};
use trib_types::{Address, Amount, Hash};

use crate::support::*;

fn chain_with_history() -> TestChain {
    let mut chain = TestChain::new(&genesis(3));
    chain.block(vec![chain.tx(&user(1), transfer(user(2).address(), 7))]);
    chain.block(vec![chain.tx(&user(2), transfer(user(3).address(), 1))]);
    chain
}

#[test]
fn a_present_key_is_proven_and_any_alteration_fails() {
    let chain = chain_with_history();
    let key = StateKey::Account(user(2).address());
    let proof = chain.ledger.prove(key.clone(), None).unwrap();
    let root = chain.ledger.head().state_root;
    verify_proof(root, &proof).unwrap();
    let Some(StateValue::Account(acc)) = &proof.value else {
        panic!("account value expected")
    };
    assert_eq!(*acc, chain.ledger.account(&user(2).address()).unwrap());

    // Altered value.
    let mut forged = proof.clone();
    if let Some(StateValue::Account(a)) = &mut forged.value {
        a.balance = a.balance.checked_add(Amount(1)).unwrap();
    }
    assert!(matches!(
        verify_proof(root, &forged),
        Err(ProofError::Invalid { .. })
    ));
    // Claimed absent.
    let mut forged = proof.clone();
    forged.value = None;
    assert!(verify_proof(root, &forged).is_err());
    // Other key, same path.
    let mut forged = proof.clone();
    forged.key = StateKey::Account(user(1).address());
    assert!(verify_proof(root, &forged).is_err());
    // Altered root (both the trusted one and the one in the proof).
    let mut other_root = root;
    other_root.0[0] ^= 1;
    assert!(matches!(
        verify_proof(other_root, &proof),
        Err(ProofError::RootMismatch { .. })
    ));
    let mut forged = proof.clone();
    forged.state_root = other_root;
    assert!(matches!(
        verify_proof(other_root, &forged),
        Err(ProofError::Invalid { .. })
    ));
    // Wrong value kind for the key.
    let mut forged = proof;
    forged.value = Some(StateValue::VotingPower(Amount(1)));
    assert!(matches!(
        verify_proof(root, &forged),
        Err(ProofError::KindMismatch { .. })
    ));
}

#[test]
fn an_absent_key_is_proven_absent_and_a_forged_value_fails() {
    let chain = chain_with_history();
    let nobody = Address([0x42; 20]);
    let key = StateKey::Account(nobody);
    let proof = chain.ledger.prove(key, None).unwrap();
    assert!(proof.value.is_none());
    let root = chain.ledger.head().state_root;
    verify_proof(root, &proof).unwrap();
    let mut forged = proof;
    forged.value = Some(StateValue::Account(Account {
        balance: Amount::open(1),
        ..Account::default()
    }));
    assert!(verify_proof(root, &forged).is_err());
}

#[test]
fn a_proof_at_an_old_height_verifies_against_that_block_only() {
    let chain = chain_with_history();
    let key = StateKey::Account(user(3).address());
    let old = chain.ledger.prove(key.clone(), Some(1)).unwrap();
    let root1 = chain.ledger.block(1).unwrap().unwrap().header.state_root;
    verify_proof(root1, &old).unwrap();
    let Some(StateValue::Account(acc)) = &old.value else {
        panic!()
    };
    assert_eq!(
        acc.balance,
        Amount::open(1_000),
        "user 3 had not received anything at height 1"
    );
    let head_root = chain.ledger.head().state_root;
    assert!(verify_proof(
        head_root,
        &StateProof {
            state_root: head_root,
            ..old
        }
    )
    .is_err());
    assert!(chain.ledger.prove(StateKey::Params, Some(99)).is_err());
}

#[test]
fn a_proof_survives_a_json_round_trip() {
    let chain = chain_with_history();
    let proof = chain.ledger.prove(StateKey::Supply, None).unwrap();
    let json = serde_json::to_string_pretty(&proof).unwrap();
    let back: StateProof = serde_json::from_str(&json).unwrap();
    assert_eq!(back, proof);
    verify_proof(chain.ledger.head().state_root, &back).unwrap();
    // Every kind of key can be proven.
    for key in [
        StateKey::Params,
        StateKey::NextProposalId,
        StateKey::VotingPower(user(1).address()),
    ] {
        let p = chain.ledger.prove(key, None).unwrap();
        verify_proof(chain.ledger.head().state_root, &p).unwrap();
    }
    let _ = Hash::ZERO;
}
