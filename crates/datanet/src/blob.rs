//! The content store: raw contributed files, named by their blake3 hash.
//!
//! [`BlobStore`] is the seam; [`LocalBlobStore`] keeps blobs in a local
//! directory (the default), [`ObjectBlobStore`] in any `object_store` backend
//! (S3-compatible with the `s3` feature, in-memory, local files) through the
//! blocking bridge `trib-objstore` shares with the adapter store.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use trib_objstore::object_store::ObjectStore;
use trib_objstore::{BlockingStore, ObjStoreError, ObjectPath};
use trib_types::Hash;

use crate::error::DatanetError;

/// A content-addressed blob store. Writes are atomic: a blob is either
/// absent or complete under its name.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` and returns their blake3 hash (a no-op when present).
    fn put(&self, bytes: &[u8]) -> Result<Hash, DatanetError>;
    /// The bytes named `hash`, verified against it; `None` when absent.
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, DatanetError>;
    /// Whether a blob named `hash` is stored.
    fn has(&self, hash: &Hash) -> Result<bool, DatanetError>;
    /// Every stored hash, ascending.
    fn list(&self) -> Result<Vec<Hash>, DatanetError>;
}

fn verified(hash: &Hash, bytes: Vec<u8>) -> Result<Vec<u8>, DatanetError> {
    let actual = Hash::of(&bytes);
    if actual != *hash {
        return Err(DatanetError::CorruptBlob {
            hash: hash.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(bytes)
}

/// Blobs in a local directory, sharded as `ab/cd/abcd…` by hash prefix.
/// A write goes to a temporary file in `tmp/`, is fsynced, renamed into
/// place, and the shard directory is fsynced.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// Opens (creating) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DatanetError> {
        let root = root.into();
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| DatanetError::io("creating", &tmp, e))?;
        Ok(LocalBlobStore { root })
    }

    /// Where the blob `hash` lives.
    pub fn path_of(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..4]).join(hex)
    }
}

fn sync_dir(dir: &Path) -> Result<(), DatanetError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DatanetError::io("fsyncing directory", dir, e))
}

impl BlobStore for LocalBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<Hash, DatanetError> {
        let hash = Hash::of(bytes);
        let path = self.path_of(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let dir = path.parent().expect("blob path has a shard directory");
        fs::create_dir_all(dir).map_err(|e| DatanetError::io("creating", dir, e))?;
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir)
            .map_err(|e| DatanetError::io("creating a temporary file in", &tmp_dir, e))?;
        tmp.write_all(bytes)
            .map_err(|e| DatanetError::io("writing", tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| DatanetError::io("fsyncing", tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| DatanetError::io("renaming into", &path, e.error))?;
        sync_dir(dir)?;
        tracing::trace!(target: "trib::datanet::blob", hash = %hash.short(), bytes = bytes.len(), "stored blob");
        Ok(hash)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, DatanetError> {
        let path = self.path_of(hash);
        match fs::read(&path) {
            Ok(b) => verified(hash, b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DatanetError::io("reading", path, e)),
        }
    }

    fn has(&self, hash: &Hash) -> Result<bool, DatanetError> {
        Ok(self.path_of(hash).is_file())
    }

    fn list(&self) -> Result<Vec<Hash>, DatanetError> {
        let mut out = Vec::new();
        let read = |p: &Path| fs::read_dir(p).map_err(|e| DatanetError::io("listing", p, e));
        for a in read(&self.root)? {
            let a = a
                .map_err(|e| DatanetError::io("listing", &self.root, e))?
                .path();
            if !a.is_dir() || a.file_name().is_some_and(|n| n == "tmp") {
                continue;
            }
            for b in read(&a)? {
                let b = b.map_err(|e| DatanetError::io("listing", &a, e))?.path();
                for f in read(&b)? {
                    let f = f.map_err(|e| DatanetError::io("listing", &b, e))?.path();
                    if let Some(h) = f
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.parse().ok())
                    {
                        out.push(h);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Blobs in an object store under a prefix, as `prefix/<hex>`, through the
/// shared blocking bridge ([`trib_objstore::BlockingStore`], the one the
/// adapter store uses too: same URLs, options and errors).
///
/// The calls block (on the bridge's own runtime; from inside another tokio
/// runtime on a scoped helper thread), so async callers should use
/// `spawn_blocking`. A PUT is atomic in every `object_store` backend.
#[derive(Debug)]
pub struct ObjectBlobStore {
    store: BlockingStore,
}

fn os_err(e: ObjStoreError) -> DatanetError {
    DatanetError::ObjectStore(e.to_string())
}

impl ObjectBlobStore {
    /// Wraps a backend, keeping blobs under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, DatanetError> {
        Ok(Self::from_store(
            BlockingStore::new(store, prefix).map_err(os_err)?,
        ))
    }

    /// Keeps blobs under the prefix of an opened bridge store.
    pub fn from_store(store: BlockingStore) -> Self {
        ObjectBlobStore { store }
    }

    /// An in-memory store (tests, demos).
    pub fn in_memory() -> Result<Self, DatanetError> {
        Ok(Self::from_store(
            BlockingStore::in_memory().map_err(os_err)?,
        ))
    }

    /// A store from a URL (`s3://bucket/prefix` with the `s3` feature,
    /// `memory:///`, `file:///path`) and options such as
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_endpoint`,
    /// `aws_region`, `aws_allow_http` (for MinIO and other S3-compatible
    /// servers); see [`BlockingStore::open`].
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self, DatanetError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        Ok(Self::from_store(
            BlockingStore::open(url, options).map_err(os_err)?,
        ))
    }

    fn path_of(&self, hash: &Hash) -> ObjectPath {
        self.store.key([hash.to_hex().as_str()])
    }
}

impl BlobStore for ObjectBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<Hash, DatanetError> {
        let hash = Hash::of(bytes);
        if self.has(&hash)? {
            return Ok(hash);
        }
        self.store
            .put(&self.path_of(&hash), bytes.to_vec())
            .map_err(os_err)?;
        Ok(hash)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, DatanetError> {
        match self.store.get(&self.path_of(hash), None).map_err(os_err)? {
            Some(b) => verified(hash, b).map(Some),
            None => Ok(None),
        }
    }

    fn has(&self, hash: &Hash) -> Result<bool, DatanetError> {
        self.store.exists(&self.path_of(hash)).map_err(os_err)
    }

    fn list(&self) -> Result<Vec<Hash>, DatanetError> {
        let mut out: Vec<Hash> = self
            .store
            .list()
            .map_err(os_err)?
            .iter()
            .filter_map(|parts| parts.last().and_then(|n| n.parse().ok()))
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn BlobStore) {
        let h = store.put(b"hello").unwrap();
        assert_eq!(h, Hash::of(b"hello"));
        assert_eq!(store.put(b"hello").unwrap(), h);
        assert!(store.has(&h).unwrap());
        assert_eq!(store.get(&h).unwrap().unwrap(), b"hello");
        let missing = Hash::of(b"nope");
        assert!(!store.has(&missing).unwrap());
        assert_eq!(store.get(&missing).unwrap(), None);
        let h2 = store.put(b"world").unwrap();
        let mut want = vec![h, h2];
        want.sort();
        assert_eq!(store.list().unwrap(), want);
    }

    #[test]
    fn local_store_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        exercise(&store);
        let h = Hash::of(b"hello");
        fs::write(store.path_of(&h), b"tampered").unwrap();
        assert!(matches!(
            store.get(&h),
            Err(DatanetError::CorruptBlob { .. })
        ));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temporary files left"
        );
    }

    #[test]
    fn object_store_in_memory_round_trips() {
        exercise(&ObjectBlobStore::in_memory().unwrap());
        let s = ObjectBlobStore::from_url("memory:///", Vec::<(String, String)>::new()).unwrap();
        exercise(&s);
    }

    #[test]
    fn s3_urls_need_the_s3_feature_and_build_offline_with_it() {
        let opts = [
            ("aws_endpoint", "http://127.0.0.1:9"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_allow_http", "true"),
        ];
        let r = ObjectBlobStore::from_url("s3://bucket/blobs", opts);
        if cfg!(feature = "s3") {
            let store = r.unwrap();
            assert_eq!(
                store.path_of(&Hash::ZERO).to_string(),
                format!("blobs/{}", Hash::ZERO)
            );
        } else {
            assert!(matches!(r, Err(DatanetError::ObjectStore(_))));
        }
        assert!(ObjectBlobStore::from_url("not a url", opts).is_err());
    }

    #[test]
    fn object_store_works_from_inside_a_tokio_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = ObjectBlobStore::in_memory().unwrap();
            let h = s.put(b"async caller").unwrap();
            assert!(s.has(&h).unwrap());
        });
    }
}
