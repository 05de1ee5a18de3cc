//! Base models and adapter registration through the binary: describe and
//! register a model, list it over HTTP with its registration, train locally
//! and register the adapter; pull the real demo model from a local copy.

use std::path::Path;

use crate::harness::{get_json, NodeProc, TestHome};

#[test]
fn a_registered_model_is_listed_and_a_locally_trained_adapter_is_registered() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    let models = h.root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let model = models.join("tiny.gguf");
    crate::factory::tiny_model(&model);

    let info = h.json(&["models", "show", model.to_str().unwrap()]);
    assert_eq!(info["architecture"], "llama");
    assert!(info["parameters"].as_u64().unwrap() > 0);
    // A bare file name resolves in <home>/models.
    assert_eq!(h.json(&["models", "show", "tiny.gguf"])["id"], info["id"]);
    h.register_tiny(n);
    let (status, listed) = get_json(&format!("{}/v1/models/base", n[1]));
    assert_eq!(status, 200);
    assert_eq!(listed[0]["info"]["id"], info["id"]);
    assert_eq!(listed[0]["registered"]["licence"], "MIT");

    // Local training on a file, then RegisterAdapter with the job's prices.
    let job = h.root.join("job.toml");
    let data = crate::datanets::fixture("constitution.txt");
    let out = h.root.join("run");
    std::fs::write(
        &job,
        crate::factory::job_toml(&model, &format!("\"{}\"", data.display()), &out, 1),
    )
    .unwrap();
    let r = h.json(&[
        "factory",
        "train",
        job.to_str().unwrap(),
        "--key",
        "producer",
        "--register",
        n[0],
        n[1],
    ]);
    let adapter = r["registered"].as_str().unwrap().to_string();
    assert_eq!(r["summary"]["adapter_id"].as_str().unwrap(), adapter);
    assert!(out.join("adapter/adapter_config.json").is_file());
    let (status, proof) = get_json(&format!("{}/v1/proofs?key=adapter/{adapter}", n[1]));
    assert_eq!(status, 200, "{proof}");
    assert!(
        !proof["value"].is_null(),
        "the adapter is not on the ledger: {proof}"
    );

    // The adapter loads for generation.
    let spec = format!("{}:{}", model.display(), out.join("adapter").display());
    let g = h.json(&[
        "generate",
        "--model",
        &spec,
        "--prompt",
        "hi",
        "--max-tokens",
        "3",
        "--temperature",
        "0",
    ]);
    assert!(g["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn pull_copies_and_verifies_the_demo_model_from_a_local_directory() {
    let repo_models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    if !repo_models
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        .is_file()
    {
        eprintln!("skipped: models/ has no demo model (scripts/fetch-model.sh)");
        return;
    }
    let h = TestHome::new();
    let dest = h.root.join("m");
    let v = h.json(&[
        "models",
        "pull",
        "smollm2-135m",
        "--from",
        repo_models.to_str().unwrap(),
        "--dir",
        dest.to_str().unwrap(),
    ]);
    assert!(
        dest.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file(),
        "{v}"
    );
    // A corrupted source is refused and leaves nothing behind.
    let bad = h.root.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"not a model").unwrap();
    let dest2 = h.root.join("m2");
    let err = h.fails(&[
        "models",
        "pull",
        "smollm2-135m",
        "--from",
        bad.to_str().unwrap(),
        "--dir",
        dest2.to_str().unwrap(),
    ]);
    assert!(err.contains("sha256"), "{err}");
    assert!(!dest2.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists());
}
