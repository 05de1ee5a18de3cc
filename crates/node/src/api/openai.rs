//! OpenAI-compatible routes: `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions` (with `stream: true` as server-sent events
//! ending in `data: [DONE]`), and the adapter cache, `GET`/`POST
//! /v1/adapters`.
//!
//! Every generation route needs `Authorization: Bearer <API key>` (401
//! otherwise). A handler parses the request and hands it to the serving
//! path (`crate::serving`: admit, generate, attribute, settle, store), then
//! maps the outcome to a response: the fee check runs inside the engine's
//! admission, before any compute (402); an error before any token (unknown
//! adapter, rejected adapter) is a plain HTTP error and nothing is charged;
//! a settled answer gets `receipt_id`, `settlement_tx`, `fee` and
//! `attribution` (method, the rarest spans with their rows and
//! contributors, the weights) in the response (the last SSE chunk when
//! streaming).

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
use trib_serve::{ChatMessage, Completion, Prompt, SamplingParams, ServeError};
use trib_types::Address;

use super::ApiError;
use crate::serving::{
    AnswerEvent, Generation, PaidAnswer, PaidRequest, Serving, ServingError, SettledAnswer,
};

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

/// The response of a [`ServingError`].
fn serving_error(e: ServingError) -> Response {
    match e {
        ServingError::Engine(e) => error_response(e),
        ServingError::UnknownKey => unauthorized(&e.to_string()).into_response(),
        ServingError::OneChoiceOnly => {
            ApiError::bad_request("invalid_request", e.to_string()).into_response()
        }
        ServingError::UnknownModel { .. } => ApiError {
            status: StatusCode::NOT_FOUND,
            code: "model_not_found",
            message: e.to_string(),
        }
        .into_response(),
        ServingError::Ledger(_) | ServingError::SettlementTask(_) | ServingError::Settlement(_) => {
            ApiError::internal(e.to_string()).into_response()
        }
    }
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
    s.authenticate(key)
        .map_err(|e| unauthorized(&e.to_string()))
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
        Ok(paid_request(
            payer,
            text.clone(),
            Prompt::Text(text),
            b.common,
        ))
    };
    match run.await {
        Ok((req, stream)) => respond(s, Kind::Text, req, stream).await,
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
        Ok::<_, ApiError>(paid_request(
            payer,
            shown,
            Prompt::Chat(b.messages),
            b.common,
        ))
    };
    match run.await {
        Ok((req, stream)) => respond(s, Kind::Chat, req, stream).await,
        Err(e) => e.into_response(),
    }
}

/// The service's request from the parsed body, and whether to stream.
fn paid_request(
    payer: Address,
    prompt_text: String,
    prompt: Prompt,
    c: CommonFields,
) -> (PaidRequest, bool) {
    let mut sampling = SamplingParams::default();
    if let Some(t) = c.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = c.top_p {
        sampling.top_p = p;
    }
    sampling.seed = c.seed;
    let req = PaidRequest {
        payer,
        model: c.model,
        prompt_text,
        prompt,
        sampling,
        max_tokens: c.max_completion_tokens.or(c.max_tokens),
        stop: match c.stop {
            None => Vec::new(),
            Some(Stop::One(x)) => vec![x],
            Some(Stop::Many(v)) => v,
        },
        n: c.n,
    };
    (req, c.stream)
}

/// Runs a paid request through the service ([`Serving::admit`], then the
/// whole answer or its events) and maps the outcome to a response.
async fn respond(s: S, kind: Kind, req: PaidRequest, stream: bool) -> Response {
    let model = req.model.clone();
    let generation = match s.admit(req).await {
        Ok(g) => g,
        Err(e) => return serving_error(e),
    };
    let shape = Shape {
        kind,
        model,
        id: format!("cmpl-{}", generation.id),
        created: now_secs(),
    };
    if stream {
        stream_response(shape, generation).into_response()
    } else {
        match generation.finish().await {
            Ok(paid) => Json(shape.full_response(&paid)).into_response(),
            Err(e) => serving_error(e),
        }
    }
}

/// The OpenAI shape of one response: kind, id, creation time and model.
struct Shape {
    kind: Kind,
    model: String,
    id: String,
    created: u64,
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Text, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn usage(done: &Completion) -> Value {
        json!({
            "prompt_tokens": done.usage.prompt_tokens,
            "completion_tokens": done.usage.completion_tokens,
            "total_tokens": done.usage.total_tokens(),
        })
    }

    fn full_response(&self, paid: &PaidAnswer) -> Value {
        let (answer, done) = (&paid.answer, &paid.completion);
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
        merge(&mut v, settlement_fields(&paid.settled));
        v
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

    fn final_chunk(
        &self,
        done: &Completion,
        settled: &Result<SettledAnswer, ServingError>,
    ) -> Value {
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
        match settled {
            Ok(s) => merge(&mut v, settlement_fields(s)),
            Err(e) => merge(&mut v, json!({ "settlement_error": e.to_string() })),
        }
        v
    }
}

/// The fields a settled answer adds to its response: `receipt_id`,
/// `settlement_tx`, `fee` and the compact `attribution`.
fn settlement_fields(done: &SettledAnswer) -> Value {
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
    let settled = &done.settled;
    json!({
        "receipt_id": settled.receipt,
        "settlement_tx": settled.tx,
        "fee": { "base_units": settled.fee.0.to_string(), "open": settled.fee.to_open_string() },
        "attribution": attribution,
    })
}

fn merge(v: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, extra) {
        a.extend(b);
    }
}

/// The answer's events as server-sent events: a chunk per delta, the final
/// chunk (usage and settlement) when the service says it is done, or an
/// error chunk, then `data: [DONE]`.
fn stream_response(
    shape: Shape,
    generation: Generation,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    struct St {
        shape: Shape,
        generation: Generation,
        first: bool,
        closed: bool,
    }
    let st = St {
        shape,
        generation,
        first: true,
        closed: false,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        if st.closed {
            return None;
        }
        let event = match st.generation.next().await {
            Some(AnswerEvent::Delta(text)) => {
                let chunk = st.shape.delta_chunk(&text, st.first);
                st.first = false;
                Event::default().data(chunk.to_string())
            }
            Some(AnswerEvent::Done {
                completion,
                settled,
            }) => Event::default().data(st.shape.final_chunk(&completion, &settled).to_string()),
            Some(AnswerEvent::Failed(e)) => {
                let err = serve_error(e);
                Event::default().data(
                    json!({ "error": { "code": err.code, "message": err.message } }).to_string(),
                )
            }
            None => {
                st.closed = true;
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
