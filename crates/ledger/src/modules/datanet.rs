//! Datanet registry: datanets, staked contributions, curation, versions,
//! training-access grants and per-contributor reputation.
//!
//! The rows themselves live off-chain (`trib-datanet`); the ledger records
//! what must be agreed on: who contributed what (by Merkle root), the stake
//! each contribution escrows, who decided it and why, which accepted
//! contributions make up each immutable version, and who may train on a
//! permissioned datanet.
//!
//! Stake rule: a contribution escrows the datanet's `stake_per_contribution`
//! (counted in `Supply::escrowed`). Acceptance returns it at the end of the
//! block `datanet_challenge_window_blocks` later; rejection slashes
//! `datanet_slash_bps` of it (floor) to the treasury and returns the rest at
//! once; a contribution still pending when its curation period ends is
//! decided by the power cast (validator vote) or expires with its stake
//! returned in full. See docs/ledger.md, "Datanet registry".

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Amount, ContributionId, DatanetId, Hash};
// The shared datanet vocabulary (one definition for the ledger, the datanet
// crate and the node); re-exported from the crate root.
pub use trib_types::{
    datanet_id, ContributionStatus, CurationMode, DataType, Reputation, Visibility,
};

use super::{require_balance, Module};
use crate::block::Event;
use crate::error::TxError;
use crate::genesis::{treasury_address, Params, BPS_DENOMINATOR};
use crate::state::{add, sub, StateKey, TxBatch};
use crate::tx::{Action, Transaction};

/// Longest datanet name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// Longest curation reason, in bytes.
pub(crate) const MAX_REASON_LEN: usize = 256;

/// A datanet's on-chain record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Datanet {
    /// Id ([`datanet_id`] of the name).
    pub id: DatanetId,
    /// Unique name.
    pub name: String,
    /// Creator and owner.
    pub owner: Address,
    /// blake3 of the off-chain descriptor.
    pub metadata_hash: Hash,
    /// Row kind.
    pub data_type: DataType,
    /// Curation mode.
    pub curation: CurationMode,
    /// Stake each contribution escrows.
    pub stake_per_contribution: Amount,
    /// Visibility.
    pub visibility: Visibility,
    /// Block of creation.
    pub created_height: u64,
    /// Contributions submitted.
    pub contributions: u64,
    /// Contributions accepted.
    pub accepted: u64,
    /// Rows of accepted contributions.
    pub rows_accepted: u64,
    /// Latest published version (0: none yet).
    pub latest_version: u32,
}

/// A validator's curation vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct CurationVote {
    /// Voter.
    pub voter: Address,
    /// Accept or reject.
    pub accept: bool,
    /// Voting power at the vote.
    pub power: Amount,
    /// The voter's reason.
    pub reason: String,
}

/// A contribution's on-chain record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Contribution {
    /// Id.
    pub id: ContributionId,
    /// Datanet.
    pub datanet: DatanetId,
    /// Who contributed (and staked).
    pub contributor: Address,
    /// Stake escrowed at submission.
    pub stake: Amount,
    /// Merkle root over its rows.
    pub rows_root: Hash,
    /// Rows.
    pub rows: u32,
    /// Bytes.
    pub bytes: u64,
    /// Status.
    pub status: ContributionStatus,
    /// Block of submission.
    pub submitted_height: u64,
    /// Last block of the curation period.
    pub curation_deadline: u64,
    /// Block of the decision.
    pub decided_height: Option<u64>,
    /// Block at whose end an accepted stake returns.
    pub release_height: Option<u64>,
    /// Slashed on rejection.
    pub slashed: Amount,
    /// Validator votes (validator-vote curation), in order.
    pub votes: Vec<CurationVote>,
}

/// One published, immutable version of a datanet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct DatanetVersion {
    /// Datanet.
    pub datanet: DatanetId,
    /// Number, from 1.
    pub version: u32,
    /// Merkle root over its rows.
    pub root: Hash,
    /// Rows.
    pub rows: u64,
    /// Its accepted contributions.
    pub contributions: Vec<ContributionId>,
    /// Block of publication.
    pub height: u64,
}

/// A training-access grant on a permissioned datanet.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct AccessGrant {
    /// Block of the grant.
    pub granted_height: u64,
}

pub(crate) struct DatanetModule;

fn field(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// Checks a datanet name: 1..=64 bytes of `[a-z0-9-]`, no leading or
/// trailing `-`.
pub(crate) fn check_name(name: &str) -> Result<(), TxError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(field(
            "datanet name",
            format!("{name:?} must be 1 to {MAX_NAME_LEN} bytes"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(field(
            "datanet name",
            format!("{name:?} may contain only a-z, 0-9 and '-'"),
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(field(
            "datanet name",
            format!("{name:?} must not start or end with '-'"),
        ));
    }
    Ok(())
}

pub(crate) fn load_datanet(state: &TxBatch<'_, '_>, id: &DatanetId) -> Result<Datanet, TxError> {
    state
        .get(&StateKey::Datanet(*id))?
        .ok_or(TxError::UnknownDatanet { id: *id })
}

pub(crate) fn load_contribution(
    state: &TxBatch<'_, '_>,
    id: &ContributionId,
) -> Result<Contribution, TxError> {
    state
        .get(&StateKey::Contribution(*id))?
        .ok_or(TxError::UnknownContribution { id: *id })
}

pub(crate) fn load_version(
    state: &TxBatch<'_, '_>,
    datanet: &Datanet,
    version: u32,
) -> Result<DatanetVersion, TxError> {
    let missing = || TxError::UnknownDatanetVersion {
        datanet: datanet.id,
        version,
        latest: datanet.latest_version,
    };
    if version == 0 || version > datanet.latest_version {
        return Err(missing());
    }
    state
        .get(&StateKey::DatanetVersion(datanet.id, version))?
        .ok_or_else(missing)
}

/// Whether `address` may train on `datanet` (public, owner, or granted).
pub(crate) fn has_access(
    state: &TxBatch<'_, '_>,
    datanet: &Datanet,
    address: &Address,
) -> Result<bool, TxError> {
    Ok(match datanet.visibility {
        Visibility::Public => true,
        Visibility::Permissioned => {
            datanet.owner == *address
                || state
                    .get::<AccessGrant>(&StateKey::DatanetAccess(datanet.id, *address))?
                    .is_some()
        }
    })
}

pub(crate) fn reputation(
    state: &TxBatch<'_, '_>,
    datanet: &DatanetId,
    who: &Address,
) -> Result<Reputation, TxError> {
    Ok(state
        .get(&StateKey::Reputation(*datanet, *who))?
        .unwrap_or_default())
}

/// A contribution still pending curation, and its datanet.
fn load_pending(
    state: &TxBatch<'_, '_>,
    id: &ContributionId,
) -> Result<(Contribution, Datanet), TxError> {
    let c = load_contribution(state, id)?;
    if c.status != ContributionStatus::Pending {
        return Err(TxError::NotPending {
            id: c.id,
            status: c.status.to_string(),
        });
    }
    let d = load_datanet(state, &c.datanet)?;
    Ok((c, d))
}

/// The voting power `voter` may cast on `c`: not yet voted, and above zero.
fn voting_power(
    state: &TxBatch<'_, '_>,
    voter: &Address,
    c: &Contribution,
) -> Result<Amount, TxError> {
    if c.votes.iter().any(|v| v.voter == *voter) {
        return Err(TxError::AlreadyVoted {
            voter: *voter,
            contribution: c.id,
        });
    }
    let power = state.voting_power(voter)?;
    if power.is_zero() {
        return Err(TxError::NoVotingPower {
            address: *voter,
            contribution: c.id,
        });
    }
    Ok(power)
}

fn require_owner(action: &'static str, d: &Datanet, sender: &Address) -> Result<(), TxError> {
    if d.owner != *sender {
        return Err(TxError::NotDatanetOwner {
            action,
            datanet: d.id,
            owner: d.owner,
        });
    }
    Ok(())
}

fn push_sorted<T: Ord + BorshSerialize + BorshDeserialize>(
    state: &mut TxBatch<'_, '_>,
    key: StateKey,
    item: T,
) -> Result<(), TxError> {
    let mut list: Vec<T> = state.get(&key)?.unwrap_or_default();
    if let Err(pos) = list.binary_search(&item) {
        list.insert(pos, item);
    }
    state.put(key, &list);
    Ok(())
}

/// Moves `amount` from the escrow back to `to`'s balance.
fn return_stake(state: &mut TxBatch<'_, '_>, to: &Address, amount: Amount) -> Result<(), TxError> {
    if amount.is_zero() {
        return Ok(());
    }
    let mut acc = state.account(to)?;
    acc.balance = add(acc.balance, amount, "balance")?;
    state.put_account(*to, &acc);
    let mut supply = state.supply()?;
    supply.escrowed = sub(supply.escrowed, amount, "escrowed supply")?;
    supply.open = add(supply.open, amount, "OPEN supply")?;
    state.put_supply(&supply);
    Ok(())
}

/// Accepts a pending contribution: counters, reputation, release schedule.
fn accept(state: &mut TxBatch<'_, '_>, c: &mut Contribution) -> Result<(), TxError> {
    let height = state.height();
    let release = height
        .checked_add(state.params().datanet_challenge_window_blocks)
        .ok_or(TxError::Overflow {
            what: "release height",
        })?;
    c.status = ContributionStatus::Accepted;
    c.decided_height = Some(height);
    c.release_height = Some(release);
    let mut d = load_datanet(state, &c.datanet)?;
    d.accepted += 1;
    d.rows_accepted = d.rows_accepted.saturating_add(u64::from(c.rows));
    state.put(StateKey::Datanet(d.id), &d);
    let mut r = reputation(state, &c.datanet, &c.contributor)?;
    r.accepted += 1;
    r.rows_accepted = r.rows_accepted.saturating_add(u64::from(c.rows));
    state.put(StateKey::Reputation(c.datanet, c.contributor), &r);
    push_sorted(state, StateKey::StakeReleases(release), c.id)?;
    state.emit(Event::ContributionAccepted {
        contribution: c.id,
        release_height: release,
    });
    Ok(())
}

/// Rejects a pending contribution: slashes `datanet_slash_bps` of the stake
/// (floor) to the treasury and returns the rest.
fn reject(
    state: &mut TxBatch<'_, '_>,
    c: &mut Contribution,
    reason: String,
) -> Result<(), TxError> {
    let bps = state.params().datanet_slash_bps;
    let slashed = slash_amount(c.stake, bps)?;
    let returned = sub(c.stake, slashed, "returned stake")?;
    if !slashed.is_zero() {
        let t = treasury_address();
        let mut acc = state.account(&t)?;
        acc.balance = add(acc.balance, slashed, "treasury balance")?;
        state.put_account(t, &acc);
        let mut supply = state.supply()?;
        supply.escrowed = sub(supply.escrowed, slashed, "escrowed supply")?;
        supply.open = add(supply.open, slashed, "OPEN supply")?;
        state.put_supply(&supply);
    }
    return_stake(state, &c.contributor, returned)?;
    c.status = ContributionStatus::Rejected {
        reason: reason.clone(),
    };
    c.decided_height = Some(state.height());
    c.slashed = slashed;
    let mut r = reputation(state, &c.datanet, &c.contributor)?;
    r.rejected += 1;
    r.slashed = add(r.slashed, slashed, "slashed total")?;
    state.put(StateKey::Reputation(c.datanet, c.contributor), &r);
    state.emit(Event::ContributionRejected {
        contribution: c.id,
        slashed,
        returned,
        reason,
    });
    Ok(())
}

/// `floor(stake × bps / 10,000)`.
pub(crate) fn slash_amount(stake: Amount, bps: u16) -> Result<Amount, TxError> {
    stake
        .mul_div_floor(u128::from(bps), u128::from(BPS_DENOMINATOR))
        .ok_or(TxError::Overflow { what: "slash" })
}

/// Whether `power` is at least `bps` basis points of `total`, i.e.
/// `power ≥ ceil(total × bps / 10,000)`, exactly and without overflow.
/// Zero power never reaches (an empty stake set decides nothing).
fn reaches(power: Amount, bps: u16, total: Amount) -> bool {
    let den = u128::from(BPS_DENOMINATOR);
    let bps = u128::from(bps);
    let Some(floor) = total.mul_div_floor(bps, den) else {
        return false;
    };
    // total·bps mod 10,000 = ((total mod 10,000)·bps) mod 10,000
    let rem = (total.0 % den) * bps % den;
    let need = floor.0.saturating_add(u128::from(rem != 0));
    !power.is_zero() && power.0 >= need
}

impl Module for DatanetModule {
    fn name(&self) -> &'static str {
        "datanet"
    }

    fn check_stateless(&self, action: &Action, _params: &Params) -> Result<(), TxError> {
        match action {
            Action::CreateDatanet { name, curation, .. } => {
                check_name(name)?;
                if let CurationMode::ValidatorVote { quorum_bps } = curation {
                    if *quorum_bps == 0 || *quorum_bps > BPS_DENOMINATOR {
                        return Err(field(
                            "quorum_bps",
                            format!("{quorum_bps} must be 1 to 10000 basis points"),
                        ));
                    }
                }
                Ok(())
            }
            Action::Contribute { rows, bytes, .. } => {
                if *rows == 0 {
                    return Err(field("rows", "a contribution needs at least one row"));
                }
                if *bytes == 0 {
                    return Err(field("bytes", "a contribution needs at least one byte"));
                }
                Ok(())
            }
            Action::Curate { accept, reason, .. } => {
                if reason.len() > MAX_REASON_LEN {
                    return Err(TxError::FieldTooLong {
                        field: "reason",
                        len: reason.len(),
                        max: MAX_REASON_LEN,
                    });
                }
                if !accept && reason.trim().is_empty() {
                    return Err(field("reason", "a rejection must state a reason"));
                }
                Ok(())
            }
            Action::PublishVersion {
                rows,
                contributions,
                ..
            } => {
                if contributions.is_empty() {
                    return Err(field(
                        "contributions",
                        "a version needs at least one accepted contribution",
                    ));
                }
                if *rows == 0 {
                    return Err(field("rows", "a version needs at least one row"));
                }
                let mut seen = contributions.clone();
                seen.sort();
                if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                    return Err(TxError::DuplicateContribution { id: w[0] });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
        require_balance(tx, state)?;
        let sender = tx.sender_address();
        match &tx.action {
            Action::CreateDatanet { name, .. } => {
                let id = datanet_id(name);
                if state.get::<Datanet>(&StateKey::Datanet(id))?.is_some() {
                    return Err(TxError::DatanetExists {
                        name: name.clone(),
                        id,
                    });
                }
            }
            Action::Contribute {
                datanet,
                contribution,
                ..
            } => {
                let d = load_datanet(state, datanet)?;
                if state
                    .get::<Contribution>(&StateKey::Contribution(*contribution))?
                    .is_some()
                {
                    return Err(TxError::ContributionExists { id: *contribution });
                }
                let have = state.account(&sender)?.balance;
                let need = add(tx.fee, d.stake_per_contribution, "fee plus stake")?;
                if have < need {
                    return Err(TxError::InsufficientBalance {
                        address: sender,
                        have,
                        need,
                    });
                }
            }
            Action::Curate { contribution, .. } => {
                let (c, d) = load_pending(state, contribution)?;
                match d.curation {
                    CurationMode::OwnerApproval => require_owner("curate", &d, &sender)?,
                    CurationMode::ValidatorVote { .. } => {
                        voting_power(state, &sender, &c)?;
                    }
                }
            }
            Action::PublishVersion {
                datanet,
                rows,
                contributions,
                ..
            } => {
                let d = load_datanet(state, datanet)?;
                require_owner("publish_version", &d, &sender)?;
                let mut total = 0u64;
                for id in contributions {
                    let c = load_contribution(state, id)?;
                    if c.datanet != d.id {
                        return Err(TxError::WrongDatanet {
                            contribution: c.id,
                            actual: c.datanet,
                        });
                    }
                    if !c.status.is_accepted() {
                        return Err(TxError::NotAccepted {
                            id: c.id,
                            status: c.status.to_string(),
                        });
                    }
                    total = total.saturating_add(u64::from(c.rows));
                }
                if *rows > total {
                    return Err(field(
                        "rows",
                        format!(
                            "the version claims {rows} rows but its contributions hold {total}"
                        ),
                    ));
                }
                if d.latest_version == u32::MAX {
                    return Err(TxError::Overflow {
                        what: "version number",
                    });
                }
            }
            Action::GrantAccess { datanet, .. } | Action::RevokeAccess { datanet, .. } => {
                let d = load_datanet(state, datanet)?;
                require_owner(tx.action.name(), &d, &sender)?;
                if d.visibility == Visibility::Public {
                    return Err(TxError::NotPermissioned { datanet: d.id });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError> {
        let height = state.height();
        match action {
            Action::CreateDatanet {
                name,
                metadata_hash,
                data_type,
                curation,
                stake_per_contribution,
                visibility,
            } => create_datanet(
                state,
                Datanet {
                    id: datanet_id(name),
                    name: name.clone(),
                    owner: sender,
                    metadata_hash: *metadata_hash,
                    data_type: *data_type,
                    curation: *curation,
                    stake_per_contribution: *stake_per_contribution,
                    visibility: *visibility,
                    created_height: height,
                    contributions: 0,
                    accepted: 0,
                    rows_accepted: 0,
                    latest_version: 0,
                },
            ),
            Action::Contribute {
                datanet,
                contribution,
                rows_root,
                rows,
                bytes,
            } => contribute(
                state,
                sender,
                datanet,
                *contribution,
                *rows_root,
                (*rows, *bytes),
            ),
            Action::Curate {
                contribution,
                accept: yes,
                reason,
            } => curate(state, sender, contribution, *yes, reason),
            Action::PublishVersion {
                datanet,
                root,
                rows,
                contributions,
            } => publish_version(state, sender, datanet, *root, *rows, contributions),
            Action::GrantAccess { datanet, to } => {
                state.put(
                    StateKey::DatanetAccess(*datanet, *to),
                    &AccessGrant {
                        granted_height: height,
                    },
                );
                state.emit(Event::AccessGranted {
                    datanet: *datanet,
                    to: *to,
                });
                Ok(())
            }
            Action::RevokeAccess { datanet, to } => {
                state.delete(StateKey::DatanetAccess(*datanet, *to));
                state.emit(Event::AccessRevoked {
                    datanet: *datanet,
                    to: *to,
                });
                Ok(())
            }
            other => Err(TxError::UnknownModule {
                module: "datanet",
                action: other.name(),
            }),
        }
    }

    /// Releases stakes whose challenge window ends now, then decides or
    /// expires contributions whose curation period ends now.
    fn end_block(&self, state: &mut TxBatch<'_, '_>) -> Result<(), TxError> {
        let height = state.height();
        let rkey = StateKey::StakeReleases(height);
        if let Some(ids) = state.get::<Vec<ContributionId>>(&rkey)? {
            for id in ids {
                let mut c = load_contribution(state, &id)?;
                if c.status != ContributionStatus::Accepted {
                    continue;
                }
                return_stake(state, &c.contributor, c.stake)?;
                c.status = ContributionStatus::Released;
                state.put(StateKey::Contribution(id), &c);
                state.emit(Event::StakeReleased {
                    contribution: id,
                    contributor: c.contributor,
                    amount: c.stake,
                });
            }
            state.delete(rkey);
        }
        let dkey = StateKey::CurationDeadlines(height);
        if let Some(ids) = state.get::<Vec<ContributionId>>(&dkey)? {
            for id in ids {
                let mut c = load_contribution(state, &id)?;
                if c.status != ContributionStatus::Pending {
                    continue;
                }
                let (for_, against) = tally(&c)?;
                if for_ > against {
                    accept(state, &mut c)?;
                } else if against > for_ {
                    let why = rejection_reason(&c);
                    reject(state, &mut c, why)?;
                } else {
                    return_stake(state, &c.contributor, c.stake)?;
                    c.status = ContributionStatus::Expired;
                    c.decided_height = Some(height);
                    let mut r = reputation(state, &c.datanet, &c.contributor)?;
                    r.expired += 1;
                    state.put(StateKey::Reputation(c.datanet, c.contributor), &r);
                    state.emit(Event::ContributionExpired {
                        contribution: id,
                        returned: c.stake,
                    });
                }
                state.put(StateKey::Contribution(id), &c);
            }
            state.delete(dkey);
        }
        Ok(())
    }
}

/// `CreateDatanet`: records the new datanet `d` (checked before: the name
/// is valid and free).
fn create_datanet(state: &mut TxBatch<'_, '_>, d: Datanet) -> Result<(), TxError> {
    state.put(StateKey::Datanet(d.id), &d);
    state.emit(Event::DatanetCreated {
        id: d.id,
        name: d.name.clone(),
        owner: d.owner,
    });
    tracing::debug!(target: "trib::ledger::datanet", id = %d.id, name = d.name.as_str(), "datanet created");
    Ok(())
}

/// `Contribute`: escrows the datanet's stake from `sender`, records the
/// pending contribution with its curation deadline, and counts it for the
/// datanet and the contributor's reputation. `size` is (rows, bytes).
fn contribute(
    state: &mut TxBatch<'_, '_>,
    sender: Address,
    datanet: &DatanetId,
    contribution: ContributionId,
    rows_root: Hash,
    (rows, bytes): (u32, u64),
) -> Result<(), TxError> {
    let height = state.height();
    let mut d = load_datanet(state, datanet)?;
    let stake = d.stake_per_contribution;
    escrow_stake(state, &sender, stake)?;
    let deadline = height
        .checked_add(state.params().datanet_curation_period_blocks)
        .ok_or(TxError::Overflow {
            what: "curation deadline",
        })?;
    let c = Contribution {
        id: contribution,
        datanet: *datanet,
        contributor: sender,
        stake,
        rows_root,
        rows,
        bytes,
        status: ContributionStatus::Pending,
        submitted_height: height,
        curation_deadline: deadline,
        decided_height: None,
        release_height: None,
        slashed: Amount::ZERO,
        votes: Vec::new(),
    };
    state.put(StateKey::Contribution(c.id), &c);
    push_sorted(state, StateKey::CurationDeadlines(deadline), c.id)?;
    push_sorted(state, StateKey::DatanetContributors(d.id), sender)?;
    d.contributions += 1;
    state.put(StateKey::Datanet(d.id), &d);
    let mut r = reputation(state, &d.id, &sender)?;
    r.contributions += 1;
    state.put(StateKey::Reputation(d.id, sender), &r);
    state.emit(Event::ContributionSubmitted {
        datanet: d.id,
        contribution: c.id,
        contributor: sender,
        stake,
    });
    Ok(())
}

/// Moves `stake` from `from`'s balance into the escrow.
fn escrow_stake(state: &mut TxBatch<'_, '_>, from: &Address, stake: Amount) -> Result<(), TxError> {
    let mut acc = state.account(from)?;
    if acc.balance < stake {
        return Err(TxError::InsufficientBalance {
            address: *from,
            have: acc.balance,
            need: stake,
        });
    }
    acc.balance = sub(acc.balance, stake, "balance")?;
    state.put_account(*from, &acc);
    let mut supply = state.supply()?;
    supply.open = sub(supply.open, stake, "OPEN supply")?;
    supply.escrowed = add(supply.escrowed, stake, "escrowed supply")?;
    state.put_supply(&supply);
    Ok(())
}

/// `Curate`: the owner's decision (owner approval) or one validator's vote
/// (validator vote), on a pending contribution.
fn curate(
    state: &mut TxBatch<'_, '_>,
    sender: Address,
    contribution: &ContributionId,
    yes: bool,
    reason: &str,
) -> Result<(), TxError> {
    let (mut c, d) = load_pending(state, contribution)?;
    match d.curation {
        CurationMode::OwnerApproval => {
            require_owner("curate", &d, &sender)?;
            if yes {
                accept(state, &mut c)?;
            } else {
                reject(state, &mut c, reason.to_string())?;
            }
        }
        CurationMode::ValidatorVote { quorum_bps } => {
            vote(state, sender, &mut c, yes, reason)?;
            let (for_, against) = tally(&c)?;
            let total = state.supply()?.gopen;
            if reaches(for_, quorum_bps, total) {
                accept(state, &mut c)?;
            } else if reaches(against, quorum_bps, total) {
                let why = rejection_reason(&c);
                reject(state, &mut c, why)?;
            }
        }
    }
    state.put(StateKey::Contribution(c.id), &c);
    Ok(())
}

/// Records `voter`'s vote on `c` with its voting power ([`voting_power`]:
/// once per voter; zero power cannot vote).
fn vote(
    state: &mut TxBatch<'_, '_>,
    voter: Address,
    c: &mut Contribution,
    yes: bool,
    reason: &str,
) -> Result<(), TxError> {
    let power = voting_power(state, &voter, c)?;
    c.votes.push(CurationVote {
        voter,
        accept: yes,
        power,
        reason: reason.to_string(),
    });
    state.emit(Event::CurationVoted {
        contribution: c.id,
        voter,
        accept: yes,
        power,
    });
    Ok(())
}

/// `PublishVersion`: the owner publishes the next immutable version over
/// accepted contributions of the datanet.
fn publish_version(
    state: &mut TxBatch<'_, '_>,
    sender: Address,
    datanet: &DatanetId,
    root: Hash,
    rows: u64,
    contributions: &[ContributionId],
) -> Result<(), TxError> {
    let mut d = load_datanet(state, datanet)?;
    require_owner("publish_version", &d, &sender)?;
    for id in contributions {
        let c = load_contribution(state, id)?;
        if c.datanet != d.id || !c.status.is_accepted() {
            return Err(TxError::NotAccepted {
                id: c.id,
                status: c.status.to_string(),
            });
        }
    }
    d.latest_version = d.latest_version.checked_add(1).ok_or(TxError::Overflow {
        what: "version number",
    })?;
    let v = DatanetVersion {
        datanet: d.id,
        version: d.latest_version,
        root,
        rows,
        contributions: contributions.to_vec(),
        height: state.height(),
    };
    state.put(StateKey::DatanetVersion(d.id, v.version), &v);
    state.put(StateKey::Datanet(d.id), &d);
    state.emit(Event::VersionPublished {
        datanet: d.id,
        version: v.version,
        root,
        rows,
    });
    Ok(())
}

/// Power for and against a contribution.
fn tally(c: &Contribution) -> Result<(Amount, Amount), TxError> {
    let mut yes = Amount::ZERO;
    let mut no = Amount::ZERO;
    for v in &c.votes {
        if v.accept {
            yes = add(yes, v.power, "curation tally")?;
        } else {
            no = add(no, v.power, "curation tally")?;
        }
    }
    Ok((yes, no))
}

/// The reasons of the rejecting votes, joined (capped at the reason limit).
fn rejection_reason(c: &Contribution) -> String {
    let mut out = String::new();
    for v in c.votes.iter().filter(|v| !v.accept) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&v.reason);
    }
    if out.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        check_name("legal-texts-2").unwrap();
        for bad in [
            "",
            "-a",
            "a-",
            "Upper",
            "with space",
            "ümlaut",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn slash_is_the_floor_of_the_basis_points() {
        assert_eq!(slash_amount(Amount(1_000), 1_000).unwrap(), Amount(100));
        assert_eq!(slash_amount(Amount(999), 1_000).unwrap(), Amount(99));
        assert_eq!(slash_amount(Amount(7), 10_000).unwrap(), Amount(7));
        assert_eq!(slash_amount(Amount(7), 0).unwrap(), Amount(0));
    }

    #[test]
    fn quorum_is_reached_at_exactly_the_share() {
        assert!(reaches(Amount(50), 5_000, Amount(100)));
        assert!(!reaches(Amount(49), 5_000, Amount(100)));
        // 1/3 of 10 is 3.33: 3 is short, 4 reaches.
        assert!(!reaches(Amount(3), 3_333, Amount(10)));
        assert!(reaches(Amount(4), 3_333, Amount(10)));
        assert!(!reaches(Amount(0), 1, Amount(0)));
        assert!(reaches(Amount(u128::MAX), 10_000, Amount(u128::MAX)));
    }
}
