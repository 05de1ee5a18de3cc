//! Datanet creation with every field, every file type through a real node,
//! and browsing (datanets, versions, contributions, rows, histories) page
//! by page over both the CLI and HTTP.

use serde_json::{json, Value};
use trib_node::types::SecretKey;

use crate::datanets::{fixture, fund};
use crate::harness::{get_json, units, NodeProc, TestHome};

const ONE_OPEN: u128 = 1_000_000_000_000_000_000;

/// `POST url` with the JSON `body`, signed by `key`.
fn post_json(url: &str, body: &Value, key: &SecretKey) -> (u16, Value) {
    crate::harness::signed_json("POST", url, body, key)
}

#[test]
fn a_datanet_created_with_every_field_shows_each_of_them_over_cli_and_http() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    let url = node.url.clone();
    let desc = h.root.join("clinic.md");
    std::fs::write(&desc, "# Clinic notes\n\n*Anonymised* triage notes.\n").unwrap();
    h.ok(&[
        "datanet",
        "create",
        "clinic-notes",
        "--description",
        desc.to_str().unwrap(),
        "--tags",
        "medicine,triage",
        "--type",
        "instruction",
        "--curation",
        "validators",
        "--quorum-bps",
        "5000",
        "--stake",
        "2.5",
        "--visibility",
        "permissioned",
        "--max-file-bytes",
        "4096",
        "--contributor-bytes-per-day",
        "8192",
        "--contributor-files-per-day",
        "3",
        "--datanet-bytes-per-day",
        "65536",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let cli = h.json(&["datanet", "show", "clinic-notes", n[0], n[1]]);
    let (s, http_view) = get_json(&format!("{url}/v1/datanets/clinic-notes"));
    assert_eq!(s, 200, "{http_view}");
    assert_eq!(cli, http_view, "the CLI shows what HTTP serves");
    let l = &cli["ledger"];
    assert_eq!(l["name"], "clinic-notes");
    assert_eq!(l["owner"], h.address("producer").to_string());
    assert_eq!(l["data_type"], "instruction");
    assert_eq!(
        l["curation"],
        json!({"mode": "validator_vote", "quorum_bps": 5000})
    );
    assert_eq!(units(&l["stake_per_contribution"]), 5 * ONE_OPEN / 2);
    assert_eq!(l["visibility"], "permissioned");
    assert_eq!(
        cli["description"],
        "# Clinic notes\n\n*Anonymised* triage notes.\n"
    );
    assert_eq!(cli["tags"], json!(["medicine", "triage"]));
    assert_eq!(
        cli["quotas"],
        json!({
            "max_file_bytes": 4096,
            "bytes_per_contributor_per_day": 8192,
            "files_per_contributor_per_day": 3,
            "bytes_per_datanet_per_day": 65536
        })
    );
    // The ledger commits to the descriptor the node stores.
    assert!(l["metadata_hash"].as_str().unwrap().len() == 64, "{l}");

    // HTTP create: every field in the body, the action to sign in the
    // answer; a bad field is a 422 naming it and stores nothing.
    let owner = h.address("producer").to_string();
    let mut body = json!({
        "owner": owner,
        "name": "radiology",
        "description": "Reports.",
        "tags": ["medicine"],
        "data_type": "text",
        "curation": {"mode": "owner_approval"},
        "stake_per_contribution": "1000",
        "visibility": "public",
        "quotas": {
            "max_file_bytes": 0,
            "bytes_per_contributor_per_day": 1,
            "files_per_contributor_per_day": 1,
            "bytes_per_datanet_per_day": 1
        }
    });
    let (s, v) = post_json(&format!("{url}/v1/datanets"), &body, &h.key("producer"));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_descriptor")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("quotas"),
        "{v}"
    );
    body["quotas"]["max_file_bytes"] = json!(10);
    body["tags"] = json!(["Medicine"]);
    let (s, v) = post_json(&format!("{url}/v1/datanets"), &body, &h.key("producer"));
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("tags"),
        "{v}"
    );
    body["tags"] = json!(["medicine", "imaging"]);
    let (s, v) = post_json(&format!("{url}/v1/datanets"), &body, &h.key("producer"));
    assert_eq!(s, 201, "{v}");
    let a = &v["action"];
    assert_eq!(a["type"], "create_datanet", "{v}");
    assert_eq!(a["name"], "radiology", "{v}");
    assert_eq!(a["data_type"], "text");
    assert_eq!(a["curation"], json!({"mode": "owner_approval"}));
    assert_eq!(a["stake_per_contribution"], "1000");
    assert_eq!(a["visibility"], "public");
    assert_eq!(a["metadata_hash"], v["metadata_hash"]);
    // Not on the ledger until the owner signs it.
    let (s, _) = get_json(&format!("{url}/v1/datanets/radiology"));
    assert_eq!(s, 404);
}

/// Follows `next` cursors over HTTP; returns every page's items.
fn http_pages(url: &str, path: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("{url}{path}?limit={limit}&after={a}"),
            None => format!("{url}{path}?limit={limit}"),
        };
        let (s, v) = get_json(&q);
        assert_eq!(s, 200, "{q}: {v}");
        let items = v["items"].as_array().unwrap().clone();
        assert!(items.len() <= limit);
        pages.push(items);
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return pages,
        }
    }
}

#[test]
fn every_file_type_goes_through_the_node_and_is_browsed_page_by_page_over_cli_and_http() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    let url = node.url.clone();
    fund(&h, n, &["alice"]);
    for (name, kind) in [("founding", "text"), ("howto", "instruction")] {
        h.ok(&[
            "datanet", "create", name, "--type", kind, "--key", "producer", n[0], n[1],
        ]);
    }
    // Each type, contributed by the CLI, validated and stored by the node.
    let mut ids = Vec::new();
    let mut accepted_rows = 0;
    for (datanet, file, extra) in [
        ("founding", "constitution.txt", None),
        ("founding", "declaration.md", None),
        ("founding", "icd10.csv", Some("text")),
        ("founding", "sample.pdf", None),
        ("founding", "sample.docx", None),
        ("howto", "instructions.jsonl", None),
    ] {
        let path = fixture(file);
        let mut args = vec![
            "datanet",
            "contribute",
            datanet,
            path.to_str().unwrap(),
            "--key",
            "alice",
            n[0],
            n[1],
        ];
        if let Some(column) = extra {
            args.extend(["--csv-column", column]);
        }
        let r = h.json(&args);
        let report = &r[0]["report"];
        assert!(r[0]["tx"].is_string(), "{file}: {r}");
        assert_eq!(report["file_name"], file);
        let kind = file.rsplit('.').next().unwrap();
        assert_eq!(report["kind"], kind, "{report}");
        let rows = report["rows_accepted"].as_u64().unwrap();
        assert!(rows > 0, "{file}: {report}");
        if datanet == "founding" {
            accepted_rows += rows;
        } else {
            assert_eq!(report["rows"][0]["shape"], "alpaca", "{report}");
        }
        ids.push((
            datanet,
            report["contribution"].as_str().unwrap().to_string(),
        ));
    }
    for (datanet, id) in &ids {
        h.ok(&[
            "datanet", "curate", datanet, id, "accept", "--key", "producer", n[0], n[1],
        ]);
    }
    for datanet in ["founding", "howto"] {
        h.ok(&[
            "datanet", "publish", datanet, "--key", "producer", n[0], n[1],
        ]);
    }

    // Datanets and versions, over both.
    let (_, listed) = get_json(&format!("{url}/v1/datanets"));
    let cli_list = h.json(&["datanet", "list", n[0], n[1]]);
    assert_eq!(listed, cli_list);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ledger"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"founding") && names.contains(&"howto"),
        "{listed}"
    );
    let (_, versions) = get_json(&format!("{url}/v1/datanets/founding/versions"));
    assert_eq!(
        versions,
        h.json(&["datanet", "versions", "founding", n[0], n[1]])
    );
    assert_eq!(versions[0]["rows"].as_u64(), Some(accepted_rows));

    // Rows, 3 per page: the HTTP pages cover the version exactly once, in
    // order, and the CLI's page k is HTTP's page k.
    let pages = http_pages(&url, "/v1/datanets/founding/versions/1/rows", 3);
    let all: Vec<&Value> = pages.iter().flatten().collect();
    assert_eq!(all.len() as u64, accepted_rows);
    let indexes: Vec<u64> = all.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..accepted_rows).collect::<Vec<_>>());
    assert!(pages.len() >= 3, "{} pages", pages.len());
    for k in [1, 2, pages.len()] {
        let cli = h.json(&[
            "datanet",
            "rows",
            "founding@1",
            "--page",
            &k.to_string(),
            "--per-page",
            "3",
            n[0],
            n[1],
        ]);
        assert_eq!(cli["items"].as_array().unwrap(), &pages[k - 1], "page {k}");
        assert_eq!(cli["next"].is_null(), k == pages.len(), "page {k}: {cli}");
    }
    let past = h.json(&[
        "datanet",
        "rows",
        "founding@1",
        "--page",
        "99",
        "--per-page",
        "3",
        n[0],
        n[1],
    ]);
    assert!(past["items"].as_array().unwrap().is_empty(), "{past}");
    let err = h.fails(&[
        "datanet",
        "rows",
        "founding@1",
        "--per-page",
        "0",
        n[0],
        n[1],
    ]);
    assert!(err.contains("page size"), "{err}");

    // Statuses move from "accepted" to "accepted (stake released)" as the
    // challenge window's blocks pass; wait (bounded) until every one of
    // alice's contributions has, so the HTTP and CLI reads below compare
    // the same state.
    let alice = h.address("alice");
    let history_url = format!("{url}/v1/contributors/{alice}/contributions");
    for _ in 0..300 {
        let (_, history) = get_json(&history_url);
        let items = history["items"].as_array().unwrap();
        if items.len() == 6
            && items
                .iter()
                .all(|c| c["status"] == "accepted (stake released)")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Contributions, 2 per page: five files, three pages, all accepted.
    let pages = http_pages(&url, "/v1/datanets/founding/contributions", 2);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let cli = h.json(&[
        "datanet",
        "contributions",
        "founding",
        "--page",
        "3",
        "--per-page",
        "2",
        n[0],
        n[1],
    ]);
    assert_eq!(cli["items"].as_array().unwrap(), &pages[2]);
    assert!(pages
        .iter()
        .flatten()
        .all(|c| c["status"].as_str().unwrap().starts_with("accepted")));

    // Alice's history across both datanets, over both.
    let (s, history) = get_json(&history_url);
    assert_eq!(s, 200, "{history}");
    assert_eq!(history["items"].as_array().unwrap().len(), 6, "{history}");
    let cli = h.json(&["datanet", "history", "--contributor", "alice", n[0], n[1]]);
    assert_eq!(cli["items"], history["items"]);
}
