//! Who owns a node job: every submission is a request signed by its owner
//! (the signed-request headers of datanet reads); `?owner=ADDR` must be the
//! signer; `trib factory submit --key` signs it.

use std::path::Path;

use serde_json::Value;
use trib_client::signed_read;

use crate::factory::job_toml;
use crate::harness::{http, NodeProc, TestHome};

/// `POST path` with `body` and the given extra headers: status and JSON.
fn post(url: &str, path: &str, body: &str, headers: &[(&'static str, String)]) -> (u16, Value) {
    let mut req = http().post(format!("{url}{path}")).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn a_job_names_an_owner_only_in_a_request_that_owner_signed() {
    let h = TestHome::init_dev();
    let model = h.jobs_model();
    let data = crate::datanets::fixture("constitution.txt");
    h.allow_job_data(data.parent().unwrap());
    let node = NodeProc::start(&h, 200);
    let n = node.node_args();
    let url = n[1].to_string();
    h.ok(&["keys", "new", "alice"]);
    h.ok(&["keys", "new", "bob"]);
    let (alice, bob) = (h.key("alice"), h.key("bob"));
    let toml = job_toml(
        model,
        &format!("\"{}\"", data.display()),
        Path::new("ignored"),
        1,
    );
    let path = format!("/v1/jobs?owner={}", alice.address());
    let now = signed_read::now();

    // Unsigned, naming an owner: 401 that says a signature is needed.
    let (s, v) = post(&url, &path, &toml, &[]);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "missing_signature", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&alice.address().to_string()),
        "{v}"
    );

    // Signed by bob, naming alice: 403.
    let (s, v) = post(
        &url,
        &path,
        &toml,
        &signed_read::sign(&bob, "POST", &path, toml.as_bytes(), now),
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "owner_mismatch", "{v}");

    // Bob's signature presented with alice's public key: 401.
    let mut forged = signed_read::sign(&bob, "POST", &path, toml.as_bytes(), now);
    forged[0].1 = alice.public_key().to_hex();
    forged.retain(|(k, _)| *k != signed_read::HEADER_ADDRESS);
    let (s, v) = post(&url, &path, &toml, &forged);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "bad_signature", "{v}");

    // Alice's signature over another body: 401.
    let (s, v) = post(
        &url,
        &path,
        &toml,
        &signed_read::sign(&alice, "POST", &path, b"another job", now),
    );
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "bad_signature", "{v}");

    // Signed by alice: 202, owned by alice; the same headers again are a replay.
    let signed = signed_read::sign(&alice, "POST", &path, toml.as_bytes(), now);
    let (s, v) = post(&url, &path, &toml, &signed);
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["owner"], alice.address().to_string(), "{v}");
    let (s, v) = post(&url, &path, &toml, &signed);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "replayed_signature", "{v}");

    // Without an owner, unsigned: no anonymous jobs any more (401), and
    // without `owner`, signed: owned by the signer.
    let (s, v) = post(&url, "/v1/jobs", &toml, &[]);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "missing_signature", "{v}");
    let (s, v) = post(
        &url,
        "/v1/jobs",
        &toml,
        &signed_read::sign(&alice, "POST", "/v1/jobs", toml.as_bytes(), now),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["owner"], alice.address().to_string(), "{v}");

    // The CLI signs when given a key.
    let job = h.root.join("job.toml");
    std::fs::write(&job, &toml).unwrap();
    let v = h.json(&[
        "factory",
        "submit",
        job.to_str().unwrap(),
        "--key",
        "bob",
        "--detach",
        n[0],
        n[1],
    ]);
    assert_eq!(v["owner"], bob.address().to_string(), "{v}");
}
