//! The OpenAI-compatible routes as a load generator drives them: the model
//! list and one streaming chat completion, timed chunk by chunk
//! (`trib bench serve`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::sse::SseBuffer;
use super::{NodeClient, SERVICE_TIMEOUT};
use crate::error::ClientError;

/// How one streamed chat completion went.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTiming {
    /// Time to the first content chunk (the whole request when none came).
    pub ttft: Duration,
    /// Time per output token after the first (`None` under two tokens).
    pub tpot: Option<Duration>,
    /// The whole request, until the stream ended.
    pub e2e: Duration,
    /// Output tokens, from the final usage chunk.
    pub completion_tokens: u64,
    /// The settlement the final chunk names: the receipt id and the fee in
    /// base units (`None` when the node served the answer unsettled).
    pub settled: Option<(String, u128)>,
    /// The final chunk's `settlement_error`, when the node could not settle.
    pub settlement_error: Option<String>,
}

impl NodeClient {
    /// `GET /v1/models`: the OpenAI-style model list (`data[].id`, with
    /// `parent` on adapters).
    pub async fn openai_models(&self) -> Result<Value, ClientError> {
        self.get("/v1/models", SERVICE_TIMEOUT).await
    }

    /// `POST /v1/chat/completions` with `body` (which must ask for
    /// `"stream": true`) under the bearer `api_key`, within `timeout`;
    /// times the content chunks. An error event in the stream, or a stream
    /// that ends without its usage chunk, is a [`ClientError::Stream`].
    pub async fn chat_stream_timed(
        &self,
        api_key: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<ChatTiming, ClientError> {
        let url = self.url("/v1/chat/completions");
        let sent = Instant::now();
        let req = self
            .http
            .post(&url)
            .bearer_auth(api_key)
            .json(body)
            .timeout(timeout);
        let resp = self.send(req, &url).await?;
        let stream_err = |reason: String| ClientError::Stream {
            url: url.clone(),
            reason,
        };
        let mut stream = resp.bytes_stream();
        let mut events = SseBuffer::default();
        let (mut first, mut last) = (None, None);
        let mut completion_tokens = None;
        let (mut settled, mut settlement_error) = (None, None);
        while let Some(chunk) = stream.next().await {
            events.push(&chunk.map_err(ClientError::unreachable(&url))?);
            while let Some(data) = events.next_data() {
                let data = data.trim();
                if data == "[DONE]" || data.is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(data)
                    .map_err(|e| stream_err(format!("bad event {data:?}: {e}")))?;
                if let Some(err) = v.get("error") {
                    return Err(stream_err(format!("error event: {err}")));
                }
                let content = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
                if !content.is_empty() {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    completion_tokens = Some(n);
                }
                if let (Some(id), Some(fee)) = (
                    v["receipt_id"].as_str(),
                    v["fee"]["base_units"].as_str().and_then(|f| f.parse().ok()),
                ) {
                    settled = Some((id.to_string(), fee));
                }
                if let Some(e) = v["settlement_error"].as_str() {
                    settlement_error = Some(e.to_string());
                }
            }
        }
        let e2e = sent.elapsed();
        let completion_tokens = completion_tokens
            .ok_or_else(|| stream_err("the stream ended without a usage chunk".into()))?;
        let first = first.unwrap_or(sent + e2e);
        let tpot = match (last, completion_tokens) {
            (Some(last), n) if n >= 2 => Some((last - first) / (n as u32 - 1)),
            _ => None,
        };
        Ok(ChatTiming {
            ttft: first - sent,
            tpot,
            e2e,
            completion_tokens,
            settled,
            settlement_error,
        })
    }
}
