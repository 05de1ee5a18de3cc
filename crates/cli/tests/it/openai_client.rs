//! The OpenAI-compatible surface of a `trib node` with adapters: `GET
//! /v1/models` lists the base model and every registered adapter, an
//! adapter's answer is charged at the adapter's registered price, `GET
//! /v1/adapters` shows the cache, and the official `openai` Python client
//! works unchanged with an adapter id as its `model`.

use serde_json::{json, Value};
use trib_node::ledger::inference_fee;
use trib_node::types::Amount;

use crate::harness::{get_json, http};

/// Runs `scripts/tests/openai_client.py` (the official client) against the
/// node with `model`; `false` when the `openai` package is missing (exit 3).
fn official_client(url: &str, key: &str, model: &str) -> bool {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/tests/openai_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([url, key, model])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED the official client: {stderr}");
        return false;
    }
    assert!(
        out.status.success(),
        "the openai client failed with model {model}:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    true
}

#[test]
fn models_lists_every_registered_adapter_and_the_official_client_answers_with_one() {
    let (h, node, key) = crate::serving::paid_tiny_node();
    let n = node.node_args();
    let key = key.as_str();
    // Two adapters with their own prices, written into the node's store.
    let ids = h.ok(&[
        "bench",
        "adapters",
        "--count",
        "2",
        "--price-in",
        "0.003",
        "--price-out",
        "0.007",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");

    // The base model first, then each registered adapter with its parent
    // and prices.
    let (s, models) = get_json(&format!("{}/v1/models", node.url));
    assert_eq!(s, 200, "{models}");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{models}");
    let base = data[0]["id"].as_str().unwrap();
    assert!(data[0]["base_model_id"].is_string(), "{models}");
    for id in &ids {
        let m = data
            .iter()
            .find(|m| m["id"] == *id)
            .unwrap_or_else(|| panic!("adapter {id} is not listed: {models}"));
        assert_eq!(m["object"], "model");
        assert_eq!(m["parent"], base, "{m}");
        assert_eq!(m["price_in_per_1k"], "0.003", "{m}");
        assert_eq!(m["price_out_per_1k"], "0.007", "{m}");
        assert!(m["name"].as_str().unwrap().starts_with("bench-r8-"), "{m}");
    }

    // An adapter's answer is charged at the adapter's price (not the base
    // model's), for exactly the tokens it reports.
    let r = http()
        .post(format!("{}/v1/chat/completions", node.url))
        .bearer_auth(key)
        .json(&json!({ "model": ids[0], "max_tokens": 6, "temperature": 0,
                       "messages": [{ "role": "user", "content": "hello" }] }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["model"], ids[0]);
    let u = &v["usage"];
    let expected = inference_fee(
        u["prompt_tokens"].as_u64().unwrap() as u32,
        u["completion_tokens"].as_u64().unwrap() as u32,
        Amount::parse_open("0.003").unwrap(),
        Amount::parse_open("0.007").unwrap(),
    )
    .unwrap();
    assert_eq!(v["fee"]["base_units"], expected.0.to_string(), "{v}");
    assert!(
        v["receipt_id"].is_string() && v["attribution"].is_object(),
        "{v}"
    );

    // The cache now holds that adapter (loaded just in time, once); the
    // store lists both.
    let (_, cache) = get_json(&format!("{}/v1/adapters", node.url));
    let mut store: Vec<&str> = cache["store"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    store.sort_unstable();
    let mut expected_store = ids.clone();
    expected_store.sort_unstable();
    assert_eq!(store, expected_store, "{cache}");
    let loaded = cache["cache"]["adapters"].as_array().unwrap();
    assert_eq!(loaded.len(), 1, "{cache}");
    assert_eq!(loaded[0]["name"], ids[0], "{cache}");
    assert_eq!(loaded[0]["state"], "loaded", "{cache}");
    assert!(loaded[0]["bytes"].as_u64().unwrap() > 0, "{cache}");
    assert_eq!(cache["cache"]["loads"], 1, "{cache}");

    // The official client, unchanged, with the other adapter as `model`:
    // it lists it, answers (plain, streamed, legacy completions) and maps
    // errors to its typed exceptions.
    if official_client(&node.url, key, ids[1]) {
        let (_, cache) = get_json(&format!("{}/v1/adapters", node.url));
        assert_eq!(cache["cache"]["loads"], 2, "{cache}");
    }
}
