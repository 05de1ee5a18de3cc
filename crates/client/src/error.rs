//! The one error type of every call to a node, and the decoding of the
//! node's answers into values or errors.

use std::time::Duration;

use serde::de::DeserializeOwned;
use trib_types::{Hash, TxHash};

use crate::wire::ErrorBody;

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is not a valid http(s) URL.
    #[error("invalid node URL {0:?}: expected e.g. http://127.0.0.1:8080")]
    BadUrl(String),
    /// The node could not be reached (not running, wrong address), or the
    /// connection broke while its answer was read.
    #[error("cannot reach the node at {url}: {source} (is `trib node` running?)")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The node answered with a typed error (`{"error": {"code", "message"}}`).
    #[error("node refused the request ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code (`insufficient_balance`, `not_found`…).
        code: String,
        /// The node's message.
        message: String,
    },
    /// The node (or something in front of it) answered with an error status
    /// and a body that is not the node's error shape.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body (at most 200 characters).
        body: String,
    },
    /// The node's answer did not have the expected shape.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL called.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A streamed answer carried an error event, an event that is not
    /// JSON, or ended before its final chunk.
    #[error("the event stream from {url} failed: {reason}")]
    Stream {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A datanet export does not parse, or a row does not match its hash.
    #[error("export of {datanet} does not parse: {source}")]
    BadExport {
        /// `NAME@VERSION`.
        datanet: String,
        /// What `trib-datanet` found.
        source: trib_datanet::DatanetError,
    },
    /// A datanet export's rows give another root than the one expected.
    #[error("export of {datanet}: rows give root {computed} but {source_of_expected} {expected}")]
    ExportRootMismatch {
        /// `NAME@VERSION`.
        datanet: String,
        /// The root recomputed from the rows.
        computed: Hash,
        /// The root the export should have.
        expected: Hash,
        /// Who says so: `the header says` or `the ledger records`.
        source_of_expected: &'static str,
    },
    /// The version is not (or not yet) published on the ledger.
    #[error("{datanet} is not published on the ledger")]
    NotPublished {
        /// `NAME@VERSION`.
        datanet: String,
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

    /// The HTTP status, if the node answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn unreachable(url: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
        move |source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        }
    }
}

/// The error an answer with the non-success `status` and `body` stands for:
/// the node's typed error when the body has its shape, else
/// [`ClientError::Status`] with the start of the body.
pub(crate) fn error_from(url: &str, status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => ClientError::Status {
            url: url.to_string(),
            status,
            body: String::from_utf8_lossy(body).chars().take(200).collect(),
        },
    }
}

/// `bytes` as a `T`, or a [`ClientError::Decode`] naming `url`.
pub(crate) fn parse<T: DeserializeOwned>(url: &str, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_error_body_names_status_code_and_message() {
        let body = br#"{"error":{"code":"insufficient_balance","message":"have 1, need 2"}}"#;
        let e = error_from("http://n/v1/tx", 422, body);
        assert_eq!(e.code(), Some("insufficient_balance"));
        assert_eq!(e.status(), Some(422));
        assert_eq!(
            e.to_string(),
            "node refused the request (422 insufficient_balance): have 1, need 2"
        );
    }

    #[test]
    fn an_error_status_without_the_error_shape_keeps_the_start_of_the_body() {
        let body = "x".repeat(500);
        let e = error_from("http://n/v1/status", 502, body.as_bytes());
        assert_eq!(e.code(), None);
        assert_eq!(e.status(), Some(502));
        match e {
            ClientError::Status { url, status, body } => {
                assert_eq!((url.as_str(), status), ("http://n/v1/status", 502));
                assert_eq!(body.len(), 200);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_success_body_of_the_wrong_shape_is_a_decode_error_naming_the_url() {
        let e = parse::<crate::wire::StatusView>("http://n/v1/status", b"{}").unwrap_err();
        assert!(
            matches!(&e, ClientError::Decode { url, .. } if url == "http://n/v1/status"),
            "{e:?}"
        );
        assert_eq!((e.code(), e.status()), (None, None));
    }
}
