//! Test vectors for the browser's encoders (web/src/lib): every transaction
//! action with its canonical bytes, signing hash, signature and id, and the
//! signed-request message with its signature, all from deterministic keys;
//! and state proofs from a real ledger (`proofs.json`: the key hash of every
//! `StateKey` kind, proofs of present and absent entries with the values'
//! canonical bytes), which web/src/lib/proof.test.ts checks the
//! TypeScript verifier against.
//!
//! The committed `web/tests/vectors/tx.json` must equal what this test
//! builds: it fails when the Rust encoding changes and the file was not
//! regenerated (`TRIB_WRITE_VECTORS=1 cargo test -p trib-web --test vectors`),
//! and the Vitest suite (web/src/lib/tx.test.ts) fails when the TypeScript
//! encoder disagrees with the file.

use std::path::PathBuf;

use serde_json::{json, Value};
use trib_ledger::{
    verify_proof, Action, CurationMode, DataType, FeeSplit, Genesis, Ledger, ParamChange,
    SignedTransaction, StateKey, Transaction, Visibility, VoteChoice,
};
use trib_types::{
    AdapterId, Address, Amount, Canonical, ContributionId, DatanetId, Hash, ModelId, ReceiptId,
    SecretKey,
};

fn h(label: &str) -> Hash {
    Hash::of(label.as_bytes())
}

fn actions(other: &SecretKey) -> Vec<Action> {
    let to = other.address();
    let big = Amount(u128::MAX - 12_345);
    vec![
        Action::Transfer {
            to,
            amount: Amount::parse_open("1.5").unwrap(),
        },
        Action::Stake {
            amount: Amount::open(250),
        },
        Action::Unstake { amount: big },
        Action::Delegate { to },
        Action::Propose {
            title: "Lower the fee — ½".into(),
            description: "Multi-byte UTF-8: naïve café ✓".into(),
            change: ParamChange::MinFee(Amount::parse_open("0.0001").unwrap()),
            deposit: Amount::open(10),
        },
        Action::Propose {
            title: "Split".into(),
            description: String::new(),
            change: ParamChange::FeeSplit(FeeSplit {
                contributors_bps: 4_000,
                adapter_owner_bps: 3_000,
                base_model_owner_bps: 1_000,
                stakers_bps: 1_000,
                treasury_bps: 1_000,
            }),
            deposit: Amount(1),
        },
    ]
    .into_iter()
    .chain(
        every_param_change()
            .into_iter()
            .map(|change| Action::Propose {
                title: "Every parameter".into(),
                description: String::new(),
                change,
                deposit: Amount(7),
            }),
    )
    .chain([
        Action::Propose {
            title: "Burn".into(),
            description: "d".into(),
            change: ParamChange::GovDepositBurnOnFail(true),
            deposit: Amount(2),
        },
        Action::Propose {
            title: "Quorum".into(),
            description: "d".into(),
            change: ParamChange::GovQuorumBps(2_500),
            deposit: Amount(3),
        },
        Action::Propose {
            title: "Unbonding".into(),
            description: "d".into(),
            change: ParamChange::UnbondingPeriodBlocks(1 << 40),
            deposit: Amount(4),
        },
        Action::Propose {
            title: "Block size".into(),
            description: "d".into(),
            change: ParamChange::MaxBlockTxs(4_096),
            deposit: Amount(5),
        },
        Action::Propose {
            title: "Base price".into(),
            description: "d".into(),
            change: ParamChange::BasePriceOutPer1k(Amount::open(2)),
            deposit: Amount(6),
        },
        Action::Deposit {
            proposal: 7,
            amount: Amount::open(3),
        },
        Action::Vote {
            proposal: 7,
            choice: VoteChoice::Veto,
        },
        // The largest id a JSON number carries exactly in JavaScript.
        Action::Vote {
            proposal: (1 << 53) - 1,
            choice: VoteChoice::Yes,
        },
        Action::CreateDatanet {
            name: "medical-qa".into(),
            metadata_hash: h("descriptor"),
            data_type: DataType::Instruction,
            curation: CurationMode::OwnerApproval,
            stake_per_contribution: Amount::parse_open("0.5").unwrap(),
            visibility: Visibility::Public,
        },
        Action::CreateDatanet {
            name: "votes".into(),
            metadata_hash: h("descriptor 2"),
            data_type: DataType::Chat,
            curation: CurationMode::ValidatorVote { quorum_bps: 6_000 },
            stake_per_contribution: Amount::ZERO,
            visibility: Visibility::Permissioned,
        },
        Action::Contribute {
            datanet: DatanetId(h("datanet")),
            contribution: ContributionId(h("contribution")),
            rows_root: h("rows"),
            rows: 42,
            bytes: 5_000_000_000,
        },
        Action::Curate {
            contribution: ContributionId(h("contribution")),
            accept: true,
            reason: String::new(),
        },
        Action::Curate {
            contribution: ContributionId(h("contribution 2")),
            accept: false,
            reason: "duplicates an earlier upload".into(),
        },
        Action::PublishVersion {
            datanet: DatanetId(h("datanet")),
            root: h("version root"),
            rows: 40,
            contributions: vec![ContributionId(h("c1")), ContributionId(h("c2"))],
        },
        Action::GrantAccess {
            datanet: DatanetId(h("datanet")),
            to,
        },
        Action::RevokeAccess {
            datanet: DatanetId(h("datanet")),
            to,
        },
        Action::RegisterBaseModel {
            model: ModelId(h("weights")),
            name: "SmolLM2-135M-Instruct".into(),
            architecture: "llama".into(),
            licence: "Apache-2.0".into(),
        },
        Action::RegisterAdapter {
            adapter: AdapterId(h("peft")),
            base: ModelId(h("weights")),
            name: "medical adapter".into(),
            datanets: vec![(DatanetId(h("datanet")), 1), (DatanetId(h("other")), 3)],
            config_hash: h("config"),
            metrics_hash: h("metrics"),
            price_in_per_1k: Amount::parse_open("0.01").unwrap(),
            price_out_per_1k: Amount::parse_open("0.02").unwrap(),
        },
        Action::SetAdapterPrice {
            adapter: AdapterId(h("peft")),
            price_in_per_1k: Amount::parse_open("0.03").unwrap(),
            price_out_per_1k: Amount::parse_open("0.04").unwrap(),
        },
        Action::ApproveOperator {
            operator: to,
            allowance: Amount::open(100),
        },
        Action::SettleInference {
            receipt: ReceiptId(h("receipt")),
            payer: to,
            adapter: Some(AdapterId(h("peft"))),
            base: ModelId(h("weights")),
            prompt_tokens: 17,
            completion_tokens: 64,
            weights: vec![
                (ContributionId(h("c1")), 700),
                (ContributionId(h("c2")), 300),
            ],
            method: "token-spans+datainf".into(),
            evidence_hash: h("evidence"),
            datanets: vec![(DatanetId(h("datanet")), 1)],
        },
        Action::SettleInference {
            receipt: ReceiptId(h("receipt 2")),
            payer: to,
            adapter: None,
            base: ModelId(h("weights")),
            prompt_tokens: 1,
            completion_tokens: 2,
            weights: vec![],
            method: "none".into(),
            evidence_hash: Hash::ZERO,
            datanets: vec![],
        },
        Action::ClaimStakingRewards,
    ])
    .collect()
}

/// One change per `ParamChange` variant (its borsh tag and payload type).
fn every_param_change() -> Vec<ParamChange> {
    let a = Amount::parse_open("0.25").unwrap();
    vec![
        ParamChange::MaxBlockTxs(100),
        ParamChange::MaxTxBytes(65_536),
        ParamChange::MinFee(a),
        ParamChange::UnbondingPeriodBlocks(20),
        ParamChange::GovMinDeposit(a),
        ParamChange::GovDepositPeriodBlocks(21),
        ParamChange::GovVotingPeriodBlocks(22),
        ParamChange::GovQuorumBps(3_000),
        ParamChange::GovThresholdBps(5_001),
        ParamChange::GovVetoBps(3_334),
        ParamChange::GovTimelockBlocks(23),
        ParamChange::GovDepositBurnOnFail(false),
        ParamChange::FeeSplit(FeeSplit::default()),
        ParamChange::DatanetSlashBps(500),
        ParamChange::DatanetChallengeWindowBlocks(24),
        ParamChange::DatanetCurationPeriodBlocks(25),
        ParamChange::ModelMinPricePer1k(a),
        ParamChange::ModelMaxPricePer1k(a),
        ParamChange::BasePriceInPer1k(a),
        ParamChange::BasePriceOutPer1k(a),
    ]
}

fn tx_vectors() -> Value {
    let key = SecretKey::from_seed([7; 32]);
    let other = SecretKey::from_seed([9; 32]);
    let txs: Vec<Value> = actions(&other)
        .into_iter()
        .enumerate()
        .map(|(i, action)| {
            let tx = Transaction {
                chain_id: "tributary-vectors".into(),
                sender: key.public_key(),
                nonce: i as u64 * 1_000_003,
                fee: Amount::parse_open("0.001").unwrap(),
                action,
            };
            let bytes = borsh::to_vec(&tx).unwrap();
            let signed: SignedTransaction = tx.clone().sign(&key);
            signed.verify_signature().unwrap();
            json!({
                "name": tx.action.name(),
                "tx": serde_json::to_value(&tx).unwrap(),
                "signing_bytes": hex::encode(&bytes),
                "signing_hash": tx.signing_hash().to_hex(),
                "signature": hex::encode(signed.signature.0),
                "hash": signed.hash().to_string(),
                "signed": hex::encode(signed.encode()),
            })
        })
        .collect();
    let request = |method: &str, path: &str, ts: u64, nonce: &str, body: &[u8]| {
        let msg = trib_client::signed_read::message(method, path, ts, nonce, body);
        json!({
            "method": method,
            "path_and_query": path,
            "timestamp": ts,
            "nonce": nonce,
            "body_hex": hex::encode(body),
            "message": String::from_utf8(msg.clone()).unwrap(),
            "signature": hex::encode(key.sign(&msg).0),
        })
    };
    json!({
        "key": {
            "seed": hex::encode(key.to_seed()),
            "public_key": key.public_key().to_hex(),
            "address": key.address().to_string(),
        },
        "other_address": other.address().to_string(),
        "transactions": txs,
        "signed_requests": [
            request("get", "/v1/receipts/ab12?x=1", 1_700_000_000, "00ff", b""),
            request("POST", "/v1/datanets/medical-qa/contributions?file=a.jsonl", 1_700_000_123, "0123456789abcdef0123456789abcdef", "{\"text\":\"naïve\"}\n".as_bytes()),
        ],
    })
}

#[test]
fn committed_vectors_match_the_rust_encoding() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/tests/vectors/tx.json");
    let mut text = serde_json::to_string_pretty(&tx_vectors()).unwrap();
    text.push('\n');
    // Every action variant is covered.
    let v: Value = serde_json::from_str(&text).unwrap();
    let names: std::collections::BTreeSet<_> = v["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 19, "one vector per action variant at least");
    let params: std::collections::BTreeSet<_> = v["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["tx"]["action"]["change"]["param"].as_str())
        .collect();
    assert_eq!(params.len(), 20, "one vector per parameter change at least");
    check_or_write(&path, &text);
}

/// Writes `text` to `path` when `TRIB_WRITE_VECTORS` is set; otherwise
/// fails unless the committed file equals it.
fn check_or_write(path: &std::path::Path, text: &str) {
    if std::env::var_os("TRIB_WRITE_VECTORS").is_some() {
        std::fs::write(path, text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with TRIB_WRITE_VECTORS=1 cargo test -p trib-web --test vectors",
            path.display()
        )
    });
    assert!(
        committed == text,
        "{} differs from the Rust encoding: if the change is intended, regenerate it with \
         TRIB_WRITE_VECTORS=1 cargo test -p trib-web --test vectors and check the web tests",
        path.display()
    );
}

/// One sample key of every `StateKey` variant.
fn every_state_key(a: Address, b: Address) -> Vec<StateKey> {
    let d = DatanetId(h("datanet"));
    vec![
        StateKey::Account(a),
        StateKey::Params,
        StateKey::Supply,
        StateKey::Proposal(u64::MAX - 7),
        StateKey::NextProposalId,
        StateKey::ActiveProposals,
        StateKey::VotingPower(b),
        StateKey::UnbondingQueue(1_234_567),
        StateKey::Datanet(d),
        StateKey::Contribution(ContributionId(h("contribution"))),
        StateKey::DatanetVersion(d, 4_000_000_000),
        StateKey::DatanetAccess(d, b),
        StateKey::Reputation(d, a),
        StateKey::DatanetContributors(d),
        StateKey::CurationDeadlines(9),
        StateKey::StakeReleases(10),
        StateKey::BaseModel(ModelId(h("base"))),
        StateKey::Adapter(AdapterId(h("adapter"))),
        StateKey::Allowance(a, b),
        StateKey::Receipt(ReceiptId(h("receipt"))),
        StateKey::PayoutCount(a),
        StateKey::PayoutIndex(b, 3),
        StateKey::StakingRewardPool,
        StateKey::StakerRewards(b),
    ]
}

/// State proofs from a real ledger (the genesis block of a dev chain): the
/// key hash of every key kind, and proofs of entries that exist and of
/// entries that do not, each with the value's canonical bytes, as
/// GET /v1/proofs serves them.
fn proof_vectors() -> Value {
    let producer = SecretKey::from_seed([7; 32]);
    let other = SecretKey::from_seed([9; 32]);
    let absent = SecretKey::from_seed([11; 32]).address();
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::dev(
        producer.public_key(),
        vec![
            (producer.address(), Amount::open(1_000_000)),
            (other.address(), Amount::parse_open("12.5").unwrap()),
        ],
    );
    let ledger = Ledger::create(dir.path().join("ledger.redb"), &genesis).unwrap();
    let keys: Vec<Value> = every_state_key(producer.address(), other.address())
        .into_iter()
        .map(|k| {
            json!({
                "key": k.to_string(),
                "bytes": hex::encode(k.encode()),
                "key_hash": hex::encode(k.key_hash().0),
            })
        })
        .collect();
    assert_eq!(keys.len(), 24, "one sample per StateKey variant");
    let proofs: Vec<Value> = [
        StateKey::Account(producer.address()),
        StateKey::Account(other.address()),
        StateKey::Params,
        StateKey::Supply,
        StateKey::Account(absent),
        StateKey::VotingPower(absent),
        StateKey::Proposal(1),
    ]
    .into_iter()
    .map(|k| {
        let p = ledger.prove(k, None).unwrap();
        verify_proof(p.state_root, &p).unwrap();
        json!({
            "key": p.key.to_string(),
            "state_root": p.state_root,
            "value_bytes": p.value.as_ref().map(|v| hex::encode(v.encode())),
            "proof": p.proof,
        })
    })
    .collect();
    json!({ "keys": keys, "proofs": proofs })
}

#[test]
fn committed_proof_vectors_match_the_ledger() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/tests/vectors/proofs.json");
    let v = proof_vectors();
    let proofs = v["proofs"].as_array().unwrap();
    assert!(
        proofs.iter().any(|p| p["value_bytes"].is_null()),
        "an absence proof"
    );
    assert!(
        proofs.iter().any(|p| !p["value_bytes"].is_null()),
        "an inclusion proof"
    );
    let mut text = serde_json::to_string_pretty(&v).unwrap();
    text.push('\n');
    check_or_write(&path, &text);
}
