//! ModelFactory job routes: submit (job TOML in the body), list, show,
//! follow progress as server-sent events, cancel.
//!
//! A submission that names an owner (`?owner=ADDR`) must be a signed request
//! from that owner ([`super::signed_read`], the same headers and
//! checks as permissioned datanet reads): the owner's address is what the job
//! reads permissioned datanets as, so it cannot be taken on trust. A signed
//! submission without `owner` is owned by its signer; an unsigned one without
//! `owner` stays anonymous (public datanets only), as before.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;

use trib_types::Address;

use super::signed_read::{self, ReplayGuard};
use super::{ApiError, AppState};
use crate::jobs::{JobError, JobQueue};
use trib_client::wire::JobView;

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let (status, code) = match &e {
            JobError::BadConfig(_) | JobError::UnknownBaseModel { .. } => {
                (StatusCode::BAD_REQUEST, "bad_job")
            }
            JobError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            JobError::Finished { .. } => (StatusCode::CONFLICT, "job_finished"),
            JobError::WorkerStopped => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

/// What the job routes share: the queue and the replay guard of signed
/// submissions.
#[derive(Clone)]
struct Routes {
    q: JobQueue,
    replays: Arc<ReplayGuard>,
}

impl axum::extract::FromRef<Routes> for JobQueue {
    fn from_ref(r: &Routes) -> JobQueue {
        r.q.clone()
    }
}

pub(crate) fn routes(q: JobQueue) -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .with_state(Routes {
            q,
            replays: Arc::default(),
        })
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("bad_job_id", format!("job id {s:?} is not a number")))
}

/// Query of a submission: who owns the job.
#[derive(Debug, Deserialize)]
struct SubmitQuery {
    owner: Option<String>,
}

/// The job's owner: the verified signer of the request, which must be the
/// `owner` it names (401 `missing_signature` when it names one unsigned, 401
/// for a bad signature, 403 `owner_mismatch` when signed by another key).
fn job_owner(
    claimed: Option<Address>,
    signer: Option<Address>,
) -> Result<Option<Address>, ApiError> {
    match (claimed, signer) {
        (None, signer) => Ok(signer),
        (Some(o), None) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "missing_signature",
            message: format!(
                "a job owned by {o} must be a signed request from {o} (x-trib-* headers over the method, path?query and body; `trib factory submit --key KEY` signs)"
            ),
        }),
        (Some(o), Some(s)) if o == s => Ok(Some(s)),
        (Some(o), Some(s)) => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "owner_mismatch",
            message: format!(
                "the request is signed by {s} but names the owner {o}: only {o} can submit a job it owns"
            ),
        }),
    }
}

async fn submit(
    State(r): State<Routes>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: String,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let Query(query) = query?;
    let claimed = query
        .owner
        .as_deref()
        .map(|s| {
            s.parse().map_err(|e: trib_types::AddressParseError| {
                ApiError::bad_request("bad_address", e.to_string())
            })
        })
        .transpose()?;
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let signer = signed_read::verify(
        &headers,
        method.as_str(),
        path_and_query,
        body.as_bytes(),
        trib_client::signed_read::now(),
        &r.replays,
    )?;
    let owner = job_owner(claimed, signer)?;
    let q = r.q;
    let view = tokio::task::spawn_blocking(move || q.submit(&body, owner))
        .await
        .map_err(|e| ApiError::internal(format!("job submission failed: {e}")))??;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

async fn list(State(q): State<JobQueue>) -> Json<Vec<JobView>> {
    Json(q.list())
}

async fn show(
    State(q): State<JobQueue>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(q.get(parse_id(&id)?)?))
}

async fn cancel(
    State(q): State<JobQueue>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(q.cancel(parse_id(&id)?)?))
}

fn to_event(v: &serde_json::Value) -> Event {
    let name = v.get("event").and_then(|e| e.as_str()).unwrap_or("message");
    Event::default().event(name).data(v.to_string())
}

/// `GET /v1/jobs/{id}/events`: every event so far, then the new ones until
/// the job ends (`done`, `failed` or `cancelled` is the last event).
async fn events(
    State(q): State<JobQueue>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (history, rx) = q.follow(parse_id(&id)?)?;
    let ended = history.iter().any(JobQueue::is_terminal);
    let replay = stream::iter(history.into_iter().map(|v| Ok(to_event(&v))));
    let live = stream::unfold((rx.filter(|_| !ended), false), |(rx, done)| async move {
        let mut rx = rx?;
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(v) => {
                    let end = JobQueue::is_terminal(&v);
                    return Some((Ok(to_event(&v)), (Some(rx), end)));
                }
                // A slow reader missed events; it keeps following.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(replay.chain(live)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_owner_must_be_the_signer() {
        let a = trib_types::SecretKey::from_seed([1; 32]).address();
        let b = trib_types::SecretKey::from_seed([2; 32]).address();
        assert_eq!(job_owner(None, None).unwrap(), None);
        assert_eq!(job_owner(None, Some(b)).unwrap(), Some(b));
        assert_eq!(job_owner(Some(a), Some(a)).unwrap(), Some(a));
        let e = job_owner(Some(a), None).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, "missing_signature")
        );
        let e = job_owner(Some(a), Some(b)).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, "owner_mismatch")
        );
    }
}
