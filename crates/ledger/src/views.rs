//! Read-only queries over the datanet registry, the model registry and
//! settlement, for the node's HTTP routes and the CLI. All read the
//! current-state table of the last committed block (a redb snapshot), so
//! they run concurrently with block production.

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};
use trib_types::{AdapterId, Address, Amount, ContributionId, DatanetId, ModelId, ReceiptId};

use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::modules::datanet::{
    datanet_id, Contribution, Datanet, DatanetVersion, Reputation, Visibility,
};
use crate::modules::registry::{Adapter, BaseModel};
use crate::modules::settlement::{pending_rewards, InferenceReceipt, PayoutLine, PayoutRef};
use crate::state::StateKey;
use crate::store::STATE;

/// Most payout lines one page returns.
pub const MAX_PAGE_LIMIT: u32 = 1_000;

/// A page request: `limit` items from position `start` (0 = oldest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// First position.
    pub start: u64,
    /// Items wanted (capped at [`MAX_PAGE_LIMIT`]).
    pub limit: u32,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            start: 0,
            limit: 100,
        }
    }
}

/// One payout line with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// The receipt.
    pub receipt: ReceiptId,
    /// Index of the line in the receipt.
    pub line: u32,
    /// Block of settlement.
    pub height: u64,
    /// The line.
    #[serde(flatten)]
    pub payout: PayoutLine,
}

/// A page of an address's payout lines, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutPage {
    /// The lines.
    pub items: Vec<Payout>,
    /// All lines indexed for the address.
    pub total: u64,
    /// `start` of the next page, if any.
    pub next: Option<u64>,
}

/// A datanet, by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatanetRef<'a> {
    /// By id.
    Id(DatanetId),
    /// By name.
    Name(&'a str),
}

fn corrupt(what: String) -> LedgerError {
    LedgerError::Corrupt(what)
}

impl Ledger {
    /// Every state entry of one key kind (same variant as `sample`), decoded.
    fn scan<T: borsh::BorshDeserialize>(&self, sample: StateKey) -> Result<Vec<T>, LedgerError> {
        let tag = sample.encode()[0];
        let txn = self.db().begin_read()?;
        let state = txn.open_table(STATE)?;
        let lo = [tag];
        let mut out = Vec::new();
        let range = if tag == u8::MAX {
            state.range(lo.as_slice()..)?
        } else {
            let hi = [tag + 1];
            state.range(lo.as_slice()..hi.as_slice())?
        };
        for entry in range {
            let (k, v) = entry?;
            out.push(borsh::from_slice(v.value()).map_err(|e| {
                corrupt(format!(
                    "state entry {} does not decode: {e}",
                    hex::encode(k.value())
                ))
            })?);
        }
        Ok(out)
    }

    /// A datanet by id or name.
    pub fn datanet(&self, which: DatanetRef<'_>) -> Result<Option<Datanet>, LedgerError> {
        let id = match which {
            DatanetRef::Id(id) => id,
            DatanetRef::Name(name) => datanet_id(name),
        };
        self.read_state(&StateKey::Datanet(id))
    }

    /// All datanets, by name.
    pub fn datanets(&self) -> Result<Vec<Datanet>, LedgerError> {
        let mut v: Vec<Datanet> = self.scan(StateKey::Datanet(DatanetId::default()))?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// A contribution.
    pub fn contribution(&self, id: &ContributionId) -> Result<Option<Contribution>, LedgerError> {
        self.read_state(&StateKey::Contribution(*id))
    }

    /// A datanet's contributions, oldest first (a scan over all
    /// contributions: fine for browsing, not for hot paths).
    pub fn contributions(&self, datanet: &DatanetId) -> Result<Vec<Contribution>, LedgerError> {
        let mut v: Vec<Contribution> = self
            .scan::<Contribution>(StateKey::Contribution(ContributionId::default()))?
            .into_iter()
            .filter(|c| c.datanet == *datanet)
            .collect();
        v.sort_by(|a, b| {
            a.submitted_height
                .cmp(&b.submitted_height)
                .then(a.id.cmp(&b.id))
        });
        Ok(v)
    }

    /// A datanet's published versions, from 1 (empty for an unknown datanet).
    pub fn versions(&self, datanet: &DatanetId) -> Result<Vec<DatanetVersion>, LedgerError> {
        let Some(d) = self.read_state::<Datanet>(&StateKey::Datanet(*datanet))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(d.latest_version as usize);
        for n in 1..=d.latest_version {
            let v = self
                .read_state(&StateKey::DatanetVersion(*datanet, n))?
                .ok_or_else(|| corrupt(format!("datanet {datanet} version {n} is missing")))?;
            out.push(v);
        }
        Ok(out)
    }

    /// Whether `address` may train on the datanet (public, owner or
    /// granted); `false` for an unknown datanet.
    pub fn has_access(&self, datanet: &DatanetId, address: &Address) -> Result<bool, LedgerError> {
        let Some(d) = self.read_state::<Datanet>(&StateKey::Datanet(*datanet))? else {
            return Ok(false);
        };
        Ok(match d.visibility {
            Visibility::Public => true,
            Visibility::Permissioned => {
                d.owner == *address
                    || self
                        .read_state::<crate::modules::datanet::AccessGrant>(
                            &StateKey::DatanetAccess(*datanet, *address),
                        )?
                        .is_some()
            }
        })
    }

    /// A contributor's reputation in a datanet (all zero if none).
    pub fn reputation(
        &self,
        datanet: &DatanetId,
        address: &Address,
    ) -> Result<Reputation, LedgerError> {
        Ok(self
            .read_state(&StateKey::Reputation(*datanet, *address))?
            .unwrap_or_default())
    }

    /// Every contributor of a datanet with its reputation, best first:
    /// by earnings, then rows accepted, then accepted contributions, then
    /// fewest rejections, then address.
    pub fn leaderboard(
        &self,
        datanet: &DatanetId,
    ) -> Result<Vec<(Address, Reputation)>, LedgerError> {
        let who: Vec<Address> = self
            .read_state(&StateKey::DatanetContributors(*datanet))?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(who.len());
        for a in who {
            out.push((a, self.reputation(datanet, &a)?));
        }
        out.sort_by(|(a, x), (b, y)| {
            y.earnings
                .cmp(&x.earnings)
                .then(y.rows_accepted.cmp(&x.rows_accepted))
                .then(y.accepted.cmp(&x.accepted))
                .then(x.rejected.cmp(&y.rejected))
                .then(a.cmp(b))
        });
        Ok(out)
    }

    /// A base model.
    pub fn base_model(&self, id: &ModelId) -> Result<Option<BaseModel>, LedgerError> {
        self.read_state(&StateKey::BaseModel(*id))
    }

    /// All base models, by name then id.
    pub fn base_models(&self) -> Result<Vec<BaseModel>, LedgerError> {
        let mut v: Vec<BaseModel> = self.scan(StateKey::BaseModel(ModelId::default()))?;
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// An adapter.
    pub fn adapter(&self, id: &AdapterId) -> Result<Option<Adapter>, LedgerError> {
        self.read_state(&StateKey::Adapter(*id))
    }

    /// All adapters, by name then id.
    pub fn adapters(&self) -> Result<Vec<Adapter>, LedgerError> {
        let mut v: Vec<Adapter> = self.scan(StateKey::Adapter(AdapterId::default()))?;
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// What `operator` may still charge `payer`.
    pub fn allowance(&self, payer: &Address, operator: &Address) -> Result<Amount, LedgerError> {
        Ok(self
            .read_state(&StateKey::Allowance(*payer, *operator))?
            .unwrap_or_default())
    }

    /// An inference receipt.
    pub fn receipt(&self, id: &ReceiptId) -> Result<Option<InferenceReceipt>, LedgerError> {
        self.read_state(&StateKey::Receipt(*id))
    }

    /// A receipt's payout lines (`None` for an unknown receipt).
    pub fn payouts_by_receipt(
        &self,
        id: &ReceiptId,
    ) -> Result<Option<Vec<PayoutLine>>, LedgerError> {
        Ok(self.receipt(id)?.map(|r| r.lines))
    }

    /// The payout lines paid to `address` (as contributor, adapter owner
    /// or base-model owner), oldest first, one page at a time. Each item is
    /// two point reads (index entry, receipt).
    pub fn payouts_by_contributor(
        &self,
        address: &Address,
        page: Page,
    ) -> Result<PayoutPage, LedgerError> {
        let total: u64 = self
            .read_state(&StateKey::PayoutCount(*address))?
            .unwrap_or(0);
        let limit = u64::from(page.limit.min(MAX_PAGE_LIMIT));
        let end = page.start.saturating_add(limit).min(total);
        let mut items = Vec::new();
        let mut cached: Option<InferenceReceipt> = None;
        for n in page.start..end {
            let r: PayoutRef = self
                .read_state(&StateKey::PayoutIndex(*address, n))?
                .ok_or_else(|| corrupt(format!("payout index {n} of {address} is missing")))?;
            if cached.as_ref().map(|c| c.id) != Some(r.receipt) {
                cached = Some(self.receipt(&r.receipt)?.ok_or_else(|| {
                    corrupt(format!(
                        "receipt {} of a payout index is missing",
                        r.receipt
                    ))
                })?);
            }
            let receipt = cached.as_ref().expect("set above");
            let line = *receipt
                .lines
                .get(r.line as usize)
                .ok_or_else(|| corrupt(format!("receipt {} has no line {}", r.receipt, r.line)))?;
            items.push(Payout {
                receipt: r.receipt,
                line: r.line,
                height: receipt.height,
                payout: line,
            });
        }
        Ok(PayoutPage {
            items,
            total,
            next: (end < total).then_some(end),
        })
    }

    /// Staking rewards `address` could claim now (settled plus accrued).
    pub fn staking_rewards(&self, address: &Address) -> Result<Amount, LedgerError> {
        self.with_state(|b| pending_rewards(b, address).map(|r| r.accrued))
            .map_err(|e| LedgerError::Storage(e.to_string()))
    }
}
