//! ModelFactory through the binary and the node: local training (see
//! `datanets.rs` for the access refusal), and node jobs over HTTP with
//! server-sent progress events, to completion and cancelled.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use trib_node::model::{write_tiny_gguf, GgmlDType, TinySpec};

use trib_client::signed_read;
use trib_node::types::SecretKey;

use crate::harness::{signed, NodeProc, TestHome};

/// A tiny random Llama-family GGUF with a tokenizer (trib-model's fixture).
pub fn tiny_model(path: &Path) {
    write_tiny_gguf(path, &TinySpec::default(), 7, GgmlDType::F32).unwrap();
}

/// A small text LoRA job over `sources` (a TOML array body).
pub fn job_toml(model: &Path, sources: &str, out: &Path, epochs: u32) -> String {
    format!(
        r#"name = "tiny-job"
[model]
base = "{}"
[data]
sources = [{sources}]
format = "text"
max_length = 32
packing = true
validation_fraction = 0.2
[lora]
r = 4
alpha = 8
dropout = 0.0
target_modules = ["q_proj", "v_proj"]
[train]
learning_rate = 1e-3
schedule = "constant"
warmup_steps = 0
epochs = {epochs}
batch_size = 2
gradient_accumulation = 1
seed = 1
[output]
dir = "{}"
[pricing]
input_per_1k = "0.001"
output_per_1k = "0.002"
"#,
        model.display(),
        out.display()
    )
}

/// Reads a job's whole SSE stream (it ends after the final event), signed
/// by the job's owner `key`, and returns the event names in order.
fn event_names(url: &str, id: u64, key: &SecretKey) -> Vec<String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let path = format!("/v1/jobs/{id}/events");
    let mut req = client.get(format!("{url}{path}"));
    for (k, v) in signed_read::sign(key, "GET", &path, b"", signed_read::now()) {
        req = req.header(k, v);
    }
    let mut body = String::new();
    req.send().unwrap().read_to_string(&mut body).unwrap();
    body.lines()
        .filter_map(|l| l.strip_prefix("event:"))
        .map(|e| e.trim().to_string())
        .collect()
}

/// Submits `toml` signed by `key` (its owner); returns the job id.
fn submit(url: &str, toml: String, key: &SecretKey) -> u64 {
    let (s, v) = signed("POST", &format!("{url}/v1/jobs"), toml.as_bytes(), key);
    assert_eq!(s, 202, "{v}");
    v["id"].as_u64().unwrap()
}

#[test]
fn a_node_job_streams_progress_to_completion_and_another_is_cancelled() {
    let h = TestHome::init_dev();
    // The operator puts the model into the models directory and lets jobs
    // read the fixtures directory.
    let model = h.jobs_model();
    let data = crate::datanets::fixture("constitution.txt");
    h.allow_job_data(data.parent().unwrap());
    let node = NodeProc::start(&h, 200);
    let url = node.node_args()[1].to_string();
    h.ok(&["keys", "new", "alice"]);
    let alice = h.key("alice");
    let sources = format!("\"{}\"", data.display());

    let id = submit(
        &url,
        job_toml(model, &sources, Path::new("ignored"), 1),
        &alice,
    );
    let events = event_names(&url, id, &alice);
    assert_eq!(
        events.first().map(String::as_str),
        Some("started"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e == "step"), "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("done"),
        "{events:?}"
    );
    let (status, job) = signed("GET", &format!("{url}/v1/jobs/{id}"), b"", &alice);
    assert_eq!(status, 200);
    assert_eq!(job["status"], "done");
    let adapter = Path::new(job["summary"]["adapter_dir"].as_str().unwrap());
    assert!(adapter.join("adapter_model.safetensors").is_file());
    // The output lives under the node's jobs directory, whatever the TOML said.
    assert!(
        adapter.starts_with(h.root.join("jobs")),
        "{}",
        adapter.display()
    );
    // The finished adapter is installed where the node serves adapters from,
    // with its gradient cache when the job wrote one.
    let served = h
        .root
        .join("adapters")
        .join(job["summary"]["adapter_id"].as_str().unwrap());
    assert!(
        served.join("adapter_model.safetensors").is_file()
            && served.join("adapter_config.json").is_file(),
        "{}",
        served.display()
    );
    if job["summary"]["gradient_cache"].is_string() {
        assert!(
            served.join("gradient_cache").is_dir(),
            "{}",
            served.display()
        );
    }

    // A long job, cancelled: its stream ends with `cancelled`.
    let id = submit(
        &url,
        job_toml(model, &sources, Path::new("ignored"), 200),
        &alice,
    );
    let job_url = format!("{url}/v1/jobs/{id}");
    let (s, _) = signed("DELETE", &job_url, b"", &alice);
    assert_eq!(s, 200);
    let events = event_names(&url, id, &alice);
    assert_eq!(
        events.last().map(String::as_str),
        Some("cancelled"),
        "{events:?}"
    );
    let (_, job) = signed("GET", &job_url, b"", &alice);
    assert_eq!(job["status"], "cancelled");
    // Cancelling again is a typed conflict.
    let (s, _) = signed("DELETE", &job_url, b"", &alice);
    assert_eq!(s, 409);
    // A job that does not parse is a typed 400.
    let (s, _) = signed(
        "POST",
        &format!("{url}/v1/jobs"),
        b"this is not toml [",
        &alice,
    );
    assert_eq!(s, 400);
}

#[test]
fn generate_streams_text_from_a_local_tiny_model() {
    let h = TestHome::new();
    let model = h.root.join("tiny.gguf");
    std::fs::create_dir_all(&h.root).unwrap();
    tiny_model(&model);
    let v = h.json(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hello",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
    ]);
    assert!(v["completion_tokens"].as_u64().unwrap() <= 5, "{v}");
    assert!(v["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    // Greedy decoding is deterministic.
    let again = h.json(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hello",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
    ]);
    assert_eq!(v["text"], again["text"]);
    let err = h.fails(&["generate", "--model", "no-such-model", "--prompt", "x"]);
    assert!(
        err.contains("no model") && err.contains("trib models pull"),
        "{err}"
    );
}

/// `[train] precision` through the binary, on a quantized (Q8_0) base:
/// with AMX switched off (`TRIB_AMX=off`) `auto` trains in f32 and `bf16`
/// runs the emulated bf16 products; without it `auto` uses AMX where the
/// machine has it. The summary names what ran, every run trains, and the
/// emulated bf16 run ends near the f32 one.
#[test]
fn the_summary_names_the_training_precision_that_ran_and_amx_can_be_switched_off() {
    let h = TestHome::new();
    std::fs::create_dir_all(&h.root).unwrap();
    let model = h.root.join("tiny-q8.gguf");
    write_tiny_gguf(&model, &TinySpec::default(), 7, GgmlDType::Q8_0).unwrap();
    let data = crate::datanets::fixture("constitution.txt");
    let run = |name: &str, precision: &str, amx_off: bool| -> serde_json::Value {
        let out = h.root.join(name);
        let toml = job_toml(&model, &format!("\"{}\"", data.display()), &out, 2).replace(
            "seed = 1\n",
            &format!("seed = 1\nprecision = \"{precision}\"\n"),
        );
        assert!(toml.contains("precision = "), "the job template changed");
        let job = h.root.join(format!("{name}.toml"));
        std::fs::write(&job, toml).unwrap();
        let mut c = h.cmd(&["factory", "train", job.to_str().unwrap(), "--json"]);
        if amx_off {
            c.env("TRIB_AMX", "off");
        } else {
            c.env_remove("TRIB_AMX");
        }
        let o = crate::harness::output(&mut c);
        let stdout = crate::harness::text(&o.stdout);
        assert!(
            o.status.success(),
            "{name}: {stdout}\n{}",
            crate::harness::text(&o.stderr)
        );
        serde_json::from_str(&stdout).unwrap()
    };
    let loss = |v: &serde_json::Value| v["summary"]["final_train_loss"].as_f64().unwrap();
    let f32_run = run("auto-amx-off", "auto", true);
    assert_eq!(f32_run["summary"]["precision"], "F32");
    let emulated = run("bf16-amx-off", "bf16", true);
    assert_eq!(emulated["summary"]["precision"], "BF16 (bf16-emulated)");
    let auto = run("auto", "auto", false);
    let ran = auto["summary"]["precision"].as_str().unwrap();
    assert!(ran == "F32" || ran == "BF16 (amx-bf16)", "{ran}");
    eprintln!("auto precision on this machine: {ran}");
    for v in [&f32_run, &emulated, &auto] {
        assert!(loss(v).is_finite() && loss(v) > 0.0, "{v}");
    }
    assert!(
        (loss(&f32_run) - loss(&emulated)).abs() < 0.05 * loss(&f32_run),
        "f32 {} vs emulated bf16 {}",
        loss(&f32_run),
        loss(&emulated)
    );
    // Validation runs in f32 whatever the steps ran in: the same start.
    assert_eq!(
        f32_run["summary"]["eval_before"],
        emulated["summary"]["eval_before"]
    );
}
