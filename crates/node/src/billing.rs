//! Paying for inference: the pre-compute fee check (HTTP 402) and the
//! settlement transaction after each answer, for the account an API key
//! charges (`apikeys.rs`).
//!
//! The account approves the node's operator address once (`ApproveOperator`);
//! every request is then checked before any compute: the largest fee it can
//! cost, `ceil((prompt_tokens × price_in + max_tokens × price_out) / 1000)`
//! (the ledger's `FeeSchedule::max_fee`, the same computation as the fee
//! settled and the ledger's settlement plan), must be covered by both the
//! account's balance and its remaining allowance for the operator. After
//! the answer, [`Billing`] is the serving path's [`SettlementSink`]
//! (`serving.rs` settles through it): it signs and submits the
//! `SettleInference` transaction for the fee of the tokens used.
//!
//! Requests run concurrently, and neither a request being generated nor a
//! transaction waiting in the mempool shows in the ledger's balance yet.
//! So the check **reserves** the largest fee (a [`Reservation`], held by
//! the request from admission until its settlement is in the mempool, and
//! released on drop: cancelled, failed, refused), and counts what the
//! account's pending transactions take (its transfers, stakes and other
//! spends, its allowance changes, the settlements charging it:
//! `Chain::with_spendable`). A request is admitted only if
//! `min(balance − pending spend, allowance after pending approvals − pending settlements) − reserved(payer) ≥ max fee`.
//! In the other direction the chain refuses a transaction that would take
//! the account below what is reserved for it (`Chain::submit`, through
//! [`InferenceHolds`]): a revocation or a draining transfer sent while an
//! answer streams waits until the answer is settled. Every admitted request
//! can then be settled, whatever the interleaving (docs/serving.md,
//! admission).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand_core::{OsRng, RngCore};
use trib_ledger::{Action, FeeSchedule, Transaction, TxError};
use trib_serve::{AdmissionCheck, AdmissionInfo, AdmissionToken};
use trib_types::{
    AdapterId, Address, Amount, ContributionId, DatanetId, Hash, ModelId, ReceiptId, SecretKey,
    TxHash,
};

use crate::chain::{Chain, InferenceHolds, SubmitError};

/// Charges accounts through the ledger: the 402 pre-check and settlement.
pub(crate) struct Billing {
    chain: Arc<Chain>,
    operator: SecretKey,
    chain_id: String,
    /// Serialises nonce assignment of the operator's settlement transactions.
    nonce: Mutex<()>,
    /// Fees held for requests in flight and for uncommitted settlements.
    holds: Arc<Mutex<Holds>>,
}

/// The largest fees of the requests in flight, per payer: what is
/// reserved beyond the ledger state and the mempool.
#[derive(Debug, Default)]
struct Holds {
    reserved: HashMap<Address, u128>,
}

fn lock(holds: &Mutex<Holds>) -> MutexGuard<'_, Holds> {
    // Every update keeps the sums consistent before it can panic.
    holds.lock().unwrap_or_else(|p| p.into_inner())
}

/// Billing's reservations as the chain sees them, so that a transaction
/// that would leave a payer unable to pay them is refused
/// ([`Chain::submit`](crate::chain::Chain::submit)). Holds no ledger handle.
struct HoldBook {
    holds: Arc<Mutex<Holds>>,
    operator: Address,
}

impl InferenceHolds for HoldBook {
    fn operator(&self) -> Address {
        self.operator
    }

    fn reserved(&self, account: &Address) -> Amount {
        Amount(
            lock(&self.holds)
                .reserved
                .get(account)
                .copied()
                .unwrap_or(0),
        )
    }
}

/// The largest fee of one admitted request, held against its payer until
/// dropped. Holds no ledger handle.
#[derive(Debug)]
pub(crate) struct Reservation {
    holds: Arc<Mutex<Holds>>,
    payer: Address,
    amount: Amount,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut h = lock(&self.holds);
        if let Some(r) = h.reserved.get_mut(&self.payer) {
            *r = r.saturating_sub(self.amount.0);
            if *r == 0 {
                h.reserved.remove(&self.payer);
            }
        }
        tracing::trace!(target: "trib::billing", payer = %self.payer, amount = %self.amount, "reservation released");
    }
}

/// The engine's admission check: resolves the payer and the prices, and
/// reserves the request's largest fee (HTTP 402 when it cannot).
pub(crate) struct FeeCheck {
    billing: Arc<Billing>,
}

impl FeeCheck {
    pub(crate) fn new(billing: Arc<Billing>) -> Self {
        FeeCheck { billing }
    }
}

impl AdmissionCheck for FeeCheck {
    fn check(&self, info: &AdmissionInfo<'_>) -> Result<(), String> {
        self.admit(info).map(drop)
    }

    fn admit(&self, i: &AdmissionInfo<'_>) -> Result<Option<AdmissionToken>, String> {
        let payer: Address = i
            .rate_key
            .ok_or("no account for this request")?
            .parse()
            .map_err(|e| format!("bad account: {e}"))?;
        let adapter = match i.adapter {
            Some(n) => Some(
                n.as_str()
                    .parse::<AdapterId>()
                    .map_err(|e| format!("adapter {n} is not a ledger id: {e}"))?,
            ),
            None => None,
        };
        let schedule = self.billing.schedule(adapter.as_ref())?;
        let r = self
            .billing
            .reserve(&payer, &schedule, i.prompt_tokens, i.max_tokens)?;
        Ok(Some(Box::new(r)))
    }
}

/// What one settlement submitted.
#[derive(Debug, Clone)]
pub(crate) struct Settled {
    pub(crate) receipt: ReceiptId,
    pub(crate) tx: TxHash,
    pub(crate) fee: Amount,
}

/// What [`Billing::settle`] charges for.
pub(crate) struct Charge<'a> {
    pub(crate) payer: Address,
    pub(crate) adapter: Option<AdapterId>,
    pub(crate) base: ModelId,
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
    pub(crate) weights: Vec<(ContributionId, u64)>,
    pub(crate) method: &'a str,
    pub(crate) evidence_hash: Hash,
    /// The datanet versions the answer was attributed against (recorded
    /// on the receipt; the ledger checks they are the adapter's).
    pub(crate) datanets: Vec<(DatanetId, u32)>,
}

impl Billing {
    /// Billing through `operator`; registers its reservations with
    /// `chain`, which from then on refuses transactions that would leave a
    /// payer unable to pay them.
    pub(crate) fn new(chain: Arc<Chain>, operator: SecretKey, chain_id: String) -> Self {
        let holds = Arc::new(Mutex::new(Holds::default()));
        chain.set_inference_holds(Arc::new(HoldBook {
            holds: holds.clone(),
            operator: operator.address(),
        }));
        Billing {
            chain,
            operator,
            chain_id,
            nonce: Mutex::new(()),
            holds,
        }
    }

    /// The operator address accounts approve.
    pub(crate) fn operator(&self) -> Address {
        self.operator.address()
    }

    /// The ledger's fee schedule of a request to `adapter` (its registered
    /// prices) or to the base model alone (the governed base prices).
    pub(crate) fn schedule(&self, adapter: Option<&AdapterId>) -> Result<FeeSchedule, String> {
        self.chain
            .fee_schedule(adapter)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                let id = adapter.map(|a| a.to_string()).unwrap_or_default();
                format!("adapter {id} is not registered on the ledger")
            })
    }

    /// The 402 check and reservation: `Err` names what the account has,
    /// what is held for its other requests and what this one may cost;
    /// `Ok` holds the largest fee until the reservation drops.
    pub(crate) fn reserve(
        &self,
        payer: &Address,
        schedule: &FeeSchedule,
        prompt_tokens: usize,
        max_tokens: usize,
    ) -> Result<Reservation, String> {
        let need = schedule
            .max_fee(prompt_tokens, max_tokens)
            .ok_or_else(|| "the maximum fee overflows".to_string())?;
        let operator = self.operator();
        self.chain
            .with_spendable(payer, &operator, |s| {
                // The chain's mempool is locked here, then the reservations:
                // `Chain::submit` takes them in the same order.
                let mut holds = lock(&self.holds);
                let reserved = Amount(holds.reserved.get(payer).copied().unwrap_or(0));
                let have = Amount(s.payable().0.saturating_sub(reserved.0));
                if have < need {
                    let approval = match s.pending_allowance {
                        Some(a) => format!(", {} OPEN once its pending approval commits", a.to_open_string()),
                        None => String::new(),
                    };
                    return Err(format!(
                        "account {payer} can pay at most {} OPEN (balance {} OPEN, {} OPEN of it taken by its \
                         pending transactions and settlements; allowance {} OPEN for operator {operator}{approval}, \
                         {} OPEN of it taken by pending settlements; {} OPEN held for its requests in flight) \
                         but this request may cost up to {} OPEN ({prompt_tokens} prompt tokens at {} OPEN/1k + \
                         {max_tokens} max completion tokens at {} OPEN/1k); fund the account or approve the operator \
                         with `trib apikey new --allowance`",
                        have.to_open_string(),
                        s.balance.to_open_string(),
                        s.pending_spend.to_open_string(),
                        s.allowance.to_open_string(),
                        s.pending_settled.to_open_string(),
                        reserved.to_open_string(),
                        need.to_open_string(),
                        schedule.price_in_per_1k.to_open_string(),
                        schedule.price_out_per_1k.to_open_string(),
                    ));
                }
                *holds.reserved.entry(*payer).or_insert(0) += need.0;
                tracing::debug!(target: "trib::billing", %payer, reserved = %need, held = %reserved, "fee reserved");
                Ok(Reservation {
                    holds: self.holds.clone(),
                    payer: *payer,
                    amount: need,
                })
            })
            .map_err(|e| e.to_string())?
    }
}

/// Where an attributed answer is paid for: signs and submits its
/// settlement. [`Billing`] implements it; the serving path
/// (`serving.rs`) settles every answer through it.
pub(crate) trait SettlementSink: Send + Sync {
    /// Settles one answer; the receipt is on the ledger once the next
    /// block commits.
    fn settle(&self, charge: Charge<'_>) -> Result<Settled, String>;
}

impl SettlementSink for Billing {
    /// Signs and submits the `SettleInference` transaction for one answer
    /// at the ledger's fee for its tokens (the receipt is on the ledger
    /// once the next block commits).
    fn settle(&self, c: Charge<'_>) -> Result<Settled, String> {
        let fee = self
            .schedule(c.adapter.as_ref())?
            .fee(c.prompt_tokens, c.completion_tokens)
            .ok_or_else(|| "fee overflows".to_string())?;
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let receipt = ReceiptId(Hash(id));
        let min_fee = self
            .chain
            .ledger()
            .params()
            .map_err(|e| e.to_string())?
            .min_fee;
        let _guard = self.nonce.lock().unwrap_or_else(|p| p.into_inner());
        let mut nonce = self
            .chain
            .account(&self.operator())
            .map_err(|e| e.to_string())?
            .next_nonce;
        let action = Action::SettleInference {
            receipt,
            payer: c.payer,
            adapter: c.adapter,
            base: c.base,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            weights: c.weights,
            method: c.method.to_string(),
            evidence_hash: c.evidence_hash,
            datanets: c.datanets,
        };
        // `Chain::account` reads state and pool as one view and `self.nonce`
        // orders our own settlements, but the operator's key may also sign
        // elsewhere (the CLI against this node): a nonce taken in between is
        // refused naming the next one, and the settlement is re-signed.
        let mut attempts = 0;
        let tx = loop {
            let stx = Transaction {
                chain_id: self.chain_id.clone(),
                sender: self.operator.public_key(),
                nonce,
                fee: min_fee,
                action: action.clone(),
            }
            .sign(&self.operator);
            match self.chain.submit(stx) {
                Ok(tx) => break tx,
                Err(SubmitError::Tx(TxError::NonceReplay { expected, .. }))
                    if attempts < 3 && expected > nonce =>
                {
                    tracing::debug!(target: "trib::billing", used = nonce, next = expected,
                        "settlement nonce raced a block commit; re-signing");
                    attempts += 1;
                    nonce = expected;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        // In the mempool now, where admission counts it until its block
        // commits; the request's reservation is released only after this
        // (when the caller drops it).
        tracing::info!(target: "trib::billing", %receipt, %tx, fee = %fee, payer = %c.payer, "settlement submitted");
        Ok(Settled { receipt, tx, fee })
    }
}

#[cfg(test)]
#[path = "billing_tests.rs"]
mod tests;
