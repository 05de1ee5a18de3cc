//! A tampered database makes `verify_chain` fail, naming the height.
//!
//! These tests edit the redb file directly through its table names, as an
//! attacker with write access to the disk would.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use trib_ledger::{Account, Action, Block, Ledger, StateKey, TxRecord, VerifyError};
use trib_types::Amount;

use crate::support::*;

const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
const TXS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("txs");
const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");

/// Builds a 4-block chain in `dir` and closes it.
fn build(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("l.redb");
    let ledger = Ledger::create(&path, &genesis(3)).unwrap();
    let cid = ledger.chain_id().to_string();
    for h in 0..4u64 {
        let txs = vec![
            sign(&cid, &user(1), h, transfer(user(2).address(), 1)),
            sign(
                &cid,
                &user(3),
                h,
                Action::Stake {
                    amount: Amount::open(1),
                },
            ),
        ];
        let out = ledger.produce_block(txs, 10 + h, &producer()).unwrap();
        assert!(out.rejected.is_empty());
    }
    ledger.verify_chain(|_, _| {}).unwrap();
    path
}

fn edit_tx_record(path: &std::path::Path, height: u64, edit: impl FnOnce(&mut TxRecord)) {
    let db = Database::open(path).unwrap();
    let block: Block = {
        let r = db.begin_read().unwrap();
        let t = r.open_table(BLOCKS).unwrap();
        let b = t.get(height).unwrap().unwrap();
        borsh::from_slice(b.value()).unwrap()
    };
    let hash = block.txs[0];
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(TXS).unwrap();
        let mut rec: TxRecord = borsh::from_slice(
            t.get(hash.0.as_bytes().as_slice())
                .unwrap()
                .unwrap()
                .value(),
        )
        .unwrap();
        edit(&mut rec);
        let bytes = borsh::to_vec(&rec).unwrap();
        t.insert(hash.0.as_bytes().as_slice(), bytes.as_slice())
            .unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn an_edited_transaction_amount_is_caught_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    edit_tx_record(&path, 3, |rec| {
        if let Action::Transfer { amount, .. } = &mut rec.tx.tx.action {
            *amount = Amount::open(900);
        }
    });
    let err = Ledger::open(&path)
        .unwrap()
        .verify_chain(|_, _| {})
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::TxRootMismatch { height: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("block 3:"), "{err}");
}

#[test]
fn an_edited_receipt_is_caught_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    edit_tx_record(&path, 2, |rec| rec.receipt.events.clear());
    let err = Ledger::open(&path)
        .unwrap()
        .verify_chain(|_, _| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::ReceiptMismatch {
                height: 2,
                index: 0
            }
        ),
        "{err}"
    );
}

#[test]
fn an_edited_block_header_is_caught_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    {
        let db = Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(BLOCKS).unwrap();
            let mut block: Block =
                borsh::from_slice(t.get(2u64).unwrap().unwrap().value()).unwrap();
            block.header.state_root.0[0] ^= 1;
            t.insert(2u64, borsh::to_vec(&block).unwrap().as_slice())
                .unwrap();
        }
        w.commit().unwrap();
    }
    let err = Ledger::open(&path)
        .unwrap()
        .verify_chain(|_, _| {})
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::BadProducerSignature { height: 2 }),
        "{err}"
    );
}

#[test]
fn an_edited_state_value_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let key = StateKey::Account(user(2).address());
    {
        let db = Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(STATE).unwrap();
            let kb = borsh::to_vec(&key).unwrap();
            let mut acc: Account =
                borsh::from_slice(t.get(kb.as_slice()).unwrap().unwrap().value()).unwrap();
            acc.balance = Amount::open(1_000_000);
            t.insert(kb.as_slice(), borsh::to_vec(&acc).unwrap().as_slice())
                .unwrap();
        }
        w.commit().unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    let err = ledger.verify_chain(|_, _| {}).unwrap_err();
    match &err {
        VerifyError::CurrentStateMismatch { height: 4, key: k } => assert_eq!(*k, key.to_string()),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_deleted_state_value_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let key = StateKey::VotingPower(user(3).address());
    {
        let db = Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(STATE)
            .unwrap()
            .remove(borsh::to_vec(&key).unwrap().as_slice())
            .unwrap();
        w.commit().unwrap();
    }
    let err = Ledger::open(&path)
        .unwrap()
        .verify_chain(|_, _| {})
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::CurrentStateMismatch { key: k, .. } if *k == key.to_string()),
        "{err}"
    );
}
