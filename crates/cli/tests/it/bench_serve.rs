//! `trib bench adapters` and `trib bench serve` against a `trib node`
//! serving the tiny model: the adapters are written and registered, every
//! request succeeds across them, and the report's numbers are consistent.

use serde_json::Value;

#[test]
fn bench_serve_drives_a_running_node_with_concurrent_streaming_clients_across_adapters() {
    let (h, node, key) = crate::serving::paid_tiny_node();
    let n = node.node_args();
    let key = key.as_str();

    // Two random adapters written into the node's store and registered.
    let ids = h.ok(&[
        "bench", "adapters", "--count", "2", "--key", "producer", n[0], n[1],
    ]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        assert!(h
            .root
            .join("adapters")
            .join(id)
            .join("adapter_config.json")
            .is_file());
    }

    // The requests spread over every adapter the node lists.
    let out = h.ok(&[
        "bench",
        "serve",
        "--api-key",
        key,
        "--concurrency",
        "3",
        "--requests",
        "6",
        "--max-tokens",
        "4",
        "--json",
        n[0],
        n[1],
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["ok"], 6, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    let mut models: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    models.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(models, expected, "{v}");
    let tokens = v["completion_tokens"].as_u64().unwrap();
    assert!(tokens > 0 && tokens <= 6 * 4, "{v}");
    assert!(v["output_tok_per_s"].as_f64().unwrap() > 0.0, "{v}");
    let (p50, p99) = (
        v["ttft_ms_p50"].as_f64().unwrap(),
        v["ttft_ms_p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{v}");
    assert!(v["e2e_ms_p99"].as_f64().unwrap() >= p99, "{v}");

    // A bad key: every request fails, the command says why and exits non-zero.
    let err = h.fails(&[
        "bench",
        "serve",
        "--api-key",
        "trib-sk-bad",
        "--requests",
        "2",
        n[0],
        n[1],
    ]);
    assert!(
        err.contains("401") && err.contains("unknown API key"),
        "{err}"
    );
}
