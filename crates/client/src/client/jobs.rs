//! The base-model and training-job routes: the model catalogue, job
//! submission, status, cancellation and the event stream. Every job route
//! acts for the job's owner, so the client needs a signer
//! ([`NodeClient::with_signer`]): the submitter owns the job, and only it
//! (or the operator) sees, follows and cancels it.

use futures::StreamExt;
use trib_types::Address;

use super::sse::SseBuffer;
use super::{NodeClient, SERVICE_TIMEOUT};
use crate::error::ClientError;
use crate::wire::{BaseModelView, JobView};

/// Cancelling a job.
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl NodeClient {
    /// `GET /v1/models/base`.
    pub async fn base_models(&self) -> Result<Vec<BaseModelView>, ClientError> {
        self.get("/v1/models/base", SERVICE_TIMEOUT).await
    }

    /// `POST /v1/jobs` with the job's TOML, signed by this client's signer,
    /// which owns the job (`owner`, when given, must be the signer).
    pub async fn submit_job(
        &self,
        toml: &str,
        owner: Option<&Address>,
    ) -> Result<JobView, ClientError> {
        let mut path = "/v1/jobs".to_string();
        if let Some(o) = owner {
            path.push_str(&format!("?owner={o}"));
        }
        let url = self.url(&path);
        let req = self
            .request(reqwest::Method::POST, &url, toml.as_bytes())?
            .header(reqwest::header::CONTENT_TYPE, "application/toml")
            .body(toml.to_string())
            .timeout(SERVICE_TIMEOUT);
        self.json(req, &url).await
    }

    /// `GET /v1/jobs`: the signer's jobs (every job for the operator).
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        self.get("/v1/jobs", SERVICE_TIMEOUT).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: u64) -> Result<JobView, ClientError> {
        self.get(&format!("/v1/jobs/{id}"), SERVICE_TIMEOUT).await
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn cancel_job(&self, id: u64) -> Result<JobView, ClientError> {
        let url = self.url(&format!("/v1/jobs/{id}"));
        let req = self.request(reqwest::Method::DELETE, &url, b"")?;
        self.json(req.timeout(CANCEL_TIMEOUT), &url).await
    }

    /// Follows `GET /v1/jobs/{id}/events`, calling `on_event` with each
    /// event's JSON until the stream ends (after `done`, `failed` or
    /// `cancelled`). Returns the last event.
    pub async fn follow_job(
        &self,
        id: u64,
        mut on_event: impl FnMut(&serde_json::Value),
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let url = self.url(&format!("/v1/jobs/{id}/events"));
        let resp = self
            .send(self.request(reqwest::Method::GET, &url, b"")?, &url)
            .await?;
        let mut stream = resp.bytes_stream();
        let mut events = SseBuffer::default();
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            events.push(&chunk.map_err(ClientError::unreachable(&url))?);
            while let Some(data) = events.next_data() {
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                let v: serde_json::Value =
                    serde_json::from_str(&data).map_err(|e| ClientError::Decode {
                        url: url.clone(),
                        reason: format!("event is not JSON: {e}"),
                    })?;
                on_event(&v);
                last = Some(v);
            }
        }
        Ok(last)
    }
}
