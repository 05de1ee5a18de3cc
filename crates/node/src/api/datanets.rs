//! Datanet routes: descriptors, contributions (upload and validation),
//! publish plans, versions, rows, export, leaderboards and histories.
//! Everything that changes the ledger is a transaction the user signs; these
//! routes prepare and explain it (docs/node.md, "Datanets"). Who may call
//! each route is in `docs/security.md`: creating a datanet and uploading a
//! contribution act for an account, so they take a [`SignedBy`] (the
//! descriptor's owner and the contributor are the signer, 403 otherwise);
//! reads of a permissioned datanet's rows (rows, export) and of contributor
//! histories depend on the signed [`Caller`] ([`super::auth`]). The
//! service's [`DatanetServiceError`] becomes a status and a code here.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use trib_datanet::{DatanetError, FileKind, PageRequest};
use trib_types::Address;

use super::auth::{Caller, SignedBy};
use super::{ApiError, AppState};
use crate::datanets::{DatanetService, DatanetServiceError};
use trib_client::wire::{
    ContributionResponse, ContributionView, CreateDatanetBody, CreateDatanetResponse, DatanetView,
    LeaderboardEntry, PageView, PublishPlan, RowView, VersionView,
};

type Svc = Arc<DatanetService>;

/// What the datanet routes share: the service and the node's request-body
/// limit (uploads stream past axum's body extractors, so they apply it
/// themselves).
#[derive(Clone)]
struct Routes {
    svc: Svc,
    max_request_bytes: usize,
}

impl From<DatanetServiceError> for ApiError {
    fn from(e: DatanetServiceError) -> Self {
        use DatanetServiceError as E;
        use StatusCode as S;
        // Ledger errors map as everywhere else (api/error.rs).
        let e = match e {
            E::Ledger(l) => return l.into(),
            other => other,
        };
        let (status, code) = match &e {
            E::Store(store) => store_status(store),
            E::UnknownDatanet { .. }
            | E::UnknownDatanetId { .. }
            | E::NoDescriptor { .. }
            | E::NotPublished { .. }
            | E::PastLatest { .. } => (S::NOT_FOUND, "not_found"),
            E::ExistsOnLedger { .. } | E::DifferentDescriptor { .. } => {
                (S::CONFLICT, "datanet_exists")
            }
            E::SignatureRequired { .. } => (S::UNAUTHORIZED, "missing_signature"),
            E::NoAccess { .. } => (S::FORBIDDEN, "no_access"),
            E::Ledger(_)
            | E::RootMismatch { .. }
            | E::VersionGap { .. }
            | E::BadExportRow { .. } => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

/// The status and code of a datanet store error.
fn store_status(e: &DatanetError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        DatanetError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
        DatanetError::DatanetExists(_) => (S::CONFLICT, "datanet_exists"),
        DatanetError::ContributionExists(_) => (S::CONFLICT, "contribution_exists"),
        DatanetError::NotPending { .. } => (S::CONFLICT, "not_pending"),
        DatanetError::NothingToPublish(_) => (S::CONFLICT, "nothing_to_publish"),
        DatanetError::InvalidDescriptor { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_descriptor"),
        DatanetError::Parse { .. } => (S::UNPROCESSABLE_ENTITY, "unparsable_file"),
        DatanetError::Io { .. }
        | DatanetError::ObjectStore(_)
        | DatanetError::Store(_)
        | DatanetError::Decode(_)
        | DatanetError::CorruptBlob { .. } => (S::INTERNAL_SERVER_ERROR, "internal"),
        _ => (S::UNPROCESSABLE_ENTITY, "invalid_datanet_input"),
    }
}

impl axum::extract::FromRef<Routes> for Svc {
    fn from_ref(r: &Routes) -> Svc {
        r.svc.clone()
    }
}

pub(crate) fn routes(svc: Svc, max_request_bytes: usize) -> Router<AppState> {
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
        .with_state(Routes {
            svc,
            max_request_bytes,
        })
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DatanetServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("datanet task failed: {e}")))??)
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse().map_err(|e: trib_types::AddressParseError| {
        ApiError::bad_request("bad_address", e.to_string())
    })
}

fn parse_version(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::bad_request(
            "bad_version",
            format!("version {s:?} is not a positive integer"),
        )
    })
}

/// A 403 for a request that names another account than its signer.
fn not_the_signer(what: &str, named: &Address, signer: &Address) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "not_the_signer",
        message: format!(
            "the request names {named} as {what} but is signed by {signer}: \
             only {named} can sign it"
        ),
    }
}

async fn create(
    signer: SignedBy,
    State(s): State<Svc>,
    body: Result<Json<CreateDatanetBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CreateDatanetResponse>), ApiError> {
    let Json(body) = body?;
    if body.request.owner != signer.address() {
        return Err(not_the_signer(
            "the datanet's owner",
            &body.request.owner,
            &signer.address(),
        ));
    }
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

/// Query of a contribution upload. With a raw body every field but the
/// optional ones comes from here; a multipart form may carry them as text
/// fields instead (a form field wins over the query).
#[derive(Debug, Default, Deserialize)]
struct UploadQuery {
    /// Who contributes (and will sign `Contribute`): optional, and when
    /// given it must be the request's signer.
    contributor: Option<String>,
    /// The file name as uploaded (a multipart file part's own name when
    /// absent).
    file_name: Option<String>,
    /// Declared type (`txt`, `md`, `jsonl`, `csv`, `pdf`, `docx`).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// For CSV: the text column.
    csv_column: Option<String>,
}

/// An upload read in full, within its limits.
struct Upload {
    fields: UploadQuery,
    bytes: Vec<u8>,
}

/// The byte limits of one upload: the datanet's `max_file_bytes` and the
/// node's request limit, whichever is smaller, named in the 413.
#[derive(Clone, Copy)]
struct UploadLimit<'a> {
    datanet: &'a str,
    max_file_bytes: u64,
    max_request_bytes: usize,
}

impl UploadLimit<'_> {
    /// Refuses a file that has grown to `len` bytes, before reading more.
    fn check(&self, len: usize) -> Result<(), ApiError> {
        if len as u64 > self.max_file_bytes {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "file_too_large",
                message: format!(
                    "the upload is over datanet {:?}'s max_file_bytes ({} bytes); \
                     nothing was stored",
                    self.datanet, self.max_file_bytes
                ),
            });
        }
        if len > self.max_request_bytes {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "oversize",
                message: format!(
                    "the upload is over this node's request limit ({} bytes, \
                     max_request_bytes in node.toml); nothing was stored",
                    self.max_request_bytes
                ),
            });
        }
        Ok(())
    }
}

/// Reads an upload: the raw file as the body (any content type but
/// multipart), or a `multipart/form-data` form whose `file` part is the
/// file and whose `contributor`, `file_name`, `type` and `csv_column`
/// parts are text. Either way the body is streamed and refused with a 413
/// as soon as it passes the limit, so an oversized upload is never held in
/// memory whole.
async fn read_upload(
    req: Request,
    mut fields: UploadQuery,
    limit: UploadLimit<'_>,
) -> Result<Upload, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let mut stream = req.into_body().into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("bad_body", format!("reading the upload failed: {e}"))
            })?;
            limit.check(bytes.len() + chunk.len())?;
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Upload { fields, bytes });
    }
    let form_err = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request("bad_multipart", format!("malformed multipart form: {e}"))
    };
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
    let mut file: Option<Vec<u8>> = None;
    while let Some(mut part) = form.next_field().await.map_err(form_err)? {
        let name = part.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::bad_request(
                        "bad_multipart",
                        "the form has more than one `file` part (upload one file per request)",
                    ));
                }
                if fields.file_name.is_none() {
                    fields.file_name = part.file_name().map(str::to_string);
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = part.chunk().await.map_err(form_err)? {
                    limit.check(bytes.len() + chunk.len())?;
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(bytes);
            }
            "contributor" | "file_name" | "type" | "csv_column" => {
                let text = part.text().await.map_err(form_err)?;
                let slot = match name.as_str() {
                    "contributor" => &mut fields.contributor,
                    "file_name" => &mut fields.file_name,
                    "type" => &mut fields.kind,
                    _ => &mut fields.csv_column,
                };
                *slot = Some(text);
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_multipart",
                    format!(
                        "unknown form field {other:?} (expected file, contributor, \
                         file_name, type, csv_column)"
                    ),
                ))
            }
        }
    }
    let bytes =
        file.ok_or_else(|| ApiError::bad_request("bad_multipart", "the form has no `file` part"))?;
    Ok(Upload { fields, bytes })
}

async fn contribute(
    signer: SignedBy,
    State(r): State<Routes>,
    Path(name): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    req: Request,
) -> Result<(StatusCode, Json<ContributionResponse>), ApiError> {
    let Query(q) = q?;
    let s = r.svc;
    let max_file_bytes = {
        let (s, name) = (s.clone(), name.clone());
        blocking(move || s.max_file_bytes(&name)).await?
    };
    let limit = UploadLimit {
        datanet: &name,
        max_file_bytes,
        max_request_bytes: r.max_request_bytes,
    };
    let Upload { fields, bytes } = read_upload(req, q, limit).await?;
    // The contributor is the signer; a `contributor` field, when given,
    // must name it (so nobody uses up another's quota or records
    // rejections against them).
    let contributor = signer.address();
    if let Some(named) = fields.contributor.as_deref() {
        let named = parse_address(named)?;
        if named != contributor {
            return Err(not_the_signer("the contributor", &named, &contributor));
        }
    }
    let file_name = fields.file_name.ok_or_else(|| {
        ApiError::bad_request(
            "missing_file_name",
            "pass `file_name` (query parameter or form field) or name the form's file part",
        )
    })?;
    let declared = match fields.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(k.parse::<FileKind>().map_err(|e| {
            ApiError::bad_request("bad_file_type", format!("declared type {k:?}: {e}"))
        })?),
    };
    let r = blocking(move || {
        s.contribute(
            &name,
            contributor,
            &file_name,
            declared,
            fields.csv_column.as_deref(),
            &bytes,
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
    caller: Caller,
    State(s): State<Svc>,
    Path(address): Path<String>,
    page: Result<Query<PageRequest>, QueryRejection>,
) -> Result<Json<PageView<ContributionView>>, ApiError> {
    let Query(page) = page?;
    let who = parse_address(&address)?;
    let reader = caller.address();
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
    caller: Caller,
    State(s): State<Svc>,
    Path((name, version)): Path<(String, String)>,
    page: Result<Query<PageRequest>, QueryRejection>,
) -> Result<Json<PageView<RowView>>, ApiError> {
    let Query(page) = page?;
    let version = parse_version(&version)?;
    let reader = caller.address();
    let (items, next) = blocking(move || {
        s.authorize_read(&name, reader.as_ref())?;
        s.rows(&name, version, &page)
    })
    .await?;
    Ok(Json(PageView { items, next }))
}

async fn export(
    caller: Caller,
    State(s): State<Svc>,
    Path((name, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let version = parse_version(&version)?;
    let reader = caller.address();
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
