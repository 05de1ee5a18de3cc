//! ModelFactory job routes: submit (job TOML in the body), list, show,
//! follow progress as server-sent events, cancel.

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

use super::{ApiError, AppState};
use crate::jobs::{JobQueue, JobView};

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

async fn submit(
    State(q): State<JobQueue>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: String,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let Query(query) = query?;
    let owner = query
        .owner
        .as_deref()
        .map(|s| {
            s.parse().map_err(|e: trib_types::AddressParseError| {
                ApiError::bad_request("bad_address", e.to_string())
            })
        })
        .transpose()?;
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
