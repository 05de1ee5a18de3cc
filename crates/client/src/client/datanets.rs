//! The datanet routes: create, contribute, publish, and the views of
//! datanets, contributions, versions, rows, the leaderboard and exports.

use trib_types::Address;

use super::{enc, page_query, NodeClient, SERVICE_TIMEOUT, TRANSFER_TIMEOUT};
use crate::error::ClientError;
use crate::wire::{
    ContributionView, CreateDatanetBody, CreateDatanetRequest, CreateDatanetResponse, DatanetView,
    LeaderboardEntry, PageView, PublishPlan, RowView, VersionView,
};

/// What a contribution upload carries beside the bytes.
#[derive(Debug, Clone, Default)]
pub struct Upload<'a> {
    /// The contributor's address (optional: the node takes the signer; when
    /// given it must be the signer).
    pub contributor: Option<Address>,
    /// The file name.
    pub file_name: &'a str,
    /// Declared type (`txt`, `md`, `jsonl`, `csv`, `pdf`, `docx`).
    pub kind: Option<&'a str>,
    /// CSV text column.
    pub csv_column: Option<&'a str>,
}

impl NodeClient {
    /// `POST /v1/datanets` (signed by the owner the request names: give this
    /// client its key).
    pub async fn create_datanet(
        &self,
        req: &CreateDatanetRequest,
    ) -> Result<CreateDatanetResponse, ClientError> {
        self.post_json("/v1/datanets", req, SERVICE_TIMEOUT).await
    }

    /// `POST /v1/datanets` with upload quotas.
    pub async fn create_datanet_with_quotas(
        &self,
        req: &CreateDatanetRequest,
        quotas: trib_datanet::Quotas,
    ) -> Result<CreateDatanetResponse, ClientError> {
        let body = CreateDatanetBody {
            request: req.clone(),
            quotas: Some(quotas),
        };
        self.post_json("/v1/datanets", &body, SERVICE_TIMEOUT).await
    }

    /// `POST /v1/datanets/{name}/contributions` with the file's bytes: the
    /// validation report and, when accepted, the `Contribute` action (JSON,
    /// as [`crate::wire::ContributionResponse`] serialises it). The node
    /// takes uploads only signed by the contributor: give this client the
    /// contributor's key ([`NodeClient::with_signer`]).
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
        let url = self.url(&format!("/v1/datanets/{}/contributions{q}", enc(name)));
        let req = self
            .request(reqwest::Method::POST, &url, &bytes)?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .timeout(TRANSFER_TIMEOUT);
        self.json(req, &url).await
    }

    /// `POST /v1/datanets/{name}/publish`: the next version to sign.
    pub async fn publish_plan(&self, name: &str) -> Result<PublishPlan, ClientError> {
        self.post_json(
            &format!("/v1/datanets/{}/publish", enc(name)),
            &serde_json::json!({}),
            SERVICE_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/datanets`.
    pub async fn datanets(&self) -> Result<Vec<DatanetView>, ClientError> {
        self.get("/v1/datanets", SERVICE_TIMEOUT).await
    }

    /// `GET /v1/datanets/{name}`.
    pub async fn datanet(&self, name: &str) -> Result<DatanetView, ClientError> {
        self.get(&format!("/v1/datanets/{}", enc(name)), SERVICE_TIMEOUT)
            .await
    }

    /// `GET /v1/datanets/{name}/versions`.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionView>, ClientError> {
        self.get(
            &format!("/v1/datanets/{}/versions", enc(name)),
            SERVICE_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/datanets/{name}/contributions`.
    pub async fn contributions(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PageView<ContributionView>, ClientError> {
        self.get(
            &format!(
                "/v1/datanets/{}/contributions{}",
                enc(name),
                page_query(after, limit)
            ),
            SERVICE_TIMEOUT,
        )
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
        self.get(
            &format!(
                "/v1/datanets/{}/versions/{version}/rows{}",
                enc(name),
                page_query(after, limit)
            ),
            SERVICE_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/contributors/{address}/contributions`.
    pub async fn history(
        &self,
        who: &Address,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PageView<ContributionView>, ClientError> {
        self.get(
            &format!(
                "/v1/contributors/{who}/contributions{}",
                page_query(after, limit)
            ),
            SERVICE_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/datanets/{name}/leaderboard`.
    pub async fn leaderboard(&self, name: &str) -> Result<Vec<LeaderboardEntry>, ClientError> {
        self.get(
            &format!("/v1/datanets/{}/leaderboard", enc(name)),
            SERVICE_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/datanets/{name}/versions/{version}/export`: the JSONL bytes
    /// (signed when the client has a signer: a permissioned datanet needs it).
    pub async fn export(&self, name: &str, version: u32) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!(
            "/v1/datanets/{}/versions/{version}/export",
            enc(name)
        ));
        let req = self.request(reqwest::Method::GET, &url, b"")?;
        self.bytes(req.timeout(TRANSFER_TIMEOUT), &url).await
    }
}
