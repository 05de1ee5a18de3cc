//! The ledger's error enums.

use trib_types::{
    AdapterId, Address, Amount, ContributionId, DatanetId, Hash, ModelId, ReceiptId, TxHash,
};

/// Why a transaction was refused (by the mempool or by block execution).
///
/// A refused transaction never changes state: it runs against a write batch
/// that is dropped on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The signature does not verify for the sender's key (ZIP-215).
    #[error("bad signature: the signature does not verify for sender {sender}")]
    BadSignature {
        /// The claimed sender.
        sender: Address,
    },
    /// The transaction is for another chain.
    #[error("wrong chain id {got:?}: this chain is {expected:?}")]
    WrongChainId {
        /// This chain's id.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The nonce is ahead of the next expected one (a transaction is missing).
    #[error("nonce gap for {sender}: got nonce {got}, expected {expected} (submit the missing transactions first)")]
    NonceGap {
        /// Sender.
        sender: Address,
        /// The next nonce the account (plus its pending transactions) expects.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce was already used (a replay or a duplicate).
    #[error("nonce {got} of {sender} was already used (replay): next nonce is {expected}")]
    NonceReplay {
        /// Sender.
        sender: Address,
        /// The next nonce the account expects.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The account cannot pay.
    #[error("insufficient balance in {address}: have {have}, need {need}")]
    InsufficientBalance {
        /// The paying account.
        address: Address,
        /// Its spendable OPEN (minus pending spends in the mempool).
        have: Amount,
        /// Fee plus amount.
        need: Amount,
    },
    /// The account has less gOPEN than it tries to unstake.
    #[error("insufficient stake in {address}: have {have} gOPEN, need {need}")]
    InsufficientStake {
        /// The account.
        address: Address,
        /// Its gOPEN.
        have: Amount,
        /// Requested.
        need: Amount,
    },
    /// The fee is below the governed minimum.
    #[error("fee {fee} is below the minimum fee {min}")]
    FeeBelowMinimum {
        /// Offered fee.
        fee: Amount,
        /// `min_fee` parameter.
        min: Amount,
    },
    /// A checked arithmetic operation overflowed.
    #[error("arithmetic overflow computing {what}")]
    Overflow {
        /// Which quantity.
        what: &'static str,
    },
    /// The action tag is not one this ledger knows.
    #[error("unknown action tag {tag}: this ledger version does not know it")]
    UnknownAction {
        /// The borsh variant tag.
        tag: u8,
    },
    /// No registered module handles the action.
    #[error("no module named {module:?} is registered for action {action}")]
    UnknownModule {
        /// The module the action names.
        module: &'static str,
        /// The action.
        action: &'static str,
    },
    /// The encoded transaction is too large.
    #[error("transaction is {len} bytes, over the limit of {max}")]
    Oversize {
        /// Encoded length.
        len: usize,
        /// `max_tx_bytes`.
        max: usize,
    },
    /// The bytes are not a valid transaction encoding.
    #[error("malformed transaction encoding: {reason}")]
    Malformed {
        /// The decoder's message.
        reason: String,
    },
    /// An amount that must be positive is zero.
    #[error("{action} amount must be greater than zero")]
    ZeroAmount {
        /// The action.
        action: &'static str,
    },
    /// A text field is too long.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The proposed parameter change would produce invalid parameters.
    #[error("invalid parameter change: {reason}")]
    InvalidParamChange {
        /// What is wrong.
        reason: String,
    },
    /// No proposal has this id.
    #[error("unknown proposal {id}")]
    UnknownProposal {
        /// Proposal id.
        id: u64,
    },
    /// The proposal is not in the phase the action needs.
    #[error("proposal {id} is {status}, not {needed}")]
    WrongProposalPhase {
        /// Proposal id.
        id: u64,
        /// Current status.
        status: String,
        /// Needed status.
        needed: &'static str,
    },
    /// The same transaction is already pending.
    #[error("transaction {hash} is already pending")]
    Duplicate {
        /// Its hash.
        hash: TxHash,
    },
    /// The mempool cannot take more transactions.
    #[error("mempool is full ({capacity} transactions): retry after the next block")]
    MempoolFull {
        /// Capacity.
        capacity: usize,
    },
    /// The block already holds `max_block_txs` transactions.
    #[error("block is full ({max} transactions)")]
    BlockFull {
        /// `max_block_txs`.
        max: u32,
    },
    /// State could not be read while checking the transaction.
    #[error("storage error while checking the transaction: {0}")]
    Storage(String),
    /// A field of a datanet, model or settlement action is out of range.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A datanet with this name exists already.
    #[error("a datanet named {name:?} already exists ({id})")]
    DatanetExists {
        /// The name.
        name: String,
        /// Its id.
        id: DatanetId,
    },
    /// No datanet has this id.
    #[error("unknown datanet {id}")]
    UnknownDatanet {
        /// The id.
        id: DatanetId,
    },
    /// Only the datanet's owner may do this.
    #[error("{action} on datanet {datanet} is reserved to its owner {owner}")]
    NotDatanetOwner {
        /// The action.
        action: &'static str,
        /// The datanet.
        datanet: DatanetId,
        /// Its owner.
        owner: Address,
    },
    /// A contribution with this id exists already.
    #[error("contribution {id} already exists")]
    ContributionExists {
        /// The id.
        id: ContributionId,
    },
    /// No contribution has this id.
    #[error("unknown contribution {id}")]
    UnknownContribution {
        /// The id.
        id: ContributionId,
    },
    /// The contribution was already decided.
    #[error("contribution {id} is {status}, not pending")]
    NotPending {
        /// The contribution.
        id: ContributionId,
        /// Its status.
        status: String,
    },
    /// In validator-vote curation, the voter holds no voting power.
    #[error(
        "{address} has no gOPEN voting power, so it cannot vote on contribution {contribution}"
    )]
    NoVotingPower {
        /// The voter.
        address: Address,
        /// The contribution.
        contribution: ContributionId,
    },
    /// The voter already voted on this contribution.
    #[error("{voter} already voted on contribution {contribution}")]
    AlreadyVoted {
        /// The voter.
        voter: Address,
        /// The contribution.
        contribution: ContributionId,
    },
    /// The contribution is not accepted, so it cannot be published or paid.
    #[error("contribution {id} is {status}, not accepted")]
    NotAccepted {
        /// The contribution.
        id: ContributionId,
        /// Its status.
        status: String,
    },
    /// The contribution belongs to another datanet.
    #[error("contribution {contribution} belongs to datanet {actual}, not to the datanet named")]
    WrongDatanet {
        /// The contribution.
        contribution: ContributionId,
        /// The contribution's datanet.
        actual: DatanetId,
    },
    /// The same contribution is listed twice.
    #[error("contribution {id} is listed twice")]
    DuplicateContribution {
        /// The contribution.
        id: ContributionId,
    },
    /// The datanet is public: there is no access to grant or revoke.
    #[error("datanet {datanet} is public: training access needs no grant")]
    NotPermissioned {
        /// The datanet.
        datanet: DatanetId,
    },
    /// No such version of the datanet.
    #[error("datanet {datanet} has no version {version} (latest is {latest})")]
    UnknownDatanetVersion {
        /// The datanet.
        datanet: DatanetId,
        /// Requested version.
        version: u32,
        /// Latest published version (0: none).
        latest: u32,
    },
    /// Training on a permissioned datanet needs the owner's grant.
    #[error("{address} has no training access to permissioned datanet {name:?} ({datanet}): ask its owner for a GrantAccess")]
    NoDatanetAccess {
        /// The datanet.
        datanet: DatanetId,
        /// Its name.
        name: String,
        /// Who lacks access.
        address: Address,
    },
    /// A base model with this id is already registered.
    #[error("base model {id} is already registered")]
    BaseModelExists {
        /// The id.
        id: ModelId,
    },
    /// No base model has this id.
    #[error("unknown base model {id}")]
    UnknownBaseModel {
        /// The id.
        id: ModelId,
    },
    /// An adapter with this id is already registered.
    #[error("adapter {id} is already registered")]
    AdapterExists {
        /// The id.
        id: AdapterId,
    },
    /// No adapter has this id.
    #[error("unknown adapter {id}")]
    UnknownAdapter {
        /// The id.
        id: AdapterId,
    },
    /// Only the adapter's owner may do this.
    #[error("adapter {adapter} belongs to {owner}: only its owner may change it")]
    NotAdapterOwner {
        /// The adapter.
        adapter: AdapterId,
        /// Its owner.
        owner: Address,
    },
    /// The settlement names a base model other than the adapter's.
    #[error("adapter {adapter} is built on base model {expected}, not on the base model named")]
    AdapterBaseMismatch {
        /// The adapter.
        adapter: AdapterId,
        /// Its base.
        expected: ModelId,
    },
    /// A price is outside the governed bounds.
    #[error("{which} {price} is outside the governed bounds [{min}, {max}] per 1k tokens")]
    PriceOutOfBounds {
        /// Which price.
        which: &'static str,
        /// The price.
        price: Amount,
        /// `model_min_price_per_1k`.
        min: Amount,
        /// `model_max_price_per_1k`.
        max: Amount,
    },
    /// A receipt with this id was already settled.
    #[error("receipt {id} was already settled (replay)")]
    ReceiptExists {
        /// The id.
        id: ReceiptId,
    },
    /// The fee exceeds what the payer allowed the operator to charge.
    #[error(
        "fee {fee} exceeds the allowance of {allowance} that {payer} gave operator {operator}"
    )]
    AllowanceExceeded {
        /// Payer.
        payer: Address,
        /// Operator (the sender).
        operator: Address,
        /// Remaining allowance.
        allowance: Amount,
        /// The fee.
        fee: Amount,
    },
    /// A weighted contribution is not part of what the adapter was trained on.
    #[error("contribution {contribution} is not in any datanet version adapter {adapter} was trained on")]
    NotInAdapterData {
        /// The contribution.
        contribution: ContributionId,
        /// The adapter.
        adapter: AdapterId,
    },
    /// A settlement names a datanet version its adapter was not trained on.
    #[error("datanet {datanet} version {version} is not among the versions adapter {adapter} was trained on (its ledger record lists them)")]
    NotAdapterVersion {
        /// The datanet.
        datanet: DatanetId,
        /// The version named.
        version: u32,
        /// The adapter.
        adapter: AdapterId,
    },
    /// A settlement for an adapter with training data names no datanet version.
    #[error("a settlement for adapter {adapter} must name the datanet versions the answer was attributed against (the adapter was trained on {trained})")]
    MissingAttributedVersions {
        /// The adapter.
        adapter: AdapterId,
        /// How many versions its record lists.
        trained: usize,
    },
    /// A base-model settlement names datanet versions, but the base model
    /// alone has no training data on the ledger.
    #[error("a settlement without an adapter has no datanet versions to name ({count} given)")]
    VersionsWithoutAdapter {
        /// How many were given.
        count: usize,
    },
    /// Nothing to claim.
    #[error("{address} has no staking rewards to claim")]
    NothingToClaim {
        /// The account.
        address: Address,
    },
}

/// Why a genesis file (or parameter set) is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// The JSON does not parse into a genesis.
    #[error("genesis JSON: {0}")]
    Json(String),
    /// Chain id empty or over 64 bytes.
    #[error("invalid chain id {0:?}: must be 1 to 64 bytes")]
    InvalidChainId(String),
    /// A parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// An address appears twice in the allocations.
    #[error("address {0} is allocated twice")]
    DuplicateAllocation(Address),
    /// The allocations sum past `u128::MAX` base units.
    #[error("allocations overflow the total supply")]
    AllocationOverflow,
}

/// A ledger operation failed (storage, corruption, bad arguments).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// `Ledger::create` found an existing file.
    #[error("refusing to overwrite existing ledger at {0}")]
    AlreadyExists(String),
    /// `Ledger::open` found no file.
    #[error("no ledger at {0} (run `trib init` first)")]
    NotFound(String),
    /// Another process (or another `Ledger` in this one) has the file open.
    #[error("ledger {0} is in use by another process (is `trib node` running? stop it or use its HTTP API)")]
    Locked(String),
    /// The genesis is invalid.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// The database failed (I/O, lock held by another process, corruption
    /// detected by redb).
    #[error("storage: {0}")]
    Storage(String),
    /// A stored record does not decode or is missing.
    #[error("corrupt ledger database: {0}")]
    Corrupt(String),
    /// No block at this height.
    #[error("no block at height {height} (head is {head})")]
    NoSuchBlock {
        /// Requested height.
        height: u64,
        /// Current head.
        head: u64,
    },
    /// The producer key is not the genesis producer.
    #[error("key {got} is not the chain's block producer {expected}")]
    WrongProducer {
        /// Genesis producer.
        expected: String,
        /// The key given.
        got: String,
    },
    /// The authenticated state tree failed.
    #[error("state tree: {0}")]
    Tree(String),
    /// A protocol invariant broke while executing a block (a bug: the block
    /// is not committed).
    #[error("block execution failed: {0}")]
    Execution(String),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for LedgerError {
            fn from(e: $t) -> Self {
                LedgerError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What `verify_chain` found wrong: always the first mismatch, by height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The stored genesis does not reproduce the genesis block.
    #[error("genesis mismatch: {0}")]
    Genesis(String),
    /// A block is missing or does not decode.
    #[error("block {height}: stored record is missing or corrupt: {what}")]
    CorruptBlock {
        /// Height.
        height: u64,
        /// Which record.
        what: String,
    },
    /// The header's parent hash is not the previous header's hash.
    #[error(
        "block {height}: parent hash {stored} does not match the previous block's hash {expected}"
    )]
    ParentMismatch {
        /// Height.
        height: u64,
        /// Stored parent.
        stored: Hash,
        /// Hash of the previous header.
        expected: Hash,
    },
    /// The header's time is before its parent's.
    #[error("block {height}: time {time_ms} is before its parent's {parent_time_ms}")]
    TimeWentBackwards {
        /// Height.
        height: u64,
        /// Block time.
        time_ms: u64,
        /// Parent time.
        parent_time_ms: u64,
    },
    /// The header is not signed by the genesis producer.
    #[error("block {height}: producer signature does not verify")]
    BadProducerSignature {
        /// Height.
        height: u64,
    },
    /// The transactions root differs.
    #[error("block {height}: transactions root mismatch: header has {stored}, transactions hash to {computed}")]
    TxRootMismatch {
        /// Height.
        height: u64,
        /// In the header.
        stored: Hash,
        /// Recomputed.
        computed: Hash,
    },
    /// A stored transaction fails on replay.
    #[error("block {height}: transaction {index} ({hash}) is rejected on replay: {error}")]
    TxRejected {
        /// Height.
        height: u64,
        /// Index in the block.
        index: u32,
        /// Its hash.
        hash: TxHash,
        /// Why.
        error: TxError,
    },
    /// The stored receipt differs from the replayed one.
    #[error("block {height}: receipt of transaction {index} differs from replay")]
    ReceiptMismatch {
        /// Height.
        height: u64,
        /// Index.
        index: u32,
    },
    /// The state root differs.
    #[error(
        "block {height}: state root mismatch: header has {stored}, replay computes {computed}"
    )]
    StateRootMismatch {
        /// Height.
        height: u64,
        /// In the header.
        stored: Hash,
        /// Recomputed.
        computed: Hash,
    },
    /// The stored state tree's root at the head differs from the header.
    #[error(
        "block {height}: stored state tree root {stored} differs from the header's {expected}"
    )]
    StoredTreeMismatch {
        /// Height.
        height: u64,
        /// Root of the stored JMT.
        stored: Hash,
        /// Header state root.
        expected: Hash,
    },
    /// A value in the current-state table differs from the replayed state.
    #[error("block {height}: stored current value of {key} differs from the replayed state")]
    CurrentStateMismatch {
        /// The head height.
        height: u64,
        /// The state key.
        key: String,
    },
    /// The database failed while reading.
    #[error("storage: {0}")]
    Storage(String),
}

/// Why a state proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof's state root is not the trusted one.
    #[error("proof is for state root {proof_root}, not the trusted root {trusted}")]
    RootMismatch {
        /// Trusted root.
        trusted: Hash,
        /// The root carried by the proof.
        proof_root: Hash,
    },
    /// The Merkle path does not lead from the key and value to the root.
    #[error("proof of {key} does not verify: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The verifier's message.
        reason: String,
    },
    /// The value does not belong to the key's type.
    #[error("value kind {value} does not match key {key}")]
    KindMismatch {
        /// The key.
        key: String,
        /// The value kind.
        value: &'static str,
    },
}
