//! OpenAI-compatible routes: `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions` (with `stream: true` as server-sent events
//! ending in `data: [DONE]`), and the adapter cache, `GET`/`POST
//! /v1/adapters`.
//!
//! Every generation route needs `Authorization: Bearer <API key>` (401
//! otherwise). The fee check runs inside the engine's admission, before any
//! compute (402). The handler waits for the first engine event before
//! answering, so an error that happens before any token (unknown adapter,
//! rejected adapter) is a plain HTTP error and nothing is charged. After the
//! answer, the node traces it against the token indexes of the adapter's
//! datanet versions (on the blocking pool), settles it on the ledger with
//! the traced weights and adds `receipt_id`, `fee` and `attribution`
//! (method, the rarest spans with their rows and contributors, the weights)
//! to the response (the last SSE chunk when streaming).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use trib_serve::{
    ChatMessage, Completion, GenerateRequest, Prompt, SamplingParams, ServeError, StreamEvent,
};
use trib_types::Address;

use super::ApiError;
use crate::serving::{AnswerToSettle, Serving, Target};

/// Spans shown in a response's `attribution` field (the rarest first).
const SPANS_SHOWN: usize = 5;

type S = Arc<Serving>;

pub(crate) fn routes(s: S) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/adapters", get(list_adapters).post(manage_adapters))
        .with_state(s)
}

fn serve_error(e: ServeError) -> ApiError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match &e {
        ServeError::InvalidRequest { .. } | ServeError::InvalidAdapterName(_) => "invalid_request",
        ServeError::ContextOverflow { .. } => "context_length_exceeded",
        ServeError::QueueFull { .. } => "server_busy",
        ServeError::RateLimited { .. } => "rate_limited",
        ServeError::PaymentRequired { .. } => "payment_required",
        ServeError::UnknownAdapter { .. } | ServeError::AdapterNotLoaded { .. } => {
            "model_not_found"
        }
        ServeError::AdapterInUse { .. } => "adapter_in_use",
        ServeError::AdapterRejected { .. } => "adapter_rejected",
        ServeError::Model { .. } => "model_error",
        ServeError::StoreUnavailable { .. } | ServeError::ShuttingDown => "unavailable",
    };
    ApiError {
        status,
        code,
        message: e.to_string(),
    }
}

fn error_response(e: ServeError) -> Response {
    let retry = match &e {
        ServeError::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
        _ => None,
    };
    let mut r = serve_error(e).into_response();
    if let Some(secs) = retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "invalid_api_key",
        message: message.into(),
    }
}

/// The account behind `Authorization: Bearer <key>`.
fn authenticate(s: &Serving, headers: &HeaderMap) -> Result<Address, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing API key: send `Authorization: Bearer <key>` (create one with `trib apikey new`)"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    let key = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?
        .trim();
    s.keys
        .account(key)
        .ok_or_else(|| unauthorized("unknown API key"))
}

fn now_secs() -> u64 {
    crate::chain::now_ms() / 1000
}

async fn list_models(State(s): State<S>) -> Result<Json<Value>, ApiError> {
    let created = now_secs();
    let mut data = vec![json!({
        "id": s.base_name, "object": "model", "created": created, "owned_by": "tributary",
        "base_model_id": s.base_id,
    })];
    let adapters = s.chain.ledger().adapters().map_err(ApiError::from)?;
    for a in adapters.into_iter().filter(|a| a.base == s.base_id) {
        data.push(json!({
            "id": a.id, "object": "model", "created": created, "owned_by": a.owner,
            "name": a.name, "parent": s.base_name,
            "price_in_per_1k": a.price_in_per_1k.to_open_string(),
            "price_out_per_1k": a.price_out_per_1k.to_open_string(),
        }));
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `stop` may be a string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `prompt` may be a string or a list holding one string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct CommonFields {
    model: String,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    n: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    prompt: PromptField,
    #[serde(flatten)]
    common: CommonFields,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    common: CommonFields,
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        let message = format!("malformed request body: {}", e.body_text());
        ApiError::json_rejection(&e, "invalid_request", message)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Chat,
}

async fn completions(
    State(s): State<S>,
    headers: HeaderMap,
    body: Result<Json<CompletionBody>, JsonRejection>,
) -> Response {
    let run = async {
        let payer = authenticate(&s, &headers)?;
        let b = json_body(body)?;
        let text = match b.prompt {
            PromptField::One(t) => t,
            PromptField::Many(mut v) if v.len() == 1 => v.remove(0),
            PromptField::Many(v) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("prompt must be one string (got a list of {})", v.len()),
                ))
            }
        };
        Ok((payer, text.clone(), Prompt::Text(text), b.common))
    };
    match run.await {
        Ok((payer, shown, prompt, common)) => {
            generate(s, payer, Kind::Text, shown, prompt, common).await
        }
        Err(e) => e.into_response(),
    }
}

async fn chat_completions(
    State(s): State<S>,
    headers: HeaderMap,
    body: Result<Json<ChatBody>, JsonRejection>,
) -> Response {
    let run = async {
        let payer = authenticate(&s, &headers)?;
        let b = json_body(body)?;
        let shown = serde_json::to_string(&b.messages).expect("messages serialise");
        Ok::<_, ApiError>((payer, shown, Prompt::Chat(b.messages), b.common))
    };
    match run.await {
        Ok((payer, shown, prompt, common)) => {
            generate(s, payer, Kind::Chat, shown, prompt, common).await
        }
        Err(e) => e.into_response(),
    }
}

/// Everything that is known once the request is admitted.
struct Accepted {
    s: S,
    payer: Address,
    kind: Kind,
    model: String,
    prompt_text: String,
    target: Target,
    id: String,
    created: u64,
    /// The fee reserved at admission (billing.rs): held until the answer is
    /// settled or the request ends, released on drop.
    _fee_hold: Option<trib_serve::AdmissionToken>,
}

impl Accepted {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Text, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    /// Traces and settles the answer (on the blocking pool: the trace and
    /// the ledger reads must not hold up the runtime) and returns the extra
    /// response fields. Called once per answer, so it charges once.
    async fn settle(&self, answer: &str, done: &Completion) -> Result<Value, ApiError> {
        let u = done.usage;
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (s, payer, target, model, prompt, answer) = (
            self.s.clone(),
            self.payer,
            self.target.clone(),
            self.model.clone(),
            self.prompt_text.clone(),
            answer.to_string(),
        );
        let (prompt_tokens, completion_tokens) =
            (clamp(u.prompt_tokens), clamp(u.completion_tokens));
        let done = tokio::task::spawn_blocking(move || {
            s.settle_answer(AnswerToSettle {
                payer,
                target: &target,
                model: &model,
                prompt: &prompt,
                answer: &answer,
                prompt_tokens,
                completion_tokens,
            })
        })
        .await
        .map_err(|e| ApiError::internal(format!("the settlement task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("the answer could not be settled: {e}")))?;
        let attribution = match &done.trace {
            Some(t) => {
                // The receipt's method names the gradient share when it took part.
                let mut view = t.view(SPANS_SHOWN);
                view["method"] = json!(done.method);
                view
            }
            None => json!({
                "method": done.method,
                "fallback": true,
                "reason": format!("the answer could not be traced ({}): the ledger's fallback rule applies",
                    done.trace_error.as_deref().unwrap_or("unknown error")),
                "spans": [],
                "contributions": [],
                "evidence_hash": done.evidence_hash,
            }),
        };
        let settled = done.settled;
        Ok(json!({
            "receipt_id": settled.receipt,
            "settlement_tx": settled.tx,
            "fee": { "base_units": settled.fee.0.to_string(), "open": settled.fee.to_open_string() },
            "attribution": attribution,
        }))
    }

    fn usage(done: &Completion) -> Value {
        json!({
            "prompt_tokens": done.usage.prompt_tokens,
            "completion_tokens": done.usage.completion_tokens,
            "total_tokens": done.usage.total_tokens(),
        })
    }

    async fn full_response(&self, answer: &str, done: &Completion) -> Result<Value, ApiError> {
        let choice = match self.kind {
            Kind::Text => {
                json!({ "index": 0, "text": answer, "logprobs": null, "finish_reason": done.finish_reason })
            }
            Kind::Chat => {
                json!({ "index": 0, "message": { "role": "assistant", "content": answer },
                "logprobs": null, "finish_reason": done.finish_reason })
            }
        };
        let mut v = json!({
            "id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
            "choices": [choice], "usage": Self::usage(done),
        });
        merge(&mut v, self.settle(answer, done).await?);
        Ok(v)
    }

    fn delta_chunk(&self, text: &str, first: bool) -> Value {
        let choice = match self.kind {
            Kind::Text => {
                json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": null })
            }
            Kind::Chat => {
                let delta = if first {
                    json!({ "role": "assistant", "content": text })
                } else {
                    json!({ "content": text })
                };
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": null })
            }
        };
        json!({ "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": [choice] })
    }

    async fn final_chunk(&self, answer: &str, done: &Completion) -> Value {
        let choice = match self.kind {
            Kind::Text => {
                json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": done.finish_reason })
            }
            Kind::Chat => {
                json!({ "index": 0, "delta": {}, "logprobs": null, "finish_reason": done.finish_reason })
            }
        };
        let mut v = json!({ "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": [choice], "usage": Self::usage(done) });
        match self.settle(answer, done).await {
            Ok(extra) => merge(&mut v, extra),
            Err(e) => merge(&mut v, json!({ "settlement_error": e.message })),
        }
        v
    }
}

fn merge(v: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, extra) {
        a.extend(b);
    }
}

async fn generate(
    s: S,
    payer: Address,
    kind: Kind,
    prompt_text: String,
    prompt: Prompt,
    c: CommonFields,
) -> Response {
    if c.n.is_some_and(|n| n != 1) {
        return ApiError::bad_request("invalid_request", "only n = 1 is supported").into_response();
    }
    let target = match s.resolve(&c.model) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return ApiError {
                status: StatusCode::NOT_FOUND,
                code: "model_not_found",
                message: format!(
                    "the model `{}` does not exist: use the base model `{}` or a registered adapter's id or name (GET /v1/models)",
                    c.model, s.base_name
                ),
            }
            .into_response()
        }
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let mut sampling = SamplingParams::default();
    if let Some(t) = c.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = c.top_p {
        sampling.top_p = p;
    }
    sampling.seed = c.seed;
    let req = GenerateRequest {
        prompt,
        adapter: target.adapter.as_ref().map(|(_, n)| n.clone()),
        sampling,
        max_tokens: c.max_completion_tokens.or(c.max_tokens),
        stop: match c.stop {
            None => Vec::new(),
            Some(Stop::One(x)) => vec![x],
            Some(Stop::Many(v)) => v,
        },
        rate_key: Some(payer.to_string()),
    };
    let mut sub = match s.engine.submit(req) {
        Ok(sub) => sub,
        Err(e) => return error_response(e),
    };
    // Wait for the first event: an error before any token is a plain HTTP
    // error and nothing is charged.
    let first = match sub.events.recv().await {
        Some(StreamEvent::Error(e)) => return error_response(e),
        Some(ev) => ev,
        None => return error_response(ServeError::ShuttingDown),
    };
    let acc = Accepted {
        s,
        payer,
        kind,
        model: c.model,
        prompt_text,
        target,
        id: format!("cmpl-{}", sub.id),
        created: now_secs(),
        _fee_hold: sub.admission.take(),
    };
    if c.stream {
        stream_response(acc, first, sub.events).into_response()
    } else {
        let mut answer = String::new();
        let mut ev = Some(first);
        loop {
            match ev {
                Some(StreamEvent::Delta { text, .. }) => answer.push_str(&text),
                Some(StreamEvent::Done(done)) => {
                    return match acc.full_response(&answer, &done).await {
                        Ok(v) => Json(v).into_response(),
                        Err(e) => e.into_response(),
                    }
                }
                Some(StreamEvent::Error(e)) => return error_response(e),
                None => return error_response(ServeError::ShuttingDown),
            }
            ev = sub.events.recv().await;
        }
    }
}

fn stream_response(
    acc: Accepted,
    first: StreamEvent,
    events: UnboundedReceiver<StreamEvent>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    /// Where the stream is: relaying engine events, or past the final chunk
    /// (`[DONE]` next), or closed.
    enum Phase {
        Relay,
        Terminator,
        Closed,
    }
    struct St {
        acc: Accepted,
        pending: Option<StreamEvent>,
        events: UnboundedReceiver<StreamEvent>,
        answer: String,
        first: bool,
        phase: Phase,
    }
    let st = St {
        acc,
        pending: Some(first),
        events,
        answer: String::new(),
        first: true,
        phase: Phase::Relay,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        match st.phase {
            Phase::Closed => return None,
            Phase::Terminator => {
                st.phase = Phase::Closed;
                return Some((Ok(Event::default().data("[DONE]")), st));
            }
            Phase::Relay => {}
        }
        let ev = match st.pending.take() {
            Some(ev) => Some(ev),
            None => st.events.recv().await,
        };
        let event = match ev {
            Some(StreamEvent::Delta { text, .. }) => {
                st.answer.push_str(&text);
                let chunk = st.acc.delta_chunk(&text, st.first);
                st.first = false;
                Event::default().data(chunk.to_string())
            }
            Some(StreamEvent::Done(done)) => {
                st.phase = Phase::Terminator;
                Event::default().data(st.acc.final_chunk(&st.answer, &done).await.to_string())
            }
            Some(StreamEvent::Error(e)) => {
                st.phase = Phase::Terminator;
                let err = serve_error(e);
                Event::default().data(
                    json!({ "error": { "code": err.code, "message": err.message } }).to_string(),
                )
            }
            None => {
                st.phase = Phase::Closed;
                Event::default().data("[DONE]")
            }
        };
        Some((Ok(event), st))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn list_adapters(State(s): State<S>) -> Result<Json<Value>, ApiError> {
    let cache = s.engine.adapters();
    let store: Vec<String> = s
        .engine
        .store_adapters()
        .map_err(serve_error)?
        .iter()
        .map(|n| n.as_str().to_string())
        .collect();
    Ok(Json(json!({ "cache": cache, "store": store })))
}

#[derive(Debug, Deserialize)]
struct ManageBody {
    /// `load` or `unload`.
    action: String,
    /// Adapter id or name.
    model: String,
}

/// Loading and unloading adapters changes what every client pays in
/// latency and memory, so only the node operator may do it: an API key
/// bound to the operator's account (`trib apikey new` for the producer
/// address). No key or an unknown key: 401; another account's key: 403.
fn authorize_admin(s: &Serving, headers: &HeaderMap) -> Result<Address, ApiError> {
    let account = authenticate(s, headers)?;
    let operator = s.billing.operator();
    if account != operator {
        tracing::warn!(target: "trib::serving", %account, "adapter load/unload refused: not the operator");
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: format!(
                "only the node operator may load or unload adapters: this API key charges account {account}, \
                 the operator is {operator} (create an operator key with `trib apikey new` for the operator's address)"
            ),
        });
    }
    Ok(account)
}

async fn manage_adapters(
    State(s): State<S>,
    headers: HeaderMap,
    body: Result<Json<ManageBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize_admin(&s, &headers)?;
    let b = json_body(body)?;
    let target = s
        .resolve(&b.model)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no registered adapter `{}`", b.model)))?;
    let Some((id, name)) = target.adapter else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the base model is always loaded",
        ));
    };
    match b.action.as_str() {
        "load" => {
            s.engine.load_adapter(&name).await.map_err(serve_error)?;
            Ok(Json(json!({ "adapter": id, "loaded": true })))
        }
        "unload" => {
            let freed = s.engine.unload_adapter(&name).map_err(serve_error)?;
            Ok(Json(
                json!({ "adapter": id, "loaded": false, "freed_bytes": freed }),
            ))
        }
        other => Err(ApiError::bad_request(
            "invalid_request",
            format!("action must be `load` or `unload`, not `{other}`"),
        )),
    }
}
