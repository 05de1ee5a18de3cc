//! Fixtures for the datanet, model-registry and settlement tests: a chain
//! with a curated datanet, a published version, a base model, an adapter
//! and an approved operator.

use trib_ledger::{
    datanet_id, Action, BlockOutcome, CurationMode, DataType, Params, TxError, Visibility,
};
use trib_types::{AdapterId, Address, Amount, ContributionId, DatanetId, Hash, ModelId, SecretKey};

use crate::support::*;

/// The dev minimum fee every test transaction pays.
pub fn fee() -> Amount {
    Params::dev().min_fee
}

/// A deterministic contribution id.
pub fn cid(tag: &str) -> ContributionId {
    ContributionId(Hash::of(tag.as_bytes()))
}

/// Runs `action` from `key` in its own block and requires it to commit.
pub fn ok(chain: &mut TestChain, key: &SecretKey, action: Action) -> BlockOutcome {
    let tx = chain.tx(key, action);
    let out = chain.block(vec![tx]);
    assert!(
        out.rejected.is_empty(),
        "expected the transaction to commit, got {:?}",
        out.rejected
    );
    out
}

/// Runs `action` from `key` in its own block and requires it to be refused,
/// by the mempool-side check and by block execution alike.
pub fn refused(chain: &mut TestChain, key: &SecretKey, action: Action) -> TxError {
    let tx = chain.tx(key, action);
    let checked = chain
        .ledger
        .check_tx(&tx)
        .expect_err("check_tx accepted it");
    let out = chain.block(vec![tx]);
    assert_eq!(out.rejected.len(), 1, "expected a rejection");
    assert_eq!(
        out.rejected[0].error, checked,
        "check_tx and execution disagree"
    );
    checked
}

/// Like [`refused`], and also requires the block to leave the state root
/// unchanged (only valid when no end-block work is due).
pub fn refused_without_trace(chain: &mut TestChain, key: &SecretKey, action: Action) -> TxError {
    let root = chain.ledger.head().state_root;
    let e = refused(chain, key, action);
    assert_eq!(
        chain.ledger.head().state_root,
        root,
        "a rejected transaction changed the state"
    );
    e
}

/// Creates a datanet.
pub fn create_datanet(
    chain: &mut TestChain,
    owner: &SecretKey,
    name: &str,
    curation: CurationMode,
    stake: Amount,
    visibility: Visibility,
) -> DatanetId {
    ok(
        chain,
        owner,
        Action::CreateDatanet {
            name: name.into(),
            metadata_hash: Hash::of(name.as_bytes()),
            data_type: DataType::Text,
            curation,
            stake_per_contribution: stake,
            visibility,
        },
    );
    datanet_id(name)
}

/// A contribute action.
pub fn contribute(datanet: DatanetId, id: ContributionId, rows: u32) -> Action {
    Action::Contribute {
        datanet,
        contribution: id,
        rows_root: Hash::of(id.0.as_bytes()),
        rows,
        bytes: u64::from(rows) * 100,
    }
}

/// A curate action.
pub fn curate(id: ContributionId, accept: bool, reason: &str) -> Action {
    Action::Curate {
        contribution: id,
        accept,
        reason: reason.into(),
    }
}

/// The settlement world: who is who.
pub struct World {
    pub chain: TestChain,
    pub datanet: DatanetId,
    /// (contributor key index, contribution, rows)
    pub contributions: Vec<(u8, ContributionId, u32)>,
    pub base: ModelId,
    pub adapter: AdapterId,
    pub price_in: Amount,
    pub price_out: Amount,
}

pub const OWNER: u8 = 1;
pub const MODEL_OWNER: u8 = 5;
pub const PAYER: u8 = 6;
pub const OPERATOR: u8 = 7;
pub const STAKER: u8 = 8;

pub fn addr(i: u8) -> Address {
    user(i).address()
}

/// Users 1..=8 with 1,000 OPEN each; datanet `med` owned by user 1 with
/// contributions of 10, 30 and 60 rows by users 2, 3 and 4, all accepted
/// and published as version 1; base model by user 5; adapter by user 1
/// trained on med@1; user 6 approved operator user 7 for 100 OPEN; user 8
/// staked 100 OPEN and user 2 staked 300 OPEN.
pub fn world() -> World {
    let mut chain = TestChain::new(&genesis(8));
    let owner = user(OWNER);
    let datanet = create_datanet(
        &mut chain,
        &owner,
        "med",
        CurationMode::OwnerApproval,
        Amount::open(1),
        Visibility::Public,
    );
    let contributions = vec![
        (2u8, cid("c2"), 10u32),
        (3, cid("c3"), 30),
        (4, cid("c4"), 60),
    ];
    for (who, id, rows) in &contributions {
        ok(&mut chain, &user(*who), contribute(datanet, *id, *rows));
        ok(&mut chain, &owner, curate(*id, true, "looks right"));
    }
    ok(
        &mut chain,
        &owner,
        Action::PublishVersion {
            datanet,
            root: Hash::of(b"med v1"),
            rows: 100,
            contributions: contributions.iter().map(|c| c.1).collect(),
        },
    );
    let base = ModelId(Hash::of(b"smollm2"));
    ok(
        &mut chain,
        &user(MODEL_OWNER),
        Action::RegisterBaseModel {
            model: base,
            name: "SmolLM2-135M-Instruct".into(),
            architecture: "llama".into(),
            licence: "Apache-2.0".into(),
        },
    );
    let adapter = AdapterId(Hash::of(b"med-lora"));
    let (price_in, price_out) = (Amount(1_000_003), Amount(2_000_001));
    ok(
        &mut chain,
        &owner,
        Action::RegisterAdapter {
            adapter,
            base,
            name: "med-lora".into(),
            datanets: vec![(datanet, 1)],
            config_hash: Hash::of(b"config"),
            metrics_hash: Hash::of(b"metrics"),
            price_in_per_1k: price_in,
            price_out_per_1k: price_out,
        },
    );
    ok(
        &mut chain,
        &user(PAYER),
        Action::ApproveOperator {
            operator: addr(OPERATOR),
            allowance: Amount::open(100),
        },
    );
    ok(
        &mut chain,
        &user(STAKER),
        Action::Stake {
            amount: Amount::open(100),
        },
    );
    ok(
        &mut chain,
        &user(2),
        Action::Stake {
            amount: Amount::open(300),
        },
    );
    World {
        chain,
        datanet,
        contributions,
        base,
        adapter,
        price_in,
        price_out,
    }
}

/// A settlement action over the world's adapter.
pub fn settle(
    w: &World,
    receipt: &str,
    prompt: u32,
    completion: u32,
    weights: Vec<(ContributionId, u64)>,
) -> Action {
    Action::SettleInference {
        receipt: trib_types::ReceiptId(Hash::of(receipt.as_bytes())),
        payer: addr(PAYER),
        adapter: Some(w.adapter),
        base: w.base,
        prompt_tokens: prompt,
        completion_tokens: completion,
        weights,
        method: "token".into(),
        evidence_hash: Hash::of(b"evidence"),
        datanets: vec![(w.datanet, 1)],
    }
}
