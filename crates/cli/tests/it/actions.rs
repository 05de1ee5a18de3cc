//! Every ledger action a user needs, through the binary against a real
//! node: a node-trained adapter registered from its job (`trib factory
//! register`), served under its registered name and repriced (`trib tx
//! set-price`), the base model served under the name `trib models
//! register` gave it, and a staker's rewards shown on the account and
//! claimed (`trib tx claim-rewards`).

use std::time::Duration;

use serde_json::{json, Value};
use trib_client::signed_read;

use crate::datanet_flows::{contribute, fee_of};
use crate::datanets::fixture;
use crate::harness::{get_json, http, text, units, TestHome};
use crate::serving::paid_tiny_node;

/// A chat request of `model` with the API key; returns the response body.
fn chat(url: &str, key: &str, model: &str) -> Value {
    let r = http()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &json!({ "model": model, "messages": [{"role": "user", "content": "hello"}],
                       "max_tokens": 4, "temperature": 0 }),
        )
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert_eq!(status, 200, "chat with {model}: {v}");
    v
}

/// Waits until the receipt of a paid answer is on the ledger.
fn wait_receipt(url: &str, answer: &Value) {
    let receipt = answer["receipt_id"].as_str().unwrap();
    for _ in 0..500 {
        if get_json(&format!("{url}/v1/receipts/{receipt}")).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("receipt {receipt} never committed");
}

/// The adapter entry of `/v1/models` with this registered name.
fn listed_adapter(url: &str, name: &str) -> Option<Value> {
    let (_, models) = get_json(&format!("{url}/v1/models"));
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == json!(name))
        .cloned()
}

/// A one-epoch job on the served tiny model.
fn job_toml(h: &TestHome, sources: &str) -> String {
    let model = h.root.join("models").join("tiny.gguf");
    crate::factory::job_toml(&model, sources, std::path::Path::new("ignored"), 1)
}

#[test]
fn a_node_trained_adapter_is_registered_from_its_job_repriced_and_served_by_its_name() {
    let (h, node, key) = paid_tiny_node();
    let n = node.node_args();
    let url = node.url.clone();

    // The base model answers to the name it was registered under
    // (`tiny`), not only to the GGUF's own name.
    let (_, models) = get_json(&format!("{url}/v1/models"));
    assert_ne!(models["data"][0]["id"], json!("tiny"), "{models}");
    chat(&url, &key, "tiny");

    // A public datanet version to train on, so the registration records it.
    h.ok(&["datanet", "create", "consts", "--key", "alice", n[0], n[1]]);
    let id = contribute(&h, n, "consts", &fixture("constitution.txt"), "alice");
    h.ok(&[
        "datanet", "curate", "consts", &id, "accept", "--key", "alice", n[0], n[1],
    ]);
    h.ok(&["datanet", "publish", "consts", "--key", "alice", n[0], n[1]]);

    // Submit through the node: progress on stderr, the result on stdout.
    let job = h.root.join("job.toml");
    std::fs::write(&job, job_toml(&h, "\"consts@1\"")).unwrap();
    let out = h
        .cmd(&[
            "factory",
            "submit",
            job.to_str().unwrap(),
            "--key",
            "alice",
            n[0],
            n[1],
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("queued") && stderr.contains("step"),
        "{stderr}"
    );
    let (_, jobs) = signed(reqwest::Method::GET, &url, "/v1/jobs", &h.key("alice"));
    let job_view = jobs.as_array().unwrap().last().unwrap().clone();
    let job_id = job_view["id"].as_u64().unwrap().to_string();
    let adapter = job_view["summary"]["adapter_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stdout.contains(&format!("adapter {adapter}")),
        "the result is not on stdout: {stdout:?}"
    );
    assert!(
        !stdout.contains("step "),
        "progress leaked to stdout: {stdout}"
    );
    // The job view names the datanet versions it trained on.
    assert_eq!(
        job_view["datanets"],
        json!([{"name": "consts", "version": 1}])
    );

    // Only a finished job's owner registers it; no checkpoint is needed.
    let err = h.fails(&[
        "factory", "register", &job_id, "--key", "producer", n[0], n[1],
    ]);
    assert!(
        err.contains("owned by") && err.contains("register it with the owner's key"),
        "{err}"
    );
    let err = h.fails(&["factory", "register", "999", "--key", "alice", n[0], n[1]]);
    assert!(err.contains("999"), "{err}");
    let reg = h.json(&[
        "factory",
        "register",
        &job_id,
        "--name",
        "consts-lora",
        "--key",
        "alice",
        n[0],
        n[1],
    ]);
    assert_eq!(reg["adapter"], json!(adapter), "{reg}");
    let listed = listed_adapter(&url, "consts-lora").expect("registered adapter listed");
    assert_eq!(listed["id"], json!(adapter));
    assert_eq!(listed["owned_by"], json!(h.address("alice").to_string()));
    // The job file's prices.
    assert_eq!(
        (
            listed["price_in_per_1k"].as_str(),
            listed["price_out_per_1k"].as_str()
        ),
        (Some("0.001"), Some("0.002"))
    );
    // The registration records the datanet version (a ledger proof of the
    // adapter's entry).
    let (s, proof) = get_json(&format!("{url}/v1/proofs?key=adapter/{adapter}"));
    assert_eq!(s, 200, "{proof}");
    assert_eq!(proof["value"]["kind"], json!("adapter"), "{proof}");
    let datanets = proof["value"]["value"]["datanets"].clone();
    assert_eq!(datanets.as_array().map(Vec::len), Some(1), "{proof}");
    assert_eq!(datanets[0][1], json!(1), "{proof}");

    // Only the owner reprices it; the served fee follows the new price.
    let set_price = |from: &str| {
        h.cmd(&[
            "tx",
            "set-price",
            &adapter,
            "--input",
            "1",
            "--output",
            "2",
            "--from",
            from,
            "--wait",
            n[0],
            n[1],
        ])
        .output()
        .unwrap()
    };
    let refused = set_price("producer");
    let err = text(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("only its owner may change it"),
        "{err}"
    );
    let set = set_price("alice");
    assert!(set.status.success(), "{}", text(&set.stderr));
    let set = text(&set.stdout);
    assert!(set.contains("adapter") && set.contains("per 1k"), "{set}");
    let listed = listed_adapter(&url, "consts-lora").unwrap();
    assert_eq!(
        (
            listed["price_in_per_1k"].as_str(),
            listed["price_out_per_1k"].as_str()
        ),
        (Some("1"), Some("2"))
    );
    let answer = chat(&url, &key, "consts-lora");
    let (p, c) = (
        answer["usage"]["prompt_tokens"].as_u64().unwrap() as u128,
        answer["usage"]["completion_tokens"].as_u64().unwrap() as u128,
    );
    let one = 1_000_000_000_000_000_000u128;
    let expected = (p * one + c * 2 * one).div_ceil(1_000);
    assert_eq!(units(&answer["fee"]["base_units"]), expected, "{answer}");
}

#[test]
fn a_staker_sees_accrued_rewards_on_the_account_and_claims_them() {
    let (h, node, key) = paid_tiny_node();
    let n = node.node_args();
    let url = node.url.clone();
    h.ok(&[
        "tx", "stake", "1000", "--from", "producer", "--wait", n[0], n[1],
    ]);
    let before = h.json(&["query", "account", "producer", n[0], n[1]]);
    assert_eq!(units(&before["staking_rewards"]), 0, "{before}");
    // Paid answers: the stakers' part of each fee accrues to the producer.
    for _ in 0..2 {
        let a = chat(&url, &key, "tiny");
        wait_receipt(&url, &a);
    }
    let account = h.json(&["query", "account", "producer", n[0], n[1]]);
    let rewards = units(&account["staking_rewards"]);
    assert!(rewards > 0, "{account}");
    let shown = h.ok(&["query", "account", "producer", n[0], n[1]]);
    assert!(
        shown.contains("rewards") && shown.contains("claimable"),
        "{shown}"
    );

    // Claim: the balance grows by exactly the rewards shown, less the fee.
    let claim = h.json(&[
        "tx",
        "claim-rewards",
        "--from",
        "producer",
        "--wait",
        n[0],
        n[1],
    ]);
    let claimed = claim["receipt"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == json!("staking_rewards_claimed"))
        .unwrap_or_else(|| panic!("no claim event: {claim}"))
        .clone();
    assert_eq!(claimed["account"], json!(h.address("producer").to_string()));
    assert_eq!(units(&claimed["amount"]), rewards, "{claim}");
    let after = h.json(&["query", "account", "producer", n[0], n[1]]);
    assert_eq!(units(&after["staking_rewards"]), 0, "{after}");
    assert_eq!(
        units(&after["balance"]),
        units(&account["balance"]) + rewards - fee_of(&claim),
        "{after}"
    );
    // Nothing left: a second claim is refused, naming why.
    let err = h.fails(&[
        "tx",
        "claim-rewards",
        "--from",
        "producer",
        "--wait",
        n[0],
        n[1],
    ]);
    assert!(err.contains("no staking rewards"), "{err}");
}

#[test]
fn json_apikey_new_prints_the_allowance_in_base_units() {
    let h = TestHome::init_dev();
    let node = crate::harness::NodeProc::start(&h, 50);
    let n = node.node_args();
    crate::datanets::fund(&h, n, &["alice"]);
    let v = h.json(&[
        "apikey",
        "new",
        "--key",
        "alice",
        "--allowance",
        "2.5",
        n[0],
        n[1],
    ]);
    assert_eq!(
        v["approved_operator"]["allowance"],
        json!("2500000000000000000"),
        "{v}"
    );
}

/// A request signed by `key` (the `x-trib-*` headers) with `method`.
fn signed(
    method: reqwest::Method,
    url: &str,
    path: &str,
    key: &trib_node::types::SecretKey,
) -> (u16, Value) {
    let mut req = http().request(method.clone(), format!("{url}{path}"));
    for (k, v) in signed_read::sign(key, method.as_str(), path, b"", signed_read::now()) {
        req = req.header(k, v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Whether a chat request with `key` is served (200) or refused (401).
fn chat_status(url: &str, key: &str) -> u16 {
    http()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &json!({ "model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 2 }),
        )
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn api_keys_are_created_listed_and_revoked_only_by_their_signed_account() {
    let (h, node, first) = paid_tiny_node();
    let n = node.node_args();
    let url = node.url.clone();
    h.ok(&["keys", "new", "bob"]);
    let (alice, bob) = (h.key("alice"), h.key("bob"));

    // Unsigned: 401 on every key route, naming the missing signature.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/apikeys"),
        (reqwest::Method::POST, "/v1/apikeys"),
        (reqwest::Method::DELETE, "/v1/apikeys/0123456789abcdef"),
    ] {
        let r = http()
            .request(method.clone(), format!("{url}{path}"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], json!("missing_signature"), "{v}");
    }

    // Created over HTTP, signed by Alice: shown once, and it pays at once.
    let (s, made) = signed(reqwest::Method::POST, &url, "/v1/apikeys", &alice);
    assert_eq!(s, 201, "{made}");
    let second = made["api_key"].as_str().unwrap().to_string();
    assert!(second.starts_with("trib-sk-"), "{made}");
    assert_eq!(made["account"], json!(alice.address().to_string()));
    assert_eq!(made["key"]["prefix"], json!(&second[..12]));
    assert_eq!(chat_status(&url, &second), 200);

    // Listed by the CLI (signed with --key): both keys, never their text,
    // with the allowance the keys spend from.
    let list = h.json(&["apikey", "list", "--key", "alice", n[0], n[1]]);
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{list}");
    assert_eq!(list["operator"], json!(h.address("producer").to_string()));
    let allowance = units(&list["allowance"]);
    assert!(
        allowance > 0 && allowance <= 5 * 10u128.pow(18),
        "approved for 5 OPEN, less what settled: {list}"
    );
    let shown = h.ok(&["apikey", "list", "--key", "alice", n[0], n[1]]);
    for k in [&first, &second] {
        assert!(!shown.contains(k.as_str()) && !list.to_string().contains(k.as_str()));
    }
    assert!(
        shown.contains("UTC") && shown.contains("allowance"),
        "{shown}"
    );
    let id = made["key"]["id"].as_str().unwrap().to_string();
    assert!(keys.iter().any(|k| k["id"] == json!(id)), "{list}");
    // Bob sees none of them and cannot revoke Alice's key.
    let (s, v) = signed(reqwest::Method::GET, &url, "/v1/apikeys", &bob);
    assert_eq!(
        (s, v["keys"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let (s, v) = signed(
        reqwest::Method::DELETE,
        &url,
        &format!("/v1/apikeys/{id}"),
        &bob,
    );
    assert_eq!(s, 404, "{v}");
    let err = h.fails(&["apikey", "revoke", &id, "--key", "bob", n[0], n[1]]);
    assert!(err.contains("no API key with id"), "{err}");
    assert_eq!(chat_status(&url, &second), 200);

    // Revoked by Alice: refused from the next request on; the other stays.
    let out = h.ok(&["apikey", "revoke", &id, "--key", "alice", n[0], n[1]]);
    assert!(out.contains(&id), "{out}");
    assert_eq!(chat_status(&url, &second), 401);
    assert_eq!(chat_status(&url, &first), 200);
    let list = h.json(&["apikey", "list", "--key", "alice", n[0], n[1]]);
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "{list}");
}
