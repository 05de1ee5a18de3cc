//! Paid serving on a running node: fee reservation (concurrent requests
//! never settle more than the payer's allowance, and every admitted request
//! settles), who may load and unload adapters, and a real adapter served
//! over HTTP on SmolLM2; and (`mid_stream`) every served token paid when
//! the allowance is revoked, the balance drained or the client gone while
//! an answer streams.

use std::time::Duration;

use serde_json::{json, Value};
use trib_ledger::inference_fee;
use trib_types::{Amount, TxHash};

use crate::test_fixtures::{PaidHome, PaidNode};
use trib_client::wire::TxStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_settle_more_than_the_allowance_and_all_admitted_ones_settle() {
    let h = PaidHome::new();
    let n = h.start().await;
    n.register_base().await;
    let prompt = "the quick brown fox jumps over the lazy dog";
    let max_tokens = 24;
    // Learn the prompt's token count from a rich user's answer.
    let (_, rich) = n.user(7, 100, Amount::open(100)).await;
    let body = json!({ "model": h.base_name, "prompt": prompt, "max_tokens": max_tokens });
    let (s, v) = n.post("/v1/completions", Some(&rich), body.clone()).await;
    assert_eq!(s, 200, "{v}");
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap() as u32;
    let params = n.client.params().await.unwrap();
    let max_fee = inference_fee(
        prompt_tokens,
        max_tokens,
        params.base_price_in_per_1k,
        params.base_price_out_per_1k,
    )
    .unwrap();
    // Room for three requests at their largest fee, not four.
    let allowance = Amount(max_fee.0 * 3 + max_fee.0 / 2);
    let (user, key) = n.user(8, 100, allowance).await;
    let before = n.client.account(&user.address()).await.unwrap().balance;

    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (http, url, key, body) = (n.http.clone(), n.node.url(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/v1/completions"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut settled_txs = Vec::new();
    let mut fees = 0u128;
    let mut refused = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => {
                assert!(v.get("settlement_error").is_none(), "{v}");
                let tx: TxHash = serde_json::from_value(v["settlement_tx"].clone()).unwrap();
                settled_txs.push(tx);
                fees += v["fee"]["base_units"]
                    .as_str()
                    .unwrap()
                    .parse::<u128>()
                    .unwrap();
            }
            402 => {
                refused += 1;
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(msg.contains("held for its requests in flight"), "{msg}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(
        refused > 0,
        "the allowance covers at most 3 requests at once"
    );
    assert!(!settled_txs.is_empty());
    assert!(
        fees <= allowance.0,
        "settled {fees} > allowance {}",
        allowance.0
    );
    // Every settlement the node submitted commits (none is dropped for lack
    // of funds), and the ledger charged exactly the reported fees.
    for tx in &settled_txs {
        let view = n
            .client
            .wait_for_commit(tx, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(view.status, TxStatus::Committed);
    }
    let after = n.client.account(&user.address()).await.unwrap().balance;
    assert_eq!(before.0 - after.0, fees);
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_operators_key_may_load_or_unload_adapters() {
    let h = PaidHome::new();
    let n = h.start().await;
    n.register_base().await;
    let id = h.write_adapter(&h.adapter_spec(0.5, 3));
    n.register_adapter(id, "ops-lora").await;
    let (_, user_key) = n.user(9, 10, Amount::open(1)).await;
    let operator_key = h.key_for(h.producer.address());
    let load = json!({ "action": "load", "model": id.to_string() });
    let unload = json!({ "action": "unload", "model": id.to_string() });

    let (s, v) = n.post("/v1/adapters", None, load.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing API key"),
        "{v}"
    );
    let (s, v) = n
        .post("/v1/adapters", Some("trib-sk-nope"), load.clone())
        .await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = n.post("/v1/adapters", Some(&user_key), load.clone()).await;
    assert_eq!(s, 403, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("only the node operator may load or unload adapters"),
        "{msg}"
    );
    assert!(msg.contains(&h.producer.address().to_string()), "{msg}");
    // Refused requests changed nothing.
    let (_, listed) = n.get("/v1/adapters").await;
    assert_eq!(listed["cache"]["adapters"], json!([]), "{listed}");
    assert_eq!(listed["cache"]["loads"], 0, "{listed}");

    let (s, v) = n.post("/v1/adapters", Some(&operator_key), load).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["loaded"], true);
    let (_, listed) = n.get("/v1/adapters").await;
    assert!(
        listed["cache"].to_string().contains(&id.to_string()),
        "{listed}"
    );

    let (s, v) = n
        .post("/v1/adapters", Some(&user_key), unload.clone())
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = n.post("/v1/adapters", Some(&operator_key), unload).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["loaded"], false);
    assert!(v["freed_bytes"].as_u64().unwrap() > 0, "{v}");
    n.node.shutdown().await.unwrap();
}

/// A chat answer through the node's HTTP API: its text and token count.
async fn chat(n: &PaidNode, key: &str, model: &str) -> Value {
    let body = json!({
        "model": model,
        "messages": [{ "role": "user", "content": "Tell me a short story about a boat." }],
        "max_tokens": 12,
        "temperature": 0,
    });
    let (s, v) = n.post("/v1/chat/completions", Some(key), body).await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_adapter_on_smollm2_answers_over_http_differently_from_the_base_and_its_receipt_settles(
) {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let Ok(model) = trib_model::locate_smollm2(&models) else {
        eprintln!(
            "SKIPPED: no SmolLM2 file in {} (scripts/fetch-model.sh)",
            models.display()
        );
        return;
    };
    let h = PaidHome::with_model(&model);
    // A rank-8 PEFT adapter on all seven projections, B ~ U(-0.3, 0.3).
    let id = h.write_adapter(&h.adapter_spec(0.3, 42));
    let n = h.start().await;
    n.register_base().await;
    n.register_adapter(id, "smol-random-lora").await;
    let (user, key) = n.user(5, 10, Amount::open(1)).await;
    let before = n.client.account(&user.address()).await.unwrap().balance;

    let base = chat(&n, &key, &h.base_name).await;
    let tuned = chat(&n, &key, &id.to_string()).await;
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(!text(&base).trim().is_empty(), "{base}");
    assert!(!text(&tuned).trim().is_empty(), "{tuned}");
    eprintln!("base: {:?}\nadapter: {:?}", text(&base), text(&tuned));
    assert_ne!(
        text(&base),
        text(&tuned),
        "the adapter changed nothing: {base} {tuned}"
    );
    assert_eq!(tuned["model"], id.to_string(), "{tuned}");

    // The adapter's answer is settled at the adapter's price into a receipt
    // naming the adapter.
    let tx: TxHash = serde_json::from_value(tuned["settlement_tx"].clone()).unwrap();
    let view = n
        .client
        .wait_for_commit(&tx, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(view.status, TxStatus::Committed);
    let receipt = tuned["receipt_id"].as_str().unwrap();
    let (s, r) = n.get(&format!("/v1/receipts/{receipt}")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["receipt"]["adapter"],
        serde_json::to_value(id).unwrap(),
        "{r}"
    );
    let fee: u128 = tuned["fee"]["base_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let usage = &tuned["usage"];
    let expected = inference_fee(
        usage["prompt_tokens"].as_u64().unwrap() as u32,
        usage["completion_tokens"].as_u64().unwrap() as u32,
        Amount::parse_open("0.002").unwrap(),
        Amount::parse_open("0.004").unwrap(),
    )
    .unwrap();
    assert_eq!(fee, expected.0);
    assert_eq!(
        serde_json::from_value::<Amount>(r["receipt"]["fee"].clone())
            .unwrap()
            .0,
        fee
    );
    let base_tx: TxHash = serde_json::from_value(base["settlement_tx"].clone()).unwrap();
    n.client
        .wait_for_commit(&base_tx, Duration::from_secs(30))
        .await
        .unwrap();
    let base_fee: u128 = base["fee"]["base_units"].as_str().unwrap().parse().unwrap();
    let after = n.client.account(&user.address()).await.unwrap().balance;
    assert_eq!(before.0 - after.0, fee + base_fee);
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adapters_come_from_the_object_store_the_serving_table_names() {
    // A store outside the home, named by URL (`file://`: the same code path
    // as `s3://`, through object_store).
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let h = PaidHome::tiny_with(|c| c.serving.adapter_store = Some(url.clone()));
    let id = h.write_adapter_into(shared.path(), &h.adapter_spec(0.5, 11));
    let n = h.start().await;
    n.register_base().await;
    n.register_adapter(id, "shared-lora").await;
    let (_, key) = n.user(12, 10, Amount::open(1)).await;

    let (s, v) = n
        .post(
            "/v1/completions",
            Some(&key),
            json!({ "model": id.to_string(), "prompt": "hello", "max_tokens": 3 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["receipt_id"].is_string(), "{v}");
    // Nothing of it is in the home's directory store.
    assert!(!h
        .home()
        .root()
        .join("adapters")
        .join(id.to_string())
        .exists());
    let (_, listed) = n.get("/v1/adapters").await;
    assert_eq!(listed["store"], json!([id.to_string()]), "{listed}");
    assert_eq!(
        listed["cache"]["store"],
        format!("object store {url}"),
        "{listed}"
    );
    assert_eq!(listed["cache"]["loads"], 1, "{listed}");
    n.node.shutdown().await.unwrap();

    // A URL that names no usable store stops the node from starting, and
    // says which setting is wrong.
    let h = PaidHome::tiny_with(|c| {
        c.serving.adapter_store = Some("file:///no/such/adapter/dir".into())
    });
    let overrides = crate::node::NodeOverrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        block_interval: None,
    };
    let e = crate::node::RunningNode::start(&h.home(), overrides)
        .await
        .err()
        .expect("an unusable adapter store is refused");
    let msg = e.to_string();
    assert!(
        msg.contains("[serving] adapter_store") && msg.contains("is not a directory"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_other_keys_are_served() {
    // Two requests at once, then one a minute.
    let h = PaidHome::tiny_with(|c| {
        c.serving.rate_limit_per_minute = 1;
        c.serving.rate_limit_burst = 2;
    });
    let n = h.start().await;
    n.register_base().await;
    let (_, alice) = n.user(13, 10, Amount::open(1)).await;
    let (_, bob) = n.user(14, 10, Amount::open(1)).await;
    let body = json!({ "model": h.base_name, "prompt": "hello", "max_tokens": 2 });
    for _ in 0..2 {
        let (s, v) = n.post("/v1/completions", Some(&alice), body.clone()).await;
        assert_eq!(s, 200, "{v}");
    }
    let r = n
        .http
        .post(format!("{}/v1/completions", n.node.url()))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    // Another account's key has its own bucket.
    let (s, v) = n.post("/v1/completions", Some(&bob), body).await;
    assert_eq!(s, 200, "{v}");
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_adapters_and_traversal_ids_are_refused_over_http_and_the_node_keeps_serving() {
    let h = PaidHome::new();
    // NaN weights, another base model, a corrupted weights file: each
    // registered on the ledger, so only the files are wrong.
    let nan = h.write_adapter(&trib_serve::RandomAdapter {
        b_scale: f32::NAN,
        ..h.adapter_spec(0.5, 21)
    });
    let other_base = h.write_adapter(&trib_serve::RandomAdapter::qv_r8(
        "meta-llama/Llama-3.1-8B",
        22,
    ));
    let garbage = h.write_adapter(&h.adapter_spec(0.5, 23));
    std::fs::write(
        h.home()
            .root()
            .join("adapters")
            .join(garbage.to_string())
            .join(trib_serve::ADAPTER_WEIGHTS_FILE),
        b"\x10\0\0\0\0\0\0\0not json",
    )
    .unwrap();
    let good = h.write_adapter(&h.adapter_spec(0.5, 24));
    let n = h.start().await;
    n.register_base().await;
    for (id, name) in [
        (nan, "nan-lora"),
        (other_base, "llama-lora"),
        (garbage, "garbage-lora"),
        (good, "good-lora"),
    ] {
        n.register_adapter(id, name).await;
    }
    let (user, key) = n.user(15, 10, Amount::open(1)).await;
    let operator = h.key_for(h.producer.address());
    let before = n.client.account(&user.address()).await.unwrap().balance;
    let ask = |model: String| json!({ "model": model, "prompt": "hello", "max_tokens": 3 });

    for (id, needle) in [
        (nan, "non-finite"),
        (other_base, "trained for base model"),
        (garbage, "safetensors"),
    ] {
        let (s, v) = n
            .post("/v1/completions", Some(&key), ask(id.to_string()))
            .await;
        assert_eq!(s, 422, "{v}");
        assert_eq!(v["error"]["code"], "adapter_rejected", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{id}: {msg} should name {needle:?}");
        // An explicit load is refused the same way.
        let (s, v) = n
            .post(
                "/v1/adapters",
                Some(&operator),
                json!({ "action": "load", "model": id.to_string() }),
            )
            .await;
        assert_eq!(s, 422, "{v}");
    }
    // Ids that try to leave the store never reach it.
    for model in ["../../etc/passwd", "..", "a/b", "adapters/../x"] {
        let (s, v) = n
            .post("/v1/completions", Some(&key), ask(model.into()))
            .await;
        assert_eq!(s, 404, "{model}: {v}");
        assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    }
    // Nothing refused was charged, nothing refused stays in the cache, and
    // the node still serves a good adapter.
    assert_eq!(
        n.client.account(&user.address()).await.unwrap().balance,
        before
    );
    let (_, listed) = n.get("/v1/adapters").await;
    assert_eq!(listed["cache"]["adapters"], json!([]), "{listed}");
    let (s, v) = n
        .post("/v1/completions", Some(&key), ask(good.to_string()))
        .await;
    assert_eq!(s, 200, "{v}");
    n.node.shutdown().await.unwrap();
}

/// Every served token is paid, whatever happens while an answer streams:
/// the allowance revoked, the balance drained, the client gone. Service
/// level (the serving path the HTTP handlers call, blocks produced by
/// hand), so each step happens exactly between two tokens.
mod mid_stream {
    use std::time::Duration;

    use trib_ledger::{Action, InferenceReceipt, SignedTransaction, Transaction};
    use trib_serve::{Prompt, SamplingParams, ServeError};
    use trib_types::{Amount, Canonical, SecretKey};

    use crate::attribution::tests::World;
    use crate::chain::SubmitError;
    use trib_attribution::answer::StoredAnswer;

    use crate::serving::{receipts_dir, AnswerEvent, Generation, PaidRequest, ServingError};

    /// A tiny-model world where carol holds 100 OPEN and approved the
    /// operator for `allowance`, the base model registered.
    fn paying_world(allowance: Amount) -> World {
        let w = World::new();
        w.commit(
            &w.producer,
            Action::Transfer {
                to: w.carol.address(),
                amount: Amount::open(100),
            },
        );
        let base = w.home.load_config().unwrap().base_model.unwrap();
        w.commit(
            &w.producer,
            crate::test_fixtures::register_base_model(&base),
        );
        w.commit(
            &w.carol,
            Action::ApproveOperator {
                operator: w.producer.address(),
                allowance,
            },
        );
        w
    }

    /// `action` signed by `key` with its next nonce (not submitted).
    fn signed(w: &World, key: &SecretKey, action: Action) -> SignedTransaction {
        Transaction {
            chain_id: w.home.load_genesis().unwrap().chain_id,
            sender: key.public_key(),
            nonce: w.chain.account(&key.address()).unwrap().next_nonce,
            fee: w.chain.ledger().params().unwrap().min_fee,
            action,
        }
        .sign(key)
    }

    /// `POST /v1/tx` of `stx` through the node's router: status and body.
    async fn post_tx(w: &World, stx: &SignedTransaction) -> (u16, serde_json::Value) {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;
        let app = crate::api::router(
            crate::api::AppState {
                chain: w.chain.clone(),
            },
            1 << 20,
        );
        let req = Request::post("/v1/tx")
            .header("content-type", "text/plain")
            .body(Body::from(hex::encode(stx.encode())))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Carol's `ApproveOperator` of `allowance` for the operator (0
    /// revokes), signed, not submitted.
    fn approval(w: &World, allowance: Amount) -> SignedTransaction {
        signed(
            w,
            &w.carol,
            Action::ApproveOperator {
                operator: w.producer.address(),
                allowance,
            },
        )
    }

    /// Carol asks the base model for up to `max_tokens` (greedy, so the
    /// run is the same every time).
    async fn ask(w: &World, max_tokens: usize) -> Result<Generation, ServingError> {
        let prompt = "once upon a time there was a";
        let sampling = SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        };
        w.serving
            .admit(PaidRequest {
                payer: w.carol.address(),
                model: w.serving.base_name.clone(),
                prompt_text: prompt.into(),
                prompt: Prompt::Text(prompt.into()),
                sampling,
                max_tokens: Some(max_tokens),
                stop: Vec::new(),
                n: None,
            })
            .await
    }

    /// Reads `n` tokens; returns their text.
    async fn read(g: &mut Generation, n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            match g.next().await {
                Some(AnswerEvent::Delta(t)) => text.push_str(&t),
                _ => panic!("the answer ended after {i} tokens"),
            }
        }
        text
    }

    /// Reads to the end; the settled receipt, committed.
    async fn finish(w: &World, g: &mut Generation) -> InferenceReceipt {
        loop {
            match g.next().await {
                Some(AnswerEvent::Delta(_)) => {}
                Some(AnswerEvent::Done { settled, .. }) => {
                    let s = (*settled).unwrap();
                    w.block();
                    return w
                        .chain
                        .ledger()
                        .receipt(&s.settled.receipt)
                        .unwrap()
                        .expect("the settlement committed");
                }
                _ => panic!("the answer failed"),
            }
        }
    }

    /// The first answer stored in the receipts directory (written once its
    /// settlement is in the mempool), waiting up to 10 s.
    async fn stored_answer(w: &World) -> StoredAnswer {
        let dir = receipts_dir(&w.home);
        for _ in 0..500 {
            let json = std::fs::read_dir(&dir).ok().and_then(|d| {
                d.filter_map(|e| e.ok())
                    .find(|e| e.path().extension().is_some_and(|x| x == "json"))
            });
            if let Some(e) = json {
                return serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no answer was settled");
    }

    fn payment_refusal(r: Result<Generation, ServingError>) -> String {
        match r {
            Err(ServingError::Engine(ServeError::PaymentRequired { reason })) => reason,
            Err(e) => panic!("expected 402, got {e}"),
            Ok(_) => panic!("expected 402, the request was admitted"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allowance_revoked_while_an_answer_streams_waits_until_the_answer_is_paid() {
        let w = paying_world(Amount::open(10));
        let mut g = ask(&w, 40).await.unwrap();
        read(&mut g, 2).await;
        // Revoking (or lowering below what the request may cost) is held
        // against the reservation: refused, naming why.
        let revoke = approval(&w, Amount::ZERO);
        let err = w.chain.submit(revoke.clone()).unwrap_err();
        assert!(
            matches!(
                err,
                SubmitError::HeldForInference {
                    what: "allowance",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("reserved by this node"), "{err}");
        // Over HTTP: 409 `held_for_inference`.
        let (status, v) = post_tx(&w, &revoke).await;
        assert_eq!(status, 409, "{v}");
        assert_eq!(v["error"]["code"], "held_for_inference", "{v}");
        // Raising it is fine meanwhile.
        w.chain.submit(approval(&w, Amount::open(20))).unwrap();
        w.block();
        let receipt = finish(&w, &mut g).await;
        assert_eq!(receipt.payer, w.carol.address());
        assert!(receipt.completion_tokens >= 2);
        // Paid and released: now the revocation goes through.
        let revoke = approval(&w, Amount::ZERO);
        w.chain.submit(revoke).unwrap();
        w.block();
        let allowance = w
            .chain
            .ledger()
            .allowance(&w.carol.address(), &w.producer.address())
            .unwrap();
        assert_eq!(allowance, Amount::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_balance_drained_while_an_answer_streams_waits_until_the_answer_is_paid() {
        let w = paying_world(Amount::open(10));
        let mut g = ask(&w, 40).await.unwrap();
        read(&mut g, 2).await;
        let balance = w.chain.account(&w.carol.address()).unwrap().account.balance;
        let min_fee = w.chain.ledger().params().unwrap().min_fee;
        let drain = signed(
            &w,
            &w.carol,
            Action::Transfer {
                to: w.alice.address(),
                amount: Amount(balance.0 - min_fee.0),
            },
        );
        let err = w.chain.submit(drain).unwrap_err();
        assert!(
            matches!(
                err,
                SubmitError::HeldForInference {
                    what: "balance",
                    ..
                }
            ),
            "{err}"
        );
        // A transfer that leaves enough for the reservation passes.
        w.chain
            .submit(signed(
                &w,
                &w.carol,
                Action::Transfer {
                    to: w.alice.address(),
                    amount: Amount::open(50),
                },
            ))
            .unwrap();
        w.block();
        let receipt = finish(&w, &mut g).await;
        let after = w.chain.account(&w.carol.address()).unwrap().account.balance;
        assert_eq!(
            after.0,
            balance.0 - Amount::open(50).0 - min_fee.0 - receipt.fee.0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_revocation_or_drain_counts_at_admission() {
        let w = paying_world(Amount::open(10));
        // A revocation waiting in the mempool: the request is refused
        // before any compute, as it would be once the revocation commits.
        w.chain.submit(approval(&w, Amount::ZERO)).unwrap();
        let reason = payment_refusal(ask(&w, 40).await);
        assert!(
            reason.contains("0 OPEN once its pending approval commits"),
            "{reason}"
        );
        w.block();
        w.commit(
            &w.carol,
            Action::ApproveOperator {
                operator: w.producer.address(),
                allowance: Amount::open(10),
            },
        );
        // A transfer of the whole balance waiting in the mempool: the same.
        let balance = w.chain.account(&w.carol.address()).unwrap().account.balance;
        let min_fee = w.chain.ledger().params().unwrap().min_fee;
        w.chain
            .submit(signed(
                &w,
                &w.carol,
                Action::Transfer {
                    to: w.alice.address(),
                    amount: Amount(balance.0 - min_fee.0),
                },
            ))
            .unwrap();
        let reason = payment_refusal(ask(&w, 40).await);
        assert!(reason.contains("can pay at most 0 OPEN"), "{reason}");
        assert!(
            reason.contains("taken by its pending transactions"),
            "{reason}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_whose_client_goes_away_after_n_tokens_is_charged_exactly_n() {
        let w = paying_world(Amount::open(10));
        let mut g = ask(&w, 60).await.unwrap();
        let sent = read(&mut g, 3).await;
        // The SSE stream dropped by the server when the client disconnects
        // drops the generation with it.
        drop(g);
        // Settled on the blocking pool: the stored answer appears once its
        // settlement is in the mempool.
        let stored = stored_answer(&w).await;
        assert_eq!(stored.answer, sent);
        // Served and charged, not yet in a block: the settlement lag of
        // `/metrics`.
        assert_eq!(w.chain.pending_counts().settlements, 1);
        w.block();
        assert_eq!(w.chain.pending_counts().settlements, 0);
        let receipt = w
            .chain
            .ledger()
            .receipt(&stored.receipt)
            .unwrap()
            .expect("the partial answer's settlement committed");
        assert_eq!(receipt.completion_tokens, 3);
        let schedule = w.serving.billing.schedule(None).unwrap();
        assert_eq!(
            Some(receipt.fee),
            schedule.fee(receipt.prompt_tokens, 3),
            "the fee of the prompt and the 3 tokens sent"
        );
        // Settled once: no second receipt appears.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dir = receipts_dir(&w.home);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // The reservation was released with it: nothing is held against
        // carol any more, so revoking the allowance is accepted.
        let revoke = approval(&w, Amount::ZERO);
        w.chain.submit(revoke).unwrap();
    }

    /// The same disconnect through the HTTP layer: the SSE body of
    /// `POST /v1/chat/completions` read for three chunks, then dropped (what
    /// hyper does when the client's connection closes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_sse_body_dropped_after_three_chunks_settles_three_tokens() {
        use axum::body::Body;
        use axum::http::Request;
        use futures::StreamExt;
        use tower::ServiceExt;

        use serde_json::json;

        use crate::apikeys::ApiKeys;

        let w = paying_world(Amount::open(10));
        let name = w.serving.base_name.clone();
        let key = ApiKeys::create(&ApiKeys::path_in(w.home.root()), w.carol.address()).unwrap();
        let app = crate::api::openai::routes(w.serving.clone());
        let body = json!({ "model": name, "messages": [{"role": "user", "content": "tell me a story"}],
            "max_tokens": 60, "temperature": 0, "stream": true });
        let req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.into_body().into_data_stream();
        let mut events = 0;
        while events < 3 {
            let chunk = stream.next().await.expect("more chunks").unwrap();
            events += String::from_utf8_lossy(&chunk).matches("data: ").count();
        }
        assert_eq!(events, 3, "one token per chunk");
        drop(stream);
        let stored = stored_answer(&w).await;
        w.block();
        let receipt = w.chain.ledger().receipt(&stored.receipt).unwrap().unwrap();
        assert_eq!(receipt.completion_tokens, 3);
        assert_eq!(receipt.payer, w.carol.address());
    }
}
