//! A typed HTTP client for the node API, so the CLI (and tests, and the demo)
//! never build URLs or parse JSON by hand.

use std::time::Duration;

use serde::de::DeserializeOwned;
use trib_ledger::{Action, Params, Proposal, SignedTransaction, StateProof, Transaction};
use trib_types::{Address, Amount, Canonical, SecretKey, TxHash};

use trib_client::wire::ErrorBody;
use trib_client::wire::{
    AccountView, BlockView, StatusView, SubmitResponse, SupplyView, TxStatus, TxView,
};

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is not a valid http(s) URL.
    #[error("invalid node URL {0:?}: expected e.g. http://127.0.0.1:8080")]
    BadUrl(String),
    /// The node could not be reached (not running, wrong address).
    #[error("cannot reach the node at {url}: {source} (is `trib node` running?)")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The node answered with a typed error.
    #[error("node refused the request ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code (`insufficient_balance`, `not_found`…).
        code: String,
        /// The node's message.
        message: String,
    },
    /// The node's answer did not have the expected shape.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL called.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A transaction was not committed within the wait limit.
    #[error("transaction {hash} was not committed within {waited:?} (still {status})")]
    WaitTimeout {
        /// The transaction.
        hash: TxHash,
        /// How long we waited.
        waited: Duration,
        /// Its last known status.
        status: &'static str,
    },
}

impl ClientError {
    /// The API error code, if the node answered with a typed error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client for one node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
}

impl NodeClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 9 {
            return Err(ClientError::BadUrl(base));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: base.clone(),
                source,
            })?;
        Ok(NodeClient { base, http })
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        decode(url, resp).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/accounts/{address}` (absent accounts read as zero).
    pub async fn account(&self, address: &Address) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/accounts/{address}")).await
    }

    /// `GET /v1/tx/{hash}`; `None` if the node does not know the transaction.
    pub async fn tx(&self, hash: &TxHash) -> Result<Option<TxView>, ClientError> {
        match self.get(&format!("/v1/tx/{hash}")).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/blocks/{height}`, or the latest block for `None`.
    pub async fn block(&self, height: Option<u64>) -> Result<BlockView, ClientError> {
        match height {
            Some(h) => self.get(&format!("/v1/blocks/{h}")).await,
            None => self.get("/v1/blocks/latest").await,
        }
    }

    /// `GET /v1/proposals`.
    pub async fn proposals(&self) -> Result<Vec<Proposal>, ClientError> {
        self.get("/v1/proposals").await
    }

    /// `GET /v1/proposals/{id}`.
    pub async fn proposal(&self, id: u64) -> Result<Proposal, ClientError> {
        self.get(&format!("/v1/proposals/{id}")).await
    }

    /// `GET /v1/params`.
    pub async fn params(&self) -> Result<Params, ClientError> {
        self.get("/v1/params").await
    }

    /// `GET /v1/supply`.
    pub async fn supply(&self) -> Result<SupplyView, ClientError> {
        self.get("/v1/supply").await
    }

    /// `GET /v1/proofs?key=…[&height=…]`.
    pub async fn proof(&self, key: &str, height: Option<u64>) -> Result<StateProof, ClientError> {
        let mut url = format!("/v1/proofs?key={}", encode_query(key));
        if let Some(h) = height {
            url.push_str(&format!("&height={h}"));
        }
        self.get(&url).await
    }

    /// `POST /v1/tx` with the hex of the canonical encoding.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<TxHash, ClientError> {
        let url = format!("{}/v1/tx", self.base);
        let resp = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(hex::encode(tx.encode()))
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let r: SubmitResponse = decode(url, resp).await?;
        Ok(r.hash)
    }

    /// Signs `action` with `key` (chain id from the node, the sender's next
    /// nonce from the node, `fee` or the governed minimum fee) and submits it.
    pub async fn sign_and_submit(
        &self,
        key: &SecretKey,
        fee: Option<Amount>,
        action: Action,
    ) -> Result<SignedTransaction, ClientError> {
        let status = self.status().await?;
        let account = self.account(&key.address()).await?;
        let fee = match fee {
            Some(f) => f,
            None => self.params().await?.min_fee,
        };
        let stx = Transaction {
            chain_id: status.chain_id,
            sender: key.public_key(),
            nonce: account.next_nonce,
            fee,
            action,
        }
        .sign(key);
        let hash = self.submit(&stx).await?;
        debug_assert_eq!(hash, stx.hash());
        Ok(stx)
    }

    /// Polls `GET /v1/tx/{hash}` until the transaction is committed, for at
    /// most `timeout`.
    pub async fn wait_for_commit(
        &self,
        hash: &TxHash,
        timeout: Duration,
    ) -> Result<TxView, ClientError> {
        let start = tokio::time::Instant::now();
        let mut last = "unknown to the node";
        loop {
            if let Some(v) = self.tx(hash).await? {
                if v.status == TxStatus::Committed {
                    return Ok(v);
                }
                last = "pending";
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::WaitTimeout {
                    hash: *hash,
                    waited: timeout,
                    status: last,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn decode<T: DeserializeOwned>(
    url: String,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|source| ClientError::Unreachable {
            url: url.clone(),
            source,
        })?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            },
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url,
        reason: e.to_string(),
    })
}

/// Percent-encodes a query value (state keys hold only `[a-z0-9_/]`, but be exact).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http() {
        assert!(NodeClient::new("127.0.0.1:8080").is_err());
        assert_eq!(
            NodeClient::new("http://127.0.0.1:8080/")
                .unwrap()
                .base_url(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("account/trib00"), "account/trib00");
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }
}
