//! Datanet routes: descriptors, contributions (upload and validation),
//! publish plans, versions, rows, export, leaderboards and histories.
//! Everything that changes the ledger is a transaction the user signs; these
//! routes prepare and explain it (docs/node.md, "Datanets"). Reads of a
//! permissioned datanet's rows (rows, export) and of contributor histories
//! are authenticated by a signed request ([`crate::datanets::signed_read`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use trib_datanet::{FileKind, PageRequest};
use trib_types::Address;

use super::{ApiError, AppState};
use crate::datanets::{
    signed_read, ContributionResponse, ContributionView, CreateDatanetBody, CreateDatanetResponse,
    DatanetService, DatanetView, LeaderboardEntry, PublishPlan, RowView, VersionView,
};

type Svc = Arc<DatanetService>;

/// A page of items and the cursor of the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageView<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` at the end.
    pub next: Option<String>,
}

pub(crate) fn routes(svc: Svc) -> Router<AppState> {
    Router::new()
        .route("/v1/datanets", post(create).get(list))
        .route("/v1/datanets/{name}", get(show))
        .route(
            "/v1/datanets/{name}/contributions",
            post(contribute).get(contributions),
        )
        .route("/v1/datanets/{name}/publish", post(publish))
        .route("/v1/datanets/{name}/versions", get(versions))
        .route("/v1/datanets/{name}/versions/{version}/rows", get(rows))
        .route("/v1/datanets/{name}/versions/{version}/export", get(export))
        .route("/v1/datanets/{name}/leaderboard", get(leaderboard))
        .route("/v1/contributors/{address}/contributions", get(history))
        .with_state(svc)
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::bad_request("malformed_json", r.body_text())
    }
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("datanet task failed: {e}")))?
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse().map_err(|e: trib_types::AddressParseError| {
        ApiError::bad_request("bad_address", e.to_string())
    })
}

/// The verified signer of this request (`None`: anonymous), or a 401.
fn signer(
    s: &DatanetService,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
) -> Result<Option<Address>, ApiError> {
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    signed_read::verify(
        headers,
        method.as_str(),
        path_and_query,
        b"",
        signed_read::now(),
        &s.replays,
    )
}

fn parse_version(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(
            "bad_version",
            format!("version {s:?} is not a positive integer"),
        )
    })
}

async fn create(
    State(s): State<Svc>,
    body: Result<Json<CreateDatanetBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CreateDatanetResponse>), ApiError> {
    let Json(body) = body?;
    let r = blocking(move || s.create_with_quotas(body.request, body.quotas)).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

async fn list(State(s): State<Svc>) -> Result<Json<Vec<DatanetView>>, ApiError> {
    Ok(Json(blocking(move || s.list()).await?))
}

async fn show(
    State(s): State<Svc>,
    Path(name): Path<String>,
) -> Result<Json<DatanetView>, ApiError> {
    Ok(Json(blocking(move || s.show(&name)).await?))
}

/// Query of a contribution upload (the body is the file's raw bytes).
#[derive(Debug, Deserialize)]
struct UploadQuery {
    /// Who contributes (and will sign `Contribute`).
    contributor: String,
    /// The file name as uploaded.
    file_name: String,
    /// Declared type (`txt`, `md`, `jsonl`, `csv`, `pdf`, `docx`).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// For CSV: the text column.
    csv_column: Option<String>,
}

async fn contribute(
    State(s): State<Svc>,
    Path(name): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ContributionResponse>), ApiError> {
    let Query(q) = q?;
    let body = body?;
    let contributor = parse_address(&q.contributor)?;
    let declared = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(k.parse::<FileKind>().map_err(|e| {
            ApiError::bad_request("bad_file_type", format!("declared type {k:?}: {e}"))
        })?),
    };
    let r = blocking(move || {
        s.contribute(
            &name,
            contributor,
            &q.file_name,
            declared,
            q.csv_column.as_deref(),
            &body,
        )
    })
    .await?;
    let status = if r.action.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(r)))
}

async fn contributions(
    State(s): State<Svc>,
    Path(name): Path<String>,
    page: Result<Query<PageRequest>, QueryRejection>,
) -> Result<Json<PageView<ContributionView>>, ApiError> {
    let Query(page) = page?;
    let (items, next) = blocking(move || s.contributions(&name, &page)).await?;
    Ok(Json(PageView { items, next }))
}

async fn history(
    State(s): State<Svc>,
    Path(address): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    page: Result<Query<PageRequest>, QueryRejection>,
) -> Result<Json<PageView<ContributionView>>, ApiError> {
    let Query(page) = page?;
    let who = parse_address(&address)?;
    let reader = signer(&s, &headers, &method, &uri)?;
    let (items, next) = blocking(move || s.history(&who, &page, reader.as_ref())).await?;
    Ok(Json(PageView { items, next }))
}

async fn publish(
    State(s): State<Svc>,
    Path(name): Path<String>,
) -> Result<Json<PublishPlan>, ApiError> {
    Ok(Json(blocking(move || s.plan_publish(&name)).await?))
}

async fn versions(
    State(s): State<Svc>,
    Path(name): Path<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    Ok(Json(blocking(move || s.versions(&name)).await?))
}

async fn rows(
    State(s): State<Svc>,
    Path((name, version)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    page: Result<Query<PageRequest>, QueryRejection>,
) -> Result<Json<PageView<RowView>>, ApiError> {
    let Query(page) = page?;
    let version = parse_version(&version)?;
    let reader = signer(&s, &headers, &method, &uri)?;
    let (items, next) = blocking(move || {
        s.authorize_read(&name, reader.as_ref())?;
        s.rows(&name, version, &page)
    })
    .await?;
    Ok(Json(PageView { items, next }))
}

async fn export(
    State(s): State<Svc>,
    Path((name, version)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let version = parse_version(&version)?;
    let reader = signer(&s, &headers, &method, &uri)?;
    let bytes = blocking(move || {
        s.authorize_read(&name, reader.as_ref())?;
        s.export(&name, version)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes))
}

async fn leaderboard(
    State(s): State<Svc>,
    Path(name): Path<String>,
) -> Result<Json<Vec<LeaderboardEntry>>, ApiError> {
    Ok(Json(blocking(move || s.leaderboard(&name)).await?))
}
