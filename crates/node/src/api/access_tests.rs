//! The access model through the whole router (docs/security.md): every
//! refusal of a caller acting for someone else, what a stranger sees of a
//! receipt and of a permissioned trace, the job limits, and the replay
//! guard across a restart. The router runs in-process over the attribution
//! tests' `World` (a dev ledger, a datanet store and the served tiny model).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use trib_client::signed_read::{now, sign};
use trib_client::wire::CreateDatanetRequest;
use trib_ledger::{Action, CurationMode, DataType, Visibility};
use trib_types::{Amount, SecretKey};

use super::auth::ReplayGuard;
use super::{router_with, AppState, Services};
use crate::attribution::tests::{World, DISTINCTIVE};
use crate::config::JobsConfig;
use crate::jobs::JobQueue;

/// The whole API over `w`, with these job limits and replay guard.
fn app(w: &World, limits: JobsConfig, replays: Arc<ReplayGuard>) -> (Router, JobQueue) {
    let models = Arc::new(crate::models::ModelService::new(
        w.home.models_dir(),
        w.chain.clone(),
    ));
    let jobs = JobQueue::start(
        &w.home.jobs_dir(),
        models.dir(),
        w.datanets.clone(),
        None,
        limits,
    );
    let services = Services {
        datanets: w.datanets.clone(),
        models,
        jobs: jobs.clone(),
        receipts_dir: crate::serving::receipts_dir(&w.home),
        serving: Some(w.serving.clone()),
        apikeys: Arc::new(
            crate::apikeys::ApiKeys::open(crate::apikeys::ApiKeys::path_in(w.home.root())).unwrap(),
        ),
        replays,
    };
    let app = router_with(
        AppState {
            chain: w.chain.clone(),
        },
        Some(services),
        1 << 20,
        &[],
    );
    (app, jobs)
}

/// A request, signed by `by` when given; a JSON body says so.
fn request(method: &str, uri: &str, body: Vec<u8>, by: Option<&SecretKey>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if serde_json::from_slice::<Value>(&body).is_ok() {
        req = req.header("content-type", "application/json");
    }
    if let Some(key) = by {
        for (k, v) in sign(key, method, uri, &body, now()) {
            req = req.header(k, v);
        }
    }
    req.body(Body::from(body)).unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 22).await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn fund(w: &World, keys: &[&SecretKey]) {
    for k in keys {
        w.submit(
            &w.producer,
            Action::Transfer {
                to: k.address(),
                amount: Amount::open(100),
            },
        );
    }
    w.block();
}

#[tokio::test]
async fn uploads_and_descriptors_act_only_for_their_signer() {
    let w = World::new();
    fund(&w, &[&w.alice, &w.bob]);
    let (app, _jobs) = app(&w, JobsConfig::default(), Arc::default());
    // A datanet whose contributors may upload one file a day.
    let descriptor = |owner: trib_types::Address, name: &str| CreateDatanetRequest {
        owner,
        name: name.into(),
        description: String::new(),
        tags: vec![],
        data_type: DataType::Text,
        curation: CurationMode::OwnerApproval,
        stake_per_contribution: Amount::open(1),
        visibility: Visibility::Public,
    };
    let created = w
        .datanets
        .create_with_quotas(
            descriptor(w.producer.address(), "quota-law"),
            Some(trib_datanet::Quotas {
                files_per_contributor_per_day: 1,
                ..Default::default()
            }),
        )
        .unwrap();
    w.commit(&w.producer, created.action);
    let file = crate::attribution::tests::alice_file().into_bytes();
    let alice = w.alice.address();

    // Unsigned: 401, nothing recorded.
    let uri = format!("/v1/datanets/quota-law/contributions?file_name=a.txt&contributor={alice}");
    let (s, v) = call(&app, request("POST", &uri, file.clone(), None)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "missing_signature"),
        "{v}"
    );
    // Signed by bob for alice: 403, alice's quota untouched.
    let (s, v) = call(&app, request("POST", &uri, file.clone(), Some(&w.bob))).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "not_the_signer"),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&alice.to_string()));
    let (_, board) = call(
        &app,
        request("GET", "/v1/datanets/quota-law/leaderboard", vec![], None),
    )
    .await;
    assert_eq!(board, json!([]), "nothing recorded against alice");
    // Alice's own upload (her one file of the day) is accepted.
    let (s, v) = call(&app, request("POST", &uri, file.clone(), Some(&w.alice))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["report"]["contributor"], json!(alice), "{v}");
    // Her history names the datanet and the mean quality of the rows kept,
    // as the report scored them.
    let kept: Vec<u64> = v["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rejection"].is_null())
        .map(|r| r["quality"]["score_bp"].as_u64().unwrap())
        .collect();
    assert!(!kept.is_empty(), "{v}");
    let history = format!("/v1/contributors/{alice}/contributions");
    let (s, h) = call(&app, request("GET", &history, vec![], Some(&w.alice))).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let item = &h["items"][0];
    assert_eq!(item["datanet_name"], json!("quota-law"), "{h}");
    assert_eq!(item["datanet"], json!(created.id), "{h}");
    assert_eq!(
        item["quality_bp"],
        json!(kept.iter().sum::<u64>() / kept.len() as u64),
        "{h}"
    );
    // Signed without naming a contributor: the signer contributes (and
    // here uses up its own quota, not anyone else's).
    let uri = "/v1/datanets/quota-law/contributions?file_name=b.txt";
    let (s, v) = call(
        &app,
        request(
            "POST",
            uri,
            b"another file entirely, long enough to be a row of text for the validator to keep"
                .to_vec(),
            Some(&w.alice),
        ),
    )
    .await;
    assert_ne!(
        s,
        StatusCode::CREATED,
        "the quota of one file a day holds: {v}"
    );

    // A descriptor is stored only for its signed owner.
    let body = serde_json::to_vec(&descriptor(alice, "squatted")).unwrap();
    let (s, v) = call(&app, request("POST", "/v1/datanets", body.clone(), None)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "missing_signature"),
        "{v}"
    );
    let (s, v) = call(&app, request("POST", "/v1/datanets", body, Some(&w.bob))).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "not_the_signer"),
        "{v}"
    );
}

#[tokio::test]
async fn a_receipt_shows_the_prompt_and_answer_only_to_the_payer_the_adapter_owner_and_the_operator(
) {
    let w = World::new();
    w.publish_and_register();
    let prompt = "What do the village notes say about the quokkas?";
    let (stored, receipt) = w.settle(
        "facts-lora",
        prompt,
        &format!("The notes say: {DISTINCTIVE}"),
    );
    let (app, _jobs) = app(&w, JobsConfig::default(), Arc::default());
    let uri = format!("/v1/receipts/{}", receipt.id);
    // Carol paid; the producer (operator) registered the adapter.
    let stranger = SecretKey::from_seed([77; 32]);
    for who in [None, Some(&stranger), Some(&w.alice)] {
        let (s, v) = call(&app, request("GET", &uri, vec![], who)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["answer"], Value::Null, "{v}");
        assert!(
            v["answer_withheld"]
                .as_str()
                .unwrap()
                .contains("paying account"),
            "{v}"
        );
        assert_eq!(
            v["receipt"]["payer"],
            json!(w.carol.address()),
            "the public receipt: {v}"
        );
        assert!(!v.to_string().contains("quokkas"), "no prompt text: {v}");
    }
    for who in [&w.carol, &w.producer] {
        let (s, v) = call(&app, request("GET", &uri, vec![], Some(who))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["answer"]["prompt"], json!(prompt), "{v}");
        assert_eq!(v["answer"]["answer"], json!(stored.answer), "{v}");
    }
}

#[tokio::test]
async fn a_trace_withholds_permissioned_rows_from_callers_without_a_grant() {
    let w = World::new();
    let p = w.publish_and_register();
    let secret = "The keeper's private almanac lists nineteen hidden coves between the basalt cape and the reed estuary.";
    let (private, ids) = w.publish_datanet_as(
        "almanac",
        Visibility::Permissioned,
        &[(&w.producer, "almanac.txt", secret.to_string())],
    );
    w.register_adapter("almanac-lora", vec![(p.datanet, 1), (private, 1)]);
    let (app, _jobs) = app(&w, JobsConfig::default(), Arc::default());
    let body = serde_json::to_vec(&json!({
        "model": "almanac-lora", "text": format!("{DISTINCTIVE} Also, {secret}"), "top": 50,
    }))
    .unwrap();
    let private_rows = |v: &Value| -> Vec<Value> {
        v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["rows"].as_array().unwrap().clone())
            .filter(|r| r["contributor"] == json!("withheld") || r["contribution"] == json!(ids[0]))
            .collect()
    };
    let owner = w.producer.address().to_string();
    for who in [None, Some(&w.bob)] {
        let (s, v) = call(
            &app,
            request("POST", "/v1/attribution/trace", body.clone(), who),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let rows = private_rows(&v);
        assert!(!rows.is_empty(), "{v}");
        for r in &rows {
            for field in [
                "contributor",
                "credited_contributor",
                "contribution",
                "row_hash",
                "snippet",
            ] {
                assert_eq!(r[field], json!("withheld"), "{field}: {v}");
            }
        }
        // Neither the contribution nor its contributor appears anywhere.
        let text = v.to_string();
        assert!(!text.contains(&ids[0].to_string()), "{text}");
        assert!(!text.contains(&owner), "{text}");
        assert!(v["withheld"].as_str().unwrap().contains("no grant"), "{v}");
        // The public datanet's rows are shown as before.
        assert!(text.contains(&w.alice.address().to_string()), "{text}");
    }
    // Bob gets a grant: now he sees who contributed (the snippet of a
    // permissioned row is never decoded into a view).
    w.commit(
        &w.producer,
        Action::GrantAccess {
            datanet: private,
            to: w.bob.address(),
        },
    );
    let (s, v) = call(
        &app,
        request("POST", "/v1/attribution/trace", body, Some(&w.bob)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = private_rows(&v);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["contributor"] == json!(owner)),
        "{v}"
    );
    assert!(v.get("withheld").is_none(), "{v}");
}

/// A job file training the tiny model (`base`) on `sources` for `epochs`.
fn job(base: &str, sources: &str, epochs: u32) -> Vec<u8> {
    format!(
        "name = \"j\"\n[model]\nbase = \"{base}\"\n[data]\nsources = [{sources}]\nformat = \"text\"\nmax_length = 32\npacking = true\nvalidation_fraction = 0.0\n[lora]\nr = 2\nalpha = 4\ndropout = 0.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n[train]\nlearning_rate = 1e-3\nbatch_size = 2\nepochs = {epochs}\nseed = 5\n[output]\ndir = \"ignored\"\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn jobs_are_owned_capped_and_read_only_what_the_operator_allows() {
    let w = World::new();
    w.publish_and_register();
    let outside = tempfile::tempdir().unwrap();
    let allowed = outside.path().join("corpora");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(
        allowed.join("ok.txt"),
        "a small text to train on, again and again. ".repeat(40),
    )
    .unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET-BYTES of a file the node must not read").unwrap();
    // The operator puts the base model into the models directory.
    let model: PathBuf = w.home.load_config().unwrap().base_model.unwrap();
    std::fs::create_dir_all(w.home.models_dir()).unwrap();
    std::os::unix::fs::symlink(&model, w.home.models_dir().join("tiny.gguf")).unwrap();
    let limits = JobsConfig {
        max_active_per_owner: 1,
        data_dirs: vec![allowed.clone()],
    };
    let (app, jobs) = app(&w, limits, Arc::default());

    // Anonymous: 401.
    let long = job("tiny.gguf", "\"facts@1\"", 500);
    let (s, v) = call(&app, request("POST", "/v1/jobs", long.clone(), None)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "missing_signature"),
        "{v}"
    );
    // A host file outside the allowed directories, or `..` climbing out of
    // an allowed one: 403, named, no bytes.
    for path in [secret.clone(), allowed.join("../secret.txt")] {
        let (s, v) = call(
            &app,
            request(
                "POST",
                "/v1/jobs",
                job("tiny.gguf", &format!("\"{}\"", path.display()), 1),
                Some(&w.alice),
            ),
        )
        .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "source_not_allowed"),
            "{v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("secret.txt") && msg.contains("data_dirs"),
            "{msg}"
        );
        assert!(!v.to_string().contains("TOPSECRET"), "{v}");
    }
    // A base model outside the models directory (here a text file): 400,
    // without its bytes.
    for base in [secret.display().to_string(), "../../secret.txt".to_string()] {
        let (s, v) = call(
            &app,
            request(
                "POST",
                "/v1/jobs",
                job(&base, "\"facts@1\"", 1),
                Some(&w.alice),
            ),
        )
        .await;
        assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_job"), "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("models directory"),
            "{v}"
        );
        assert!(!v.to_string().contains("TOPSECRET"), "{v}");
    }

    // Alice's job, from a datanet version and a file in an allowed dir.
    let sources = format!("\"facts@1\", \"{}\"", allowed.join("ok.txt").display());
    let (s, v) = call(
        &app,
        request(
            "POST",
            "/v1/jobs",
            job("tiny.gguf", &sources, 500),
            Some(&w.alice),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["owner"], json!(w.alice.address()));
    let id = v["id"].as_u64().unwrap();
    // Over her cap of one active job: 429 with words.
    let (s, v) = call(
        &app,
        request("POST", "/v1/jobs", long.clone(), Some(&w.alice)),
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_jobs"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1"),
        "{v}"
    );
    // Bob neither sees nor cancels it: 404 as for a job that does not exist.
    let job_uri = format!("/v1/jobs/{id}");
    for (method, uri) in [
        ("GET", job_uri.clone()),
        ("DELETE", job_uri.clone()),
        ("GET", format!("{job_uri}/events")),
    ] {
        let (s, v) = call(&app, request(method, &uri, vec![], Some(&w.bob))).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {uri}: {v}"
        );
        let (s, _) = call(&app, request(method, &uri, vec![], None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let (_, listed) = call(&app, request("GET", "/v1/jobs", vec![], Some(&w.bob))).await;
    assert_eq!(listed, json!([]));
    let (_, listed) = call(&app, request("GET", "/v1/jobs", vec![], Some(&w.alice))).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // The operator sees every job; alice cancels her own.
    let (_, listed) = call(&app, request("GET", "/v1/jobs", vec![], Some(&w.producer))).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let (s, v) = call(&app, request("DELETE", &job_uri, vec![], Some(&w.alice))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    jobs.shutdown();
}

#[tokio::test]
async fn a_signed_request_replayed_after_a_restart_is_refused() {
    let w = World::new();
    let log = w.home.root().join("signed-requests.log");
    let first = Arc::new(ReplayGuard::open(&log, now()).unwrap());
    let (app1, _j1) = app(&w, JobsConfig::default(), first);
    let uri = format!("/v1/contributors/{}/contributions", w.alice.address());
    let captured = request("GET", &uri, vec![], Some(&w.alice));
    let headers = captured.headers().clone();
    let (s, v) = call(&app1, captured).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(app1);
    // The node restarts: a new router and a guard read back from the file.
    let (app2, _j2) = app(
        &w,
        JobsConfig::default(),
        Arc::new(ReplayGuard::open(&log, now()).unwrap()),
    );
    let mut replay = Request::get(&uri).body(Body::empty()).unwrap();
    *replay.headers_mut() = headers;
    let (s, v) = call(&app2, replay).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "replayed_signature"),
        "{v}"
    );
    // A fresh signature is served.
    let (s, v) = call(&app2, request("GET", &uri, vec![], Some(&w.alice))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_descriptor_stored_first_does_not_claim_a_name_the_ledger_gives_to_whoever_creates_it() {
    let w = World::new();
    fund(&w, &[&w.alice, &w.bob]);
    let (app, _jobs) = app(&w, JobsConfig::default(), Arc::default());
    let descriptor = |owner: &SecretKey, description: &str| {
        serde_json::to_vec(&CreateDatanetRequest {
            owner: owner.address(),
            name: "law".into(),
            description: description.into(),
            tags: vec![],
            data_type: DataType::Text,
            curation: CurationMode::OwnerApproval,
            stake_per_contribution: Amount::open(1),
            visibility: Visibility::Public,
        })
        .unwrap()
    };
    let alices = descriptor(&w.alice, "alice's statutes");
    let (s, v) = call(
        &app,
        request("POST", "/v1/datanets", alices.clone(), Some(&w.alice)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let action: Action = serde_json::from_value(v["action"].clone()).unwrap();
    // Bob stores his own descriptor under the name before alice's
    // CreateDatanet lands: allowed (a draft is no claim)...
    let (s, v) = call(
        &app,
        request(
            "POST",
            "/v1/datanets",
            descriptor(&w.bob, "bob's"),
            Some(&w.bob),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // ... but the ledger gives the name to alice's transaction, and bob's
    // draft never stands in for her datanet.
    w.commit(&w.alice, action);
    let upload = "/v1/datanets/law/contributions?file_name=a.txt";
    let file = crate::attribution::tests::alice_file().into_bytes();
    let (s, v) = call(&app, request("POST", upload, file.clone(), Some(&w.alice))).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no descriptor matching"),
        "{v}"
    );
    // Alice stores the descriptor her transaction committed to; bob can no
    // longer store his.
    let (s, v) = call(
        &app,
        request("POST", "/v1/datanets", alices, Some(&w.alice)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(&app, request("POST", upload, file, Some(&w.alice))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &app,
        request(
            "POST",
            "/v1/datanets",
            descriptor(&w.bob, "bob's"),
            Some(&w.bob),
        ),
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "datanet_exists"),
        "{v}"
    );
    let (_, shown) = call(&app, request("GET", "/v1/datanets/law", vec![], None)).await;
    assert_eq!(shown["description"], json!("alice's statutes"), "{shown}");
}
