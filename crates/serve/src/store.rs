//! Adapter stores: where an adapter's PEFT files come from.
//!
//! An adapter is the two Hugging Face PEFT files, `adapter_config.json` and
//! `adapter_model.safetensors`, under a directory (or object-key prefix) named
//! by its [`AdapterName`]. Stores only move bytes; parsing and validation
//! against the base model belong to the model (see
//! [`BatchModel::load_adapter`](crate::BatchModel::load_adapter)).
//!
//! Two stores ship here: [`LocalDirStore`] (the default: one directory per
//! adapter under a root) and [`ObjectAdapterStore`] over any
//! `object_store::ObjectStore` (S3-compatible with the crate's `s3` feature,
//! in-memory in tests), which is the seam for several serving replicas sharing
//! one adapter store. Its I/O goes through `trib-objstore`'s blocking bridge,
//! which the datanet content store shares.
//!
//! The trait is synchronous on purpose: fetches run on the adapter cache's
//! loader threads, never on the scheduler thread nor on the HTTP runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trib_objstore::object_store::ObjectStore;
use trib_objstore::{BlockingStore, ObjStoreError};

use crate::name::AdapterName;

/// File name of the PEFT adapter configuration.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File name of the PEFT adapter weights.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Default refusal threshold for one adapter's files (1 GiB): a file above it
/// is refused before it is read into memory.
pub const DEFAULT_MAX_ADAPTER_FILE_BYTES: u64 = 1 << 30;

/// The raw PEFT files of one adapter.
#[derive(Clone, PartialEq, Eq)]
pub struct AdapterFiles {
    /// The adapter this is.
    pub name: AdapterName,
    /// `adapter_config.json`, as stored.
    pub config_json: Vec<u8>,
    /// `adapter_model.safetensors`, as stored.
    pub safetensors: Vec<u8>,
}

impl std::fmt::Debug for AdapterFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterFiles")
            .field("name", &self.name)
            .field("config_json_bytes", &self.config_json.len())
            .field("safetensors_bytes", &self.safetensors.len())
            .finish()
    }
}

/// Why a store could not hand out an adapter's files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No adapter of that name exists in the store.
    #[error("adapter {name} not found in the adapter store ({location})")]
    NotFound {
        /// The adapter asked for.
        name: AdapterName,
        /// Where the store looked.
        location: String,
    },
    /// The adapter exists but one of its PEFT files is missing.
    #[error("adapter {name} is incomplete: {file} is missing ({location})")]
    MissingFile {
        /// The adapter asked for.
        name: AdapterName,
        /// The missing file name.
        file: &'static str,
        /// Where the store looked.
        location: String,
    },
    /// One of the adapter's files is larger than the store accepts.
    #[error("adapter {name}: {file} is {bytes} bytes, above the limit of {limit} bytes")]
    FileTooLarge {
        /// The adapter asked for.
        name: AdapterName,
        /// The oversized file.
        file: &'static str,
        /// Its size.
        bytes: u64,
        /// The store's limit.
        limit: u64,
    },
    /// The adapter's directory resolves (through a symbolic link) outside the store root.
    #[error("adapter {name} resolves to {resolved}, outside the store root {root}")]
    OutsideRoot {
        /// The adapter asked for.
        name: AdapterName,
        /// Where its path resolved to.
        resolved: PathBuf,
        /// The store root.
        root: PathBuf,
    },
    /// Reading from the local file system failed.
    #[error("reading adapter {name} from {path}: {source}")]
    Io {
        /// The adapter asked for.
        name: AdapterName,
        /// The path being read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The object store backend failed.
    #[error("object store error for adapter {name}: {message}")]
    Backend {
        /// The adapter asked for.
        name: AdapterName,
        /// The backend's error, rendered.
        message: String,
    },
    /// An adapter store URL names no usable object store (malformed, an
    /// unknown scheme, or `s3://` in a build without the `s3` feature).
    #[error("adapter store URL {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where adapters' PEFT files come from.
pub trait AdapterStore: Send + Sync + 'static {
    /// Fetches both PEFT files of `name`. Runs on a loader thread; may block.
    fn fetch(&self, name: &AdapterName) -> Result<AdapterFiles, StoreError>;

    /// Lists the adapters in the store whose names are valid (others are skipped).
    fn list(&self) -> Result<Vec<AdapterName>, StoreError>;

    /// A short human description of the store, for logs and `GET /v1/adapters`.
    fn describe(&self) -> String;
}

/// Adapters as directories under a root: `ROOT/<name>/adapter_config.json` and
/// `ROOT/<name>/adapter_model.safetensors` (exactly what PEFT's
/// `save_pretrained` and `trib factory train` write).
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
    max_file_bytes: u64,
}

impl LocalDirStore {
    /// A store rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_file_bytes: DEFAULT_MAX_ADAPTER_FILE_BYTES,
        }
    }

    /// Refuse files larger than `bytes`.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read(
        &self,
        name: &AdapterName,
        dir: &Path,
        file: &'static str,
    ) -> Result<Vec<u8>, StoreError> {
        let path = dir.join(file);
        let io = |source| StoreError::Io {
            name: name.clone(),
            path: path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingFile {
                    name: name.clone(),
                    file,
                    location: dir.display().to_string(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        if meta.len() > self.max_file_bytes {
            return Err(StoreError::FileTooLarge {
                name: name.clone(),
                file,
                bytes: meta.len(),
                limit: self.max_file_bytes,
            });
        }
        std::fs::read(&path).map_err(io)
    }
}

impl AdapterStore for LocalDirStore {
    fn fetch(&self, name: &AdapterName) -> Result<AdapterFiles, StoreError> {
        let dir = self.root.join(name.as_str());
        if !dir.is_dir() {
            return Err(StoreError::NotFound {
                name: name.clone(),
                location: dir.display().to_string(),
            });
        }
        // The name is a single safe path component, but the directory itself
        // may be a symbolic link: refuse anything that resolves outside the root.
        let io = |path: &Path, source| StoreError::Io {
            name: name.clone(),
            path: path.to_owned(),
            source,
        };
        let root = self.root.canonicalize().map_err(|e| io(&self.root, e))?;
        let resolved = dir.canonicalize().map_err(|e| io(&dir, e))?;
        if !resolved.starts_with(&root) {
            return Err(StoreError::OutsideRoot {
                name: name.clone(),
                resolved,
                root,
            });
        }
        let config_json = self.read(name, &resolved, ADAPTER_CONFIG_FILE)?;
        let safetensors = self.read(name, &resolved, ADAPTER_WEIGHTS_FILE)?;
        Ok(AdapterFiles {
            name: name.clone(),
            config_json,
            safetensors,
        })
    }

    fn list(&self) -> Result<Vec<AdapterName>, StoreError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(StoreError::Io {
                    name: AdapterName::parse("store-root").expect("valid literal"),
                    path: self.root.clone(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            let Some(s) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(n) = AdapterName::parse(&s) {
                if entry.path().join(ADAPTER_CONFIG_FILE).is_file() {
                    out.push(n);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

/// Adapters in an object store under `PREFIX/<name>/adapter_config.json` and
/// `PREFIX/<name>/adapter_model.safetensors`.
///
/// Object stores are async; this store goes through the blocking bridge
/// [`trib_objstore::BlockingStore`] (the one the datanet content store uses
/// too: same URLs, options and errors). Loader threads call it directly; a
/// caller on a tokio runtime (the node's `GET /v1/adapters` lists the store)
/// is served from a scoped thread, because a runtime cannot be blocked on
/// from inside another one, and the last handle may be dropped on an async
/// task.
#[derive(Debug)]
pub struct ObjectAdapterStore {
    store: BlockingStore,
    max_file_bytes: u64,
}

impl ObjectAdapterStore {
    /// A store over `store`, with adapters under `prefix` (may be empty).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> std::io::Result<Self> {
        let store = BlockingStore::new(store, prefix).map_err(|e| match e {
            ObjStoreError::Runtime(io) => io,
            other => std::io::Error::other(other),
        })?;
        Ok(Self::from_store(store))
    }

    /// Adapters under the prefix of an opened bridge store.
    pub fn from_store(store: BlockingStore) -> Self {
        Self {
            store,
            max_file_bytes: DEFAULT_MAX_ADAPTER_FILE_BYTES,
        }
    }

    /// A store named by a URL, with adapters under the URL's path:
    /// `s3://bucket/prefix` (AWS S3, MinIO, R2, … with the crate's `s3`
    /// feature), `file:///absolute/dir` or `memory:///` (tests, demos).
    /// `options` are the backend's settings, e.g. `aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_secret_access_key`,
    /// `aws_allow_http` (for S3-compatible servers over plain HTTP); see
    /// [`BlockingStore::open`]. A `file://` directory must exist.
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let store = BlockingStore::open(url, options).map_err(|e| match e {
            ObjStoreError::InvalidUrl { reason, .. } => invalid(reason),
            other => invalid(other.to_string()),
        })?;
        // `file://` stores read paths as given: a missing directory would
        // only show up as "adapter not found" on every request.
        if let Some(dir) = store.local_dir() {
            if !dir.is_dir() {
                return Err(invalid(format!("{} is not a directory", dir.display())));
            }
        }
        Ok(Self::from_store(store))
    }

    /// An S3-compatible store (AWS S3, MinIO, R2, …): `bucket`, optional
    /// `endpoint` (for non-AWS services), credentials from the usual `AWS_*`
    /// environment variables.
    #[cfg(feature = "s3")]
    pub fn s3(
        bucket: &str,
        endpoint: Option<&str>,
        prefix: &str,
    ) -> Result<Self, object_store::Error> {
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        let s3 = b.build()?;
        Self::new(Arc::new(s3), prefix).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })
    }

    /// Refuse objects larger than `bytes`.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    fn get(&self, name: &AdapterName, file: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.store.key([name.as_str(), file]);
        self.store
            .get(&key, Some(self.max_file_bytes))
            .map_err(|e| match e {
                ObjStoreError::TooLarge { bytes, limit, .. } => StoreError::FileTooLarge {
                    name: name.clone(),
                    file,
                    bytes,
                    limit,
                },
                other => StoreError::Backend {
                    name: name.clone(),
                    message: other.to_string(),
                },
            })
    }
}

impl AdapterStore for ObjectAdapterStore {
    fn fetch(&self, name: &AdapterName) -> Result<AdapterFiles, StoreError> {
        let location = self.store.key([name.as_str()]).to_string();
        let config_json = self.get(name, ADAPTER_CONFIG_FILE)?;
        let safetensors = self.get(name, ADAPTER_WEIGHTS_FILE)?;
        match (config_json, safetensors) {
            (None, None) => Err(StoreError::NotFound {
                name: name.clone(),
                location,
            }),
            (None, Some(_)) => Err(StoreError::MissingFile {
                name: name.clone(),
                file: ADAPTER_CONFIG_FILE,
                location,
            }),
            (Some(_), None) => Err(StoreError::MissingFile {
                name: name.clone(),
                file: ADAPTER_WEIGHTS_FILE,
                location,
            }),
            (Some(config_json), Some(safetensors)) => Ok(AdapterFiles {
                name: name.clone(),
                config_json,
                safetensors,
            }),
        }
    }

    fn list(&self) -> Result<Vec<AdapterName>, StoreError> {
        let keys = self.store.list().map_err(|e| StoreError::Backend {
            name: AdapterName::parse("store-root").expect("valid literal"),
            message: e.to_string(),
        })?;
        let mut out: Vec<AdapterName> = keys
            .iter()
            .filter_map(|parts| match parts.as_slice() {
                [dir, file] if file == ADAPTER_CONFIG_FILE => AdapterName::parse(dir).ok(),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn describe(&self) -> String {
        self.store.describe().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::PutPayload;

    fn name(s: &str) -> AdapterName {
        AdapterName::parse(s).unwrap()
    }

    #[test]
    fn local_store_reads_both_files_and_lists_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("alpha");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join(ADAPTER_CONFIG_FILE), b"{}").unwrap();
        std::fs::write(a.join(ADAPTER_WEIGHTS_FILE), b"weights").unwrap();
        std::fs::create_dir(dir.path().join("not a name")).unwrap();
        let store = LocalDirStore::new(dir.path());
        let f = store.fetch(&name("alpha")).unwrap();
        assert_eq!(f.config_json, b"{}");
        assert_eq!(f.safetensors, b"weights");
        assert_eq!(store.list().unwrap(), vec![name("alpha")]);
    }

    #[test]
    fn local_store_distinguishes_unknown_incomplete_and_oversized_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).with_max_file_bytes(4);
        assert!(matches!(
            store.fetch(&name("nope")),
            Err(StoreError::NotFound { .. })
        ));
        let a = dir.path().join("half");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join(ADAPTER_CONFIG_FILE), b"{}").unwrap();
        let e = store.fetch(&name("half")).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::MissingFile {
                    file: ADAPTER_WEIGHTS_FILE,
                    ..
                }
            ),
            "{e}"
        );
        std::fs::write(a.join(ADAPTER_WEIGHTS_FILE), b"too many bytes").unwrap();
        let e = store.fetch(&name("half")).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::FileTooLarge {
                    bytes: 14,
                    limit: 4,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn local_store_refuses_a_symlink_that_escapes_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(ADAPTER_CONFIG_FILE), b"{}").unwrap();
        std::fs::write(outside.path().join(ADAPTER_WEIGHTS_FILE), b"w").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("sneaky")).unwrap();
        let e = LocalDirStore::new(root.path())
            .fetch(&name("sneaky"))
            .unwrap_err();
        assert!(matches!(e, StoreError::OutsideRoot { .. }), "{e}");
    }

    #[test]
    fn object_store_reads_adapters_under_a_prefix() {
        let mem = Arc::new(InMemory::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for (k, v) in [
                ("adapters/beta/adapter_config.json", &b"{}"[..]),
                ("adapters/beta/adapter_model.safetensors", b"w"),
                ("adapters/gamma/adapter_model.safetensors", b"w"),
                ("other/delta/adapter_config.json", b"{}"),
            ] {
                mem.put(&ObjectPath::from(k), PutPayload::from(v.to_vec()))
                    .await
                    .unwrap();
            }
        });
        let store = ObjectAdapterStore::new(mem, "adapters").unwrap();
        let f = store.fetch(&name("beta")).unwrap();
        assert_eq!(
            (f.config_json.as_slice(), f.safetensors.as_slice()),
            (&b"{}"[..], &b"w"[..])
        );
        assert!(matches!(
            store.fetch(&name("gamma")),
            Err(StoreError::MissingFile {
                file: ADAPTER_CONFIG_FILE,
                ..
            })
        ));
        assert!(matches!(
            store.fetch(&name("delta")),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.list().unwrap(), vec![name("beta")]);
    }

    /// Writes an adapter's two files under `dir/<adapter>/`.
    fn write_adapter(dir: &Path, adapter: &str) {
        let a = dir.join(adapter);
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join(ADAPTER_CONFIG_FILE), b"{}").unwrap();
        std::fs::write(a.join(ADAPTER_WEIGHTS_FILE), b"weights").unwrap();
    }

    #[test]
    fn a_file_url_store_reads_the_directory_layout_under_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("adapters");
        write_adapter(&root, "alpha");
        write_adapter(&root, "beta");
        std::fs::remove_file(root.join("beta").join(ADAPTER_WEIGHTS_FILE)).unwrap();
        let url = format!("file://{}", root.display());
        let store = ObjectAdapterStore::from_url(&url, Vec::<(String, String)>::new()).unwrap();
        assert_eq!(store.describe(), format!("object store {url}"));
        let f = store.fetch(&name("alpha")).unwrap();
        assert_eq!(
            (f.config_json.as_slice(), f.safetensors.as_slice()),
            (&b"{}"[..], &b"weights"[..])
        );
        assert!(matches!(
            store.fetch(&name("beta")),
            Err(StoreError::MissingFile {
                file: ADAPTER_WEIGHTS_FILE,
                ..
            })
        ));
        assert!(matches!(
            store.fetch(&name("gamma")),
            Err(StoreError::NotFound { .. })
        ));
        // Listing counts an adapter by its config file, like the directory store.
        assert_eq!(store.list().unwrap(), vec![name("alpha"), name("beta")]);
    }

    #[test]
    fn unusable_store_urls_are_refused_naming_the_url_and_the_problem() {
        let none = Vec::<(String, String)>::new;
        let e = ObjectAdapterStore::from_url("not a url", none()).unwrap_err();
        assert!(
            matches!(&e, StoreError::InvalidUrl { url, .. } if url == "not a url"),
            "{e}"
        );
        let e = ObjectAdapterStore::from_url("gopher://host/x", none()).unwrap_err();
        assert!(e.to_string().contains("gopher://host/x"), "{e}");
        let missing = tempfile::tempdir().unwrap().path().join("nope");
        let e = ObjectAdapterStore::from_url(&format!("file://{}", missing.display()), none())
            .unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        // `memory:///` opens (an empty store: nothing to list or fetch).
        let mem = ObjectAdapterStore::from_url("memory:///", none()).unwrap();
        assert!(mem.list().unwrap().is_empty());
        assert!(matches!(
            mem.fetch(&name("x")),
            Err(StoreError::NotFound { .. })
        ));
        // S3 needs the `s3` feature; with it the store builds offline.
        let s3 = ObjectAdapterStore::from_url(
            "s3://bucket/adapters",
            [
                ("aws_region", "us-east-1"),
                ("aws_endpoint", "http://127.0.0.1:9"),
            ],
        );
        if cfg!(feature = "s3") {
            assert!(s3.is_ok(), "{:?}", s3.err());
        } else {
            let e = s3.unwrap_err();
            assert!(e.to_string().contains("`s3` feature"), "{e}");
        }
    }

    #[test]
    fn an_object_store_can_be_listed_and_read_from_inside_a_tokio_runtime() {
        // The node lists the store from an HTTP handler: blocking on the
        // store's own runtime there must not panic.
        let dir = tempfile::tempdir().unwrap();
        write_adapter(dir.path(), "alpha");
        let url = format!("file://{}", dir.path().display());
        let store = ObjectAdapterStore::from_url(&url, Vec::<(String, String)>::new()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (listed, fetched) =
            rt.block_on(async { (store.list().unwrap(), store.fetch(&name("alpha")).unwrap()) });
        assert_eq!(listed, vec![name("alpha")]);
        assert_eq!(fetched.safetensors, b"weights");
        // The last handle may also go away on an async task.
        rt.block_on(async move { drop(store) });
    }
}
