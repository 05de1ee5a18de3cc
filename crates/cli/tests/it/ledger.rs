//! `trib ledger verify|prove|check-proof` on a real home.

use crate::harness::{NodeProc, TestHome};

#[test]
fn verify_prove_and_check_proof_round_trip_offline() {
    let h = TestHome::init_dev();
    h.ok(&["keys", "new", "alice"]);
    let mut node = NodeProc::start(&h, 50);
    let n = node.node_args();
    h.ok(&[
        "tx", "transfer", "--from", "producer", "--to", "alice", "42", "--wait", n[0], n[1],
    ]);
    h.ok(&[
        "tx", "stake", "--from", "producer", "7", "--wait", n[0], n[1],
    ]);

    // The node holds the ledger file: a clear error, and the remote proof works.
    let err = h.fails(&["ledger", "verify"]);
    assert!(err.contains("stop it first"), "{err}");
    let alice = h.address("alice").to_string();
    let key = format!("account/{alice}");
    let remote = h.ok(&["ledger", "prove", &key, "--remote", n[0], n[1]]);
    assert!(remote.contains("\"state_root\""));
    assert!(node.terminate());

    let report = h.json(&["ledger", "verify"]);
    assert_eq!(report["ok"], true);
    assert!(report["txs"].as_u64().unwrap() >= 2);
    let head_root = report["state_root"].as_str().unwrap().to_string();
    let text = h.ok(&["ledger", "verify"]);
    assert!(text.contains("ledger OK"), "{text}");

    let proof_text = h.ok(&["ledger", "prove", &key]);
    let proof: serde_json::Value = serde_json::from_str(&proof_text).unwrap();
    assert_eq!(proof["state_root"], head_root.as_str());
    assert_eq!(proof["value"]["value"]["balance"], "42000000000000000000");
    let file = h.root.join("proof.json");
    std::fs::write(&file, &proof_text).unwrap();
    let file_s = file.to_str().unwrap();
    let ok = h.ok(&["ledger", "check-proof", file_s, "--root", &head_root]);
    assert!(ok.contains("valid") && ok.contains(&alice), "{ok}");

    // A proof at an older height, against that block's root.
    let old = h.ok(&["ledger", "prove", "params", "--height", "0"]);
    let old_v: serde_json::Value = serde_json::from_str(&old).unwrap();
    std::fs::write(&file, &old).unwrap();
    h.ok(&[
        "ledger",
        "check-proof",
        file_s,
        "--root",
        old_v["state_root"].as_str().unwrap(),
    ]);
    // Absence proofs verify too.
    let absent = h.ok(&["ledger", "prove", "proposal/9"]);
    std::fs::write(&file, &absent).unwrap();
    assert!(h
        .ok(&["ledger", "check-proof", file_s, "--root", &head_root])
        .contains("absent"));

    // Tampering: a different balance, or another root, fails with a non-zero exit.
    let forged = proof_text.replace("42000000000000000000", "43000000000000000000");
    std::fs::write(&file, forged).unwrap();
    let err = h.fails(&["ledger", "check-proof", file_s, "--root", &head_root]);
    assert!(err.contains("INVALID"), "{err}");
    std::fs::write(&file, &proof_text).unwrap();
    let err = h.fails(&["ledger", "check-proof", file_s, "--root", &"ab".repeat(32)]);
    assert!(
        err.contains("INVALID") && err.contains("not the trusted root"),
        "{err}"
    );
    let err = h.fails(&["ledger", "prove", "account/nope"]);
    assert!(err.contains("invalid state key"), "{err}");
}
