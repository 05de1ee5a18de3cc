//! The ledger: one redb file holding blocks, transactions, receipts, the
//! current state and every version of the state tree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use jmt::Sha256Jmt;
use redb::{Database, ReadableDatabase};
use trib_types::{Address, Amount, BlockHash, Hash, SecretKey, Signature, TxHash};

use crate::block::{tx_root, Block, BlockHeader, BlockOutcome, PhaseTimings, TxRecord};
use crate::error::{LedgerError, TxError};
use crate::exec::{check_stateless, execute_block, genesis_writes, read_params, Signatures};
use crate::genesis::{Genesis, Params};
use crate::mempool::Mempool;
use crate::modules::route;
use crate::proof::{StateProof, StateValue};
use crate::state::{Account, BlockState, Proposal, StateKey, Supply};
use crate::store::{
    tree_update, write_tree_batch, RedbState, RedbTree, BLOCKS, JMT_NODES, JMT_VALUES, META,
    META_GENESIS, META_HEAD, STATE, TXS,
};
use crate::tx::SignedTransaction;

mod verify;

pub use verify::VerifyReport;

type StateWrites = HashMap<StateKey, Option<Vec<u8>>>;

/// The embedded ledger. `Send + Sync`: share it behind an `Arc`; reads run
/// on snapshots concurrently with block production.
pub struct Ledger {
    db: Database,
    path: PathBuf,
    genesis: Genesis,
    head: RwLock<BlockHeader>,
    /// Serialises block production (one writer, consistent parent).
    producing: Mutex<()>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("height", &self.height())
            .finish()
    }
}

fn corrupt(what: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt(what.into())
}

fn decode<T: borsh::BorshDeserialize>(bytes: &[u8], what: &str) -> Result<T, LedgerError> {
    borsh::from_slice(bytes).map_err(|e| corrupt(format!("{what} does not decode: {e}")))
}

fn tree_err(e: anyhow::Error) -> LedgerError {
    LedgerError::Tree(format!("{e:#}"))
}

/// Applies state writes to the current-state table and the JMT at `version`,
/// returning the new root.
fn commit_state(
    txn: &redb::WriteTransaction,
    version: u64,
    writes: StateWrites,
) -> Result<Hash, LedgerError> {
    let mut nodes = txn.open_table(JMT_NODES)?;
    let mut values = txn.open_table(JMT_VALUES)?;
    let mut state = txn.open_table(STATE)?;
    let value_set: Vec<(jmt::KeyHash, Option<Vec<u8>>)> = writes
        .iter()
        .map(|(k, v)| (k.key_hash(), v.clone()))
        .collect();
    let (root, batch) = {
        let reader = RedbTree {
            nodes: &nodes,
            values: &values,
        };
        tree_update(&reader, &value_set, version).map_err(tree_err)?
    };
    write_tree_batch(&mut nodes, &mut values, &batch.node_batch)?;
    for (k, v) in writes {
        let kb = k.encode();
        match v {
            Some(v) => {
                state.insert(kb.as_slice(), v.as_slice())?;
            }
            None => {
                state.remove(kb.as_slice())?;
            }
        }
    }
    Ok(Hash(root.0))
}

impl Ledger {
    /// Creates a new ledger file at `path` from `genesis` and commits the
    /// genesis block (height 0). Refuses to overwrite an existing file. The
    /// file is built under a temporary name and renamed into place, so a
    /// crash leaves either no ledger or a complete one.
    pub fn create(path: impl AsRef<Path>, genesis: &Genesis) -> Result<Ledger, LedgerError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(LedgerError::AlreadyExists(path.display().to_string()));
        }
        genesis.validate()?;
        let tmp = path.with_extension("creating");
        let _ = std::fs::remove_file(&tmp);
        {
            let db = Database::create(&tmp)?;
            let txn = db.begin_write()?;
            {
                let writes = genesis_writes(genesis)?;
                let state_root = commit_state(&txn, 0, writes)?;
                let header = BlockHeader {
                    height: 0,
                    time_ms: genesis.genesis_time,
                    parent: BlockHash(genesis.hash()),
                    tx_root: tx_root(&[]),
                    state_root,
                    producer: genesis.producer,
                    signature: Signature([0; 64]),
                };
                let block = Block {
                    header,
                    txs: vec![],
                    end_block_events: vec![],
                };
                txn.open_table(BLOCKS)?
                    .insert(0u64, borsh::to_vec(&block).expect("encodes").as_slice())?;
                let mut meta = txn.open_table(META)?;
                meta.insert(META_GENESIS, genesis.to_json().as_bytes())?;
                meta.insert(META_HEAD, 0u64.to_le_bytes().as_slice())?;
                txn.open_table(TXS)?;
            }
            txn.commit()?;
        }
        std::fs::rename(&tmp, path)
            .map_err(|e| LedgerError::Storage(format!("renaming {}: {e}", tmp.display())))?;
        tracing::info!(target: "trib::ledger", path = %path.display(), chain_id = %genesis.chain_id, "ledger created");
        Ledger::open(path)
    }

    /// Opens an existing ledger.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(LedgerError::NotFound(path.display().to_string()));
        }
        let db = Database::open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                LedgerError::Locked(path.display().to_string())
            }
            other => other.into(),
        })?;
        let (genesis, head) = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let g = meta
                .get(META_GENESIS)?
                .ok_or_else(|| corrupt("the genesis record is missing"))?;
            let genesis = Genesis::from_json(
                std::str::from_utf8(g.value())
                    .map_err(|_| corrupt("the genesis record is not UTF-8"))?,
            )?;
            let h = meta
                .get(META_HEAD)?
                .ok_or_else(|| corrupt("the head record is missing"))?;
            let head = u64::from_le_bytes(
                h.value()
                    .try_into()
                    .map_err(|_| corrupt("the head record is not 8 bytes"))?,
            );
            let blocks = txn.open_table(BLOCKS)?;
            let b = blocks
                .get(head)?
                .ok_or_else(|| corrupt(format!("the head block {head} is missing")))?;
            let block: Block = decode(b.value(), "head block")?;
            (genesis, block.header)
        };
        tracing::info!(target: "trib::ledger", path = %path.display(), height = head.height, "ledger opened");
        Ok(Ledger {
            db,
            path: path.to_path_buf(),
            genesis,
            head: RwLock::new(head),
            producing: Mutex::new(()),
        })
    }

    /// The database (for the registry queries in `views`).
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// The genesis this ledger started from.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Height of the last committed block (0: only genesis).
    pub fn height(&self) -> u64 {
        self.head().height
    }

    /// Header of the last committed block.
    pub fn head(&self) -> BlockHeader {
        self.head.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A committed block, or `None` above the head.
    pub fn block(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(BLOCKS)?;
        match blocks.get(height)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(b.value(), &format!("block {height}"))?)),
        }
    }

    /// A committed transaction with its receipt.
    pub fn tx(&self, hash: &TxHash) -> Result<Option<TxRecord>, LedgerError> {
        let txn = self.db.begin_read()?;
        let txs = txn.open_table(TXS)?;
        match txs.get(hash.0.as_bytes().as_slice())? {
            None => Ok(None),
            Some(r) => Ok(Some(decode(r.value(), &format!("transaction {hash}"))?)),
        }
    }

    pub(crate) fn read_state<T: borsh::BorshDeserialize>(
        &self,
        key: &StateKey,
    ) -> Result<Option<T>, LedgerError> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        match state.get(key.encode().as_slice())? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(v.value(), &key.to_string())?)),
        }
    }

    /// An account (the default, all zero, if it never received anything).
    pub fn account(&self, address: &Address) -> Result<Account, LedgerError> {
        Ok(self
            .read_state(&StateKey::Account(*address))?
            .unwrap_or_default())
    }

    /// gOPEN voting power held by `address` (its own undelegated gOPEN plus
    /// what others delegated to it).
    pub fn voting_power(&self, address: &Address) -> Result<Amount, LedgerError> {
        Ok(self
            .read_state(&StateKey::VotingPower(*address))?
            .unwrap_or_default())
    }

    /// A proposal.
    pub fn proposal(&self, id: u64) -> Result<Option<Proposal>, LedgerError> {
        self.read_state(&StateKey::Proposal(id))
    }

    /// All proposals, by id.
    pub fn proposals(&self) -> Result<Vec<Proposal>, LedgerError> {
        let next: u64 = self.read_state(&StateKey::NextProposalId)?.unwrap_or(0);
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let mut out = Vec::with_capacity(next as usize);
        for id in 0..next {
            let key = StateKey::Proposal(id);
            if let Some(v) = state.get(key.encode().as_slice())? {
                out.push(decode(v.value(), &key.to_string())?);
            }
        }
        Ok(out)
    }

    /// The governed parameters in force.
    pub fn params(&self) -> Result<Params, LedgerError> {
        self.read_state(&StateKey::Params)?
            .ok_or_else(|| corrupt("the params entry is missing"))
    }

    /// Where all OPEN is.
    pub fn total_supply(&self) -> Result<Supply, LedgerError> {
        Ok(self.read_state(&StateKey::Supply)?.unwrap_or_default())
    }

    /// The current value of any state key.
    pub fn state_value(&self, key: &StateKey) -> Result<Option<StateValue>, LedgerError> {
        let raw: Option<Vec<u8>> = {
            let txn = self.db.begin_read()?;
            let state = txn.open_table(STATE)?;
            let v = state.get(key.encode().as_slice())?;
            v.map(|g| g.value().to_vec())
        };
        raw.map(|b| {
            StateValue::decode(key, &b).map_err(|e| corrupt(format!("{key} does not decode: {e}")))
        })
        .transpose()
    }

    /// Runs `f` on a transaction batch over the committed state (nothing is
    /// ever written).
    pub(crate) fn with_state<R>(
        &self,
        f: impl FnOnce(&crate::state::TxBatch<'_, '_>) -> Result<R, TxError>,
    ) -> Result<R, TxError> {
        let storage = |e: redb::Error| TxError::Storage(e.to_string());
        let txn = self.db.begin_read().map_err(|e| storage(e.into()))?;
        let table = txn.open_table(STATE).map_err(|e| storage(e.into()))?;
        let base = RedbState(&table);
        let params = read_params(&base).map_err(|e| TxError::Storage(e.to_string()))?;
        let block = BlockState::new(&base, self.height().saturating_add(1), params);
        let batch = block.batch();
        f(&batch)
    }

    /// Checks whether `stx` would execute now, on top of the committed state:
    /// size, chain id, fee, signature, nonce (must be the account's next),
    /// balance and the module's stateful checks. Nothing is written.
    pub fn check_tx(&self, stx: &SignedTransaction) -> Result<(), TxError> {
        let params = self.params().map_err(|e| TxError::Storage(e.to_string()))?;
        check_stateless(stx, self.chain_id(), &params)?;
        stx.verify_signature()?;
        self.with_state(|batch| {
            let sender = stx.tx.sender_address();
            let acc = batch.account(&sender)?;
            if stx.tx.nonce < acc.nonce {
                return Err(TxError::NonceReplay {
                    sender,
                    expected: acc.nonce,
                    got: stx.tx.nonce,
                });
            }
            if stx.tx.nonce > acc.nonce {
                return Err(TxError::NonceGap {
                    sender,
                    expected: acc.nonce,
                    got: stx.tx.nonce,
                });
            }
            route(&stx.tx.action)?.check_stateful(&stx.tx, batch)
        })
    }

    /// Executes `txs` in order as the next block and commits it durably.
    ///
    /// Rejected transactions are left out and reported in the outcome. The
    /// header, transactions, receipts, state and JMT nodes are written in one
    /// redb write transaction with immediate durability: after a crash the
    /// block is either all there or not at all. `time_ms` is clamped to be no
    /// earlier than the parent's time.
    pub fn produce_block(
        &self,
        txs: Vec<SignedTransaction>,
        time_ms: u64,
        producer: &SecretKey,
    ) -> Result<BlockOutcome, LedgerError> {
        self.produce(txs, Signatures::Verify, time_ms, producer)
    }

    /// Drains up to `max_block_txs` transactions from `mempool` into the next
    /// block, commits it like [`Ledger::produce_block`], then
    /// [`Mempool::recheck`]s the pool. The mempool verified every signature
    /// at admission, so they are not verified a second time here (replay
    /// still verifies all). If the block cannot be committed, the drained
    /// transactions go back into the pool.
    pub fn produce_block_from(
        &self,
        mempool: &mut Mempool,
        time_ms: u64,
        producer: &SecretKey,
    ) -> Result<BlockOutcome, LedgerError> {
        let max = self.params()?.max_block_txs as usize;
        let txs = mempool.take_block(max);
        match self.produce_taken_block(txs, time_ms, producer) {
            Ok(outcome) => {
                mempool.block_committed(self);
                Ok(outcome)
            }
            Err(e) => {
                mempool.block_failed(self);
                Err(e)
            }
        }
    }

    /// Commits `txs`, taken from `mempool` with [`Mempool::take_block`]
    /// (signatures were verified at admission), like
    /// [`Ledger::produce_block`]. It does not touch the mempool while the
    /// block executes and commits, so the caller may release its lock on the
    /// pool in between: call [`Mempool::block_committed`] or
    /// [`Mempool::block_failed`] afterwards, as `produce_block_from` does.
    pub fn produce_taken_block(
        &self,
        txs: Vec<SignedTransaction>,
        time_ms: u64,
        producer: &SecretKey,
    ) -> Result<BlockOutcome, LedgerError> {
        self.produce(txs, Signatures::AlreadyVerified, time_ms, producer)
    }

    fn produce(
        &self,
        txs: Vec<SignedTransaction>,
        signatures: Signatures,
        time_ms: u64,
        producer: &SecretKey,
    ) -> Result<BlockOutcome, LedgerError> {
        if producer.public_key() != self.genesis.producer {
            return Err(LedgerError::WrongProducer {
                expected: self.genesis.producer.to_hex(),
                got: producer.public_key().to_hex(),
            });
        }
        let _guard = self.producing.lock().unwrap_or_else(|p| p.into_inner());
        let parent = self.head();
        let height = parent.height + 1;
        let txn = self.db.begin_write()?;
        let executed = {
            let table = txn.open_table(STATE)?;
            execute_block(&RedbState(&table), height, self.chain_id(), txs, signatures)?
        };
        let t_tree = Instant::now();
        let state_root = commit_state(&txn, height, executed.writes)?;
        let state_tree = t_tree.elapsed();
        let t_commit = Instant::now();
        let hashes: Vec<TxHash> = executed
            .included
            .iter()
            .map(|(stx, _)| stx.hash())
            .collect();
        let mut header = BlockHeader {
            height,
            time_ms: time_ms.max(parent.time_ms),
            parent: parent.hash(),
            tx_root: tx_root(&hashes),
            state_root,
            producer: producer.public_key(),
            signature: Signature([0; 64]),
        };
        header.sign(producer);
        let block = Block {
            header: header.clone(),
            txs: hashes.clone(),
            end_block_events: executed.end_block_events.clone(),
        };
        {
            let mut txs_table = txn.open_table(TXS)?;
            for (index, (tx, receipt)) in executed.included.into_iter().enumerate() {
                let hash = hashes[index];
                let record = TxRecord {
                    height,
                    index: index as u32,
                    tx,
                    receipt,
                };
                txs_table.insert(
                    hash.0.as_bytes().as_slice(),
                    borsh::to_vec(&record).expect("encodes").as_slice(),
                )?;
            }
            txn.open_table(BLOCKS)?
                .insert(height, borsh::to_vec(&block).expect("encodes").as_slice())?;
            txn.open_table(META)?
                .insert(META_HEAD, height.to_le_bytes().as_slice())?;
        }
        txn.commit()?;
        let commit = t_commit.elapsed();
        *self.head.write().unwrap_or_else(|p| p.into_inner()) = header.clone();
        tracing::info!(
            target: "trib::ledger",
            height,
            txs = hashes.len(),
            rejected = executed.rejected.len(),
            state_root = %state_root.short(),
            "block committed"
        );
        Ok(BlockOutcome {
            header,
            included: hashes,
            rejected: executed.rejected,
            end_block_events: executed.end_block_events,
            timings: PhaseTimings {
                stateless: executed.stateless,
                execute: executed.execute,
                state_tree,
                commit,
            },
        })
    }

    /// A Merkle proof of `key` (present or absent) against the state root of
    /// block `height` (default: the head).
    pub fn prove(&self, key: StateKey, height: Option<u64>) -> Result<StateProof, LedgerError> {
        let head = self.height();
        let height = height.unwrap_or(head);
        let block = self
            .block(height)?
            .ok_or(LedgerError::NoSuchBlock { height, head })?;
        let txn = self.db.begin_read()?;
        let nodes = txn.open_table(JMT_NODES)?;
        let values = txn.open_table(JMT_VALUES)?;
        let reader = RedbTree {
            nodes: &nodes,
            values: &values,
        };
        let (value, proof) = Sha256Jmt::new(&reader)
            .get_with_proof(key.key_hash(), height)
            .map_err(tree_err)?;
        let value = value
            .map(|b| {
                StateValue::decode(&key, &b)
                    .map_err(|e| corrupt(format!("{key} at {height} does not decode: {e}")))
            })
            .transpose()?;
        Ok(StateProof {
            height,
            state_root: block.header.state_root,
            key,
            value,
            proof,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Ledger>();
    }
}
