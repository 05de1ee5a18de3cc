//! [`NodeClient`]: the typed HTTP client of one node, so the CLI, the
//! node's demo and the tests never build URLs or parse JSON by hand.
//!
//! One type covers every route, one `impl` block per area beside this
//! file: the ledger ([`ledger`]), datanets ([`datanets`]), base models and
//! training jobs ([`jobs`]), API keys ([`apikeys`]), receipts and traces
//! ([`attribution`]), the OpenAI-compatible chat stream the serving
//! benchmark drives ([`chat`]), and exports checked against the ledger
//! ([`exports`]).
//! Every failure is a [`ClientError`]; the node's typed errors keep their
//! HTTP status, code and message.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use trib_types::SecretKey;

use crate::error::{error_from, parse, ClientError};
use crate::signed_read;

mod apikeys;
mod attribution;
mod chat;
mod datanets;
mod exports;
mod jobs;
mod ledger;
mod sse;

pub use attribution::PayoutFilter;
pub use chat::ChatTiming;
pub use datanets::Upload;
pub use exports::VerifiedExport;

/// Ledger reads and transaction submission.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(30);
/// Datanet, model and job calls (some read the ledger and the store).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(120);
/// File uploads and exports.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// Connecting to the node. There is no overall timeout on the HTTP
/// client: job event streams last as long as the job; each call sets its
/// own.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
    /// Signs every request when set (the `x-trib-*` headers the node's
    /// access model reads: docs/security.md).
    signer: Option<SecretKey>,
}

impl NodeClient {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::build(base, reqwest::Client::builder())
    }

    /// A client that keeps at most `per_host` idle connections open (a load
    /// generator's client: one connection per concurrent caller).
    pub fn with_idle_connections(base: &str, per_host: usize) -> Result<Self, ClientError> {
        Self::build(
            base,
            reqwest::Client::builder().pool_max_idle_per_host(per_host),
        )
    }

    fn build(base: &str, builder: reqwest::ClientBuilder) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 9 {
            return Err(ClientError::BadUrl(base));
        }
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(ClientError::unreachable(&base))?;
        Ok(NodeClient {
            base,
            http,
            signer: None,
        })
    }

    /// This client, signing every request with `key` (the `x-trib-*`
    /// headers of [`crate::signed_read`]), as the routes that act for an
    /// account require (uploads, datanet creation, jobs) and as permissioned
    /// reads and private receipts need.
    pub fn with_signer(mut self, key: SecretKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `method` request of `url` carrying `body`, with the signature
    /// headers when this client has a signer.
    fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            reason: format!("not a URL: {e}"),
        })?;
        let Some(key) = &self.signer else {
            return Ok(self.http.request(method, parsed));
        };
        let path_and_query = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let headers = signed_read::sign(
            key,
            method.as_str(),
            &path_and_query,
            body,
            signed_read::now(),
        );
        let mut req = self.http.request(method, parsed);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        Ok(req)
    }

    /// Sends `req`; a non-success answer becomes its [`ClientError`].
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(ClientError::unreachable(url))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(ClientError::unreachable(url))?;
        Err(error_from(url, status, &body))
    }

    /// Sends `req` and reads the whole answer.
    async fn bytes(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(req, url).await?;
        Ok(resp
            .bytes()
            .await
            .map_err(ClientError::unreachable(url))?
            .to_vec())
    }

    /// Sends `req` and decodes the JSON answer.
    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        parse(url, &self.bytes(req, url).await?)
    }

    /// `GET path` (signed when this client has a signer) within `timeout`.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let req = self.request(reqwest::Method::GET, &url, b"")?;
        self.json(req.timeout(timeout), &url).await
    }

    /// `POST path` with a JSON `body` (signed when this client has a
    /// signer) within `timeout`.
    async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: format!("the request body does not serialise: {e}"),
        })?;
        let req = self
            .request(reqwest::Method::POST, &url, &bytes)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes)
            .timeout(timeout);
        self.json(req, &url).await
    }
}

/// Percent-encodes `s` for a path segment: every byte but the unreserved
/// ones (`A–Z a–z 0–9 - _ . ~`).
fn enc(s: &str) -> String {
    percent_encode(s, b"")
}

/// Percent-encodes a query value, leaving `/` as it is (state keys are
/// paths such as `account/trib1…`).
fn enc_query(s: &str) -> String {
    percent_encode(s, b"/")
}

fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?limit=…[&after=…]`.
fn page_query(after: Option<&str>, limit: usize) -> String {
    let mut q = format!("?limit={limit}");
    if let Some(a) = after {
        q.push_str(&format!("&after={}", enc(a)));
    }
    q
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
        assert_eq!(enc_query("account/trib00"), "account/trib00");
        assert_eq!(enc_query("a b&c"), "a%20b%26c");
        assert_eq!(enc("law/x y"), "law%2Fx%20y");
        assert_eq!(page_query(Some("a b"), 5), "?limit=5&after=a%20b");
        assert_eq!(page_query(None, 5), "?limit=5");
    }

    #[test]
    fn a_signer_adds_the_signature_headers_over_path_and_query() {
        let key = SecretKey::from_seed([3; 32]);
        let c = NodeClient::new("http://127.0.0.1:1")
            .unwrap()
            .with_signer(key.clone());
        let req = c
            .request(
                reqwest::Method::GET,
                "http://127.0.0.1:1/v1/datanets/law/rows?limit=5",
                b"",
            )
            .unwrap()
            .build()
            .unwrap();
        let h = req.headers();
        let get = |n: &str| h.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(get(signed_read::HEADER_ADDRESS), key.address().to_string());
        let pk: trib_types::PublicKey = get(signed_read::HEADER_PUBLIC_KEY).parse().unwrap();
        let sig: trib_types::Signature = get(signed_read::HEADER_SIGNATURE).parse().unwrap();
        let ts: u64 = get(signed_read::HEADER_TIMESTAMP).parse().unwrap();
        let msg = signed_read::message(
            "GET",
            "/v1/datanets/law/rows?limit=5",
            ts,
            &get(signed_read::HEADER_NONCE),
            b"",
        );
        pk.verify(&msg, &sig).unwrap();
        // Without a signer, no header.
        let plain = NodeClient::new("http://127.0.0.1:1")
            .unwrap()
            .request(reqwest::Method::GET, "http://127.0.0.1:1/v1/status", b"")
            .unwrap()
            .build()
            .unwrap();
        assert!(plain.headers().get(signed_read::HEADER_SIGNATURE).is_none());
    }
}
