//! The kill loop of issue 14: `trib node` is killed with SIGKILL at random
//! moments while this process drives mixed traffic at it (transfers,
//! datanet contributions, a training job, paid inference on the base model
//! and on a registered adapter), and restarted. Between the kill and the
//! restart `trib ledger verify` must pass; after each restart:
//!
//! - the block that was the head before the kill is still there, same hash
//!   (blocks chain by hash, so every earlier block is unchanged too);
//! - every transaction the node had acknowledged (a transfer answered 202,
//!   the settlement of an answer served with 200, the `Contribute` of a
//!   contribution) is still known, pending or committed;
//! - every acknowledged contribution (`trib datanet contribute` exited 0:
//!   its upload was accepted and its `Contribute` committed) is listed with
//!   the same number of accepted rows;
//! - the registered adapter is served again (a paid chat request on it
//!   answers 200);
//! - the training job is looked up and what became of it is counted
//!   (resumed from its checkpoint, restarted, missing, failed).
//!
//! At the end every acknowledged transaction must be committed. The number
//! of kills is `TRIB_KILL_LOOP_KILLS` (5 by default, the CLI test); with
//! `TRIB_KILL_LOOP_REPORT=FILE` the counts are written there as JSON
//! (`scripts/faults/kill-loop.sh` runs 100 kills and prints them).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use trib_node::types::{SecretKey, TxHash};

use crate::harness::{get_json, http, signed, NodeProc, TestHome};

/// The contributors (each may upload 100 files a day to a datanet).
const CONTRIBUTORS: [&str; 4] = ["bob", "dave", "erin", "frank"];

/// Checkpoint interval of the job, in optimiser steps.
const CHECKPOINT_EVERY: u64 = 5;

/// A contribution `trib datanet contribute` reported done.
#[derive(Clone)]
struct Contribution {
    id: String,
    contributor: String,
    rows: u64,
}

/// What the node acknowledged, in order.
#[derive(Default)]
struct Acks {
    /// Transactions answered 202 (transfers), the settlement transactions of
    /// answers served with 200, and committed `Contribute`s.
    txs: Vec<(TxHash, &'static str)>,
    contributions: Vec<Contribution>,
    /// Receipt ids of paid answers.
    answers: Vec<String>,
}

/// Shared between the traffic threads and the loop.
struct Shared {
    url: Mutex<String>,
    stop: AtomicBool,
    acks: Mutex<Acks>,
    /// Requests refused or cut off (the node was down, a 402, a 503…).
    refused: AtomicUsize,
}

impl Shared {
    fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }
}

/// Words the contributions are drawn from (random order: no two files are
/// near duplicates, every row scores well above the quality floor).
const WORDS: &[&str] = &[
    "river", "harbor", "meadow", "lantern", "copper", "orchard", "thunder", "violet", "granite",
    "sparrow", "kettle", "window", "ladder", "compass", "marble", "pepper", "saddle", "timber",
    "whistle", "canyon", "feather", "garden", "island", "jacket", "kitten", "lemon", "mirror",
    "needle", "ocean", "pillow", "quarry", "rocket", "silver", "tunnel", "umbrella", "valley",
    "wagon", "yellow", "zephyr", "anchor", "basket", "candle", "desert", "engine", "forest",
    "glacier", "hammer", "icicle", "jungle", "kernel", "lizard", "mountain", "nutmeg", "oyster",
    "pebble", "quiver", "ribbon", "shadow", "teapot", "uncle", "velvet", "walnut", "yogurt",
    "bridge", "castle", "dragon", "ember", "falcon", "ginger", "honey", "ivory", "jasmine",
    "kayak", "lotus", "maple", "nectar", "olive", "parrot", "quilt", "raven", "saffron", "tulip",
    "walks", "carries", "paints", "builds", "finds", "keeps", "opens", "sings", "watches", "under",
    "beside", "across", "behind", "before", "slowly", "gently", "bright", "quiet",
];

/// A text file of three paragraphs of random words (each over the
/// chunker's 200-byte minimum), unique to `tag`.
fn random_text(rng: &mut impl Rng, tag: &str) -> String {
    (0..3)
        .map(|p| {
            let words: Vec<&str> = (0..70).map(|_| *WORDS.choose(rng).unwrap()).collect();
            format!("Entry {tag} part {p}: {}.", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Contributes a fresh file now and then, round robin over the
/// contributors, recording those the CLI reports done.
fn contributor(h: &TestHome, s: &Shared, dir: &Path) {
    let mut rng = rand::thread_rng();
    let mut k = 0usize;
    while !s.stop.load(Ordering::Relaxed) {
        let who = CONTRIBUTORS[k % CONTRIBUTORS.len()];
        let path = dir.join(format!("c{k}.txt"));
        std::fs::write(&path, random_text(&mut rng, &format!("{k}"))).unwrap();
        k += 1;
        let url = s.url();
        let out = h
            .cmd(&[
                "datanet",
                "contribute",
                "kill-loop",
                path.to_str().unwrap(),
                "--key",
                who,
                "--json",
                "--node",
                &url,
            ])
            .output()
            .unwrap();
        if !out.status.success() {
            s.refused.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let v = &v[0];
        let c = Contribution {
            id: v["report"]["contribution"].as_str().unwrap().to_string(),
            contributor: who.to_string(),
            rows: v["report"]["rows_accepted"].as_u64().unwrap(),
        };
        let tx: TxHash = v["tx"].as_str().unwrap().parse().unwrap();
        let mut acks = s.acks.lock().unwrap();
        acks.txs.push((tx, "contribute"));
        acks.contributions.push(c);
        drop(acks);
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..250)));
    }
}

/// A paid, non-streamed chat request on `model`; (status, body).
fn chat(url: &str, api_key: &str, model: &str, i: usize) -> reqwest::Result<(u16, Value)> {
    let body = json!({ "model": model, "max_tokens": 6, "temperature": 0,
        "messages": [{ "role": "user", "content": format!("Tell me about rivers ({i}).") }] });
    let r = http()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(api_key)
        .json(&body)
        .send()?;
    let status = r.status().as_u16();
    Ok((status, r.json().unwrap_or(Value::Null)))
}

/// Paid answers, alternating between the base model and the adapter,
/// recording each served answer's receipt and settlement transaction.
fn inference(s: &Shared, api_key: &str, models: [&str; 2]) {
    let mut i = 0;
    while !s.stop.load(Ordering::Relaxed) {
        let model = models[i % 2];
        i += 1;
        match chat(&s.url(), api_key, model, i) {
            Ok((200, v)) => {
                let tx: TxHash = v["settlement_tx"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a served answer without settlement: {v}"))
                    .parse()
                    .unwrap();
                let mut acks = s.acks.lock().unwrap();
                acks.txs.push((tx, "settlement"));
                acks.answers
                    .push(v["receipt_id"].as_str().unwrap().to_string());
            }
            _ => {
                s.refused.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// A paid request on `adapter` answers 200 (waiting out a rate limit's
/// 429 or a full queue's 503 for up to 20 s).
fn assert_adapter_served(url: &str, api_key: &str, adapter: &str, round: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = chat(url, api_key, adapter, usize::MAX - round).unwrap();
        if s == 200 {
            return;
        }
        assert!(
            matches!(s, 429 | 503) && Instant::now() < until,
            "round {round}: adapter {adapter} not served after restart: {s} {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The head's height and hash.
fn head(url: &str) -> (u64, String) {
    let (s, v) = get_json(&format!("{url}/v1/status"));
    assert_eq!(s, 200, "{v}");
    (
        v["height"].as_u64().unwrap(),
        v["head_hash"].as_str().unwrap().to_string(),
    )
}

/// The hash of block `height`, if the node has it.
fn block_hash(url: &str, height: u64) -> Option<String> {
    let (s, v) = get_json(&format!("{url}/v1/blocks/{height}"));
    (s == 200).then(|| v["hash"].as_str().unwrap().to_string())
}

/// A transaction's status (`pending`, `committed`), or `None` when the
/// node does not know it.
fn tx_status(url: &str, hash: &TxHash) -> Option<String> {
    let (s, v) = get_json(&format!("{url}/v1/tx/{hash}"));
    (s == 200).then(|| v["status"].as_str().unwrap_or("?").to_string())
}

/// The contributions `who` has in the node's listing: id → accepted rows.
fn listed_contributions(url: &str, who: &SecretKey) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("?limit=100&after={a}"),
            None => "?limit=100".to_string(),
        };
        let path = format!("/v1/contributors/{}/contributions{q}", who.address());
        let (s, v) = signed("GET", &format!("{url}{path}"), b"", who);
        assert_eq!(s, 200, "{path}: {v}");
        for c in v["items"].as_array().unwrap() {
            out.insert(
                c["id"].as_str().unwrap().to_string(),
                c["rows"].as_u64().unwrap(),
            );
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

/// What became of the training job after a restart (polls for up to 20 s
/// until it runs). `last_step`: the step seen before the kill; a job that
/// resumed runs again at or past the checkpoint before it (the one before
/// that when the kill cut the newest checkpoint's write short).
fn job_outcome(url: &str, id: u64, owner: &SecretKey, last_step: u64) -> (String, u64) {
    let checkpoint = (last_step / CHECKPOINT_EVERY).saturating_sub(1) * CHECKPOINT_EVERY;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = signed("GET", &format!("{url}/v1/jobs/{id}"), b"", owner);
        if s == 404 {
            return ("missing".into(), 0);
        }
        assert_eq!(s, 200, "job {id}: {v}");
        let step = v["step"].as_u64().unwrap_or(0);
        match v["status"].as_str().unwrap_or("?") {
            "done" => return ("done".into(), step),
            st @ ("failed" | "cancelled") => {
                return (format!("{st}: {}", v["error"].as_str().unwrap_or("")), step)
            }
            "running" if step > 0 && step >= checkpoint => return ("resumed".into(), step),
            "running" if step > 0 => return ("restarted from an earlier step".into(), step),
            st if Instant::now() > until => return (format!("{st}, not running in 20 s"), step),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The job's current step (0 when it cannot be read).
fn job_step(url: &str, id: u64, owner: &SecretKey) -> u64 {
    let (s, v) = signed("GET", &format!("{url}/v1/jobs/{id}"), b"", owner);
    if s == 200 {
        v["step"].as_u64().unwrap_or(0)
    } else {
        0
    }
}

fn kills() -> usize {
    std::env::var("TRIB_KILL_LOOP_KILLS")
        .ok()
        .map(|v| v.parse().expect("TRIB_KILL_LOOP_KILLS must be a number"))
        .unwrap_or(5)
}

#[test]
fn acknowledged_work_survives_sigkill_during_mixed_traffic() {
    let kills = kills();
    let started = Instant::now();
    let h = TestHome::init_dev();
    h.serve_tiny_model();
    let model = h.jobs_model();
    let data = crate::datanets::fixture("constitution.txt");
    h.allow_job_data(data.parent().unwrap());
    let mut node = NodeProc::start(&h, 200);
    let n = node.node_args();
    h.register_tiny(n);
    let mut funded = vec!["alice", "carol"];
    funded.extend(CONTRIBUTORS);
    crate::datanets::fund(&h, n, &funded);
    let api_key = h
        .ok(&[
            "apikey",
            "new",
            "--key",
            "alice",
            "--allowance",
            "90",
            n[0],
            n[1],
        ])
        .trim()
        .to_string();
    let adapter = h
        .ok(&[
            "bench", "adapters", "--count", "1", "--key", "producer", n[0], n[1],
        ])
        .trim()
        .to_string();
    let (_, list) = get_json(&format!("{}/v1/models", node.url));
    let base = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m.get("parent").is_none())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let desc = h.root.join("kill-loop.md");
    std::fs::write(&desc, "# Kill loop\nRandom words.\n").unwrap();
    h.ok(&[
        "datanet",
        "create",
        "kill-loop",
        "--description",
        desc.to_str().unwrap(),
        "--stake",
        "0.001",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    // A job that outlives the loop, checkpointing every few steps.
    let alice = h.key("alice");
    let toml = format!(
        "{}[checkpoint]\nevery_steps = {CHECKPOINT_EVERY}\n",
        crate::factory::job_toml(
            model,
            &format!("\"{}\"", data.display()),
            Path::new("ignored"),
            10_000
        )
    );
    let (s, v) = signed(
        "POST",
        &format!("{}/v1/jobs", node.url),
        toml.as_bytes(),
        &alice,
    );
    assert_eq!(s, 202, "{v}");
    let job = v["id"].as_u64().unwrap();

    let keys: Vec<SecretKey> = CONTRIBUTORS.iter().map(|c| h.key(c)).collect();
    let key_of = |name: &str| &keys[CONTRIBUTORS.iter().position(|c| *c == name).unwrap()];
    let shared = Arc::new(Shared {
        url: Mutex::new(node.url.clone()),
        stop: AtomicBool::new(false),
        acks: Mutex::new(Acks::default()),
        refused: AtomicUsize::new(0),
    });
    // Transfers from carol, by the crash test's submitter.
    let transfers = Arc::new(Mutex::new(Vec::new()));
    let sub_url = Arc::new(Mutex::new(node.url.clone()));
    let sub_stop = Arc::new(AtomicBool::new(false));
    let files = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut job_outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut verify_ms_max = 0u128;
    let mut restart_ms_max = 0u128;
    std::thread::scope(|scope| {
        {
            let (url, key, transfers, stop) = (
                sub_url.clone(),
                h.key("carol"),
                transfers.clone(),
                sub_stop.clone(),
            );
            scope.spawn(move || crate::crash::submitter(url, key, transfers, stop));
        }
        scope.spawn(|| contributor(&h, &shared, files.path()));
        scope.spawn(|| inference(&shared, &api_key, [base.as_str(), adapter.as_str()]));

        // Checked so far: how many acknowledged transactions and
        // contributions have been seen again after a restart.
        let (mut txs_checked, mut transfers_checked, mut contributions_checked) = (0, 0, 0);
        for round in 0..kills {
            let until = Instant::now() + Duration::from_millis(rng.gen_range(300..1500));
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (height, hash) = head(&node.url);
            let step = job_step(&node.url, job, &alice);
            node.kill();

            let t = Instant::now();
            let out = h.ok(&["ledger", "verify"]);
            assert!(out.contains("ledger OK"), "round {round}: {out}");
            verify_ms_max = verify_ms_max.max(t.elapsed().as_millis());

            let t = Instant::now();
            node = NodeProc::start(&h, 200);
            restart_ms_max = restart_ms_max.max(t.elapsed().as_millis());
            *shared.url.lock().unwrap() = node.url.clone();
            *sub_url.lock().unwrap() = node.url.clone();

            // The old head is still there, unchanged.
            assert_eq!(
                block_hash(&node.url, height).as_deref(),
                Some(hash.as_str()),
                "round {round}: block {height} changed or vanished after SIGKILL"
            );
            // Every acknowledged transaction is still known.
            let (txs, contributions) = {
                let a = shared.acks.lock().unwrap();
                (a.txs.clone(), a.contributions.clone())
            };
            let accepted_transfers = transfers.lock().unwrap().clone();
            for (hash, what) in &txs[txs_checked..] {
                assert!(
                    tx_status(&node.url, hash).is_some(),
                    "round {round}: acknowledged {what} transaction {hash} lost after SIGKILL"
                );
            }
            for hash in &accepted_transfers[transfers_checked..] {
                assert!(
                    tx_status(&node.url, hash).is_some(),
                    "round {round}: accepted transfer {hash} lost after SIGKILL"
                );
            }
            (txs_checked, transfers_checked) = (txs.len(), accepted_transfers.len());
            // Every acknowledged contribution is listed with its rows.
            if contributions.len() > contributions_checked {
                for who in CONTRIBUTORS {
                    let listed = listed_contributions(&node.url, key_of(who));
                    for c in contributions[contributions_checked..]
                        .iter()
                        .filter(|c| c.contributor == who)
                    {
                        assert_eq!(
                            listed.get(&c.id),
                            Some(&c.rows),
                            "round {round}: contribution {} of {who} lost or changed after SIGKILL",
                            c.id
                        );
                    }
                }
                contributions_checked = contributions.len();
            }
            // The adapter is served again.
            assert_adapter_served(&node.url, &api_key, &adapter, round);
            // What became of the job.
            let (outcome, step_after) = job_outcome(&node.url, job, &alice, step);
            eprintln!(
                "round {round}: block {height} kept; {} txs, {} transfers, {} contributions acknowledged so far; job at step {step} before the kill: {outcome} (step {step_after})",
                txs.len(),
                accepted_transfers.len(),
                contributions.len()
            );
            *job_outcomes.entry(outcome).or_default() += 1;
        }
        shared.stop.store(true, Ordering::Relaxed);
        sub_stop.store(true, Ordering::Relaxed);
    });

    // Every acknowledged transaction commits once the node has caught up.
    let acks = shared.acks.lock().unwrap();
    let transfers = transfers.lock().unwrap().clone();
    let all: Vec<TxHash> = acks
        .txs
        .iter()
        .map(|(h, _)| *h)
        .chain(transfers.iter().copied())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for hash in &all {
        loop {
            match tx_status(&node.url, hash).as_deref() {
                Some("committed") => break,
                other => assert!(
                    Instant::now() < deadline,
                    "acknowledged transaction {hash} never committed: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    node.kill();
    let out = h.ok(&["ledger", "verify"]);
    assert!(out.contains("ledger OK"), "{out}");

    assert!(
        transfers.len() >= 10 && !acks.answers.is_empty() && !acks.contributions.is_empty(),
        "too little traffic to mean anything: {} transfers, {} answers, {} contributions",
        transfers.len(),
        acks.answers.len(),
        acks.contributions.len()
    );
    let report = json!({
        "kills": kills,
        "ledger_verify_passed": kills + 1,
        "acknowledged_transfers": transfers.len(),
        "acknowledged_answers": acks.answers.len(),
        "acknowledged_contributions": acks.contributions.len(),
        "acknowledged_rows": acks.contributions.iter().map(|c| c.rows).sum::<u64>(),
        "acknowledged_txs_committed": all.len(),
        "lost": 0,
        "adapter_served_after_restart": kills,
        "job_after_restart": job_outcomes,
        "requests_refused_or_cut": shared.refused.load(Ordering::Relaxed),
        "ledger_verify_ms_max": verify_ms_max,
        "restart_ms_max": restart_ms_max,
        "wall_s": started.elapsed().as_secs(),
    });
    eprintln!("kill loop: {report}");
    if let Ok(path) = std::env::var("TRIB_KILL_LOOP_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}
