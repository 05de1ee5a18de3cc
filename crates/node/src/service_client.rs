//! A typed client for the datanet, model and job routes (the ledger routes
//! are [`NodeClient`]'s). Errors are [`ClientError`]s, typed API errors
//! included.

use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use trib_types::Address;

use trib_client::wire::{
    BaseModelView, ContributionView, CreateDatanetRequest, CreateDatanetResponse, DatanetView,
    ErrorBody, JobView, LeaderboardEntry, PageView, PublishPlan, RowView, VersionView,
};

use crate::client::{ClientError, NodeClient};

/// Client for `/v1/datanets`, `/v1/models` and `/v1/jobs`.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    base: String,
    http: reqwest::Client,
    /// Signs GET requests (datanet reads) and job submissions when set.
    signer: Option<trib_types::SecretKey>,
}

/// What a contribution upload carries beside the bytes.
#[derive(Debug, Clone, Default)]
pub struct Upload<'a> {
    /// The contributor's address.
    pub contributor: Option<Address>,
    /// The file name.
    pub file_name: &'a str,
    /// Declared type (`txt`, `md`, `jsonl`, `csv`, `pdf`, `docx`).
    pub kind: Option<&'a str>,
    /// CSV text column.
    pub csv_column: Option<&'a str>,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn page_query(after: Option<&str>, limit: usize) -> String {
    let mut q = format!("?limit={limit}");
    if let Some(a) = after {
        q.push_str(&format!("&after={}", enc(a)));
    }
    q
}

impl ServiceClient {
    /// A client for the same node as `node`. No overall timeout: job
    /// event streams last as long as the job.
    pub fn new(node: &NodeClient) -> Result<Self, ClientError> {
        let base = node.base_url().to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: base.clone(),
                source,
            })?;
        Ok(ServiceClient {
            base,
            http,
            signer: None,
        })
    }

    /// This client, signing every GET and job submission with `key` (the
    /// `x-trib-*` headers of [`crate::signed_read`]), as permissioned
    /// datanet reads and owned jobs require.
    pub fn with_signer(mut self, key: trib_types::SecretKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// A GET of `url`, signed when this client has a signer.
    fn signed_get(&self, url: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut req = self.http.get(url);
        if let Some(key) = &self.signer {
            let parsed = reqwest::Url::parse(url).map_err(|e| ClientError::Decode {
                url: url.to_string(),
                reason: format!("not a URL: {e}"),
            })?;
            let path_and_query = match parsed.query() {
                Some(q) => format!("{}?{q}", parsed.path()),
                None => parsed.path().to_string(),
            };
            let headers = crate::datanets::signed_read::sign(
                key,
                "GET",
                &path_and_query,
                b"",
                crate::datanets::signed_read::now(),
            );
            req = self.http.get(parsed);
            for (k, v) in headers {
                req = req.header(k, v);
            }
        }
        Ok(req)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => ClientError::Decode {
                url: url.to_string(),
                reason: format!("status {status} with a body that is not an API error: {text}"),
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(req, url).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.signed_get(&url)?;
        self.json(req.timeout(Duration::from_secs(120)), &url).await
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.json(
            self.http
                .post(&url)
                .json(body)
                .timeout(Duration::from_secs(120)),
            &url,
        )
        .await
    }

    /// `POST /v1/datanets`.
    pub async fn create_datanet(
        &self,
        req: &CreateDatanetRequest,
    ) -> Result<CreateDatanetResponse, ClientError> {
        self.post_json("/v1/datanets", req).await
    }

    /// `POST /v1/datanets` with upload quotas.
    pub async fn create_datanet_with_quotas(
        &self,
        req: &CreateDatanetRequest,
        quotas: trib_datanet::Quotas,
    ) -> Result<CreateDatanetResponse, ClientError> {
        let mut body = serde_json::to_value(req).map_err(|e| ClientError::Decode {
            url: format!("{}/v1/datanets", self.base),
            reason: format!("cannot encode the request: {e}"),
        })?;
        body["quotas"] = serde_json::json!(quotas);
        self.post_json("/v1/datanets", &body).await
    }

    /// `POST /v1/datanets/{name}/contributions` with the file's bytes: the
    /// validation report and, when accepted, the `Contribute` action (JSON,
    /// as [`crate::ContributionResponse`] serialises it).
    pub async fn contribute(
        &self,
        name: &str,
        upload: &Upload<'_>,
        bytes: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut q = format!("?file_name={}", enc(upload.file_name));
        if let Some(c) = &upload.contributor {
            q.push_str(&format!("&contributor={c}"));
        }
        if let Some(k) = upload.kind {
            q.push_str(&format!("&type={}", enc(k)));
        }
        if let Some(c) = upload.csv_column {
            q.push_str(&format!("&csv_column={}", enc(c)));
        }
        let url = format!("{}/v1/datanets/{}/contributions{q}", self.base, enc(name));
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .timeout(Duration::from_secs(300));
        self.json(req, &url).await
    }

    /// `POST /v1/datanets/{name}/publish`: the next version to sign.
    pub async fn publish_plan(&self, name: &str) -> Result<PublishPlan, ClientError> {
        self.post_json(
            &format!("/v1/datanets/{}/publish", enc(name)),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /v1/datanets`.
    pub async fn datanets(&self) -> Result<Vec<DatanetView>, ClientError> {
        self.get("/v1/datanets").await
    }

    /// `GET /v1/datanets/{name}`.
    pub async fn datanet(&self, name: &str) -> Result<DatanetView, ClientError> {
        self.get(&format!("/v1/datanets/{}", enc(name))).await
    }

    /// `GET /v1/datanets/{name}/versions`.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionView>, ClientError> {
        self.get(&format!("/v1/datanets/{}/versions", enc(name)))
            .await
    }

    /// `GET /v1/datanets/{name}/contributions`.
    pub async fn contributions(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PageView<ContributionView>, ClientError> {
        self.get(&format!(
            "/v1/datanets/{}/contributions{}",
            enc(name),
            page_query(after, limit)
        ))
        .await
    }

    /// `GET /v1/datanets/{name}/versions/{version}/rows`.
    pub async fn rows(
        &self,
        name: &str,
        version: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PageView<RowView>, ClientError> {
        self.get(&format!(
            "/v1/datanets/{}/versions/{version}/rows{}",
            enc(name),
            page_query(after, limit)
        ))
        .await
    }

    /// `GET /v1/contributors/{address}/contributions`.
    pub async fn history(
        &self,
        who: &Address,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PageView<ContributionView>, ClientError> {
        self.get(&format!(
            "/v1/contributors/{who}/contributions{}",
            page_query(after, limit)
        ))
        .await
    }

    /// `GET /v1/datanets/{name}/leaderboard`.
    pub async fn leaderboard(&self, name: &str) -> Result<Vec<LeaderboardEntry>, ClientError> {
        self.get(&format!("/v1/datanets/{}/leaderboard", enc(name)))
            .await
    }

    /// `GET /v1/datanets/{name}/versions/{version}/export`: the JSONL bytes
    /// (signed when the client has a signer: a permissioned datanet needs it).
    pub async fn export(&self, name: &str, version: u32) -> Result<Vec<u8>, ClientError> {
        let url = format!(
            "{}/v1/datanets/{}/versions/{version}/export",
            self.base,
            enc(name)
        );
        let req = self.signed_get(&url)?;
        let resp = self
            .send(req.timeout(Duration::from_secs(300)), &url)
            .await?;
        Ok(resp
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?
            .to_vec())
    }

    /// `GET /v1/models/base`.
    pub async fn base_models(&self) -> Result<Vec<BaseModelView>, ClientError> {
        self.get("/v1/models/base").await
    }

    /// `POST /v1/jobs` with the job's TOML, signed when this client has a
    /// signer (the node requires it when `owner` is given: the owner must
    /// be the signer).
    pub async fn submit_job(
        &self,
        toml: &str,
        owner: Option<&Address>,
    ) -> Result<JobView, ClientError> {
        let mut path_and_query = "/v1/jobs".to_string();
        if let Some(o) = owner {
            path_and_query.push_str(&format!("?owner={o}"));
        }
        let url = format!("{}{path_and_query}", self.base);
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/toml")
            .body(toml.to_string())
            .timeout(Duration::from_secs(120));
        if let Some(key) = &self.signer {
            for (k, v) in crate::datanets::signed_read::sign(
                key,
                "POST",
                &path_and_query,
                toml.as_bytes(),
                crate::datanets::signed_read::now(),
            ) {
                req = req.header(k, v);
            }
        }
        self.json(req, &url).await
    }

    /// `GET /v1/jobs`.
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        self.get("/v1/jobs").await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: u64) -> Result<JobView, ClientError> {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn cancel_job(&self, id: u64) -> Result<JobView, ClientError> {
        let url = format!("{}/v1/jobs/{id}", self.base);
        self.json(
            self.http.delete(&url).timeout(Duration::from_secs(30)),
            &url,
        )
        .await
    }

    /// Follows `GET /v1/jobs/{id}/events`, calling `on_event` with each
    /// event's JSON until the stream ends (after `done`, `failed` or
    /// `cancelled`). Returns the last event.
    pub async fn follow_job(
        &self,
        id: u64,
        mut on_event: impl FnMut(&serde_json::Value),
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let url = format!("{}/v1/jobs/{id}/events", self.base);
        let resp = self.send(self.http.get(&url), &url).await?;
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.trim_start())
                    .collect::<Vec<_>>()
                    .join("\n");
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
