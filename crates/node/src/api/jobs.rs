//! ModelFactory job routes: submit (job TOML in the body), list, show,
//! follow progress as server-sent events, cancel.
//!
//! Every job route acts for an account, so each takes a [`SignedBy`]
//! ([`super::auth`]; 401 `missing_signature` unsigned). A job is owned by
//! the signer of its submission (`?owner=ADDR`, when given, must be the
//! signer: 403 `owner_mismatch`); its owner's access is what permissioned
//! datanets are checked against. `GET /v1/jobs` lists the caller's own jobs
//! (the operator sees every job); a job of another account is answered 404,
//! exactly as a job that does not exist, so job ids do not tell who trains
//! what.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;

use trib_types::Address;

use super::auth::{Caller, SignedBy};
use super::{ApiError, AppState};
use crate::jobs::{JobError, JobQueue};
use trib_client::wire::JobView;

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let (status, code) = match &e {
            JobError::BadConfig(_) | JobError::UnknownBaseModel { .. } => {
                (StatusCode::BAD_REQUEST, "bad_job")
            }
            JobError::SourceNotAllowed { .. } => (StatusCode::FORBIDDEN, "source_not_allowed"),
            JobError::TooManyJobs { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_jobs"),
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

pub(crate) fn routes(q: JobQueue) -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", get(list).post(submit))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .with_state(q)
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

/// The job's owner: the signer, which must be the `owner` the request
/// names, if any (403 `owner_mismatch` otherwise).
fn job_owner(claimed: Option<Address>, signer: Address) -> Result<Address, ApiError> {
    match claimed {
        Some(o) if o != signer => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "owner_mismatch",
            message: format!(
                "the request is signed by {signer} but names the owner {o}: only {o} can submit a job it owns"
            ),
        }),
        _ => Ok(signer),
    }
}

/// Job `id` when `caller` may see it (its owner or the operator); 404
/// otherwise, the same answer as for a job that does not exist.
fn visible_job(q: &JobQueue, id: &str, caller: Caller) -> Result<JobView, ApiError> {
    let id = parse_id(id)?;
    let view = q.get(id)?;
    if view.owner.is_some_and(|o| caller.acts_for(&o)) || caller.is_operator() {
        Ok(view)
    } else {
        Err(JobError::NotFound { id }.into())
    }
}

async fn submit(
    signer: SignedBy,
    State(q): State<JobQueue>,
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
    let owner = job_owner(claimed, signer.address())?;
    let view = tokio::task::spawn_blocking(move || q.submit(&body, owner))
        .await
        .map_err(|e| ApiError::internal(format!("job submission failed: {e}")))??;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `GET /v1/jobs`: the caller's jobs (every job for the operator).
async fn list(SignedBy(caller): SignedBy, State(q): State<JobQueue>) -> Json<Vec<JobView>> {
    Json(
        q.list()
            .into_iter()
            .filter(|j| caller.is_operator() || j.owner.is_some_and(|o| caller.acts_for(&o)))
            .collect(),
    )
}

async fn show(
    SignedBy(caller): SignedBy,
    State(q): State<JobQueue>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(visible_job(&q, &id, caller)?))
}

async fn cancel(
    SignedBy(caller): SignedBy,
    State(q): State<JobQueue>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&q, &id, caller)?;
    tracing::info!(target: "trib::node::jobs", id = job.id, by = ?caller.address(), "cancel requested");
    Ok(Json(q.cancel(job.id)?))
}

fn to_event(v: &serde_json::Value) -> Event {
    let name = v.get("event").and_then(|e| e.as_str()).unwrap_or("message");
    Event::default().event(name).data(v.to_string())
}

/// `GET /v1/jobs/{id}/events`: every event so far, then the new ones until
/// the job ends (`done`, `failed` or `cancelled` is the last event).
async fn events(
    SignedBy(caller): SignedBy,
    State(q): State<JobQueue>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = visible_job(&q, &id, caller)?;
    let (history, rx) = q.follow(job.id)?;
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
        assert_eq!(job_owner(None, b).unwrap(), b);
        assert_eq!(job_owner(Some(a), a).unwrap(), a);
        let e = job_owner(Some(a), b).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, "owner_mismatch")
        );
    }
}
