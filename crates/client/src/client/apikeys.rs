//! The API-key routes: list, create and revoke the signer's keys. Every
//! call must come from a client with a signer (`with_signer`): the node
//! answers only the account that signed.

use super::{enc, NodeClient, SERVICE_TIMEOUT};
use crate::error::ClientError;
use crate::wire::{ApiKeyList, ApiKeyView, NewApiKeyView};

impl NodeClient {
    /// `GET /v1/apikeys`, signed: the signer's keys and its allowance for
    /// the node's operator.
    pub async fn api_keys(&self) -> Result<ApiKeyList, ClientError> {
        self.get("/v1/apikeys", SERVICE_TIMEOUT).await
    }

    /// `POST /v1/apikeys`, signed: a new key charging the signer.
    pub async fn create_api_key(&self) -> Result<NewApiKeyView, ClientError> {
        let url = self.url("/v1/apikeys");
        let req = self.request(reqwest::Method::POST, &url, b"")?;
        self.json(req.timeout(SERVICE_TIMEOUT), &url).await
    }

    /// `DELETE /v1/apikeys/{id}`, signed: revokes one of the signer's keys.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKeyView, ClientError> {
        let url = self.url(&format!("/v1/apikeys/{}", enc(id)));
        let req = self.request(reqwest::Method::DELETE, &url, b"")?;
        self.json(req.timeout(SERVICE_TIMEOUT), &url).await
    }
}
