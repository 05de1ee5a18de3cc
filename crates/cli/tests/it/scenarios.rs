//! The user's path: init, keys, a node, transfers, queries.

use crate::harness::{mode, units, NodeProc, TestHome};
use trib_node::types::Amount;

#[test]
fn init_creates_a_home_and_refuses_to_overwrite_it() {
    let h = TestHome::new();
    let out = h.ok(&["init", "--dev"]);
    assert!(
        out.contains("tributary-dev") && out.contains("producer"),
        "{out}"
    );
    for f in [
        "config.toml",
        "genesis.json",
        "ledger.redb",
        "keys/producer.json",
    ] {
        assert!(h.root.join(f).is_file(), "{f} missing");
    }
    let genesis = std::fs::read(h.root.join("genesis.json")).unwrap();
    let err = h.fails(&["init"]);
    assert!(
        err.contains("already exists") && err.contains("refusing to overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(h.root.join("genesis.json")).unwrap(), genesis);
}

#[test]
fn trib_home_env_selects_the_home() {
    let h = TestHome::new();
    let out = std::process::Command::new(crate::harness::TRIB)
        .args(["init", "--dev", "--json"])
        .env("TRIB_HOME", &h.root)
        .env("TRIB_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(h.root.join("genesis.json").is_file());
}

#[test]
fn keys_are_created_listed_and_shown_without_secrets() {
    let h = TestHome::init_dev();
    let alice = h.json(&["keys", "new", "alice"]);
    assert_eq!(alice["encrypted"], false);
    let bob = h
        .cmd(&[
            "keys",
            "new",
            "bob",
            "--encrypt",
            "--passphrase-env",
            "BOB_PASS",
            "--json",
        ])
        .env("BOB_PASS", "hunter2 but longer")
        .output()
        .unwrap();
    assert!(
        bob.status.success(),
        "{}",
        crate::harness::text(&bob.stderr)
    );
    let bob: serde_json::Value = serde_json::from_slice(&bob.stdout).unwrap();
    assert_eq!(bob["encrypted"], true);

    let list = h.json(&["keys", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "producer"]);
    let shown = h.ok(&["keys", "show", "alice"]);
    assert!(shown.contains(alice["address"].as_str().unwrap()));

    for name in ["alice", "bob", "producer"] {
        let path = h.root.join(format!("keys/{name}.json"));
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    // Nothing printed contains a secret seed.
    let seed = hex::encode(h.key("alice").to_seed());
    assert!(!shown.contains(&seed) && !h.ok(&["keys", "list"]).contains(&seed));

    let err = h.fails(&["keys", "new", "alice"]);
    assert!(err.contains("already exists"), "{err}");
    // Encrypted keys without a passphrase source, with no terminal: clear error.
    let err = h.fails(&["tx", "stake", "--from", "bob", "1"]);
    assert!(
        err.contains("encrypted") && err.contains("--passphrase-env"),
        "{err}"
    );
    let out = h
        .cmd(&["tx", "stake", "--from", "bob", "--passphrase-env", "P", "1"])
        .env("P", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        crate::harness::text(&out.stderr).contains("wrong passphrase"),
        "{}",
        crate::harness::text(&out.stderr)
    );
}

#[test]
fn transfers_are_committed_and_read_back_as_json() {
    let h = TestHome::init_dev();
    h.ok(&["keys", "new", "alice"]);
    let mut node = NodeProc::start(&h, 100);
    let n = node.node_args();

    let receipt = h.json(&[
        "tx", "transfer", "--from", "producer", "--to", "alice", "1.5", "--wait", n[0], n[1],
    ]);
    assert_eq!(receipt["status"], "committed");
    assert!(receipt["height"].as_u64().unwrap() >= 1);
    let events = receipt["receipt"]["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "transfer" && e["amount"] == "1500000000000000000"),
        "{receipt}"
    );

    // Without --wait: the hash on stdout, then it gets committed.
    let alice = h.address("alice").to_string();
    let hash = h
        .ok(&[
            "tx", "transfer", "--from", "producer", "--to", &alice, "2", n[0], n[1],
        ])
        .trim()
        .to_string();
    assert_eq!(hash.len(), 64, "{hash}");
    let mut committed = false;
    for _ in 0..200 {
        let tx = h.json(&["query", "tx", &hash, n[0], n[1]]);
        if tx["status"] == "committed" {
            committed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(committed, "transaction {hash} never committed");

    let bal = h.json(&["query", "balance", "alice", n[0], n[1]]);
    assert_eq!(units(&bal["balance"]), Amount::parse_open("3.5").unwrap().0);
    assert_eq!(
        h.ok(&["query", "balance", "alice", n[0], n[1]]).trim(),
        "3.5 OPEN"
    );
    let acct = h.json(&["query", "account", &alice, n[0], n[1]]);
    assert_eq!(
        (acct["nonce"].as_u64(), acct["address"].as_str()),
        (Some(0), Some(alice.as_str()))
    );
    let producer = h.json(&["query", "account", "producer", n[0], n[1]]);
    assert_eq!(producer["nonce"], 2);

    let status = h.json(&["query", "status", n[0], n[1]]);
    assert_eq!(status["chain_id"], "tributary-dev");
    let block = h.json(&["query", "block", n[0], n[1]]);
    assert!(block["header"]["height"].as_u64().unwrap() >= 2);
    let b1 = h.json(&["query", "block", "1", n[0], n[1]]);
    assert_eq!(b1["header"]["height"], 1);
    let params = h.json(&["query", "params", n[0], n[1]]);
    assert_eq!(params["gov_voting_period_blocks"], 5);
    let supply = h.json(&["query", "supply", n[0], n[1]]);
    assert_eq!(units(&supply["total"]), Amount::open(1_000_000).0);
    assert_eq!(
        h.json(&["query", "proposal", n[0], n[1]]),
        serde_json::json!([])
    );

    assert!(node.terminate(), "node did not exit cleanly on SIGTERM");
}

#[test]
fn stake_delegate_and_a_proposal_run_through_the_cli() {
    let h = TestHome::init_dev();
    h.ok(&["keys", "new", "alice"]);
    let node = NodeProc::start(&h, 50);
    let n = node.node_args();
    h.ok(&[
        "tx", "transfer", "--from", "producer", "--to", "alice", "100", "--wait", n[0], n[1],
    ]);
    h.ok(&[
        "tx", "stake", "--from", "producer", "1000", "--wait", n[0], n[1],
    ]);
    h.ok(&["tx", "stake", "--from", "alice", "40", "--wait", n[0], n[1]]);
    h.ok(&[
        "tx", "delegate", "--from", "alice", "--to", "producer", "--wait", n[0], n[1],
    ]);
    let p = h.json(&["query", "account", "producer", n[0], n[1]]);
    assert_eq!(units(&p["voting_power"]), Amount::open(1040).0);

    let out = h.ok(&[
        "tx",
        "propose",
        "--from",
        "producer",
        "--title",
        "cheaper blocks",
        "--change",
        "max_block_txs=1234",
        "--deposit",
        "10",
        "--wait",
        n[0],
        n[1],
    ]);
    assert!(out.contains("proposal 0 submitted"), "{out}");
    h.ok(&[
        "tx", "vote", "--from", "producer", "0", "yes", "--wait", n[0], n[1],
    ]);
    h.ok(&[
        "tx", "unstake", "--from", "alice", "5", "--wait", n[0], n[1],
    ]);
    let mut executed = false;
    for _ in 0..400 {
        if h.json(&["query", "proposal", "0", n[0], n[1]])["status"] == "executed" {
            executed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(executed, "proposal 0 was not executed");
    assert_eq!(
        h.json(&["query", "params", n[0], n[1]])["max_block_txs"],
        1234
    );
    let err = h.fails(&["tx", "vote", "--from", "producer", "0", "maybe", n[0], n[1]]);
    assert!(err.contains("maybe"), "{err}");
}

#[test]
fn the_demo_runs_to_completion() {
    let h = TestHome::new();
    let s = h.json(&["demo"]);
    assert_eq!(s["param_after"], "0.0005 OPEN");
    assert!(s["verified_txs"].as_u64().unwrap() >= 10);
    assert!(
        h.root.join("ledger.redb").is_file(),
        "--home keeps the demo's home"
    );
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.is_file() {
        assert!(s["inference"].is_null(), "no model, no paid inference: {s}");
        eprintln!("paid inference skipped: models/ has no demo model (scripts/fetch-model.sh)");
        return;
    }
    // The paid request: a receipt settled on the ledger whose payout lines
    // sum to a non-zero fee and verify. Traced (`token-spans`, or with the
    // installed gradient cache `token-spans+datainf` / `datainf`): the
    // weighted contributions are paid and the spans are shown; otherwise the
    // ledger's fallback pays both datanet contributors pro rata by rows.
    let inf = &s["inference"];
    let receipt = inf["receipt"].as_str().expect("a receipt id");
    assert_eq!(receipt.len(), 64, "{inf}");
    let fee: u128 = serde_json::from_value::<trib_node::types::Amount>(inf["fee"].clone())
        .expect("fee is an amount")
        .0;
    assert!(fee > 0, "{inf}");
    let lines = inf["lines"].as_array().expect("payout lines");
    let sum: u128 = lines
        .iter()
        .map(|l| {
            serde_json::from_value::<trib_node::types::Amount>(l["amount"].clone())
                .unwrap()
                .0
        })
        .sum();
    assert_eq!(sum, fee, "{inf}");
    assert!(!inf["answer"].as_str().unwrap().trim().is_empty(), "{inf}");
    let method = inf["method"].as_str().expect("a method");
    let traced = ["token-spans", "token-spans+datainf", "datainf"].contains(&method);
    // The factory's gradient cache is installed beside the adapter, so the
    // DataInf share takes part whenever the answer has new tokens.
    assert!(
        method.contains("datainf") || method == "datanet-fallback",
        "{inf}"
    );
    let mut contributors_paid = 0u128;
    let gains = inf["contributor_gains"].as_array().unwrap();
    assert_eq!(gains.len(), 2, "bob and carol: {inf}");
    for g in gains {
        let gained: u128 = serde_json::from_value(g[2].clone()).unwrap();
        let paid: u128 = lines
            .iter()
            .filter(|l| l["recipient"] == g[1] && l["role"]["role"] == "contributor")
            .map(|l| {
                serde_json::from_value::<trib_node::types::Amount>(l["amount"].clone())
                    .unwrap()
                    .0
            })
            .sum();
        if !traced {
            assert!(paid > 0, "{g} has a contributor line: {inf}");
        }
        contributors_paid += paid;
        assert_eq!(gained, paid, "{g}'s balance grew by its payout: {inf}");
    }
    assert!(contributors_paid > 0, "{inf}");
    if traced {
        if method.starts_with("token-spans") {
            assert!(!inf["spans"].as_array().unwrap().is_empty(), "{inf}");
        }
        assert!(!inf["weights"].as_array().unwrap().is_empty(), "{inf}");
        // The traced contributions are exactly the ones paid, and the
        // contributors credited with the shown spans are among those paid.
        let weighted: std::collections::BTreeSet<String> = inf["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[0].to_string())
            .collect();
        let contributor_lines: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["role"]["role"] == "contributor")
            .collect();
        let paid: std::collections::BTreeSet<String> = contributor_lines
            .iter()
            .map(|l| l["role"]["contribution"].to_string())
            .collect();
        assert_eq!(weighted, paid, "{inf}");
        let credited_paid = inf["spans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s[2].as_array().unwrap())
            .any(|who| contributor_lines.iter().any(|l| &l["recipient"] == who));
        assert!(credited_paid, "a credited contributor is paid: {inf}");
    } else {
        assert_eq!(inf["method"], "datanet-fallback", "{inf}");
    }
    assert_eq!(inf["verified"], true);
}

#[test]
fn commands_needing_a_node_say_so_when_none_runs() {
    let h = TestHome::init_dev();
    let err = h.fails(&["query", "status", "--node", "http://127.0.0.1:9"]);
    assert!(
        err.contains("cannot reach the node") && err.contains("trib node"),
        "{err}"
    );
    let err = h.fails(&["query", "status", "--node", "localhost"]);
    assert!(err.contains("invalid node URL"), "{err}");
}
