//! Paid inference through the binary: `trib node` serving the tiny model,
//! `trib apikey new --allowance`, an OpenAI chat request, the receipt and
//! its payouts (`trib attribution payouts` and `trib query payouts` alike),
//! `trib attribution verify` passing and then failing after the
//! stored answer is tampered with.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{get_json, http, NodeProc, TestHome};

/// A `trib node` serving the tiny model (registered on the ledger), with
/// `alice` funded and an API key for her (`trib apikey new --allowance 5`).
pub fn paid_tiny_node() -> (TestHome, NodeProc, String) {
    let h = TestHome::init_dev();
    h.serve_tiny_model();
    let node = NodeProc::start(&h, 50);
    let n = node.node_args();
    h.register_tiny(n);
    crate::datanets::fund(&h, n, &["alice"]);
    let key = h.ok(&[
        "apikey",
        "new",
        "--key",
        "alice",
        "--allowance",
        "5",
        n[0],
        n[1],
    ]);
    let key = key.trim().to_string();
    (h, node, key)
}

#[test]
fn a_paid_answer_gets_a_receipt_that_verifies_until_the_stored_answer_is_edited() {
    let (h, node, key) = paid_tiny_node();
    let n = node.node_args();
    let key = key.as_str();
    let (_, models_list) = get_json(&format!("{}/v1/models", node.url));
    let base = models_list["data"][0]["id"].as_str().unwrap().to_string();

    let url = format!("{}/v1/chat/completions", node.url);
    let body = json!({ "model": base, "messages": [{"role": "user", "content": "hello"}],
                       "max_tokens": 5, "temperature": 0 });
    // No key: 401.
    let r = http().post(&url).json(&body).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);

    assert!(key.starts_with("trib-sk-"));
    // Only the hash is stored.
    let stored = std::fs::read_to_string(h.root.join("apikeys.json")).unwrap();
    assert!(!stored.contains(key));

    let r = http()
        .post(&url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    let receipt = v["receipt_id"].as_str().unwrap().to_string();
    let fee: u128 = v["fee"]["base_units"].as_str().unwrap().parse().unwrap();

    let mut rec = Value::Null;
    for _ in 0..300 {
        let (s, r) = get_json(&format!("{}/v1/receipts/{receipt}", node.url));
        if s == 200 {
            rec = r;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        rec["receipt"]["completion_tokens"],
        v["usage"]["completion_tokens"]
    );
    let payouts = h.json(&["attribution", "payouts", "--receipt", &receipt, n[0], n[1]]);
    let sum: u128 = payouts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| crate::harness::units(&l["amount"]))
        .sum();
    assert_eq!(sum, fee, "{payouts}");
    let producer = h.address("producer").to_string();
    let mine = h.json(&[
        "attribution",
        "payouts",
        "--contributor",
        &producer,
        n[0],
        n[1],
    ]);
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["receipt"] == json!(receipt)),
        "{mine}"
    );
    // `trib query payouts` is the same query (a key name resolves to its address).
    let same = h.json(&["query", "payouts", "--contributor", "producer", n[0], n[1]]);
    assert_eq!(same, mine);
    let same = h.json(&["query", "payouts", "--receipt", &receipt, n[0], n[1]]);
    assert_eq!(same, payouts);

    let out = h.ok(&["attribution", "verify", &receipt, n[0], n[1]]);
    assert!(out.contains("OK"), "{out}");
    // Tamper with the stored answer: verification fails and says why.
    let path = h.root.join("receipts").join(format!("{receipt}.json"));
    let mut a: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    a["answer"] = json!(format!("{} and more", a["answer"].as_str().unwrap()));
    std::fs::write(&path, serde_json::to_vec(&a).unwrap()).unwrap();
    let err = h.fails(&["attribution", "verify", &receipt, n[0], n[1]]);
    assert!(
        err.contains("does NOT verify") && err.contains("evidence hash"),
        "{err}"
    );
}
