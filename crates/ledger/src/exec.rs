//! Block execution, shared by block production and replay verification.
//!
//! Phases per transaction: stateless checks (size, chain id, minimum fee,
//! the module's own checks) and the signature (batch-verified in parallel);
//! then, in block order, the nonce, the module's stateful checks, the fee
//! (to the treasury) and the module's execution, all into a write batch that
//! is dropped on error. After the transactions, every module's end-block hook.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use trib_types::{verify_batch, Hash, PublicKey, Signature};

use crate::block::{Event, Receipt, RejectedTx};
use crate::error::{LedgerError, TxError};
use crate::genesis::{treasury_address, Genesis, Params};
use crate::modules::{route, MODULES};
use crate::state::{add, sub, Account, BlockState, StateKey, StateRead, Supply};
use crate::tx::SignedTransaction;

/// Below this many transactions a block's signatures are checked in one batch
/// on the calling thread.
const PARALLEL_SIG_MIN: usize = 256;

/// Whether a block's signatures still need checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signatures {
    /// Verify every signature (blocks from outside, replay).
    Verify,
    /// Every transaction came out of this process's [`crate::Mempool`],
    /// which admits only verified signatures over the same bytes.
    AlreadyVerified,
}

/// Checks that need neither state nor signature.
pub(crate) fn check_stateless(
    stx: &SignedTransaction,
    chain_id: &str,
    params: &Params,
) -> Result<(), TxError> {
    let len = stx.encoded_len();
    if len > params.max_tx_bytes as usize {
        return Err(TxError::Oversize {
            len,
            max: params.max_tx_bytes as usize,
        });
    }
    let tx = &stx.tx;
    if tx.chain_id != chain_id {
        return Err(TxError::WrongChainId {
            expected: chain_id.to_string(),
            got: tx.chain_id.clone(),
        });
    }
    if tx.fee < params.min_fee {
        return Err(TxError::FeeBelowMinimum {
            fee: tx.fee,
            min: params.min_fee,
        });
    }
    route(&tx.action)?.check_stateless(&tx.action, params)
}

/// Stateless checks and signatures for a whole block: one verdict per
/// transaction. Signatures are verified with [`verify_batch`] (ZIP-215, so a
/// batch accepts exactly what single verification accepts), in chunks over
/// the rayon pool.
pub(crate) fn check_stateless_all(
    txs: &[SignedTransaction],
    chain_id: &str,
    params: &Params,
    signatures: Signatures,
) -> Vec<Result<(), TxError>> {
    let mut verdicts: Vec<Result<(), TxError>> = txs
        .iter()
        .map(|t| check_stateless(t, chain_id, params))
        .collect();
    if signatures == Signatures::AlreadyVerified {
        return verdicts;
    }
    let hashes: Vec<(usize, PublicKey, Hash, Signature)> = txs
        .iter()
        .enumerate()
        .filter(|(i, _)| verdicts[*i].is_ok())
        .map(|(i, t)| (i, t.tx.sender, t.tx.signing_hash(), t.signature))
        .collect();
    let check = |chunk: &[(usize, PublicKey, Hash, Signature)]| -> Vec<bool> {
        let items: Vec<(PublicKey, &[u8], Signature)> = chunk
            .iter()
            .map(|(_, pk, h, s)| (*pk, h.as_bytes().as_slice(), *s))
            .collect();
        verify_batch(&items)
    };
    let ok: Vec<bool> = if hashes.len() < PARALLEL_SIG_MIN {
        check(&hashes)
    } else {
        let threads = rayon::current_num_threads().max(1);
        let chunk = hashes.len().div_ceil(threads).max(64);
        hashes.par_chunks(chunk).flat_map_iter(check).collect()
    };
    for ((i, ..), good) in hashes.iter().zip(ok) {
        if !good {
            verdicts[*i] = Err(TxError::BadSignature {
                sender: txs[*i].tx.sender_address(),
            });
        }
    }
    verdicts
}

/// Executes one transaction (whose stateless checks and signature passed)
/// against the block state. On error nothing is written.
pub(crate) fn execute_tx(
    block: &mut BlockState<'_>,
    stx: &SignedTransaction,
) -> Result<Receipt, TxError> {
    let tx = &stx.tx;
    let sender = tx.sender_address();
    let module = route(&tx.action)?;
    let mut batch = block.batch();
    let mut acc: Account = batch.account(&sender)?;
    if tx.nonce < acc.nonce {
        return Err(TxError::NonceReplay {
            sender,
            expected: acc.nonce,
            got: tx.nonce,
        });
    }
    if tx.nonce > acc.nonce {
        return Err(TxError::NonceGap {
            sender,
            expected: acc.nonce,
            got: tx.nonce,
        });
    }
    module.check_stateful(tx, &batch)?;
    if acc.balance < tx.fee {
        return Err(TxError::InsufficientBalance {
            address: sender,
            have: acc.balance,
            need: tx.fee,
        });
    }
    acc.balance = sub(acc.balance, tx.fee, "balance")?;
    acc.nonce = acc
        .nonce
        .checked_add(1)
        .ok_or(TxError::Overflow { what: "nonce" })?;
    batch.put_account(sender, &acc);
    if !tx.fee.is_zero() {
        let treasury = treasury_address();
        let mut t = batch.account(&treasury)?;
        t.balance = add(t.balance, tx.fee, "treasury balance")?;
        batch.put_account(treasury, &t);
        batch.emit(Event::FeePaid {
            payer: sender,
            amount: tx.fee,
        });
    }
    module.execute(sender, &tx.action, &mut batch)?;
    let (writes, events) = batch.finish();
    block.absorb(writes);
    Ok(Receipt { events })
}

/// Runs every module's end-block hook. An error here is a protocol bug, not
/// a user error: the block is not committed.
pub(crate) fn end_block(block: &mut BlockState<'_>) -> Result<Vec<Event>, LedgerError> {
    let mut all = Vec::new();
    for m in MODULES {
        let mut batch = block.batch();
        m.end_block(&mut batch).map_err(|e| {
            LedgerError::Execution(format!("end_block of module {}: {e}", m.name()))
        })?;
        let (writes, events) = batch.finish();
        block.absorb(writes);
        all.extend(events);
    }
    Ok(all)
}

/// The result of executing a block's transactions.
pub(crate) struct Executed {
    pub included: Vec<(SignedTransaction, Receipt)>,
    pub rejected: Vec<RejectedTx>,
    pub end_block_events: Vec<Event>,
    pub writes: HashMap<StateKey, Option<Vec<u8>>>,
    pub stateless: Duration,
    pub execute: Duration,
}

/// Executes `txs` in order on top of `base` as block `height`.
pub(crate) fn execute_block(
    base: &dyn StateRead,
    height: u64,
    chain_id: &str,
    txs: Vec<SignedTransaction>,
    signatures: Signatures,
) -> Result<Executed, LedgerError> {
    let params = read_params(base)?;
    let t0 = Instant::now();
    let max = params.max_block_txs as usize;
    let verdicts = check_stateless_all(&txs, chain_id, &params, signatures);
    let stateless = t0.elapsed();
    let t1 = Instant::now();
    let mut block = BlockState::new(base, height, params.clone());
    let mut included = Vec::with_capacity(txs.len());
    let mut rejected = Vec::new();
    for (stx, verdict) in txs.into_iter().zip(verdicts) {
        let result = if included.len() >= max {
            Err(TxError::BlockFull {
                max: params.max_block_txs,
            })
        } else {
            verdict.and_then(|()| execute_tx(&mut block, &stx))
        };
        match result {
            Ok(receipt) => included.push((stx, receipt)),
            Err(error) => {
                tracing::debug!(target: "trib::ledger", height, tx = %stx.hash(), %error, "transaction rejected");
                rejected.push(RejectedTx {
                    hash: stx.hash(),
                    error,
                });
            }
        }
    }
    let end_block_events = end_block(&mut block)?;
    let execute = t1.elapsed();
    Ok(Executed {
        included,
        rejected,
        end_block_events,
        writes: block.into_writes(),
        stateless,
        execute,
    })
}

/// The state writes of the genesis block.
pub(crate) fn genesis_writes(
    genesis: &Genesis,
) -> Result<HashMap<StateKey, Option<Vec<u8>>>, LedgerError> {
    genesis.validate()?;
    let empty: HashMap<StateKey, Vec<u8>> = HashMap::new();
    let mut block = BlockState::new(&empty, 0, genesis.params.clone());
    let mut batch = block.batch();
    batch.put(StateKey::Params, &genesis.params);
    for (addr, amount) in &genesis.allocations {
        batch.put_account(
            *addr,
            &Account {
                balance: *amount,
                ..Account::default()
            },
        );
    }
    let total = genesis.total_allocated()?;
    batch.put_supply(&Supply {
        open: total,
        ..Supply::default()
    });
    let (writes, _) = batch.finish();
    block.absorb(writes);
    Ok(block.into_writes())
}

/// The parameters in force in `state`.
pub(crate) fn read_params(state: &dyn StateRead) -> Result<Params, LedgerError> {
    let bytes = state
        .get_raw(&StateKey::Params)
        .map_err(LedgerError::Storage)?
        .ok_or_else(|| LedgerError::Corrupt("the params entry is missing from the state".into()))?;
    borsh::from_slice(&bytes)
        .map_err(|e| LedgerError::Corrupt(format!("params do not decode: {e}")))
}
