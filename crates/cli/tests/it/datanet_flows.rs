//! Datanet flows end to end through the `trib` binary, HTTP and a real
//! node: validator-vote curation with the exact stake and slash
//! arithmetic, signed reads of permissioned datanets, quota counters that
//! survive a restart, re-submission after a rejection, and rejections at
//! validation in the leaderboard.

use serde_json::Value;
use trib_client::signed_read;
use trib_node::types::{Address, SecretKey};

use crate::datanets::{fixture, fund};
use crate::harness::{get_json, http, units, NodeProc, TestHome};

const ONE_OPEN: u128 = 1_000_000_000_000_000_000;

fn balance(url: &str, who: &Address) -> u128 {
    units(&get_json(&format!("{url}/v1/accounts/{who}")).1["balance"])
}

/// `/v1/supply`: the ledger's `Supply` fields flattened, plus `total`.
fn supply(url: &str) -> Value {
    get_json(&format!("{url}/v1/supply")).1
}

/// The status line of a contribution in `trib datanet contributions`.
fn status(h: &TestHome, n: [&str; 2], datanet: &str, id: &str) -> String {
    let list = h.json(&["datanet", "contributions", datanet, n[0], n[1]]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Polls until the contribution's status is `want` (blocks are 100 ms).
fn wait_status(h: &TestHome, n: [&str; 2], datanet: &str, id: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        last = status(h, n, datanet, id);
        if last == want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{id}: status {last:?}, wanted {want:?}");
}

/// Contributes `file` as `key`; returns the contribution id.
pub(crate) fn contribute(
    h: &TestHome,
    n: [&str; 2],
    datanet: &str,
    file: &std::path::Path,
    key: &str,
) -> String {
    let r = h.json(&[
        "datanet",
        "contribute",
        datanet,
        file.to_str().unwrap(),
        "--key",
        key,
        n[0],
        n[1],
    ]);
    assert!(r[0]["tx"].is_string(), "{r}");
    r[0]["report"]["contribution"].as_str().unwrap().to_string()
}

pub(crate) fn fee_of(view: &Value) -> u128 {
    units(&view["tx"]["tx"]["fee"])
}

#[test]
fn validators_vote_contributions_in_and_out_with_exact_stake_returns_and_slashes() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    let url = node.url.clone();
    fund(&h, n, &["alice", "v1", "v2", "bob"]);
    for v in ["v1", "v2"] {
        h.ok(&["tx", "stake", "30", "--from", v, "--wait", n[0], n[1]]);
    }
    // All gOPEN is the validators' 60, so a 60% quorum needs 36: one vote
    // of 30 is not enough, two are.
    assert_eq!(units(&supply(&url)["gopen"]), 60 * ONE_OPEN);
    h.ok(&[
        "datanet",
        "create",
        "medicine",
        "--curation",
        "validators",
        "--quorum-bps",
        "6000",
        "--stake",
        "7",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let alice = h.address("alice");
    let a = contribute(&h, n, "medicine", &fixture("declaration.md"), "alice");
    let b = contribute(&h, n, "medicine", &fixture("constitution.txt"), "alice");

    // Without gOPEN there is no vote.
    let err = h.fails(&[
        "datanet", "curate", "medicine", &a, "accept", "--key", "bob", n[0], n[1],
    ]);
    assert!(err.contains("no gOPEN voting power"), "{err}");

    // Acceptance: 30 of 60 is below quorum, 60 of 60 reaches it; the 7
    // OPEN stake returns whole once the 3-block challenge window ends.
    h.ok(&[
        "datanet", "curate", "medicine", &a, "accept", "--key", "v1", n[0], n[1],
    ]);
    assert_eq!(status(&h, n, "medicine", &a), "pending");
    let before = balance(&url, &alice);
    h.ok(&[
        "datanet", "curate", "medicine", &a, "accept", "--key", "v2", n[0], n[1],
    ]);
    wait_status(&h, n, "medicine", &a, "accepted (stake released)");
    assert_eq!(balance(&url, &alice), before + 7 * ONE_OPEN);

    // Rejection: datanet_slash_bps = 1,000 (dev genesis), so the slash is
    // floor(7 OPEN × 1,000 / 10,000) = 0.7 OPEN to the treasury and 6.3
    // OPEN return to the contributor; the escrow releases all 7.
    let treasury = trib_node::ledger::treasury_address();
    let (alice0, treasury0, escrow0) = (
        balance(&url, &alice),
        balance(&url, &treasury),
        units(&supply(&url)["escrowed"]),
    );
    let vote1 = h.json(&[
        "datanet",
        "curate",
        "medicine",
        &b,
        "reject",
        "--reason",
        "not medicine",
        "--key",
        "v1",
        n[0],
        n[1],
    ]);
    assert_eq!(status(&h, n, "medicine", &b), "pending");
    let vote2 = h.json(&[
        "datanet",
        "curate",
        "medicine",
        &b,
        "reject",
        "--reason",
        "off topic",
        "--key",
        "v2",
        n[0],
        n[1],
    ]);
    let st = status(&h, n, "medicine", &b);
    assert_eq!(st, "rejected: not medicine; off topic");
    let slash = 7 * ONE_OPEN * 1_000 / 10_000;
    assert_eq!(slash, 7 * ONE_OPEN / 10);
    assert_eq!(balance(&url, &alice), alice0 + 7 * ONE_OPEN - slash);
    assert_eq!(
        balance(&url, &treasury),
        treasury0 + slash + fee_of(&vote1) + fee_of(&vote2),
        "the treasury gets the slash and the two votes' fees"
    );
    assert_eq!(units(&supply(&url)["escrowed"]), escrow0 - 7 * ONE_OPEN);
    let list = h.json(&["datanet", "contributions", "medicine", n[0], n[1]]);
    let line = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == b.as_str())
        .unwrap();
    assert_eq!(units(&line["slashed"]), slash);

    // The leaderboard carries it: one accepted, one rejected, 0.7 slashed.
    let board = h.json(&["datanet", "leaderboard", "medicine", n[0], n[1]]);
    let e = &board[0];
    assert_eq!(e["contributor"], alice.to_string());
    assert_eq!(
        (e["accepted"].as_u64(), e["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(e["acceptance_bps"], 5_000);
    assert_eq!(units(&e["slashed"]), slash);
}

/// A signed GET; returns (status, body).
fn signed_get(
    url: &str,
    path: &str,
    key: &SecretKey,
    timestamp: u64,
) -> (u16, Value, Vec<(&'static str, String)>) {
    let headers = signed_read::sign(key, "GET", path, b"", timestamp);
    let (s, v) = get_with(url, path, &headers);
    (s, v, headers)
}

fn get_with(url: &str, path: &str, headers: &[(&'static str, String)]) -> (u16, Value) {
    let mut req = http().get(format!("{url}{path}"));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn permissioned_rows_are_read_only_by_signed_requests_of_the_owner_or_granted_readers() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    let url = node.url.clone();
    fund(&h, n, &["alice"]);
    h.ok(&[
        "datanet",
        "create",
        "clinic",
        "--visibility",
        "permissioned",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let id = contribute(&h, n, "clinic", &fixture("declaration.md"), "producer");
    h.ok(&[
        "datanet", "curate", "clinic", &id, "accept", "--key", "producer", n[0], n[1],
    ]);
    h.ok(&[
        "datanet", "publish", "clinic", "--key", "producer", n[0], n[1],
    ]);
    let (owner, alice) = (h.key("producer"), h.key("alice"));
    let rows = "/v1/datanets/clinic/versions/1/rows?limit=5";
    let export = "/v1/datanets/clinic/versions/1/export";
    let now = signed_read::now();

    // Anonymous: 401 naming the missing signature, for rows and export;
    // the old unauthenticated `reader=` parameter no longer opens it.
    for path in [rows, export] {
        let (s, v) = get_with(&url, path, &[]);
        assert_eq!((s, code(&v)), (401, "missing_signature"), "{path}: {v}");
    }
    let (s, v) = get_with(&url, &format!("{export}?reader={}", owner.address()), &[]);
    assert_eq!((s, code(&v)), (401, "missing_signature"), "{v}");
    // The owner, signed: 200; the same request again is a replay.
    let (s, v, headers) = signed_get(&url, rows, &owner, now);
    assert_eq!(s, 200, "{v}");
    assert!(!v["items"].as_array().unwrap().is_empty());
    let (s, v) = get_with(&url, rows, &headers);
    assert_eq!((s, code(&v)), (401, "replayed_signature"), "{v}");
    // A stale timestamp, a signature over another path, a stranger.
    let (s, v, _) = signed_get(&url, rows, &owner, now - 3_600);
    assert_eq!((s, code(&v)), (401, "expired_signature"), "{v}");
    let other = signed_read::sign(&owner, "GET", export, b"", now);
    let (s, v) = get_with(&url, rows, &other);
    assert_eq!((s, code(&v)), (401, "bad_signature"), "{v}");
    let (s, v, _) = signed_get(&url, rows, &alice, now);
    assert_eq!((s, code(&v)), (403, "no_access"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&alice.address().to_string()));

    // The CLI signs with --key: refused before the grant, served after.
    let err = h.fails(&["datanet", "rows", "clinic@1", "--key", "alice", n[0], n[1]]);
    assert!(err.contains("no_access"), "{err}");
    let err = h.fails(&["datanet", "rows", "clinic@1", n[0], n[1]]);
    assert!(err.contains("missing_signature"), "{err}");
    h.ok(&[
        "datanet", "grant", "clinic", "alice", "--key", "producer", n[0], n[1],
    ]);
    let r = h.json(&["datanet", "rows", "clinic@1", "--key", "alice", n[0], n[1]]);
    assert!(!r["items"].as_array().unwrap().is_empty(), "{r}");
    let (s, v, _) = signed_get(&url, export, &alice, signed_read::now());
    assert_eq!(s, 200, "{v}");

    // Histories: a permissioned contribution shows to its signed
    // contributor, not to an anonymous reader.
    let mine = h.json(&[
        "datanet",
        "history",
        "--contributor",
        "producer",
        n[0],
        n[1],
    ]);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    let producer_addr = owner.address().to_string();
    let anon = h.json(&[
        "datanet",
        "history",
        "--contributor",
        &producer_addr,
        n[0],
        n[1],
    ]);
    assert!(anon["items"].as_array().unwrap().is_empty(), "{anon}");

    // Revoked (`trib datanet revoke`, signed by the owner): refused again.
    let out = h.ok(&[
        "datanet", "revoke", "clinic", "alice", "--key", "producer", n[0], n[1],
    ]);
    assert!(out.contains("may no longer train on clinic"), "{out}");
    let (s, v, _) = signed_get(&url, export, &alice, signed_read::now());
    assert_eq!((s, code(&v)), (403, "no_access"), "{v}");
    let err = h.fails(&["datanet", "rows", "clinic@1", "--key", "alice", n[0], n[1]]);
    assert!(err.contains("no_access"), "{err}");
    // Only the owner revokes.
    let err = h.fails(&[
        "datanet", "revoke", "clinic", "producer", "--key", "alice", n[0], n[1],
    ]);
    assert!(err.contains("revoke_access transaction refused"), "{err}");
}

/// Paragraph groups of the constitution fixture, as separate files.
fn constitution_parts(h: &TestHome, parts: usize) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string(fixture("constitution.txt")).unwrap();
    let paras: Vec<&str> = text.split("\n\n").filter(|p| p.trim().len() > 40).collect();
    assert!(paras.len() >= parts * 2, "{} paragraphs", paras.len());
    let per = paras.len() / parts;
    (0..parts)
        .map(|i| {
            let p = h.root.join(format!("part{i}.txt"));
            std::fs::write(&p, paras[i * per..(i + 1) * per].join("\n\n") + "\n").unwrap();
            p
        })
        .collect()
}

#[test]
fn quota_counters_survive_a_node_restart_and_a_rejected_file_can_be_resubmitted() {
    let h = TestHome::init_dev();
    let mut node = NodeProc::start(&h, 100);
    fund(&h, node.node_args(), &["alice", "bob", "carol"]);
    let parts = constitution_parts(&h, 4);
    {
        let n = node.node_args();
        h.ok(&[
            "datanet",
            "create",
            "notes",
            "--contributor-files-per-day",
            "2",
            "--stake",
            "1",
            "--key",
            "producer",
            n[0],
            n[1],
        ]);
        let shown = h.json(&["datanet", "show", "notes", n[0], n[1]]);
        assert_eq!(
            shown["quotas"]["files_per_contributor_per_day"], 2,
            "{shown}"
        );
        contribute(&h, n, "notes", &parts[0], "alice");
        contribute(&h, n, "notes", &parts[1], "alice");
    }
    assert!(node.terminate(), "the node stops cleanly");
    drop(node);
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();

    // Alice used both of today's files before the restart: still used.
    let out = h
        .cmd(&[
            "datanet",
            "contribute",
            "notes",
            parts[2].to_str().unwrap(),
            "--key",
            "alice",
            n[0],
            n[1],
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = crate::harness::text(&out.stdout);
    assert!(
        stdout.contains("quota exceeded") && stdout.contains("contributor_files_per_day"),
        "{stdout}"
    );

    // Bob: a file rejected by the owner, then the same file again: a new
    // contribution id, accepted at validation, staked on the ledger.
    let first = contribute(&h, n, "notes", &parts[3], "bob");
    h.ok(&[
        "datanet",
        "curate",
        "notes",
        &first,
        "reject",
        "--reason",
        "cite the article",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let again = contribute(&h, n, "notes", &parts[3], "bob");
    assert_ne!(again, first);
    assert_eq!(status(&h, n, "notes", &again), "pending");
    assert!(status(&h, n, "notes", &first).contains("cite the article"));
    h.ok(&[
        "datanet", "curate", "notes", &again, "accept", "--key", "producer", n[0], n[1],
    ]);
    // Bob has used his two files of the day: a third is refused at
    // validation for the quota (a non-zero exit with the report on stdout).
    let refused = |file: &std::path::Path, key: &str| {
        let out = h
            .cmd(&[
                "datanet",
                "contribute",
                "notes",
                file.to_str().unwrap(),
                "--key",
                key,
                n[0],
                n[1],
                "--json",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "a rejection exits non-zero");
        let stdout = crate::harness::text(&out.stdout);
        let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        v[0]["report"].clone()
    };
    let quota = refused(&parts[1], "bob");
    assert_eq!(quota["rejection"]["reason"], "quota_exceeded", "{quota}");
    // Carol copies Alice's pending file: all duplicates, rejected at
    // validation, every row named as a duplicate.
    let copy = refused(&parts[0], "carol");
    assert_eq!(copy["rejection"]["reason"], "all_duplicates", "{copy}");
    let copied_rows = copy["rows"].as_array().unwrap().len() as u64;
    assert!(copied_rows > 0);
    assert_eq!(copy["duplicates_rejected"], copied_rows, "{copy}");

    // Rejections at validation count in the leaderboard.
    let board = h.json(&["datanet", "leaderboard", "notes", n[0], n[1]]);
    let line = |who: &str| {
        board
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["contributor"] == h.address(who).to_string())
            .unwrap_or_else(|| panic!("{who} not on {board}"))
            .clone()
    };
    let (a, b, c) = (line("alice"), line("bob"), line("carol"));
    // Alice: two pending contributions on the ledger, one quota refusal.
    assert_eq!(a["contributions"], 2);
    assert_eq!(a["rejected_at_validation"], 1, "{a}");
    assert_eq!(a["acceptance_bps"], 0);
    // Bob: 1 accepted of 2 on the ledger + 1 refused at validation.
    assert_eq!(b["contributions"], 2);
    assert_eq!(
        (b["accepted"].as_u64(), b["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(b["rejected_at_validation"], 1, "{b}");
    assert_eq!(b["acceptance_bps"], 3_333);
    // Carol: nothing on the ledger, one all-duplicate refusal.
    assert_eq!(
        (
            c["contributions"].as_u64(),
            c["rejected_at_validation"].as_u64()
        ),
        (Some(0), Some(1)),
        "{c}"
    );
    assert_eq!(c["duplicates_rejected"], copied_rows, "{c}");
    assert_eq!(c["acceptance_bps"], 0);
}
