//! Datanets end to end through the `trib` binary and a real node: create,
//! contribute with row-by-row rejections, curate, publish, export verified
//! against the ledger, permissioned access.

use std::path::{Path, PathBuf};

use crate::harness::{NodeProc, TestHome};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datanet/tests/fixtures")
        .join(name)
}

/// Funds `names` from the producer so they can pay fees and stakes.
pub fn fund(h: &TestHome, n: [&str; 2], names: &[&str]) {
    for who in names {
        h.ok(&["keys", "new", who]);
        h.ok(&[
            "tx", "transfer", "--from", "producer", "--to", who, "100", "--wait", n[0], n[1],
        ]);
    }
}

#[test]
fn a_datanet_goes_from_creation_to_a_verified_export_with_rejections_shown() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    fund(&h, n, &["alice", "bob"]);
    let desc = h.root.join("law.md");
    std::fs::write(&desc, "# US law\nFounding documents.\n").unwrap();
    let out = h.ok(&[
        "datanet",
        "create",
        "us-law",
        "--description",
        desc.to_str().unwrap(),
        "--tags",
        "legal,us",
        "--stake",
        "1",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    assert!(out.contains("created datanet us-law"), "{out}");

    // Alice contributes the constitution: accepted rows, a Contribute tx.
    let constitution = fixture("constitution.txt");
    let alice = h.json(&[
        "datanet",
        "contribute",
        "us-law",
        constitution.to_str().unwrap(),
        "--key",
        "alice",
        n[0],
        n[1],
    ]);
    let alice = &alice[0];
    assert!(
        alice["report"]["rows_accepted"].as_u64().unwrap() > 0,
        "{alice}"
    );
    assert!(alice["tx"].is_string(), "{alice}");
    let alice_id = alice["report"]["contribution"]
        .as_str()
        .unwrap()
        .to_string();

    // Bob uploads the same text under another name: every row is a
    // duplicate, the contribution is rejected before any transaction.
    let copy = h.root.join("copy.txt");
    std::fs::copy(&constitution, &copy).unwrap();
    let out = h
        .cmd(&[
            "datanet",
            "contribute",
            "us-law",
            copy.to_str().unwrap(),
            "--key",
            "bob",
            n[0],
            n[1],
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = crate::harness::text(&out.stdout);
    assert!(stdout.contains("REJECTED duplicate in datanet"), "{stdout}");
    assert!(stdout.contains("no transaction"), "{stdout}");

    // Bob's own file, with one paragraph of the constitution pasted in: the
    // new rows are kept, the duplicate row is shown rejected.
    let first_para = std::fs::read_to_string(&constitution).unwrap();
    let first_para = first_para
        .split("\n\n")
        .find(|p| p.len() > 200)
        .unwrap()
        .to_string();
    let declaration = std::fs::read_to_string(fixture("declaration.md")).unwrap();
    let mixed = h.root.join("mixed.md");
    std::fs::write(&mixed, format!("{declaration}\n\n{first_para}\n")).unwrap();
    let bob = h.json(&[
        "datanet",
        "contribute",
        "us-law",
        mixed.to_str().unwrap(),
        "--key",
        "bob",
        n[0],
        n[1],
    ]);
    let bob = &bob[0];
    assert!(
        bob["report"]["duplicates_rejected"].as_u64().unwrap() >= 1,
        "{bob}"
    );
    assert!(
        bob["report"]["rows_accepted"].as_u64().unwrap() >= 1,
        "{bob}"
    );
    let row = &bob["report"]["rows"][0]["quality"];
    assert!(
        row["score_bp"].is_u64() && row["length_bp"].is_u64(),
        "{row}"
    );
    let bob_id = bob["report"]["contribution"].as_str().unwrap().to_string();

    // Curation on the ledger; the contributions listing shows the ledger's status.
    h.ok(&[
        "datanet", "curate", "us-law", &alice_id, "accept", "--key", "producer", n[0], n[1],
    ]);
    let err = h.fails(&[
        "datanet", "curate", "us-law", &bob_id, "reject", "--key", "producer", n[0], n[1],
    ]);
    assert!(err.contains("--reason"), "{err}");
    h.ok(&[
        "datanet",
        "curate",
        "us-law",
        &bob_id,
        "reject",
        "--reason",
        "off topic",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let list = h.json(&["datanet", "contributions", "us-law", n[0], n[1]]);
    let statuses: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"accepted") && statuses.iter().any(|s| s.contains("off topic")),
        "{list}"
    );

    // Publish: version 1 holds exactly Alice's rows.
    let published = h.json(&[
        "datanet", "publish", "us-law", "--key", "producer", n[0], n[1],
    ]);
    assert_eq!(published["version"], 1);
    assert_eq!(published["rows"], alice["report"]["rows_accepted"]);
    let versions = h.json(&["datanet", "versions", "us-law", n[0], n[1]]);
    assert_eq!(versions[0]["root"], published["root"]);
    assert!(versions[0]["on_ledger"].as_bool().unwrap());

    // Export: the root recomputed from the rows equals the ledger's, and two
    // exports are byte-identical.
    let out1 = h.root.join("v1.jsonl");
    let out2 = h.root.join("v1-again.jsonl");
    let e = h.json(&[
        "datanet",
        "export",
        "us-law@1",
        "--out",
        out1.to_str().unwrap(),
        n[0],
        n[1],
    ]);
    assert_eq!(e["root"], published["root"]);
    h.ok(&[
        "datanet",
        "export",
        "us-law@1",
        "--out",
        out2.to_str().unwrap(),
        n[0],
        n[1],
    ]);
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap());
    let check =
        trib_node::datanet::verify_export(std::fs::read(&out1).unwrap().as_slice()).unwrap();
    assert_eq!(
        check.computed_root.to_string(),
        published["root"].as_str().unwrap()
    );

    // Browsing and reputation.
    let rows = h.json(&["datanet", "rows", "us-law@1", n[0], n[1]]);
    assert_eq!(
        rows["items"].as_array().unwrap().len() as u64,
        published["rows"].as_u64().unwrap().min(50)
    );
    let board = h.json(&["datanet", "leaderboard", "us-law", n[0], n[1]]);
    assert_eq!(board[0]["contributor"], h.address("alice").to_string());
    let bob_line = board
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["contributor"] == h.address("bob").to_string())
        .unwrap();
    assert_eq!(bob_line["rejected"], 1);
    assert!(bob_line["duplicates_rejected"].as_u64().unwrap() >= 1);
    let history = h.json(&["datanet", "history", "--contributor", "bob", n[0], n[1]]);
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
}

#[test]
fn a_permissioned_datanet_is_refused_to_readers_and_trainers_without_access() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    fund(&h, n, &["alice"]);
    h.ok(&[
        "datanet",
        "create",
        "private-law",
        "--visibility",
        "permissioned",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let c = h.json(&[
        "datanet",
        "contribute",
        "private-law",
        fixture("declaration.md").to_str().unwrap(),
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let id = c[0]["report"]["contribution"].as_str().unwrap().to_string();
    h.ok(&[
        "datanet",
        "curate",
        "private-law",
        &id,
        "accept",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    h.ok(&[
        "datanet",
        "publish",
        "private-law",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);

    let out = h.root.join("p.jsonl");
    let err = h.fails(&[
        "datanet",
        "export",
        "private-law@1",
        "--out",
        out.to_str().unwrap(),
        "--key",
        "alice",
        n[0],
        n[1],
    ]);
    assert!(
        err.contains("permissioned") && err.contains("no_access"),
        "{err}"
    );
    assert!(!out.exists());

    // Training on it is refused before the model is even loaded.
    let model = h.root.join("tiny.gguf");
    crate::factory::tiny_model(&model);
    let job = h.root.join("job.toml");
    std::fs::write(
        &job,
        crate::factory::job_toml(&model, "\"private-law@1\"", &h.root.join("run"), 1),
    )
    .unwrap();
    let err = h.fails(&[
        "factory",
        "train",
        job.to_str().unwrap(),
        "--key",
        "alice",
        n[0],
        n[1],
    ]);
    assert!(
        err.contains("permissioned") && err.contains("no training access"),
        "{err}"
    );
    assert!(!h.root.join("run").exists());

    // The node's job queue refuses it too: the job fails naming the reason.
    let toml =
        crate::factory::job_toml(h.jobs_model(), "\"private-law@1\"", &h.root.join("run2"), 1);
    let path = format!("/v1/jobs?owner={}", h.address("alice"));
    let mut req = crate::harness::http().post(format!("{}{path}", n[1]));
    for (k, v) in trib_client::signed_read::sign(
        &h.key("alice"),
        "POST",
        &path,
        toml.as_bytes(),
        trib_client::signed_read::now(),
    ) {
        req = req.header(k, v);
    }
    let r = req.body(toml).send().unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<serde_json::Value>().unwrap()["id"]
        .as_u64()
        .unwrap();
    let mut job = serde_json::Value::Null;
    for _ in 0..300 {
        job = crate::harness::signed(
            "GET",
            &format!("{}/v1/jobs/{id}", n[1]),
            b"",
            &h.key("alice"),
        )
        .1;
        if job["status"] != "queued" && job["status"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("no training access"),
        "{job}"
    );

    // Once granted, the same reader exports it.
    h.ok(&[
        "datanet",
        "grant",
        "private-law",
        "alice",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    h.ok(&[
        "datanet",
        "export",
        "private-law@1",
        "--out",
        out.to_str().unwrap(),
        "--key",
        "alice",
        n[0],
        n[1],
    ]);
    assert!(out.is_file());
}
