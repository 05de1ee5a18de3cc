//! The router in-process (`tower::ServiceExt::oneshot`): status codes and
//! typed error bodies for every kind of refusal, and that refusals change
//! nothing.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use trib_ledger::{verify_proof, Action, SignedTransaction, StateProof, Transaction};
use trib_types::{Amount, Canonical, SecretKey};

use super::{router, AppState};
use crate::chain::Chain;
use crate::home::{InitOptions, NodeHome};

struct Fixture {
    _dir: tempfile::TempDir,
    chain: Arc<Chain>,
    app: Router,
    rich: SecretKey,
    chain_id: String,
}

fn fixture(mempool_max_txs: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    let report = NodeHome::init(
        &root,
        InitOptions {
            dev: true,
            ..Default::default()
        },
    )
    .unwrap();
    let home = NodeHome::new(&root);
    let producer = home.keystore().unwrap().load("producer", None).unwrap();
    let chain = Arc::new(Chain::new(
        home.open_ledger().unwrap(),
        &report.genesis,
        producer.clone(),
        mempool_max_txs,
    ));
    let app = router(
        AppState {
            chain: chain.clone(),
        },
        4096,
    );
    Fixture {
        _dir: dir,
        chain,
        app,
        rich: producer,
        chain_id: report.genesis.chain_id,
    }
}

impl Fixture {
    fn transfer(&self, key: &SecretKey, nonce: u64, amount: Amount) -> SignedTransaction {
        Transaction {
            chain_id: self.chain_id.clone(),
            sender: key.public_key(),
            nonce,
            fee: Amount::parse_open("0.001").unwrap(),
            action: Action::Transfer {
                to: SecretKey::from_seed([42; 32]).address(),
                amount,
            },
        }
        .sign(key)
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON body {:?}", String::from_utf8_lossy(&bytes)));
        (status, json)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post_hex(&self, body: String) -> (StatusCode, Value) {
        self.call(
            Request::post("/v1/tx")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    async fn post_tx(&self, stx: &SignedTransaction) -> (StatusCode, Value) {
        self.post_hex(hex::encode(stx.encode())).await
    }

    async fn balance(&self, key: &SecretKey) -> String {
        let (s, v) = self.get(&format!("/v1/accounts/{}", key.address())).await;
        assert_eq!(s, StatusCode::OK);
        v["balance"].as_str().unwrap().to_string()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap()
}

#[tokio::test]
async fn a_valid_transfer_is_accepted_then_committed_with_its_receipt() {
    let f = fixture(100);
    let stx = f.transfer(&f.rich, 0, Amount::open(5));
    let (s, v) = f.post_tx(&stx).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["hash"], stx.hash().to_string());
    let (_, pending) = f.get(&format!("/v1/tx/{}", stx.hash())).await;
    assert_eq!(pending["status"], "pending");
    let (_, acct) = f.get(&format!("/v1/accounts/{}", f.rich.address())).await;
    assert_eq!(
        (acct["nonce"].as_u64(), acct["next_nonce"].as_u64()),
        (Some(0), Some(1))
    );

    let outcome = f.chain.produce_block().unwrap();
    assert_eq!(outcome.included, vec![stx.hash()]);
    let (s, v) = f.get(&format!("/v1/tx/{}", stx.hash())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["status"].as_str(), v["height"].as_u64()),
        (Some("committed"), Some(1))
    );
    assert!(v["receipt"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "transfer"));
    let (_, b) = f.get("/v1/blocks/latest").await;
    assert_eq!(b["header"]["height"], 1);
    assert_eq!(b["txs"][0], stx.hash().to_string());
}

#[tokio::test]
async fn a_json_transaction_body_is_accepted() {
    let f = fixture(100);
    let stx = f.transfer(&f.rich, 0, Amount::open(1));
    let req = Request::post("/v1/tx")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&stx).unwrap()))
        .unwrap();
    let (s, v) = f.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["hash"], stx.hash().to_string());
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_typed_error() {
    let f = fixture(100);
    let (s, v) = f.post_hex("zz-not-hex".into()).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_hex"));
    let (s, v) = f.post_hex("00ff".into()).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_tx"));
    let req = Request::post("/v1/tx")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"tx\": 1}"))
        .unwrap();
    let (s, v) = f.call(req).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_json"));
}

#[tokio::test]
async fn a_bad_signature_is_422_and_changes_nothing() {
    let f = fixture(100);
    let before = f.balance(&f.rich).await;
    let mut stx = f.transfer(&f.rich, 0, Amount::open(5));
    stx.signature.0[10] ^= 1;
    let (s, v) = f.post_tx(&stx).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_signature")
    );
    assert!(message(&v).contains(&f.rich.address().to_string()));
    assert_eq!(f.chain.pending(), 0);
    f.chain.produce_block().unwrap();
    assert_eq!(f.balance(&f.rich).await, before);
}

#[tokio::test]
async fn insufficient_balance_is_422_naming_have_and_need() {
    let f = fixture(100);
    let poor = SecretKey::from_seed([7; 32]);
    let (s, v) = f.post_tx(&f.transfer(&poor, 0, Amount::open(1))).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_balance")
    );
    assert!(
        message(&v).contains("have") && message(&v).contains("need"),
        "{v}"
    );
}

#[tokio::test]
async fn nonce_gaps_and_replays_are_409() {
    let f = fixture(100);
    let (s, v) = f.post_tx(&f.transfer(&f.rich, 3, Amount::open(1))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "nonce_gap"));
    let first = f.transfer(&f.rich, 0, Amount::open(1));
    assert_eq!(f.post_tx(&first).await.0, StatusCode::ACCEPTED);
    let (s, v) = f.post_tx(&first).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "duplicate"));
    f.chain.produce_block().unwrap();
    let (s, v) = f.post_tx(&f.transfer(&f.rich, 0, Amount::open(2))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "nonce_replay"));
}

#[tokio::test]
async fn wrong_chain_id_is_422() {
    let f = fixture(100);
    let mut tx = f.transfer(&f.rich, 0, Amount::open(1)).tx;
    tx.chain_id = "other-chain".into();
    let (s, v) = f.post_tx(&tx.sign(&f.rich)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "wrong_chain_id")
    );
}

#[tokio::test]
async fn oversize_bodies_and_transactions_are_413() {
    let f = fixture(100);
    // Over the router's 4096-byte request limit.
    let (s, v) = f.post_hex("00".repeat(5000)).await;
    assert_eq!((s, code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "oversize"));
    // Under the request limit but over max_tx_bytes (16 KiB): use raw bytes
    // on a router with a larger limit.
    let app = router(
        AppState {
            chain: f.chain.clone(),
        },
        1 << 20,
    );
    let mut tx = f.transfer(&f.rich, 0, Amount::open(1)).tx;
    tx.action = Action::Propose {
        title: "t".into(),
        description: "x".repeat(20_000),
        change: "min_fee=1".parse().unwrap(),
        deposit: Amount::open(10),
    };
    let req = Request::post("/v1/tx")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(tx.sign(&f.rich).encode()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_full_mempool_is_503() {
    let f = fixture(1);
    assert_eq!(
        f.post_tx(&f.transfer(&f.rich, 0, Amount::open(1))).await.0,
        StatusCode::ACCEPTED
    );
    let (s, v) = f.post_tx(&f.transfer(&f.rich, 1, Amount::open(1))).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "mempool_full")
    );
}

#[tokio::test]
async fn unknown_things_are_404_and_bad_identifiers_400() {
    let f = fixture(100);
    let zero = "0".repeat(64);
    for (uri, status, c) in [
        (format!("/v1/tx/{zero}"), StatusCode::NOT_FOUND, "not_found"),
        (
            "/v1/tx/xyz".to_string(),
            StatusCode::BAD_REQUEST,
            "bad_hash",
        ),
        (
            "/v1/blocks/99".to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/blocks/minus-one".to_string(),
            StatusCode::BAD_REQUEST,
            "bad_height",
        ),
        (
            "/v1/proposals/5".to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/proposals/x".to_string(),
            StatusCode::BAD_REQUEST,
            "bad_proposal_id",
        ),
        (
            "/v1/accounts/nope".to_string(),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (
            "/v1/proofs?key=bogus/1".to_string(),
            StatusCode::BAD_REQUEST,
            "bad_state_key",
        ),
        (
            "/v1/proofs".to_string(),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/proofs?key=params&height=7".to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v2/nothing".to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (s, v) = f.get(&uri).await;
        assert_eq!((s, code(&v)), (status, c), "{uri}: {v}");
    }
    let (s, v) = f
        .call(Request::delete("/v1/params").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn read_routes_answer_json() {
    let f = fixture(100);
    let (s, v) = f.get("/v1/status").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["chain_id"].as_str(), v["height"].as_u64()),
        (Some("tributary-dev"), Some(0))
    );
    let (_, p) = f.get("/v1/params").await;
    assert_eq!(p["gov_voting_period_blocks"], 5);
    let (_, sup) = f.get("/v1/supply").await;
    assert_eq!(sup["total"], Amount::open(1_000_000).0.to_string());
    let (_, ps) = f.get("/v1/proposals").await;
    assert_eq!(ps, serde_json::json!([]));
}

#[tokio::test]
async fn a_served_proof_verifies_against_the_block_state_root() {
    let f = fixture(100);
    f.chain.produce_block().unwrap();
    let (s, v) = f
        .get(&format!("/v1/proofs?key=account/{}", f.rich.address()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let value_bytes = v["value_bytes"].as_str().unwrap().to_string();
    let proof: StateProof = serde_json::from_value(v).unwrap();
    let (_, block) = f.get("/v1/blocks/1").await;
    let root = block["header"]["state_root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    verify_proof(root, &proof).unwrap();
    // The leaf's preimage is served with it, for clients without the decoders.
    assert_eq!(
        value_bytes,
        hex::encode(proof.value.as_ref().unwrap().encode())
    );
    // An absent key: no value, no bytes, and the proof shows the absence.
    let nobody = trib_types::SecretKey::from_seed([201; 32]).address();
    let (_, v) = f.get(&format!("/v1/proofs?key=account/{nobody}")).await;
    assert!(v["value_bytes"].is_null(), "{v}");
    let proof: StateProof = serde_json::from_value(v).unwrap();
    assert!(proof.value.is_none());
    verify_proof(root, &proof).unwrap();
}

/// The OpenAI-compatible and attribution routes sit behind the same body
/// limit as the ledger routes (they are merged before the layers): over
/// `max_request_bytes` a chat or text completion request or a trace is 413
/// `oversize`, not a 400 from the JSON extractor; under it the request is
/// served.
#[tokio::test]
async fn chat_and_trace_requests_over_the_request_limit_are_413_and_under_it_are_served() {
    use crate::test_fixtures::PaidHome;
    use serde_json::json;

    let h = PaidHome::tiny_with(|c| c.max_request_bytes = 4096);
    let n = h.start().await;
    n.register_base().await;
    let (_, key) = n.user(5, 10, Amount::open(10)).await;
    let chat = |content: String| {
        json!({ "model": h.base_name, "messages": [{"role": "user", "content": content}],
                "max_tokens": 2, "temperature": 0 })
    };

    let (s, v) = n
        .post(
            "/v1/chat/completions",
            Some(&key),
            chat("word ".repeat(1000)),
        )
        .await;
    assert_eq!((s, code(&v)), (413, "oversize"), "{v}");
    let (s, v) = n
        .post("/v1/chat/completions", Some(&key), chat("hello".into()))
        .await;
    assert_eq!(s, 200, "{v}");
    let text = |prompt: String| json!({ "model": h.base_name, "prompt": prompt, "max_tokens": 2 });
    let (s, v) = n
        .post("/v1/completions", Some(&key), text("word ".repeat(1000)))
        .await;
    assert_eq!((s, code(&v)), (413, "oversize"), "{v}");
    let (s, v) = n
        .post("/v1/completions", Some(&key), text("hello".into()))
        .await;
    assert_eq!(s, 200, "{v}");

    let trace = |model: &str, text: String| json!({ "model": model, "text": text });
    let (s, v) = n
        .post(
            "/v1/attribution/trace",
            None,
            trace(&h.base_name, "a".repeat(5000)),
        )
        .await;
    assert_eq!((s, code(&v)), (413, "oversize"), "{v}");
    // Under the limit the body is read: the unknown model is what is refused.
    let (s, v) = n
        .post(
            "/v1/attribution/trace",
            None,
            trace("nope", "a".repeat(3000)),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "model_not_found"), "{v}");
    n.node.shutdown().await.unwrap();
}

/// CORS is closed by default: a preflight from another origin gets no
/// `Access-Control-Allow-Origin`; with `cors_origins` set, only the listed
/// origin gets one. Every response carries `X-Content-Type-Options:
/// nosniff`, errors included.
#[tokio::test]
async fn cors_is_closed_unless_origins_are_listed_and_every_response_says_nosniff() {
    let f = fixture(10);
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v1/tx")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let state = || AppState {
        chain: f.chain.clone(),
    };
    let closed = super::router_with(state(), None, 4096, &[]);
    let r = closed
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(
        r.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    for uri in ["/v1/status", "/no/such/route"] {
        let r = closed
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            r.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
    }

    let open = super::router_with(state(), None, 4096, &["https://app.example".to_string()]);
    let r = open
        .clone()
        .oneshot(preflight("https://app.example"))
        .await
        .unwrap();
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let r = open
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(r
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}
