//! [`Ledger::verify_chain`]: the whole chain replayed from the genesis file
//! in memory and checked against what is stored.
//!
//! The steps, in order (the first failure is the error):
//!
//! 1. the head record ([`read_head`]);
//! 2. genesis: block 0 commits to the stored genesis file and its state
//!    root is the one the genesis writes give ([`Replay::genesis`]);
//! 3. each later block: its header links to the previous one, time does not
//!    go backwards, the genesis producer signed it ([`check_header`]); its
//!    transaction records are all there, decode and sit where the block
//!    says ([`StoredChain::records`]); re-executed, it matches the stored
//!    transaction root, receipts, end-block events and state root
//!    ([`Replay::block`]);
//! 4. the current-state table holds exactly the replayed state
//!    ([`check_stored_state`]), and the stored state tree's root at the head
//!    is the head's state root ([`check_stored_tree`]).
//!
//! Block production lives in `ledger.rs`; the replay executes blocks with
//! the same `exec::execute_block`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jmt::Sha256Jmt;
use redb::{
    ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
};
use trib_types::{BlockHash, Hash, PublicKey, TxHash};

use crate::block::{tx_root, Block, BlockHeader, TxRecord};
use crate::error::VerifyError;
use crate::exec::{execute_block, genesis_writes, Signatures};
use crate::genesis::Genesis;
use crate::state::StateKey;
use crate::store::{
    tree_update, MemoryTree, RedbTree, BLOCKS, JMT_NODES, JMT_VALUES, META, META_HEAD, STATE, TXS,
};
use crate::tx::SignedTransaction;

use super::{Ledger, StateWrites};

/// What `verify_chain` checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks replayed, genesis included.
    pub blocks: u64,
    /// Transactions replayed.
    pub txs: u64,
    /// The head's state root (equal to the replayed one).
    pub state_root: Hash,
    /// State entries compared against the current-state table.
    pub state_entries: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Ledger {
    /// Replays every block from genesis into a fresh in-memory state and
    /// checks each header (parent, time, producer signature), transactions
    /// root, receipt and state root; then compares the stored current state
    /// and state tree with the replayed ones. Reports the first mismatch.
    /// `progress(done, total)` is called after each block. The steps, in
    /// order, are in this module's docs.
    pub fn verify_chain(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, VerifyError> {
        let start = Instant::now();
        let txn = self.db.begin_read().map_err(storage)?;
        let head = read_head(&txn)?;
        let chain = StoredChain::open(&txn)?;
        let genesis = &self.genesis;
        let block0 = chain.block(0)?;
        let mut replay = Replay::genesis(genesis, &block0.header)?;
        progress(1, head + 1);

        let mut prev = block0.header;
        let mut tx_count = 0u64;
        for height in 1..=head {
            let block = chain.block(height)?;
            check_header(height, &block.header, &prev, &genesis.producer)?;
            let records = chain.records(height, &block)?;
            replay.block(&genesis.chain_id, height, &block, &records)?;
            tx_count += records.len() as u64;
            prev = block.header;
            progress(height + 1, head + 1);
        }

        let state_entries = check_stored_state(&txn, &replay.state, head)?;
        check_stored_tree(&txn, head, prev.state_root)?;
        let report = VerifyReport {
            blocks: head + 1,
            txs: tx_count,
            state_root: prev.state_root,
            state_entries,
            elapsed: start.elapsed(),
        };
        tracing::info!(target: "trib::ledger", blocks = report.blocks, txs = report.txs, "chain verified");
        Ok(report)
    }
}

fn storage(e: impl Into<redb::Error>) -> VerifyError {
    VerifyError::Storage(e.into().to_string())
}

/// The head height from the meta table.
fn read_head(txn: &ReadTransaction) -> Result<u64, VerifyError> {
    let meta = txn.open_table(META).map_err(storage)?;
    match meta.get(META_HEAD).map_err(storage)? {
        Some(h) => Ok(u64::from_le_bytes(h.value().try_into().map_err(|_| {
            VerifyError::Genesis("the head record is not 8 bytes".into())
        })?)),
        None => Err(VerifyError::Genesis("the head record is missing".into())),
    }
}

/// The stored blocks and transaction records, as one snapshot holds them.
struct StoredChain {
    blocks: ReadOnlyTable<u64, &'static [u8]>,
    txs: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl StoredChain {
    fn open(txn: &ReadTransaction) -> Result<Self, VerifyError> {
        Ok(StoredChain {
            blocks: txn.open_table(BLOCKS).map_err(storage)?,
            txs: txn.open_table(TXS).map_err(storage)?,
        })
    }

    /// The block at `height`, decoded.
    fn block(&self, height: u64) -> Result<Block, VerifyError> {
        let raw = self
            .blocks
            .get(height)
            .map_err(storage)?
            .ok_or(VerifyError::CorruptBlock {
                height,
                what: "block record missing".into(),
            })?;
        borsh::from_slice::<Block>(raw.value()).map_err(|e| VerifyError::CorruptBlock {
            height,
            what: format!("block record does not decode: {e}"),
        })
    }

    /// The records of `block`'s transactions, in order: each present,
    /// decodable and recorded at this height and index.
    fn records(&self, height: u64, block: &Block) -> Result<Vec<TxRecord>, VerifyError> {
        let mut records = Vec::with_capacity(block.txs.len());
        for (index, hash) in block.txs.iter().enumerate() {
            let raw = self
                .txs
                .get(hash.0.as_bytes().as_slice())
                .map_err(storage)?
                .ok_or_else(|| VerifyError::CorruptBlock {
                    height,
                    what: format!("transaction {index} ({hash}) is missing"),
                })?;
            let rec: TxRecord =
                borsh::from_slice(raw.value()).map_err(|e| VerifyError::CorruptBlock {
                    height,
                    what: format!("transaction {index} ({hash}) does not decode: {e}"),
                })?;
            if rec.height != height || rec.index as usize != index {
                return Err(VerifyError::CorruptBlock {
                    height,
                    what: format!(
                        "transaction {hash} is recorded at {}:{}",
                        rec.height, rec.index
                    ),
                });
            }
            records.push(rec);
        }
        Ok(records)
    }
}

/// A block header against its parent: height, parent hash, time, producer
/// signature.
fn check_header(
    height: u64,
    h: &BlockHeader,
    prev: &BlockHeader,
    producer: &PublicKey,
) -> Result<(), VerifyError> {
    if h.height != height {
        return Err(VerifyError::CorruptBlock {
            height,
            what: format!("header says height {}", h.height),
        });
    }
    let expected_parent = prev.hash();
    if h.parent != expected_parent {
        return Err(VerifyError::ParentMismatch {
            height,
            stored: h.parent.0,
            expected: expected_parent.0,
        });
    }
    if h.time_ms < prev.time_ms {
        return Err(VerifyError::TimeWentBackwards {
            height,
            time_ms: h.time_ms,
            parent_time_ms: prev.time_ms,
        });
    }
    if h.producer != *producer || !h.verify_signature() {
        return Err(VerifyError::BadProducerSignature { height });
    }
    Ok(())
}

/// The replayed state: every key's value and the in-memory state tree.
struct Replay {
    state: HashMap<StateKey, Vec<u8>>,
    tree: MemoryTree,
}

impl Replay {
    /// The state the genesis file gives, checked against block 0: it must
    /// commit to the stored genesis file and carry the same state root.
    fn genesis(genesis: &Genesis, block0: &BlockHeader) -> Result<Self, VerifyError> {
        let mut replay = Replay {
            state: HashMap::new(),
            tree: MemoryTree::default(),
        };
        let writes = genesis_writes(genesis).map_err(|e| VerifyError::Genesis(e.to_string()))?;
        let root = replay.apply(0, writes)?;
        if block0.parent != BlockHash(genesis.hash()) {
            return Err(VerifyError::Genesis(
                "block 0 does not commit to the stored genesis file".into(),
            ));
        }
        if block0.state_root != root {
            return Err(VerifyError::StateRootMismatch {
                height: 0,
                stored: block0.state_root,
                computed: root,
            });
        }
        Ok(replay)
    }

    /// Re-executes `block` (its transactions from `records`) on the replayed
    /// state and checks the stored transaction root, that every transaction
    /// is accepted again with the stored receipt, the end-block events and
    /// the resulting state root.
    fn block(
        &mut self,
        chain_id: &str,
        height: u64,
        block: &Block,
        records: &[TxRecord],
    ) -> Result<(), VerifyError> {
        let h = &block.header;
        let recomputed: Vec<TxHash> = records.iter().map(|r| r.tx.hash()).collect();
        let computed_root = tx_root(&recomputed);
        if computed_root != h.tx_root {
            return Err(VerifyError::TxRootMismatch {
                height,
                stored: h.tx_root,
                computed: computed_root,
            });
        }
        let txs_in: Vec<SignedTransaction> = records.iter().map(|r| r.tx.clone()).collect();
        let executed = execute_block(&self.state, height, chain_id, txs_in, Signatures::Verify)
            .map_err(|e| VerifyError::CorruptBlock {
                height,
                what: e.to_string(),
            })?;
        if let Some(rej) = executed.rejected.first() {
            let index = recomputed.iter().position(|x| *x == rej.hash).unwrap_or(0) as u32;
            return Err(VerifyError::TxRejected {
                height,
                index,
                hash: rej.hash,
                error: rej.error.clone(),
            });
        }
        for (index, ((_, receipt), rec)) in executed.included.iter().zip(records).enumerate() {
            if *receipt != rec.receipt {
                return Err(VerifyError::ReceiptMismatch {
                    height,
                    index: index as u32,
                });
            }
        }
        if executed.end_block_events != block.end_block_events {
            return Err(VerifyError::CorruptBlock {
                height,
                what: "end-block events differ from replay".into(),
            });
        }
        let root = self.apply(height, executed.writes)?;
        if root != h.state_root {
            return Err(VerifyError::StateRootMismatch {
                height,
                stored: h.state_root,
                computed: root,
            });
        }
        Ok(())
    }

    /// Applies writes to the state and the tree at `version`; returns the
    /// new root.
    fn apply(&mut self, version: u64, writes: StateWrites) -> Result<Hash, VerifyError> {
        let value_set: Vec<(jmt::KeyHash, Option<Vec<u8>>)> = writes
            .iter()
            .map(|(k, v)| (k.key_hash(), v.clone()))
            .collect();
        let (root, update) = tree_update(&self.tree, &value_set, version)
            .map_err(|e| VerifyError::Storage(format!("replay state tree at {version}: {e:#}")))?;
        self.tree.apply(update);
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.state.insert(k, v);
                }
                None => {
                    self.state.remove(&k);
                }
            }
        }
        Ok(Hash(root.0))
    }
}

/// The current-state table must hold exactly the replayed `state`: every
/// stored entry equal to the replayed one and none missing. Returns the
/// number of entries compared.
fn check_stored_state(
    txn: &ReadTransaction,
    state: &HashMap<StateKey, Vec<u8>>,
    head: u64,
) -> Result<u64, VerifyError> {
    let stored_state = txn.open_table(STATE).map_err(storage)?;
    let mut seen = 0u64;
    for entry in stored_state.iter().map_err(storage)? {
        let (k, v) = entry.map_err(storage)?;
        let key: StateKey =
            borsh::from_slice(k.value()).map_err(|_| VerifyError::CurrentStateMismatch {
                height: head,
                key: format!("undecodable key {}", hex::encode(k.value())),
            })?;
        if state.get(&key).map(Vec::as_slice) != Some(v.value()) {
            return Err(VerifyError::CurrentStateMismatch {
                height: head,
                key: key.to_string(),
            });
        }
        seen += 1;
    }
    if seen != state.len() as u64 {
        let stored_keys = stored_state.len().map_err(storage)?;
        let missing = state
            .keys()
            .find(|k| {
                stored_state
                    .get(k.encode().as_slice())
                    .ok()
                    .flatten()
                    .is_none()
            })
            .map(|k| k.to_string())
            .unwrap_or_else(|| format!("{stored_keys} stored entries vs {} replayed", state.len()));
        return Err(VerifyError::CurrentStateMismatch {
            height: head,
            key: missing,
        });
    }
    Ok(seen)
}

/// The stored state tree's root at `head` must be `expected` (the head's
/// state root).
fn check_stored_tree(txn: &ReadTransaction, head: u64, expected: Hash) -> Result<(), VerifyError> {
    let nodes = txn.open_table(JMT_NODES).map_err(storage)?;
    let values = txn.open_table(JMT_VALUES).map_err(storage)?;
    let reader = RedbTree {
        nodes: &nodes,
        values: &values,
    };
    let stored_root = Sha256Jmt::new(&reader)
        .get_root_hash(head)
        .map(|r| Hash(r.0))
        .map_err(|e| VerifyError::Storage(format!("reading the stored state tree root: {e:#}")))?;
    if stored_root != expected {
        return Err(VerifyError::StoredTreeMismatch {
            height: head,
            stored: stored_root,
            expected,
        });
    }
    Ok(())
}
