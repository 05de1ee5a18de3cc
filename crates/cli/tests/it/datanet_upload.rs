//! Contribution uploads over HTTP: a raw body or a multipart form, with
//! the datanet's `max_file_bytes` enforced while the body streams in.

use serde_json::Value;
use trib_client::signed_read;
use trib_node::types::SecretKey;

use crate::datanets::fixture;
use crate::harness::{get_json, http, NodeProc, TestHome};

const BOUNDARY: &str = "trib-test-boundary-7d1f";

/// A `multipart/form-data` body: text fields, then the file part.
fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// An upload signed by `key` (the node takes uploads only from their
/// contributor).
fn post(url: &str, content_type: &str, body: Vec<u8>, key: &SecretKey) -> (u16, Value) {
    let parsed = reqwest::Url::parse(url).unwrap();
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let mut req = http().post(url).header("content-type", content_type);
    for (k, v) in signed_read::sign(key, "POST", &path, &body, signed_read::now()) {
        req = req.header(k, v);
    }
    let r = req.body(body).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn files_upload_as_raw_bodies_or_multipart_forms_and_oversized_ones_are_refused_while_streaming() {
    let h = TestHome::init_dev();
    let node = NodeProc::start(&h, 100);
    let n = node.node_args();
    let url = node.url.clone();
    h.ok(&[
        "datanet",
        "create",
        "founding",
        "--max-file-bytes",
        "4000",
        "--key",
        "producer",
        n[0],
        n[1],
    ]);
    let key = h.key("producer");
    let post = |url: &str, content_type: &str, body: Vec<u8>| post(url, content_type, body, &key);
    let uploads = format!("{url}/v1/datanets/founding/contributions");
    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");
    let alice = h.address("producer").to_string();
    let declaration = std::fs::read(fixture("declaration.md")).unwrap();
    assert!(declaration.len() < 4_000);

    // A multipart form: the file part names the file, the contributor is a
    // form field; the report is the same as for a raw upload.
    let (s, v) = post(
        &uploads,
        &multipart,
        form(
            &[("contributor", &alice)],
            Some(("declaration.md", &declaration)),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let report = &v["report"];
    assert_eq!(report["file_name"], "declaration.md");
    assert_eq!(report["kind"], "md");
    assert_eq!(report["contributor"], alice.as_str());
    assert!(report["rows_accepted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(v["action"]["type"], "contribute", "{v}");

    // The same bytes as a raw body under another name: every row is a
    // duplicate of the form upload's, so both paths stored the same rows.
    let (s, v) = post(
        &format!("{uploads}?contributor={alice}&file_name=copy.md"),
        "application/octet-stream",
        declaration.clone(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["report"]["rejection"]["reason"], "all_duplicates", "{v}");
    assert!(v["action"].is_null());

    // Over max_file_bytes (4,000): 413 naming the datanet and the limit,
    // raw or multipart, and nothing is stored or counted.
    let big = std::fs::read(fixture("constitution.txt")).unwrap();
    assert!(big.len() > 4_000);
    let (s, v) = post(
        &format!("{uploads}?contributor={alice}&file_name=constitution.txt"),
        "text/plain",
        big.clone(),
    );
    assert_eq!((s, code(&v)), (413, "file_too_large"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"founding\"") && message.contains("4000"),
        "{message}"
    );
    let (s, v) = post(
        &uploads,
        &multipart,
        form(&[("contributor", &alice)], Some(("constitution.txt", &big))),
    );
    assert_eq!((s, code(&v)), (413, "file_too_large"), "{v}");
    let (_, listed) = get_json(&format!("{uploads}?limit=10"));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let (_, board) = get_json(&format!("{url}/v1/datanets/founding/leaderboard"));
    // Only the duplicate upload counts against the contributor; the two
    // refused at the door were never validated.
    assert_eq!(board.as_array().unwrap().len(), 1, "{board}");
    assert_eq!(board[0]["rejected_at_validation"], 1, "{board}");

    // Without a `contributor` field the signer contributes (uploads are
    // signed, so the field is no longer needed).
    let (s, v) = post(
        &uploads,
        &multipart,
        form(&[], Some(("declaration.md", &declaration))),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["report"]["contributor"], alice, "{v}");
    assert_eq!(v["report"]["rejection"]["reason"], "all_duplicates", "{v}");
    // Malformed requests name what is missing or unexpected.
    let (s, v) = post(&uploads, &multipart, form(&[("contributor", &alice)], None));
    assert_eq!((s, code(&v)), (400, "bad_multipart"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no `file` part"));
    let (s, v) = post(
        &uploads,
        &multipart,
        form(&[("contributor", &alice), ("colour", "red")], None),
    );
    assert_eq!((s, code(&v)), (400, "bad_multipart"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"));
    let (s, v) = post(
        &format!("{url}/v1/datanets/nowhere/contributions?contributor={alice}&file_name=a.txt"),
        "text/plain",
        b"hello".to_vec(),
    );
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
}
