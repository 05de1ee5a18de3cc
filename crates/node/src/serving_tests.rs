//! The OpenAI-compatible endpoints end to end on a running node over the
//! tiny model: authentication, the 402 pre-check, errors, a paid answer
//! settled into a receipt with payout lines.

use std::time::Duration;

use serde_json::{json, Value};
use trib_types::{Amount, ReceiptId};

// A node serving the tiny model in its own home, base model registered.
use crate::test_fixtures::PaidNode as Fixture;

#[tokio::test]
async fn requests_without_a_known_key_are_401_and_unknown_models_are_404() {
    let f = Fixture::start().await;
    let body = json!({ "model": f.base_name, "prompt": "hello", "max_tokens": 4 });
    let (s, v) = f.post("/v1/completions", None, body.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing API key"));
    let (s, _) = f.post("/v1/completions", Some("trib-sk-00"), body).await;
    assert_eq!(s, 401);
    let (_, key) = f.user(3, 10, Amount::open(10)).await;
    let (s, v) = f
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({ "model": "no-such-adapter", "messages": [{"role": "user", "content": "hi"}] }),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-adapter"));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unfunded_account_gets_402_naming_have_and_need_and_nothing_changes() {
    let f = Fixture::start().await;
    let (user, key) = f.user(4, 0, Amount::ZERO).await;
    let before = f.client.account(&user.address()).await.unwrap();
    let (s, v) = f
        .post(
            "/v1/completions",
            Some(&key),
            json!({ "model": f.base_name, "prompt": "hello there", "max_tokens": 8 }),
        )
        .await;
    assert_eq!(s, 402, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("can pay at most 0 OPEN") && msg.contains("may cost up to"),
        "{msg}"
    );
    // No settlement was submitted: the mempool is empty and the account is as before.
    assert_eq!(f.client.status().await.unwrap().mempool_size, 0);
    assert!(!f.keys_path.parent().unwrap().join("receipts").exists());
    assert_eq!(f.client.account(&user.address()).await.unwrap(), before);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_request_is_400_with_the_numbers() {
    let f = Fixture::start().await;
    let (_, key) = f.user(5, 10, Amount::open(10)).await;
    let (s, v) = f
        .post(
            "/v1/completions",
            Some(&key),
            json!({ "model": f.base_name, "prompt": "hello", "max_tokens": 100000 }),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("maximum context length is 256") && msg.contains("100000"),
        "{msg}"
    );
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn request_sizes_over_the_limits_are_400_naming_the_limit_before_the_fee_check() {
    // A body limit above the prompt limit, so the prompt limit is what refuses.
    let h = crate::test_fixtures::PaidHome::tiny_with(|c| c.max_request_bytes = 4 << 20);
    let f = h.start().await;
    f.register_base().await;
    // No balance at all: any request that reached the fee check would be 402.
    let (_, broke) = f.user(9, 0, Amount::ZERO).await;
    let post = |body: Value| f.post("/v1/completions", Some(&broke), body);
    let base = &h.base_name;

    let (s, v) =
        post(json!({ "model": base, "prompt": "y".repeat(2 << 20), "max_tokens": 4 })).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("max_prompt_bytes") && msg.contains("2097152 bytes"),
        "{msg}"
    );

    let stops: Vec<String> = (0..30_000).map(|i| format!("s{i}")).collect();
    let (s, v) =
        post(json!({ "model": base, "prompt": "hi", "max_tokens": 4, "stop": stops })).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_stop_strings"),
        "{v}"
    );

    // u64::MAX does not wrap past the context check, under either name.
    for field in ["max_tokens", "max_completion_tokens"] {
        let (s, v) = post(json!({ "model": base, "prompt": "hi", field: u64::MAX })).await;
        assert_eq!(s, 400, "{field}: {v}");
        assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&u64::MAX.to_string()),
            "{v}"
        );
    }

    let (s, v) = post(json!({ "model": base, "prompt": "hi", "max_tokens": 4, "n": 1000 })).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("n = 1"),
        "{v}"
    );

    // Within every limit the same account meets the fee check.
    let (s, v) =
        post(json!({ "model": base, "prompt": "hi", "max_tokens": 4, "stop": ["s1"] })).await;
    assert_eq!(s, 402, "{v}");
    f.node.shutdown().await.unwrap();
}

/// One sample's value in a Prometheus text page (a metric without labels).
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_move_with_a_paid_answer_under_vllms_names() {
    let f = Fixture::start().await;
    let (_, key) = f.user(11, 10, Amount::open(5)).await;
    let scrape = || async {
        let r = f
            .http
            .get(format!("{}/metrics", f.node.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        r.text().await.unwrap()
    };
    let before = scrape().await;
    assert_eq!(sample(&before, "vllm:generation_tokens_total"), 0.0);
    assert_eq!(
        sample(&before, "vllm:time_to_first_token_seconds_count"),
        0.0
    );
    assert!(before.contains("# TYPE vllm:time_to_first_token_seconds histogram"));
    let (s, v) = f
        .post(
            "/v1/completions",
            Some(&key),
            json!({ "model": f.base_name, "prompt": "once upon a time", "max_tokens": 6 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let prompt = v["usage"]["prompt_tokens"].as_f64().unwrap();
    let completion = v["usage"]["completion_tokens"].as_f64().unwrap();
    let after = scrape().await;
    assert_eq!(sample(&after, "vllm:prompt_tokens_total"), prompt);
    assert_eq!(sample(&after, "vllm:generation_tokens_total"), completion);
    assert_eq!(
        sample(&after, "vllm:time_to_first_token_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(&after, "vllm:time_per_output_token_seconds_count"),
        completion - 1.0
    );
    assert!(sample(&after, "vllm:time_to_first_token_seconds_sum") > 0.0);
    // The engine retires the request just after its last token reaches
    // the client: the gauges reach 0 by a later scrape, not always this one.
    let mut idle = after.clone();
    for _ in 0..100 {
        if sample(&idle, "vllm:num_requests_running") == 0.0
            && sample(&idle, "vllm:num_requests_waiting") == 0.0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        idle = scrape().await;
    }
    assert_eq!(sample(&idle, "vllm:num_requests_running"), 0.0);
    assert_eq!(sample(&idle, "vllm:num_requests_waiting"), 0.0);
    assert!(sample(&after, "trib:block_height") >= 1.0);
    assert_eq!(sample(&after, "trib:adapter_cache_hits_total"), 0.0);
    // The answer's settlement waits in the mempool until the next block.
    let lag = sample(&after, "trib:settlements_pending");
    assert!(lag <= 1.0 && lag <= sample(&after, "trib:mempool_transactions"));
    assert_eq!(sample(&after, "trib:jobs_queued"), 0.0);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_paid_answer_is_settled_into_a_receipt_whose_payouts_sum_to_the_fee() {
    let f = Fixture::start().await;
    let (user, key) = f.user(6, 10, Amount::open(5)).await;
    let before = f.client.account(&user.address()).await.unwrap().balance;
    let (s, v) = f
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({ "model": f.base_name, "messages": [{"role": "user", "content": "hello"}],
                    "max_tokens": 6, "temperature": 0 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let usage = &v["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);
    let fee: u128 = v["fee"]["base_units"].as_str().unwrap().parse().unwrap();
    let receipt: ReceiptId = v["receipt_id"].as_str().unwrap().parse().unwrap();

    // The receipt appears once the settlement commits; the payer reads
    // its answer with a signed request (others get the receipt alone).
    let payer = trib_client::NodeClient::new(&f.node.url())
        .unwrap()
        .with_signer(user.clone());
    let mut r = Value::Null;
    for _ in 0..500 {
        if let Ok(v) = payer.receipt(&receipt.to_string()).await {
            r = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rec = &r["receipt"];
    assert_eq!(rec["payer"], json!(user.address()), "{r}");
    assert_eq!(rec["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(rec["completion_tokens"], usage["completion_tokens"]);
    let fee_on_chain: u128 = serde_json::from_value::<Amount>(rec["fee"].clone())
        .unwrap()
        .0;
    assert_eq!(fee_on_chain, fee);
    let lines: Vec<trib_ledger::PayoutLine> = serde_json::from_value(rec["lines"].clone()).unwrap();
    assert_eq!(lines.iter().map(|l| l.amount.0).sum::<u128>(), fee);
    assert_eq!(r["answer"]["answer"], v["choices"][0]["message"]["content"]);

    // The base model has no datanet: the ledger's fallback, said so.
    assert_eq!(v["attribution"]["method"], "datanet-fallback");
    assert!(v["attribution"]["reason"]
        .as_str()
        .unwrap()
        .contains("no datanet"));
    // The node re-runs the stored answer and it verifies; once the stored
    // answer is edited it does not, and the problem is named.
    let verify = format!("/v1/receipts/{receipt}/verify");
    let (_, check) = f.get(&verify).await;
    assert_eq!(check["ok"], true, "{check}");
    let path = f
        .keys_path
        .parent()
        .unwrap()
        .join("receipts")
        .join(format!("{receipt}.json"));
    let mut stored: crate::serving::StoredAnswer =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    stored.answer.push_str(" (edited)");
    std::fs::write(&path, serde_json::to_vec(&stored).unwrap()).unwrap();
    let (_, check) = f.get(&verify).await;
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["problems"]
            .to_string()
            .contains("stored answer text was edited"),
        "{check}"
    );

    // The base-model owner's line is queryable by address.
    let (_, page) = f
        .get(&format!("/v1/payouts?contributor={}", f.producer.address()))
        .await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["receipt"] == json!(receipt)),
        "{page}"
    );
    // The user paid exactly the fee.
    let acc = f.client.account(&user.address()).await.unwrap();
    assert_eq!(acc.balance, Amount(before.0 - fee));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn streaming_answers_end_with_usage_receipt_and_done() {
    let f = Fixture::start().await;
    let (_, key) = f.user(7, 10, Amount::open(5)).await;
    let resp = f
        .http
        .post(format!("{}/v1/completions", f.node.url()))
        .bearer_auth(&key)
        .json(&json!({ "model": f.base_name, "prompt": "once upon", "max_tokens": 5, "stream": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    let datas: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{body}");
    let last: Value = serde_json::from_str(datas[datas.len() - 2]).unwrap();
    assert!(last["receipt_id"].is_string(), "{last}");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    f.node.shutdown().await.unwrap();
}

/// Runs `scripts/tests/openai_client.py` (the official `openai` package,
/// unchanged) against the node; skips with a message when the package is
/// not installed (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_works_unchanged() {
    let f = Fixture::start().await;
    let (_, key) = f.user(8, 10, Amount::open(5)).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/tests/openai_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(f.node.url())
        .arg(&key)
        .arg(&f.base_name)
        .output()
        .await
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED: {stderr}");
        f.node.shutdown().await.unwrap();
        return;
    }
    assert!(
        out.status.success(),
        "openai client failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    f.node.shutdown().await.unwrap();
}

/// Answer-time attribution on an in-process world (tiny model, a datanet
/// with a distinctive sentence, an adapter trained on it): a fixed answer is
/// settled through the same path the HTTP handlers use.
mod attribution {
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::{json, Value};
    use tower::ServiceExt;
    use trib_ledger::{InferenceReceipt, PayoutRole};
    use trib_types::{Address, Amount};

    use crate::attribution::tests::{alice_file, World, DISTINCTIVE};
    use crate::serving::receipts_dir;
    use trib_attribution::answer::{StoredAnswer, DATANET_FALLBACK, TOKEN_SPANS};

    /// The question [`settle`] answers.
    const QUESTION: &str = "What do the village notes say about the quokkas?";

    fn settle(w: &World, model: &str, answer: &str) -> (StoredAnswer, InferenceReceipt) {
        w.settle(model, QUESTION, answer)
    }

    fn contributor_paid(r: &InferenceReceipt, who: Address) -> u128 {
        r.lines
            .iter()
            .filter(|l| matches!(l.role, PayoutRole::Contributor { .. }) && l.recipient == who)
            .map(|l| l.amount.0)
            .sum()
    }

    #[test]
    fn a_quoting_answer_pays_the_traced_contributor_not_the_duplicate_and_verifies() {
        let w = World::new();
        let p = w.publish_and_register();
        let alice_before = w.chain.account(&w.alice.address()).unwrap().account.balance;
        let (stored, receipt) = settle(&w, "facts-lora", &format!("The notes say: {DISTINCTIVE}"));

        assert_eq!(receipt.method, TOKEN_SPANS);
        assert!(!receipt.fallback);
        assert_eq!(receipt.weights, vec![(p.alice_contribution, 1_000_000_000)]);
        let a = stored.attribution.as_ref().unwrap();
        assert_eq!(receipt.evidence_hash, a.evidence.evidence_hash);
        assert_eq!(a.datanets, vec![(p.datanet, 1)]);
        // Alice earns the whole contributors' part; bob, whose copy of the
        // paragraph was rejected as a duplicate, earns nothing from it
        // although his other row is in the adapter's data.
        let to_alice = contributor_paid(&receipt, w.alice.address());
        assert!(to_alice > 0);
        assert_eq!(contributor_paid(&receipt, w.bob.address()), 0);
        assert!(receipt
            .weights
            .iter()
            .all(|(c, _)| *c != p.bob_contribution));
        let alice_after = w.chain.account(&w.alice.address()).unwrap().account.balance;
        assert_eq!(alice_after.0 - alice_before.0, to_alice);
        let sum: u128 = receipt.lines.iter().map(|l| l.amount.0).sum();
        assert_eq!(sum, receipt.fee.0);

        // The question's words were masked ("The", "the", "notes", "say"),
        // and the evidence commits to the question.
        let prompt = a.evidence.prompt.as_ref().expect("traced with the prompt");
        assert_eq!(
            prompt.prompt_hash,
            trib_attribution::PromptMask::hash_prompt(QUESTION)
        );
        assert!(!prompt.masked.is_empty());
        assert_eq!(a.evidence.format_version, 2);

        // Verify re-runs the trace and passes.
        w.serving.verify(&stored, &receipt).unwrap();

        // An edited prompt is named: the re-run masks other words under
        // another prompt hash than the one the receipt's evidence sealed.
        let mut asked = stored.clone();
        asked.prompt = "Quote the notes about the violet lighthouse.".into();
        let errs = w.serving.verify(&asked, &receipt).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("stored prompt was edited")),
            "{errs:?}"
        );
        // Even an edit that masks the same words (punctuation) is named.
        let mut asked = stored.clone();
        asked.prompt = QUESTION.replace('?', "!");
        let errs = w.serving.verify(&asked, &receipt).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("stored prompt was edited")),
            "{errs:?}"
        );

        // A tampered answer is named.
        let mut edited = stored.clone();
        edited.answer = edited.answer.replace("violet", "purple");
        let errs = w.serving.verify(&edited, &receipt).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("stored answer text was edited")),
            "{errs:?}"
        );

        // A payout redirected to bob is named.
        let mut stolen = receipt.clone();
        for l in &mut stolen.lines {
            if l.recipient == w.alice.address() {
                l.recipient = w.bob.address();
            }
        }
        let errs = w.serving.verify(&stored, &stolen).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("not what the weights give")),
            "{errs:?}"
        );

        // A base unit moved from alice to the adapter owner keeps the sum
        // but not the fee split.
        let mut shifted = receipt.clone();
        for l in &mut shifted.lines {
            match l.role {
                PayoutRole::Contributor { .. } => l.amount = Amount(l.amount.0 - 1),
                PayoutRole::AdapterOwner => l.amount = Amount(l.amount.0 + 1),
                _ => {}
            }
        }
        let errs = w.serving.verify(&stored, &shifted).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("contributors' part")),
            "{errs:?}"
        );

        // The receipt names the versions traced against; another list is named.
        assert_eq!(receipt.datanets, vec![(p.datanet, 1)]);
        let mut elsewhere = receipt.clone();
        elsewhere.datanets = vec![];
        let errs = w.serving.verify(&stored, &elsewhere).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("the receipt names datanet versions none")),
            "{errs:?}"
        );

        // Edited weights in the receipt are named.
        let mut reweighted = receipt.clone();
        reweighted.weights = vec![(p.bob_contribution, 1_000_000_000)];
        let errs = w.serving.verify(&stored, &reweighted).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("weights")), "{errs:?}");
    }

    #[test]
    fn a_contributed_sentence_earns_when_the_answer_adds_it_not_when_the_question_holds_it() {
        let w = World::new();
        let p = w.publish_and_register();
        // The question does not hold alice's sentence: the answer adds it,
        // so alice is credited and paid, and the receipt verifies.
        let (stored, receipt) = w.settle(
            "facts-lora",
            "Who rehearses by the lighthouse, and when?",
            &format!("According to the notes, {DISTINCTIVE}"),
        );
        assert_eq!(receipt.method, TOKEN_SPANS, "{:?}", stored.attribution);
        assert_eq!(receipt.weights, vec![(p.alice_contribution, 1_000_000_000)]);
        assert!(contributor_paid(&receipt, w.alice.address()) > 0);
        w.serving.verify(&stored, &receipt).unwrap();
        // The question quotes the sentence and the answer repeats it: the
        // user typed it, so no span earns and the fallback rule pays the
        // adapter's datanet pro rata by rows (bob's row included); the
        // receipt says so and verifies. (Traced without the question, the
        // same answer pays alice alone: the plain-span false credit.)
        let (stored, receipt) = w.settle(
            "facts-lora",
            &format!("Repeat after me: {DISTINCTIVE}"),
            DISTINCTIVE,
        );
        assert_eq!(receipt.method, DATANET_FALLBACK, "{:?}", receipt.weights);
        assert!(receipt.fallback && receipt.weights.is_empty());
        assert!(contributor_paid(&receipt, w.bob.address()) > 0);
        w.serving.verify(&stored, &receipt).unwrap();
        let plain = w
            .catalog()
            .trace(
                &[(p.datanet, 1)],
                None,
                DISTINCTIVE,
                w.serving.attribution.params(),
            )
            .unwrap();
        assert_eq!(
            plain.ledger_weights(),
            vec![(p.alice_contribution, 1_000_000_000)]
        );
    }

    #[test]
    fn a_chat_prompt_masks_the_words_of_its_messages_not_the_json_around_them() {
        let w = World::new();
        let p = w.publish_and_register();
        // A chat is stored as its JSON message list; the words masked are
        // the messages' contents ("quokka", "orchestra", …), not "role" or
        // "content".
        let chat = serde_json::to_string(&json!([
            { "role": "system", "content": "Answer from the village notes." },
            { "role": "user", "content": "Does the quokka orchestra rehearse?" },
        ]))
        .unwrap();
        let (stored, receipt) = w.settle("facts-lora", &chat, &format!("Yes: {DISTINCTIVE}"));
        let a = stored.attribution.as_ref().unwrap();
        assert_eq!(receipt.method, TOKEN_SPANS);
        assert_eq!(receipt.weights, vec![(p.alice_contribution, 1_000_000_000)]);
        // No kept span covers "quokka orchestra": both words were asked.
        let tokens = w.catalog().tokens().encode(&stored.answer).unwrap();
        for s in &a.evidence.spans {
            let text = w
                .catalog()
                .tokens()
                .decode(&tokens[s.start as usize..s.end as usize]);
            assert!(
                !text.contains("quokka") && !text.contains("orchestra"),
                "{text}"
            );
        }
        assert_eq!(
            a.evidence.prompt.as_ref().unwrap().prompt_hash,
            trib_attribution::PromptMask::hash_prompt(
                "Answer from the village notes.\nDoes the quokka orchestra rehearse?"
            )
        );
        w.serving.verify(&stored, &receipt).unwrap();
    }

    #[test]
    fn a_copy_that_passed_validation_elsewhere_earns_nothing_the_first_contributor_is_paid() {
        // Validation deduplicates within a datanet only: bob uploads alice's
        // file verbatim to a second datanet, where it is accepted, and the
        // adapter is trained on both. The quoted span then occurs in both
        // rows; the first contributor (alice, accepted earlier) keeps all
        // the credit.
        let w = World::new();
        let p = w.publish_and_register();
        let (copies, ids) = w.publish_datanet("copies", &[(&w.bob, "mine.txt", alice_file())]);
        w.register_adapter("both-lora", vec![(p.datanet, 1), (copies, 1)]);
        let (stored, receipt) = settle(&w, "both-lora", &format!("Quote: {DISTINCTIVE}"));

        let a = stored.attribution.as_ref().unwrap();
        assert_eq!(a.datanets, vec![(p.datanet, 1), (copies, 1)]);
        let rows: Vec<_> = a.evidence.spans.iter().flat_map(|s| &s.rows).collect();
        assert!(
            rows.iter().any(|r| r.shard == 1),
            "bob's copy (in the second index) is retrieved: {rows:?}"
        );
        assert!(rows.iter().all(|r| r.credited == p.alice_contribution));
        assert_eq!(receipt.method, TOKEN_SPANS);
        assert_eq!(receipt.weights, vec![(p.alice_contribution, 1_000_000_000)]);
        assert!(receipt.weights.iter().all(|(c, _)| *c != ids[0]));
        assert!(contributor_paid(&receipt, w.alice.address()) > 0);
        assert_eq!(contributor_paid(&receipt, w.bob.address()), 0);
        w.serving.verify(&stored, &receipt).unwrap();
    }

    #[test]
    fn boilerplate_found_in_many_rows_earns_nothing() {
        // Bob contributes 20 distinct paragraphs that all open with the same
        // formula; the formula occurs more often than `max_span_count`
        // (16), so quoting it earns bob nothing, while alice's rare
        // sentence in the same answer still pays her.
        const FORMULA: &str = "In accordance with the standing orders of the harbour council";
        let subjects = [
            "the lamplighter",
            "the ferryman",
            "the net mender",
            "the tide keeper",
            "the rope maker",
            "the sail maker",
            "the fish wife",
            "the pilot",
            "the cooper",
            "the chandler",
            "the smith",
            "the weaver",
            "the miller",
            "the thatcher",
            "the potter",
            "the tanner",
            "the brewer",
            "the carter",
            "the glazier",
            "the mason",
        ];
        let tasks = [
            "counts the gulls on the breakwater",
            "paints the bollards green",
            "sweeps sand from the slipway",
            "tolls the fog bell at dusk",
            "logs every cargo of slate",
            "tars the hull of the pilot cutter",
            "measures the depth at the quay",
            "chalks the tide times on the wall",
        ];
        let paragraphs: Vec<String> = subjects
            .iter()
            .enumerate()
            .map(|(i, who)| {
                format!(
                    "{FORMULA}, {who} {} on day {} of each season, and records in ledger number {} how many {} were seen near the {} lighthouse.",
                    tasks[i % tasks.len()],
                    i + 3,
                    100 + 7 * i,
                    ["herons", "otters", "seals", "cormorants", "dolphins"][i % 5],
                    ["north", "south", "east", "west"][i % 4],
                )
            })
            .collect();
        let w = World::new();
        let p = w.publish_and_register();
        let (orders, ids) =
            w.publish_datanet("orders", &[(&w.bob, "orders.txt", paragraphs.join("\n\n"))]);
        let rows = w.datanets.index_rows(&orders, 1).unwrap();
        assert!(rows.len() > 16, "every paragraph is a row: {}", rows.len());
        w.register_adapter("orders-lora", vec![(p.datanet, 1), (orders, 1)]);

        let (_, receipt) = settle(&w, "orders-lora", &format!("{FORMULA}, nothing more."));
        assert_eq!(receipt.method, DATANET_FALLBACK, "{:?}", receipt.weights);
        assert!(receipt.weights.is_empty());
        // Control: it is the count threshold that drops the formula; with a
        // looser one it is a span found in all 20 of bob's rows.
        let loose = trib_attribution::TraceParams {
            max_span_count: 100,
            ..w.serving.attribution.params().clone()
        };
        let t = w
            .catalog()
            .trace(
                &[(p.datanet, 1), (orders, 1)],
                None,
                &format!("{FORMULA}, nothing more."),
                &loose,
            )
            .unwrap();
        assert!(t.spans.iter().any(|s| s.count == 20), "{:?}", t.spans);
        assert_eq!(t.ledger_weights(), vec![(ids[0], 1_000_000_000)]);

        let (stored, receipt) = settle(
            &w,
            "orders-lora",
            &format!("{FORMULA}, and as the notes say: {DISTINCTIVE}"),
        );
        assert_eq!(receipt.method, TOKEN_SPANS);
        assert_eq!(receipt.weights, vec![(p.alice_contribution, 1_000_000_000)]);
        assert!(receipt.weights.iter().all(|(c, _)| *c != ids[0]));
        assert_eq!(contributor_paid(&receipt, w.bob.address()), 0);
        w.serving.verify(&stored, &receipt).unwrap();
    }

    #[test]
    fn an_answer_with_no_rare_span_settles_by_the_fallback_and_says_so() {
        let w = World::new();
        let p = w.publish_and_register();
        let (stored, receipt) = settle(&w, "facts-lora", "I could not find anything, sorry.");
        assert_eq!(receipt.method, DATANET_FALLBACK);
        assert!(receipt.fallback && receipt.weights.is_empty());
        // The ledger's rule: the contributors' part goes to the adapter's
        // datanet contributions pro rata by rows, bob's included.
        assert!(contributor_paid(&receipt, w.alice.address()) > 0);
        assert!(contributor_paid(&receipt, w.bob.address()) > 0);
        let a = stored.attribution.as_ref().unwrap();
        assert!(a.evidence.fallback_to_datanets);
        assert_eq!(a.datanets, vec![(p.datanet, 1)]);
        w.serving.verify(&stored, &receipt).unwrap();
    }

    #[test]
    fn an_index_damaged_while_the_node_runs_is_rebuilt_before_the_next_paid_answer() {
        let w = World::new();
        let p = w.publish_and_register();
        let answer = format!("The notes say: {DISTINCTIVE}");
        let (_, first) = settle(&w, "facts-lora", &answer);
        assert_eq!(first.method, TOKEN_SPANS);
        let builds = w.catalog().builds();
        assert_eq!(builds, 1);
        let dir = w.catalog().dir(&p.datanet, 1);
        // An unchanged index is not rebuilt (nor re-hashed).
        let (_, again) = settle(&w, "facts-lora", &answer);
        assert_eq!(again.weights, first.weights);
        assert_eq!(w.catalog().builds(), builds);

        type Damage = (&'static str, fn(&std::path::Path));
        let damage: [Damage; 4] = [
            ("deleted table.0", |d| {
                std::fs::remove_file(d.join("table.0")).unwrap()
            }),
            ("truncated tokenized.0", |d| {
                let f = d.join("tokenized.0");
                let b = std::fs::read(&f).unwrap();
                std::fs::write(&f, &b[..b.len() / 2]).unwrap();
            }),
            ("rows.0 replaced by a file with one byte flipped", |d| {
                let f = d.join("rows.0");
                let mut b = std::fs::read(&f).unwrap();
                b[40] ^= 0x55;
                let tmp = d.join("rows.0.new");
                std::fs::write(&tmp, b).unwrap();
                std::fs::rename(tmp, f).unwrap();
            }),
            ("a byte of offset.0 flipped in place, written later", |d| {
                let f = d.join("offset.0");
                let mut b = std::fs::read(&f).unwrap();
                b[0] ^= 0x01;
                let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                std::io::Write::write_all(&mut &file, &b).unwrap();
                // The write's own timestamp may fall in the same clock
                // tick as the check; a later write is what is detected.
                let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
                file.set_modified(later).unwrap();
            }),
        ];
        for (n, (what, hurt)) in damage.into_iter().enumerate() {
            hurt(&dir);
            let (stored, receipt) = settle(&w, "facts-lora", &answer);
            assert_eq!(receipt.method, TOKEN_SPANS, "after {what}");
            assert_eq!(receipt.weights, first.weights, "after {what}");
            assert!(contributor_paid(&receipt, w.alice.address()) > 0);
            assert_eq!(
                w.catalog().builds(),
                builds + n as u64 + 1,
                "{what}: rebuilt once"
            );
            w.serving.verify(&stored, &receipt).unwrap();
        }
    }

    #[test]
    fn verify_rebuilds_a_deleted_index_from_the_datanet_rows() {
        let w = World::new();
        let p = w.publish_and_register();
        let (stored, receipt) = settle(&w, "facts-lora", &format!("Quote: {DISTINCTIVE}"));
        std::fs::remove_dir_all(w.home.root().join("indexes")).unwrap();
        let c = w.fresh_catalog(w.catalog().tokens().clone());
        let t = c
            .trace(
                &[(p.datanet, 1)],
                Some(&trib_attribution::answer::prompt_words(&stored.prompt)),
                &stored.answer,
                &stored.attribution.as_ref().unwrap().params,
            )
            .unwrap();
        assert_eq!(c.builds(), 1);
        assert_eq!(t.evidence, stored.attribution.as_ref().unwrap().evidence);
        assert_eq!(t.evidence.evidence_hash, receipt.evidence_hash);
    }

    async fn post(w: &World, body: Value) -> (u16, Value) {
        let app = crate::api::attribution::routes(crate::api::attribution::ReceiptState {
            chain: w.chain.clone(),
            receipts_dir: receipts_dir(&w.home),
            serving: Some(w.serving.clone()),
        });
        let req = Request::post("/v1/attribution/trace")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_trace_endpoint_shows_spans_rows_contributors_and_weights() {
        let w = World::new();
        let p = w.publish_and_register();
        let (status, v) = post(
            &w,
            json!({ "model": "facts-lora", "text": format!("They wrote: {DISTINCTIVE}") }),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["method"], TOKEN_SPANS);
        assert_eq!(v["datanets"][0], format!("{}@1", p.datanet));
        let span = &v["spans"][0];
        assert!(span["text"].as_str().unwrap().contains("quokka"), "{v}");
        assert_eq!(span["count"], 1);
        let row = &span["rows"][0];
        assert_eq!(row["contributor"], w.alice.address().to_string());
        assert!(row["snippet"].as_str().unwrap().contains("quokka"));
        assert!(row["row_hash"].is_string());
        assert_eq!(
            v["contributions"][0]["contributor"],
            w.alice.address().to_string()
        );
        assert_eq!(v["contributions"][0]["weight_ppb"], 1_000_000_000u64);

        let (status, v) = post(&w, json!({ "model": "nope", "text": "x" })).await;
        assert_eq!(status, 404);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`nope` does not exist"));

        let big = "a".repeat(crate::api::attribution::MAX_TRACE_TEXT_BYTES + 1);
        let (status, v) = post(&w, json!({ "model": "facts-lora", "text": big })).await;
        assert_eq!(status, 400);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 16384 bytes"),
            "{v}"
        );
    }
}
