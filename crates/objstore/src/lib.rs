//! One bridge from Tributary's synchronous code to object stores.
//!
//! Two stores keep bytes in an object store: the datanet content store
//! (`trib_datanet::ObjectBlobStore`, raw contributed files) and the adapter
//! store (`trib_serve::ObjectAdapterStore`, PEFT files shared by serving
//! replicas). Both are called from plain threads (the node's blocking pool,
//! the adapter cache's loader threads) and sometimes from inside a tokio
//! runtime (an HTTP handler listing adapters), while the `object_store`
//! crate's API is async. This crate owns what they have in common, so the
//! two are opened and configured the same way:
//!
//! - [`BlockingStore::open`]: a store URL (`s3://bucket/prefix` with the `s3`
//!   feature, `file:///absolute/dir`, `memory:///`) plus backend options
//!   (`aws_region`, `aws_endpoint`, …) → a backend and the key prefix the
//!   URL names;
//! - [`aws_env_options`]: the options the `AWS_*` environment variables
//!   give, lower-cased (how the node has always configured both stores);
//! - blocking `get` (with a size limit checked before the body is read),
//!   `put`, `exists` and `list` that work on a plain thread and inside a
//!   tokio runtime alike (there they run on a scoped helper thread, because a
//!   runtime cannot be blocked on from inside another one), and a drop that
//!   never panics on an async task;
//! - one error type, [`ObjStoreError`].
//!
//! What each store keeps where (content-addressed blobs, adapter folders)
//! stays with its crate; this one knows keys, not layouts. It sits beside
//! `trib-datanet` and `trib-serve`, which must not depend on each other.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
/// The `object_store` crate, for callers that wrap a backend of their own
/// ([`BlockingStore::new`]) without naming the dependency twice.
pub use object_store;
pub use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// Why an object store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum ObjStoreError {
    /// The URL names no usable store: it does not parse, its scheme is
    /// unknown, its options are refused, or it is `s3://` in a build without
    /// the `s3` feature.
    #[error("store URL {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The private runtime that drives the async backend did not start.
    #[error("cannot start the object store's I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The backend failed an operation.
    #[error("object store {op} {key:?} failed: {source}")]
    Backend {
        /// What was being done (`get`, `put`, `head`, `list`).
        op: &'static str,
        /// The object key (or prefix, for `list`).
        key: String,
        /// The backend's error.
        #[source]
        source: object_store::Error,
    },
    /// An object is larger than the caller accepts; its body was not read.
    #[error("object {key:?} is {bytes} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// The object key.
        key: String,
        /// Its size.
        bytes: u64,
        /// The caller's limit.
        limit: u64,
    },
}

/// The backend options the `AWS_*` variables among `vars` give: each such
/// variable, its name lower-cased (`AWS_REGION=eu-west-1` →
/// `("aws_region", "eu-west-1")`), the keys `object_store`'s S3 builder
/// reads (`aws_endpoint`, `aws_access_key_id`, `aws_secret_access_key`,
/// `aws_allow_http`, …). Other variables are left out.
pub fn aws_env_options(
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// An object store with blocking calls, under a key prefix.
///
/// The calls block on a small runtime owned by the store (one I/O worker);
/// from inside another tokio runtime they run on a scoped helper thread, so
/// they never panic there, but async callers should still prefer
/// `spawn_blocking`. Any number of threads may call at once.
pub struct BlockingStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// For `file://` stores, the directory the URL names.
    local_dir: Option<PathBuf>,
    description: String,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for BlockingStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics when the last handle to
        // the store goes away on an async task.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for BlockingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingStore")
            .field("store", &self.description)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ObjStoreError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("trib-objstore-io")
        .enable_all()
        .build()
        .map_err(ObjStoreError::Runtime)
}

impl BlockingStore {
    /// Wraps a backend, keeping objects under `prefix` (may be empty).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, ObjStoreError> {
        let description = format!("object store {store} under {prefix:?}");
        Ok(BlockingStore {
            store,
            prefix: ObjectPath::from(prefix),
            local_dir: None,
            description,
            runtime: Some(runtime()?),
        })
    }

    /// An empty in-memory store (tests, demos).
    pub fn in_memory() -> Result<Self, ObjStoreError> {
        Self::new(Arc::new(object_store::memory::InMemory::new()), "")
    }

    /// The store a URL names, with objects under the URL's path:
    /// `s3://bucket/prefix` (AWS S3, MinIO, R2, … in a build with the `s3`
    /// feature), `file:///absolute/dir` or `memory:///`. `options` are the
    /// backend's settings, e.g. `aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http` (for
    /// S3-compatible servers over plain HTTP); see [`aws_env_options`].
    pub fn open<I, K, V>(url: &str, options: I) -> Result<Self, ObjStoreError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let invalid = |reason: String| ObjStoreError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
            let hint = if parsed.scheme() == "s3" && !cfg!(feature = "s3") {
                " (this build has no S3 support: build with the `s3` feature)"
            } else {
                ""
            };
            invalid(format!("{e}{hint}"))
        })?;
        let local_dir = if parsed.scheme() == "file" {
            Some(
                parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute file path".into()))?,
            )
        } else {
            None
        };
        tracing::debug!(target: "trib::objstore", url, %prefix, "object store opened");
        Ok(BlockingStore {
            store: Arc::from(store),
            prefix,
            local_dir,
            description: format!("object store {url}"),
            runtime: Some(runtime()?),
        })
    }

    /// The key prefix every object of this store lives under.
    pub fn prefix(&self) -> &ObjectPath {
        &self.prefix
    }

    /// For a `file://` store, the directory its URL names (which need not
    /// exist: the backend creates directories as it writes).
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// A short description for logs: `object store URL`, or the backend and
    /// prefix for a wrapped backend.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The key of `parts` under the prefix (`prefix/a/b`).
    pub fn key<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> ObjectPath {
        parts
            .into_iter()
            .fold(self.prefix.clone(), |key, part| key.child(part))
    }

    /// Runs `fut` to completion on the store's runtime: directly on a plain
    /// thread, from a scoped helper thread when the caller is itself on a
    /// tokio runtime.
    fn block<F, T>(&self, fut: F) -> T
    where
        F: Future<Output = T> + Send,
        T: Send,
    {
        let rt = self.runtime.as_ref().expect("the runtime lives until drop");
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(fut))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        } else {
            rt.block_on(fut)
        }
    }

    /// The bytes at `key`, `None` when absent. With `max_bytes`, an object
    /// larger than that is refused ([`ObjStoreError::TooLarge`]) before its
    /// body is read.
    pub fn get(
        &self,
        key: &ObjectPath,
        max_bytes: Option<u64>,
    ) -> Result<Option<Vec<u8>>, ObjStoreError> {
        let backend = |source| ObjStoreError::Backend {
            op: "get",
            key: key.to_string(),
            source,
        };
        self.block(async {
            let res = match self.store.get(key).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(backend(e)),
            };
            let bytes = res.meta.size;
            if let Some(limit) = max_bytes.filter(|limit| bytes > *limit) {
                return Err(ObjStoreError::TooLarge {
                    key: key.to_string(),
                    bytes,
                    limit,
                });
            }
            Ok(Some(res.bytes().await.map_err(backend)?.to_vec()))
        })
    }

    /// Stores `bytes` at `key` (atomic in every `object_store` backend: a
    /// reader sees the old object or the whole new one).
    pub fn put(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<(), ObjStoreError> {
        self.block(self.store.put(key, PutPayload::from(bytes)))
            .map(drop)
            .map_err(|source| ObjStoreError::Backend {
                op: "put",
                key: key.to_string(),
                source,
            })
    }

    /// Whether an object is stored at `key`.
    pub fn exists(&self, key: &ObjectPath) -> Result<bool, ObjStoreError> {
        match self.block(self.store.head(key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(ObjStoreError::Backend {
                op: "head",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Every object under the prefix, as the parts of its key below the
    /// prefix (`prefix/a/b` → `["a", "b"]`), in the backend's order.
    pub fn list(&self) -> Result<Vec<Vec<String>>, ObjStoreError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .block(self.store.list(prefix).try_collect())
            .map_err(|source| ObjStoreError::Backend {
                op: "list",
                key: self.prefix.to_string(),
                source,
            })?;
        let skip = self.prefix.parts().count();
        Ok(metas
            .iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_string())
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Vec<(String, String)> {
        Vec::new()
    }

    fn exercise(s: &BlockingStore) {
        let k = s.key(["a", "b"]);
        assert!(!s.exists(&k).unwrap());
        assert_eq!(s.get(&k, None).unwrap(), None);
        s.put(&k, b"hello".to_vec()).unwrap();
        assert!(s.exists(&k).unwrap());
        assert_eq!(s.get(&k, None).unwrap().unwrap(), b"hello");
        assert_eq!(s.get(&k, Some(5)).unwrap().unwrap(), b"hello");
        let e = s.get(&k, Some(4)).unwrap_err();
        assert!(
            matches!(
                e,
                ObjStoreError::TooLarge {
                    bytes: 5,
                    limit: 4,
                    ..
                }
            ),
            "{e}"
        );
        s.put(&s.key(["c"]), b"x".to_vec()).unwrap();
        let mut listed = s.list().unwrap();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()]
            ]
        );
    }

    #[test]
    fn memory_file_and_wrapped_stores_round_trip_under_their_prefix() {
        exercise(&BlockingStore::in_memory().unwrap());
        exercise(&BlockingStore::open("memory:///", none()).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        let url = format!("file://{}", root.display());
        let s = BlockingStore::open(&url, none()).unwrap();
        assert_eq!(s.local_dir(), Some(root.as_path()));
        assert_eq!(s.describe(), format!("object store {url}"));
        exercise(&s);
        assert_eq!(std::fs::read(root.join("a").join("b")).unwrap(), b"hello");
        let mem = Arc::new(object_store::memory::InMemory::new());
        let wrapped = BlockingStore::new(mem, "under/here").unwrap();
        assert_eq!(wrapped.key(["x"]).to_string(), "under/here/x");
        exercise(&wrapped);
    }

    #[test]
    fn unusable_urls_are_refused_naming_the_url() {
        let e = BlockingStore::open("not a url", none()).unwrap_err();
        assert!(
            matches!(&e, ObjStoreError::InvalidUrl { url, .. } if url == "not a url"),
            "{e}"
        );
        let e = BlockingStore::open("gopher://host/x", none()).unwrap_err();
        assert!(e.to_string().contains("gopher://host/x"), "{e}");
        let s3 = BlockingStore::open(
            "s3://bucket/blobs",
            [
                ("aws_region", "us-east-1"),
                ("aws_endpoint", "http://127.0.0.1:9"),
                ("aws_access_key_id", "test"),
                ("aws_secret_access_key", "test"),
                ("aws_allow_http", "true"),
            ],
        );
        if cfg!(feature = "s3") {
            // It builds offline; nothing is contacted until a call.
            assert_eq!(s3.unwrap().key(["k"]).to_string(), "blobs/k");
        } else {
            let e = s3.unwrap_err();
            assert!(e.to_string().contains("`s3` feature"), "{e}");
        }
    }

    #[test]
    fn the_aws_variables_become_lower_case_options() {
        let vars = [
            ("AWS_REGION", "eu-west-1"),
            ("PATH", "/bin"),
            ("AWS_ALLOW_HTTP", "true"),
            ("aws_lower", "ignored"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let opts = aws_env_options(vars);
        assert_eq!(
            opts.into_iter().collect::<Vec<_>>(),
            vec![
                ("aws_allow_http".to_string(), "true".to_string()),
                ("aws_region".to_string(), "eu-west-1".to_string()),
            ]
        );
    }

    #[test]
    fn calls_work_inside_a_tokio_runtime_and_the_store_drops_there() {
        for rt in [
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap(),
        ] {
            let s = BlockingStore::in_memory().unwrap();
            rt.block_on(async { exercise(&s) });
            // The last handle may go away on an async task.
            rt.block_on(async move { drop(s) });
        }
    }

    #[test]
    fn many_threads_may_call_at_once() {
        let s = Arc::new(BlockingStore::in_memory().unwrap());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let k = s.key([format!("k{i}").as_str()]);
                    s.put(&k, vec![i as u8; 100]).unwrap();
                    assert_eq!(s.get(&k, None).unwrap().unwrap(), vec![i as u8; 100]);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.list().unwrap().len(), 8);
    }
}
