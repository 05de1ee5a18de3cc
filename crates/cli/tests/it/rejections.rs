//! Refused transactions: a clear error and no state change.

use crate::harness::{get_json, post_tx, transfer, units, NodeProc, TestHome};
use trib_node::types::{Amount, SecretKey};

#[test]
fn rejected_transactions_get_a_clear_error_and_change_nothing() {
    let h = TestHome::init_dev();
    h.ok(&["keys", "new", "alice"]);
    h.ok(&["keys", "new", "bob"]);
    let mut node = NodeProc::start(&h, 50);
    let n = node.node_args();
    h.ok(&[
        "tx", "transfer", "--from", "producer", "--to", "alice", "10", "--wait", n[0], n[1],
    ]);
    let account = |name: &str| get_json(&format!("{}/v1/accounts/{}", node.url, h.address(name))).1;
    let (alice0, bob0, prod0) = (account("alice"), account("bob"), account("producer"));

    // Insufficient balance, through the CLI.
    let err = h.fails(&[
        "tx", "transfer", "--from", "alice", "--to", "bob", "11", n[0], n[1],
    ]);
    assert!(
        err.contains("insufficient_balance") && err.contains("insufficient balance"),
        "{err}"
    );

    // Wrong nonce (a gap), hand-crafted.
    let alice = h.key("alice");
    let (s, v) = post_tx(
        &node.url,
        &transfer(&alice, 7, h.address("bob"), Amount::open(1)),
    )
    .unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("nonce_gap")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected 0"),
        "{v}"
    );

    // Replay of the producer's committed nonce 0.
    let producer = h.key("producer");
    let (s, v) = post_tx(
        &node.url,
        &transfer(&producer, 0, h.address("bob"), Amount::open(1)),
    )
    .unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("nonce_replay")),
        "{v}"
    );

    // Bad signature: signed by another key.
    let mut forged = transfer(&alice, 0, h.address("bob"), Amount::open(1));
    forged.signature = SecretKey::from_seed([9; 32]).sign(forged.tx.signing_hash().as_bytes());
    let (s, v) = post_tx(&node.url, &forged).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("bad_signature")),
        "{v}"
    );

    // Garbage body.
    let r = crate::harness::http()
        .post(format!("{}/v1/tx", node.url))
        .body("not a transaction")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // A few blocks later, nothing moved.
    let h0 = get_json(&format!("{}/v1/status", node.url)).1["height"]
        .as_u64()
        .unwrap();
    while get_json(&format!("{}/v1/status", node.url)).1["height"]
        .as_u64()
        .unwrap()
        < h0 + 3
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(account("alice"), alice0);
    assert_eq!(account("bob"), bob0);
    assert_eq!(account("producer"), prod0);
    assert_eq!(units(&alice0["balance"]), Amount::open(10).0);
    assert!(node.terminate());
    let out = h.ok(&["ledger", "verify"]);
    assert!(out.contains("ledger OK"), "{out}");
}
