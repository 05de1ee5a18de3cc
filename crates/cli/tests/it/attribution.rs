//! `trib attribution trace` through the binary against a node serving the
//! tiny model: the base model alone has no datanet, so the trace says the
//! ledger's fallback applies; an unknown model and an oversized text are
//! clear errors. (Spans, rows and payouts of a traced answer are tested on
//! the node, `crates/node/src/serving_tests.rs`, where the answer text can
//! be fixed.)

use std::io::Write;

use crate::harness::{NodeProc, TestHome};

#[test]
fn trace_explains_the_fallback_for_a_base_model_and_names_bad_input() {
    let h = TestHome::init_dev();
    let models = h.root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let model = models.join("tiny.gguf");
    crate::factory::tiny_model(&model);
    let mut cfg = std::fs::File::options()
        .append(true)
        .open(h.root.join("config.toml"))
        .unwrap();
    writeln!(cfg, "base_model = {:?}", model.to_str().unwrap()).unwrap();
    drop(cfg);
    let node = NodeProc::start(&h, 50);
    let n = node.node_args();
    let (_, list) = crate::harness::get_json(&format!("{}/v1/models", node.url));
    let base = list["data"][0]["id"].as_str().unwrap().to_string();

    let text = "We the People of the United States, in Order to form a more perfect Union";
    let v = h.json(&[
        "attribution",
        "trace",
        "--model",
        &base,
        "--text",
        text,
        n[0],
        n[1],
    ]);
    assert_eq!(v["model"], base.as_str());
    assert_eq!(v["method"], "datanet-fallback", "{v}");
    assert_eq!(v["fallback"], true);
    assert!(v["reason"].as_str().unwrap().contains("no datanet"), "{v}");
    assert!(v["answer_tokens"].as_u64().unwrap() > 0);
    assert!(v["evidence_hash"].is_string());

    let out = h.ok(&[
        "attribution",
        "trace",
        "--model",
        &base,
        "--text",
        text,
        n[0],
        n[1],
    ]);
    assert!(out.contains("method datanet-fallback"), "{out}");

    let err = h.fails(&[
        "attribution",
        "trace",
        "--model",
        "no-such-model",
        "--text",
        "x",
        n[0],
        n[1],
    ]);
    assert!(
        err.contains("404") && err.contains("`no-such-model` does not exist"),
        "{err}"
    );
    let big = "word ".repeat(4_000);
    let err = h.fails(&[
        "attribution",
        "trace",
        "--model",
        &base,
        "--text",
        &big,
        n[0],
        n[1],
    ]);
    assert!(err.contains("at most 16384 bytes"), "{err}");
}
