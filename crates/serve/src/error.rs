//! The engine's error type and the HTTP status each variant stands for.

use std::time::Duration;

use crate::cache::CacheError;
use crate::name::{AdapterName, AdapterNameError};

/// Why a request was refused or failed. Each variant says which HTTP status
/// the node should answer with ([`ServeError::http_status`]); the node owns
/// the actual response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeError {
    /// The request itself is malformed (empty prompt, bad sampling values, token
    /// ids outside the vocabulary, an unrenderable chat). HTTP 400.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// The adapter id is not a valid adapter name (e.g. path traversal). HTTP 400.
    #[error(transparent)]
    InvalidAdapterName(#[from] AdapterNameError),
    /// Prompt plus requested completion do not fit in the model context. HTTP 400.
    #[error(
        "this model's maximum context length is {context_len} tokens, but the request asks for \
         {prompt_tokens} prompt tokens + {max_tokens} completion tokens = {} tokens",
        *prompt_tokens as u128 + *max_tokens as u128
    )]
    ContextOverflow {
        /// Tokens in the prompt (after the chat template).
        prompt_tokens: usize,
        /// Completion tokens requested (`max_tokens`, or at least one).
        max_tokens: usize,
        /// The model's context length.
        context_len: usize,
    },
    /// The waiting queue is full. HTTP 429.
    #[error("server busy: {queued} requests already waiting (limit {max_queued}); retry later")]
    QueueFull {
        /// Requests waiting now.
        queued: usize,
        /// The configured limit.
        max_queued: usize,
    },
    /// The key exceeded its request rate. HTTP 429 (with `Retry-After`).
    #[error("rate limit exceeded for this key; retry in {:.1} s", retry_after.as_secs_f64())]
    RateLimited {
        /// How long until the key may send again.
        retry_after: Duration,
    },
    /// The admission check (the node's balance check) refused the request
    /// before any compute was spent. HTTP 402.
    #[error("payment required: {reason}")]
    PaymentRequired {
        /// The check's explanation (e.g. balance vs maximum fee).
        reason: String,
    },
    /// No adapter of that name exists. HTTP 404.
    #[error("unknown adapter {name}: {detail}")]
    UnknownAdapter {
        /// The adapter asked for.
        name: AdapterName,
        /// Where it was looked for.
        detail: String,
    },
    /// The adapter exists but was refused (hostile/broken files, wrong base
    /// model, too large for the cache). HTTP 422.
    #[error("adapter {name} cannot be served: {reason}")]
    AdapterRejected {
        /// The adapter asked for.
        name: AdapterName,
        /// What is wrong with it.
        reason: String,
    },
    /// Unloading an adapter that running sequences still use. HTTP 409.
    #[error("adapter {name} is in use by {pins} running sequence(s)")]
    AdapterInUse {
        /// The adapter.
        name: AdapterName,
        /// Sequences using it.
        pins: usize,
    },
    /// Unloading an adapter that is not loaded. HTTP 404.
    #[error("adapter {name} is not loaded")]
    AdapterNotLoaded {
        /// The adapter.
        name: AdapterName,
    },
    /// The adapter store could not be reached. HTTP 503.
    #[error("adapter store unavailable for {name}: {message}")]
    StoreUnavailable {
        /// The adapter asked for.
        name: AdapterName,
        /// The store's error.
        message: String,
    },
    /// The model failed during a forward pass or tokenization. HTTP 500.
    #[error("model error: {message}")]
    Model {
        /// The model's error.
        message: String,
    },
    /// The engine is shutting down or has stopped. HTTP 503.
    #[error("the serving engine has stopped")]
    ShuttingDown,
}

impl ServeError {
    /// The HTTP status code the node should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            ServeError::InvalidRequest { .. }
            | ServeError::InvalidAdapterName(_)
            | ServeError::ContextOverflow { .. } => 400,
            ServeError::PaymentRequired { .. } => 402,
            ServeError::UnknownAdapter { .. } | ServeError::AdapterNotLoaded { .. } => 404,
            ServeError::AdapterInUse { .. } => 409,
            ServeError::AdapterRejected { .. } => 422,
            ServeError::QueueFull { .. } | ServeError::RateLimited { .. } => 429,
            ServeError::Model { .. } => 500,
            ServeError::StoreUnavailable { .. } | ServeError::ShuttingDown => 503,
        }
    }
}

impl From<CacheError> for ServeError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::NotFound { name, detail } => ServeError::UnknownAdapter { name, detail },
            CacheError::Rejected { name, reason } => ServeError::AdapterRejected { name, reason },
            e @ CacheError::TooLarge { .. } => {
                let CacheError::TooLarge { ref name, .. } = e else {
                    unreachable!()
                };
                ServeError::AdapterRejected {
                    name: name.clone(),
                    reason: e.to_string(),
                }
            }
            CacheError::Store { name, message } => ServeError::StoreUnavailable { name, message },
            CacheError::InUse { name, pins } => ServeError::AdapterInUse { name, pins },
            CacheError::NotLoaded { name } => ServeError::AdapterNotLoaded { name },
            CacheError::Shutdown => ServeError::ShuttingDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_overflow_names_all_the_numbers() {
        let e = ServeError::ContextOverflow {
            prompt_tokens: 8000,
            max_tokens: 500,
            context_len: 8192,
        };
        let s = e.to_string();
        assert!(
            s.contains("8192") && s.contains("8000") && s.contains("500") && s.contains("8500"),
            "{s}"
        );
        assert_eq!(e.http_status(), 400);
    }

    #[test]
    fn cache_errors_map_to_their_statuses() {
        let n = AdapterName::parse("a").unwrap();
        let st = |e: CacheError| ServeError::from(e).http_status();
        assert_eq!(
            st(CacheError::NotFound {
                name: n.clone(),
                detail: String::new()
            }),
            404
        );
        assert_eq!(
            st(CacheError::Rejected {
                name: n.clone(),
                reason: String::new()
            }),
            422
        );
        assert_eq!(
            st(CacheError::TooLarge {
                name: n.clone(),
                bytes: 2,
                capacity: 1
            }),
            422
        );
        assert_eq!(
            st(CacheError::Store {
                name: n.clone(),
                message: String::new()
            }),
            503
        );
        assert_eq!(st(CacheError::InUse { name: n, pins: 1 }), 409);
        assert_eq!(
            ServeError::from(AdapterName::parse("../x").unwrap_err()).http_status(),
            400
        );
    }
}
