//! The ledger: one redb file holding blocks, transactions, receipts, the
//! current state and every version of the state tree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use jmt::Sha256Jmt;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use trib_types::{Address, Amount, BlockHash, Hash, SecretKey, Signature, TxHash};

use crate::block::{tx_root, Block, BlockHeader, BlockOutcome, PhaseTimings, TxRecord};
use crate::error::{LedgerError, TxError, VerifyError};
use crate::exec::{check_stateless, execute_block, genesis_writes, read_params, Signatures};
use crate::genesis::{Genesis, Params};
use crate::mempool::Mempool;
use crate::modules::route;
use crate::proof::{StateProof, StateValue};
use crate::state::{Account, BlockState, Proposal, StateKey, Supply};
use crate::store::{
    tree_update, write_tree_batch, MemoryTree, RedbState, RedbTree, BLOCKS, JMT_NODES, JMT_VALUES,
    META, META_GENESIS, META_HEAD, STATE, TXS,
};
use crate::tx::SignedTransaction;

type StateWrites = HashMap<StateKey, Option<Vec<u8>>>;

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
        let txs = mempool.drain(max);
        let kept = txs.clone();
        match self.produce(txs, Signatures::AlreadyVerified, time_ms, producer) {
            Ok(outcome) => {
                mempool.recheck(self);
                Ok(outcome)
            }
            Err(e) => {
                mempool.restore(kept, self);
                Err(e)
            }
        }
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

    /// Replays every block from genesis into a fresh in-memory state and
    /// checks each header (parent, time, producer signature), transactions
    /// root, receipt and state root; then compares the stored current state
    /// and state tree with the replayed ones. Reports the first mismatch.
    /// `progress(done, total)` is called after each block.
    pub fn verify_chain(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, VerifyError> {
        let start = Instant::now();
        let st = |e: redb::Error| VerifyError::Storage(e.to_string());
        let txn = self.db.begin_read().map_err(|e| st(e.into()))?;
        let meta = txn.open_table(META).map_err(|e| st(e.into()))?;
        let blocks = txn.open_table(BLOCKS).map_err(|e| st(e.into()))?;
        let txs = txn.open_table(TXS).map_err(|e| st(e.into()))?;
        let head = match meta.get(META_HEAD).map_err(|e| st(e.into()))? {
            Some(h) => u64::from_le_bytes(
                h.value()
                    .try_into()
                    .map_err(|_| VerifyError::Genesis("the head record is not 8 bytes".into()))?,
            ),
            None => return Err(VerifyError::Genesis("the head record is missing".into())),
        };
        let genesis = self.genesis.clone();
        let read_block =
            |height: u64| -> Result<Block, VerifyError> {
                let raw = blocks.get(height).map_err(|e| st(e.into()))?.ok_or(
                    VerifyError::CorruptBlock {
                        height,
                        what: "block record missing".into(),
                    },
                )?;
                borsh::from_slice::<Block>(raw.value()).map_err(|e| VerifyError::CorruptBlock {
                    height,
                    what: format!("block record does not decode: {e}"),
                })
            };

        // Genesis.
        let mut state: HashMap<StateKey, Vec<u8>> = HashMap::new();
        let mut tree = MemoryTree::default();
        let writes = genesis_writes(&genesis).map_err(|e| VerifyError::Genesis(e.to_string()))?;
        let root = apply_memory(&mut state, &mut tree, 0, writes)?;
        let g = read_block(0)?;
        if g.header.parent != BlockHash(genesis.hash()) {
            return Err(VerifyError::Genesis(
                "block 0 does not commit to the stored genesis file".into(),
            ));
        }
        if g.header.state_root != root {
            return Err(VerifyError::StateRootMismatch {
                height: 0,
                stored: g.header.state_root,
                computed: root,
            });
        }
        progress(1, head + 1);

        let mut prev = g.header;
        let mut tx_count = 0u64;
        for height in 1..=head {
            let block = read_block(height)?;
            let h = &block.header;
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
            if h.producer != genesis.producer || !h.verify_signature() {
                return Err(VerifyError::BadProducerSignature { height });
            }
            let mut records = Vec::with_capacity(block.txs.len());
            for (index, hash) in block.txs.iter().enumerate() {
                let raw = txs
                    .get(hash.0.as_bytes().as_slice())
                    .map_err(|e| st(e.into()))?
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
            let executed = execute_block(
                &state,
                height,
                &genesis.chain_id,
                txs_in,
                Signatures::Verify,
            )
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
            for (index, ((_, receipt), rec)) in executed.included.iter().zip(&records).enumerate() {
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
            let root = apply_memory(&mut state, &mut tree, height, executed.writes)?;
            if root != h.state_root {
                return Err(VerifyError::StateRootMismatch {
                    height,
                    stored: h.state_root,
                    computed: root,
                });
            }
            tx_count += records.len() as u64;
            prev = block.header;
            progress(height + 1, head + 1);
        }

        // The stored state must be the replayed state.
        let stored_state = txn.open_table(STATE).map_err(|e| st(e.into()))?;
        let mut seen = 0u64;
        for entry in stored_state.iter().map_err(|e| st(e.into()))? {
            let (k, v) = entry.map_err(|e| st(e.into()))?;
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
            let stored_keys = stored_state.len().map_err(|e| st(e.into()))?;
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
                .unwrap_or_else(|| {
                    format!("{stored_keys} stored entries vs {} replayed", state.len())
                });
            return Err(VerifyError::CurrentStateMismatch {
                height: head,
                key: missing,
            });
        }
        let nodes = txn.open_table(JMT_NODES).map_err(|e| st(e.into()))?;
        let values = txn.open_table(JMT_VALUES).map_err(|e| st(e.into()))?;
        let reader = RedbTree {
            nodes: &nodes,
            values: &values,
        };
        let stored_root = Sha256Jmt::new(&reader)
            .get_root_hash(head)
            .map(|r| Hash(r.0))
            .map_err(|e| {
                VerifyError::Storage(format!("reading the stored state tree root: {e:#}"))
            })?;
        if stored_root != prev.state_root {
            return Err(VerifyError::StoredTreeMismatch {
                height: head,
                stored: stored_root,
                expected: prev.state_root,
            });
        }
        let report = VerifyReport {
            blocks: head + 1,
            txs: tx_count,
            state_root: prev.state_root,
            state_entries: seen,
            elapsed: start.elapsed(),
        };
        tracing::info!(target: "trib::ledger", blocks = report.blocks, txs = report.txs, "chain verified");
        Ok(report)
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

/// Applies writes to the replay state and tree; returns the new root.
fn apply_memory(
    state: &mut HashMap<StateKey, Vec<u8>>,
    tree: &mut MemoryTree,
    version: u64,
    writes: StateWrites,
) -> Result<Hash, VerifyError> {
    let value_set: Vec<(jmt::KeyHash, Option<Vec<u8>>)> = writes
        .iter()
        .map(|(k, v)| (k.key_hash(), v.clone()))
        .collect();
    let (root, update) = tree_update(&*tree, &value_set, version)
        .map_err(|e| VerifyError::Storage(format!("replay state tree at {version}: {e:#}")))?;
    tree.apply(update);
    for (k, v) in writes {
        match v {
            Some(v) => {
                state.insert(k, v);
            }
            None => {
                state.remove(&k);
            }
        }
    }
    Ok(Hash(root.0))
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
