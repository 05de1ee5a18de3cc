//! JSON shapes of the datanet routes (`/v1/datanets/…`,
//! `/v1/contributors/…`): what an owner sends to create a datanet, the
//! actions the node answers with for the owner or contributor to sign, and
//! the views of datanets, contributions, versions, rows and the
//! leaderboard.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use trib_datanet::ValidationReport;
use trib_ledger::{Action, CurationMode, DataType, Datanet, Visibility};
use trib_types::{Address, Amount, ContributionId, DatanetId, Hash};

/// The body of `POST /v1/datanets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateDatanetRequest {
    /// The owner (who will sign `CreateDatanet`).
    #[schema(value_type = schema::Address)]
    pub owner: Address,
    /// Unique name.
    pub name: String,
    /// Markdown description.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Row kind (`text`, `instruction`, `chat`).
    #[schema(value_type = schema::DataType)]
    pub data_type: DataType,
    /// Curation mode.
    #[schema(value_type = Object)]
    pub curation: CurationMode,
    /// OPEN escrowed by each contribution.
    #[schema(value_type = schema::Amount)]
    pub stake_per_contribution: Amount,
    /// Visibility.
    #[schema(value_type = schema::Visibility)]
    pub visibility: Visibility,
}

/// The body of `POST /v1/datanets`: the request and, optionally, its upload
/// quotas (the defaults of [`trib_datanet::Quotas`] when absent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateDatanetBody {
    /// The request.
    #[serde(flatten)]
    pub request: CreateDatanetRequest,
    /// Upload quotas (per file, per contributor per UTC day, per datanet
    /// per UTC day).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub quotas: Option<trib_datanet::Quotas>,
}

/// The answer to `POST /v1/datanets`: what the owner signs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateDatanetResponse {
    /// The ledger id (from the name).
    #[schema(value_type = schema::Hash)]
    pub id: DatanetId,
    /// blake3 of the stored descriptor (the `metadata_hash` to sign).
    #[schema(value_type = schema::Hash)]
    pub metadata_hash: Hash,
    /// The action to sign, ready to submit.
    #[schema(value_type = Object)]
    pub action: Action,
}

/// The answer to a contribution upload: the row-by-row validation report and,
/// when accepted, the `Contribute` action to sign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContributionResponse {
    /// The validation report (every row, with quality components and
    /// rejection reasons).
    #[schema(value_type = Object)]
    pub report: ValidationReport,
    /// The action to sign; `None` when the contribution was rejected.
    #[schema(value_type = Option<Object>)]
    pub action: Option<Action>,
}

/// The answer to `POST /v1/datanets/{name}/publish`: the version to sign.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishPlan {
    /// Version number.
    pub version: u32,
    /// Merkle root over its rows.
    #[schema(value_type = schema::Hash)]
    pub root: Hash,
    /// Rows.
    pub rows: u64,
    /// Its accepted contributions.
    #[schema(value_type = Vec<schema::Hash>)]
    pub contributions: Vec<ContributionId>,
    /// The action to sign.
    #[schema(value_type = Object)]
    pub action: Action,
}

/// A datanet as the API shows it: the ledger record and the descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatanetView {
    /// On-chain record.
    #[schema(value_type = Object)]
    pub ledger: Datanet,
    /// Off-chain descriptor text.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Upload quotas (UTC days), when this node holds the descriptor.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub quotas: Option<trib_datanet::Quotas>,
}

/// A contribution as the API shows it: the store's record and the
/// ledger's status (the truth), with `on_ledger` false when its
/// `Contribute` transaction was never committed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContributionView {
    /// Id.
    #[schema(value_type = schema::Hash)]
    pub id: ContributionId,
    /// The datanet it was contributed to.
    #[schema(value_type = schema::Hash)]
    pub datanet: DatanetId,
    /// That datanet's name.
    pub datanet_name: String,
    /// Contributor.
    #[schema(value_type = schema::Address)]
    pub contributor: Address,
    /// File name.
    pub file_name: String,
    /// Rows accepted at validation.
    pub rows: u32,
    /// Rows rejected as duplicates at validation.
    pub duplicates_rejected: u32,
    /// Mean quality score of its stored rows, in basis points (the
    /// validation score, recomputed from the rows); `None` when it has none.
    pub quality_bp: Option<u16>,
    /// `pending`, `accepted`, `rejected (...)`, `unsubmitted`…
    pub status: String,
    /// Whether the ledger knows it.
    pub on_ledger: bool,
    /// Stake escrowed, slashed.
    #[schema(value_type = schema::Amount)]
    pub stake: Amount,
    /// Slashed on rejection.
    #[schema(value_type = schema::Amount)]
    pub slashed: Amount,
}

/// A version as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// Number.
    pub version: u32,
    /// Root.
    #[schema(value_type = schema::Hash)]
    pub root: Hash,
    /// Rows.
    pub rows: u64,
    /// Whether the ledger recorded it (else it is a draft awaiting its
    /// `PublishVersion`).
    pub on_ledger: bool,
    /// Ledger height of publication.
    pub height: Option<u64>,
}

/// One leaderboard line: the ledger's reputation merged with the node's
/// record of validation (duplicates, submissions rejected before any
/// transaction); see docs/datanets.md, "Reputation".
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaderboardEntry {
    /// Contributor.
    #[schema(value_type = schema::Address)]
    pub contributor: Address,
    /// Contributions submitted on the ledger.
    pub contributions: u64,
    /// Accepted.
    pub accepted: u64,
    /// Rejected by curation (on the ledger).
    pub rejected: u64,
    /// Submissions rejected at validation (all duplicates, bad format,
    /// quota, …), which never reached the ledger.
    #[serde(default)]
    pub rejected_at_validation: u64,
    /// Rows accepted.
    pub rows_accepted: u64,
    /// accepted / (contributions + rejected_at_validation), basis points.
    pub acceptance_bps: u64,
    /// Rows rejected as exact or near duplicates at validation, in stored
    /// contributions and in rejected submissions alike.
    pub duplicates_rejected: u64,
    /// Slashed stake.
    #[schema(value_type = schema::Amount)]
    pub slashed: Amount,
    /// Attribution earnings.
    #[schema(value_type = schema::Amount)]
    pub earnings: Amount,
}

/// One row of a version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowView {
    /// Position in the version.
    pub index: u64,
    /// Content hash.
    #[schema(value_type = schema::Hash)]
    pub row_hash: Hash,
    /// Contributor.
    #[schema(value_type = schema::Address)]
    pub contributor: Address,
    /// Contribution.
    #[schema(value_type = schema::Hash)]
    pub contribution: ContributionId,
    /// The row as text (JSON for structured rows).
    pub text: String,
}
