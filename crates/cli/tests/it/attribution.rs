//! `trib attribution trace` through the binary against a node serving the
//! tiny model: a passage contributed to a datanet, published, and used to
//! train a registered adapter is traced to its contributor; the base model
//! alone has no datanet, so the trace says the ledger's fallback applies; an
//! unknown model and an oversized text are clear errors; with `--prompt`,
//! the words the text repeats from the question are masked. (Payouts of a
//! traced answer are tested on the node, `crates/node/src/serving_tests.rs`,
//! where the answer text can be fixed.)

use std::io::Write;
use std::path::PathBuf;

use crate::harness::{NodeProc, TestHome};

/// A dev home whose node serves the tiny model (`<home>/models/tiny.gguf`).
fn serving_home() -> (TestHome, PathBuf) {
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
    (h, model)
}

#[test]
fn trace_credits_the_contributor_of_a_quoted_passage_in_the_adapters_datanet() {
    let (h, model) = serving_home();
    let node = NodeProc::start(&h, 50);
    let n = node.node_args();
    crate::datanets::fund(&h, n, &["alice"]);
    let desc = h.root.join("law.md");
    std::fs::write(&desc, "# US law\nFounding documents.\n").unwrap();
    h.ok(&[
        "datanet",
        "create",
        "us-law",
        "--description",
        desc.to_str().unwrap(),
        "--stake",
        "1",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let constitution = crate::datanets::fixture("constitution.txt");
    let c = h.json(&[
        "datanet",
        "contribute",
        "us-law",
        constitution.to_str().unwrap(),
        "--key",
        "alice",
        n[0],
        n[1],
    ]);
    let contribution = c[0]["report"]["contribution"].as_str().unwrap().to_string();
    h.ok(&[
        "datanet",
        "curate",
        "us-law",
        &contribution,
        "accept",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let published = h.json(&[
        "datanet", "publish", "us-law", "--key", "producer", n[0], n[1],
    ]);
    assert_eq!(published["version"], 1);
    h.register_tiny(n);
    // A one-epoch job on us-law@1, registered: the ledger's adapter record
    // lists the version, which is what the trace runs against.
    let job = h.root.join("job.toml");
    std::fs::write(
        &job,
        crate::factory::job_toml(&model, "\"us-law@1\"", &h.root.join("run"), 1),
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

    let text = "The answer: We the People of the United States, in Order to form a more perfect Union, establish Justice.";
    let v = h.json(&[
        "attribution",
        "trace",
        "--model",
        &adapter,
        "--text",
        text,
        n[0],
        n[1],
    ]);
    let alice = h.address("alice").to_string();
    assert_eq!(v["method"], "token-spans", "{v}");
    assert_eq!(v["fallback"], false);
    assert_eq!(v["datanets"].as_array().unwrap().len(), 1, "{v}");
    let spans = v["spans"].as_array().unwrap();
    assert!(!spans.is_empty(), "{v}");
    let span = &spans[0];
    assert!(text.contains(span["text"].as_str().unwrap().trim()), "{v}");
    assert_eq!(span["count"], 1, "the preamble occurs once: {v}");
    let row = &span["rows"][0];
    assert_eq!(row["contributor"], alice.as_str());
    assert_eq!(row["contribution"], contribution.as_str());
    assert!(row["row_hash"].is_string());
    assert!(
        row["snippet"].as_str().unwrap().contains("We the People"),
        "{row}"
    );
    assert_eq!(v["contributions"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["contributions"][0]["contributor"], alice.as_str());
    assert_eq!(v["contributions"][0]["weight_ppb"], 1_000_000_000u64);

    let out = h.ok(&[
        "attribution",
        "trace",
        "--model",
        &adapter,
        "--text",
        text,
        n[0],
        n[1],
    ]);
    assert!(out.contains("method token-spans"), "{out}");
    assert!(out.contains(&format!("contributor {alice}")), "{out}");
    assert!(out.contains("100.000%"), "{out}");

    // With the question it answers, the words the text repeats from it are
    // masked as for a paid answer: no span holds them, and the rest of the
    // quotation still credits alice.
    let question = "Who are We the People?";
    let v = h.json(&[
        "attribution",
        "trace",
        "--model",
        &adapter,
        "--text",
        text,
        "--prompt",
        question,
        n[0],
        n[1],
    ]);
    assert_eq!(v["prompt_masked"], true, "{v}");
    assert!(v["masked_tokens"].as_u64().unwrap() >= 4, "{v}");
    assert!(v["prompt_hash"].is_string(), "{v}");
    let spans = v["spans"].as_array().unwrap();
    assert!(!spans.is_empty(), "{v}");
    for sp in spans {
        let t = sp["text"].as_str().unwrap();
        assert!(!t.contains("People") && !t.contains("We "), "{t}");
    }
    assert_eq!(v["contributions"][0]["contributor"], alice.as_str(), "{v}");
    let out = h.ok(&[
        "attribution",
        "trace",
        "--model",
        &adapter,
        "--text",
        text,
        "--prompt",
        question,
        n[0],
        n[1],
    ]);
    assert!(out.contains("prompt words masked"), "{out}");
}

#[test]
fn trace_explains_the_fallback_for_a_base_model_and_names_bad_input() {
    let (h, _) = serving_home();
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
