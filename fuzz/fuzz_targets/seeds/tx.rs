//! Seed transactions for `tx_decode` and `http_json`: one signed
//! transaction per kind of action a user sends (transfer, staking,
//! governance, datanets, registries, settlement), built and signed with
//! trib-ledger's own types so the seeds are what the node receives.

use trib_ledger::{Action, SignedTransaction, Transaction, VoteChoice};
use trib_types::{
    AdapterId, Amount, ContributionId, CurationMode, DataType, DatanetId, Hash, ModelId, ReceiptId,
    SecretKey, Visibility,
};

pub fn transactions() -> Vec<SignedTransaction> {
    let key = SecretKey::from_seed([7; 32]);
    let other = SecretKey::from_seed([9; 32]).address();
    let h = |tag: &str| Hash::domain("trib.fuzz.seed", &[tag.as_bytes()]);
    let actions = vec![
        Action::Transfer {
            to: other,
            amount: Amount::open(12),
        },
        Action::Stake {
            amount: Amount::open(100),
        },
        Action::Delegate { to: other },
        Action::Vote {
            proposal: 3,
            choice: VoteChoice::Veto,
        },
        Action::CreateDatanet {
            name: "medical-notes".into(),
            metadata_hash: h("meta"),
            data_type: DataType::Text,
            curation: CurationMode::OwnerApproval,
            stake_per_contribution: Amount::open(5),
            visibility: Visibility::Permissioned,
        },
        Action::Contribute {
            datanet: DatanetId(h("dn")),
            contribution: ContributionId(h("c1")),
            rows_root: h("root"),
            rows: 42,
            bytes: 9_000,
        },
        Action::Curate {
            contribution: ContributionId(h("c1")),
            accept: false,
            reason: "off topic".into(),
        },
        Action::PublishVersion {
            datanet: DatanetId(h("dn")),
            root: h("v1"),
            rows: 42,
            contributions: vec![ContributionId(h("c1")), ContributionId(h("c2"))],
        },
        Action::RegisterAdapter {
            adapter: AdapterId(h("ad")),
            base: ModelId(h("base")),
            name: "legal-qa".into(),
            datanets: vec![(DatanetId(h("dn")), 1)],
            config_hash: h("cfg"),
            metrics_hash: h("metrics"),
            price_in_per_1k: Amount::open(1),
            price_out_per_1k: Amount::open(2),
        },
        Action::SettleInference {
            receipt: ReceiptId(h("rc")),
            payer: other,
            adapter: Some(AdapterId(h("ad"))),
            base: ModelId(h("base")),
            prompt_tokens: 31,
            completion_tokens: 120,
            weights: vec![
                (ContributionId(h("c1")), 700),
                (ContributionId(h("c2")), 300),
            ],
            method: "spans+datainf".into(),
            evidence_hash: h("ev"),
            datanets: vec![(DatanetId(h("dn")), 1)],
        },
        Action::ClaimStakingRewards,
    ];
    actions
        .into_iter()
        .enumerate()
        .map(|(nonce, action)| {
            Transaction {
                chain_id: "tributary-dev".into(),
                sender: key.public_key(),
                nonce: nonce as u64,
                fee: Amount::open(1),
                action,
            }
            .sign(&key)
        })
        .collect()
}
