//! The HTTP API's JSON bodies, decoded the way each side decodes them
//! (`serde_json::from_slice`): the first input byte picks the type, the rest
//! is the body. Request bodies the node accepts: a JSON signed transaction
//! (`POST /v1/tx`, then its canonical size), a datanet creation
//! (`POST /v1/datanets`), an attribution trace (`POST /v1/attribution/trace`)
//! and a chat's `messages` (`POST /v1/chat/completions`, then rendered by
//! every chat template); response bodies every client decodes (the wire
//! types of `trib_client::wire`, API keys included). Nothing may panic;
//! whatever decodes must survive a serialise → decode round trip unchanged
//! (where the type can be compared), and a decoded transaction's canonical
//! bytes must decode back to it.
//!
//! With `TRIB_FUZZ_WRITE_SEEDS=DIR` the target writes seed inputs into DIR
//! and exits, before fuzzing starts: the JSON form of one signed transaction
//! per kind of action (`seeds/tx.rs`), the conversations of the factory's
//! chat fixture, and one body of each other type built from its Rust type.
#![no_main]

#[path = "seeds/tx.rs"]
mod seed_tx;
#[path = "seeds/hook.rs"]
mod seeds;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use trib_client::wire::{
    AccountView, ApiKeyList, BlockView, ContributionView, CreateDatanetBody, CreateDatanetRequest,
    DatanetView, ErrorBody, ErrorDetail, JobDatanet, JobStatus, JobView, LeaderboardEntry,
    NewApiKeyView, PageView, PublishPlan, RowView, StatusView, SupplyView, TraceRequest, TxStatus,
    TxView, VersionView,
};
use trib_datanet::Quotas;
use trib_ledger::SignedTransaction;
use trib_model::{ChatMessage, ChatTemplate};
use trib_types::{
    Amount, BlockHash, Canonical, CurationMode, DataType, Hash, SecretKey, Visibility,
};

/// Decodes; on success, serialises and decodes again and checks equality.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(body) {
        let again = serde_json::to_vec(&v).expect("a decoded body serialises");
        let back: T = serde_json::from_slice(&again).expect("a serialised body decodes");
        assert_eq!(back, v, "JSON round trip changed the value");
    }
}

/// Decodes; on success, serialises and decodes again (types without `Eq`).
fn decodes<T: DeserializeOwned + Serialize>(body: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(body) {
        let again = serde_json::to_vec(&v).expect("a decoded body serialises");
        serde_json::from_slice::<T>(&again).expect("a serialised body decodes");
    }
}

fn signed_transaction(body: &[u8]) {
    round_trip::<SignedTransaction>(body);
    if let Ok(tx) = serde_json::from_slice::<SignedTransaction>(body) {
        let bytes = tx.encode();
        assert_eq!(
            bytes.len(),
            tx.encoded_len(),
            "encoded_len is not the encoding's length"
        );
        let back = SignedTransaction::decode_checked(&bytes, usize::MAX)
            .expect("a JSON transaction's canonical bytes decode");
        assert_eq!(back, tx, "canonical bytes decode to another transaction");
        let _ = tx.verify_signature();
    }
}

fn chat(body: &[u8]) {
    if let Ok(messages) = serde_json::from_slice::<Vec<ChatMessage>>(body) {
        let smollm2 = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n";
        let llama3 = "<|start_header_id|>{{ role }}<|end_header_id|>";
        for t in [Some(smollm2), Some(llama3), None] {
            let template = ChatTemplate::from_jinja(t);
            let text = template.render(&messages, true);
            for m in &messages {
                assert!(
                    text.contains(m.role.as_str()),
                    "a role is missing from the prompt"
                );
            }
        }
    }
}

const CHATS: &str = include_str!("../../crates/model/tests/fixtures/factory/chat.messages.jsonl");

/// A wire value as JSON (seed helper).
fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("a wire value serialises")
}

fn write_seeds(out: &Path) {
    let put = |name: String, selector: u8, body: Vec<u8>| {
        let mut bytes = vec![selector];
        bytes.extend(body);
        std::fs::write(out.join(name), bytes).expect("seed");
    };
    for (i, tx) in seed_tx::transactions().iter().enumerate() {
        put(format!("seed-tx-json-{i}"), 0, json(tx));
    }
    let owner = SecretKey::from_seed([3; 32]).address();
    let h = |tag: &str| Hash::domain("trib.fuzz.seed", &[tag.as_bytes()]);
    let create = CreateDatanetBody {
        request: CreateDatanetRequest {
            owner,
            name: "us-law".into(),
            description: "Court opinions, one paragraph a row".into(),
            tags: vec!["law".into(), "en".into()],
            data_type: DataType::Text,
            curation: CurationMode::ValidatorVote { quorum_bps: 3_300 },
            stake_per_contribution: Amount::open(5),
            visibility: Visibility::Public,
        },
        quotas: Some(Quotas::default()),
    };
    put("seed-create-datanet".into(), 1, json(&create));
    let trace = TraceRequest {
        model: "legal-qa".into(),
        text: "The term of office is four years.".into(),
        prompt: Some("How long is the term?".into()),
        top: Some(5),
    };
    put("seed-trace".into(), 2, json(&trace));
    let mut chats = 0;
    for line in CHATS.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture line parses");
        if let Some(m) = v.get("messages") {
            put(
                format!("seed-chat-{chats}"),
                3,
                serde_json::to_vec(m).expect("json"),
            );
            chats += 1;
        }
    }
    let error = ErrorBody {
        error: ErrorDetail {
            code: "insufficient_allowance".into(),
            message: "the allowance of 2 OPEN is below the 3 OPEN needed".into(),
        },
    };
    put("seed-error".into(), 4, json(&error));
    let status = StatusView {
        chain_id: "tributary-dev".into(),
        height: 1_204,
        head_hash: BlockHash(h("head")),
        state_root: h("state"),
        time_ms: 1_765_000_000_000,
        producer: owner,
        mempool_size: 3,
        version: "0.1.0".into(),
    };
    put("seed-status".into(), 5, json(&status));
    let account = AccountView {
        address: owner,
        balance: Amount::open(1_000),
        staked: Amount::open(10),
        unbonding: Vec::new(),
        delegate: Some(owner),
        voting_power: Amount::open(10),
        nonce: 4,
        next_nonce: 5,
        staking_rewards: Amount::open(2),
    };
    put("seed-account".into(), 6, json(&account));
    let tx = seed_tx::transactions().remove(0);
    let view = TxView {
        hash: tx.hash(),
        status: TxStatus::Pending,
        height: None,
        index: None,
        tx,
        receipt: None,
    };
    put("seed-tx-view".into(), 7, json(&view));
    let job = JobView {
        id: 7,
        name: Some("constitution".into()),
        owner: Some(owner),
        status: JobStatus::Running,
        output_dir: "/var/lib/trib/jobs/7".into(),
        step: 40,
        total_steps: 120,
        loss: Some(2.375),
        error: None,
        summary: None,
        datanets: vec![JobDatanet {
            name: "us-law".into(),
            version: 2,
        }],
    };
    put("seed-job".into(), 10, json(&job));
}

fuzz_target!(
    init: seeds::on_request(write_seeds),
    |data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 16 {
        0 => signed_transaction(body),
        1 => decodes::<CreateDatanetBody>(body),
        2 => round_trip::<TraceRequest>(body),
        3 => chat(body),
        4 => round_trip::<ErrorBody>(body),
        5 => round_trip::<StatusView>(body),
        6 => round_trip::<AccountView>(body),
        7 => round_trip::<TxView>(body),
        8 => round_trip::<BlockView>(body),
        9 => decodes::<SupplyView>(body),
        10 => decodes::<JobView>(body),
        11 => decodes::<DatanetView>(body),
        12 => decodes::<PageView<ContributionView>>(body),
        13 => decodes::<PageView<RowView>>(body),
        14 => decodes::<Vec<LeaderboardEntry>>(body),
        _ => {
            decodes::<PublishPlan>(body);
            decodes::<VersionView>(body);
            round_trip::<ApiKeyList>(body);
            round_trip::<NewApiKeyView>(body);
        }
    }
}
);
