//! API keys for the OpenAI-compatible routes: created, listed and revoked
//! per ledger account, stored hashed in `<home>/apikeys.json`.
//!
//! An API key is `trib-sk-` followed by 32 random bytes in hex. The node
//! keeps only its blake3 hash (domain-separated), with the account address
//! it charges, its creation time and its first 12 characters (`trib-sk-`
//! and 4 hex digits, 16 of the 256 random bits: enough to tell keys apart
//! in a list, useless for guessing one); a leaked home therefore leaks no
//! usable key. A key's **id** is the first 16 hex digits of that hash:
//! public, stable, and what listing and revoking name.
//!
//! The file is the one truth, written by `trib apikey new` (no node needed)
//! and by the node's `/v1/apikeys` routes: every change holds an exclusive
//! lock on `<home>/apikeys.json.lock`, reads the file, writes a temporary
//! file and renames it over the old one (a crash leaves the old file whole).
//! [`ApiKeys::account`], on every paid request, compares the file's size,
//! modification time and inode with those it last read and re-reads it when
//! they differ, so a key created or revoked by another process (or another
//! `ApiKeys` of the same node) counts from the next request on.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Hash};

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "trib-sk-";

/// Characters of a key kept to tell it apart in a list (the prefix and 4
/// hex digits).
const SHOWN_CHARS: usize = API_KEY_PREFIX.len() + 4;

/// Why an API key could not be created, listed or revoked.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The key file could not be read or written.
    #[error("API key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is not valid JSON of the expected shape.
    #[error("API key file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The account has no key with this id (another account's key is
    /// reported the same way, so ids of others cannot be probed).
    #[error("{account} has no API key with id {id:?} (list them with `trib apikey list`)")]
    NotFound {
        /// The id asked for.
        id: String,
        /// The account asking.
        account: Address,
    },
}

/// One stored key: its hash and the account it charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredKey {
    /// blake3 of the key text, hex.
    key_hash: Hash,
    /// The ledger account the key charges.
    account: Address,
    /// Creation time, milliseconds since the Unix epoch.
    created_ms: u64,
    /// The key's first [`SHOWN_CHARS`] characters (absent for keys made
    /// before they were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

impl StoredKey {
    fn info(&self) -> ApiKeyInfo {
        ApiKeyInfo {
            id: key_id(&self.key_hash),
            prefix: self.prefix.clone(),
            account: self.account,
            created_ms: self.created_ms,
        }
    }
}

/// A key as it may be shown: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The key's id: the first 16 hex digits of its stored hash.
    pub id: String,
    /// Its first characters (`trib-sk-` and 4 hex digits), when kept.
    pub prefix: Option<String>,
    /// The account it charges.
    pub account: Address,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// A key just created: the text (the only time it is seen) and its info.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The secret key text.
    pub key: String,
    /// What a list shows of it.
    pub info: ApiKeyInfo,
}

/// What identifies one version of the key file (size, modification time,
/// inode: every write is a rename, so a new file has a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

#[cfg(unix)]
fn inode(m: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &Metadata) -> u64 {
    0
}

/// The file's stamp; `None` when it does not exist (or cannot be read).
fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: inode(&m),
    })
}

/// The keys as last read, and the file version they were read from.
#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    keys: HashMap<Hash, Address>,
}

/// The node's API keys (`<home>/apikeys.json`), hashed.
#[derive(Debug)]
pub struct ApiKeys {
    path: PathBuf,
    cache: RwLock<Cache>,
}

fn hash_key(key: &str) -> Hash {
    Hash::domain("tributary api key v1", &[key.as_bytes()])
}

fn key_id(hash: &Hash) -> String {
    hash.to_hex()[..16].to_string()
}

fn read_file(path: &Path) -> Result<Vec<StoredKey>, ApiKeyError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ApiKeyError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ApiKeyError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs `change` on the stored keys under the file's lock and writes the
/// result (an owner-only temporary file, then rename).
fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut Vec<StoredKey>) -> Result<T, ApiKeyError>,
) -> Result<T, ApiKeyError> {
    let io = |source| ApiKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("json.lock"))
        .map_err(io)?;
    lock.lock().map_err(io)?;
    let mut all = read_file(path)?;
    let out = change(&mut all)?;
    let text = serde_json::to_vec_pretty(&all).expect("keys serialise");
    // Owner-only (0600), through a 0600 temporary file renamed into place.
    crate::private::write_private(path, &text).map_err(io)?;
    Ok(out)
}

impl ApiKeys {
    /// The key file of a node home.
    pub fn path_in(home_root: &Path) -> PathBuf {
        home_root.join("apikeys.json")
    }

    /// Opens (or starts empty) the key file.
    pub fn open(path: PathBuf) -> Result<Self, ApiKeyError> {
        let stamp = stamp(&path);
        let keys = read_file(&path)?
            .into_iter()
            .map(|k| (k.key_hash, k.account))
            .collect();
        Ok(ApiKeys {
            path,
            cache: RwLock::new(Cache { stamp, keys }),
        })
    }

    /// Creates a random key for `account` in the key file at `path` and
    /// returns the key text: the only time it is seen.
    pub fn create(path: &Path, account: Address) -> Result<String, ApiKeyError> {
        Ok(Self::add(path, account)?.key)
    }

    /// Creates a random key for `account` in this node's key file.
    pub fn issue(&self, account: Address) -> Result<NewApiKey, ApiKeyError> {
        Self::add(&self.path, account)
    }

    fn add(path: &Path, account: Address) -> Result<NewApiKey, ApiKeyError> {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let key = format!("{API_KEY_PREFIX}{}", hex::encode(bytes));
        let stored = StoredKey {
            key_hash: hash_key(&key),
            account,
            created_ms: crate::chain::now_ms(),
            prefix: Some(key[..SHOWN_CHARS].to_string()),
        };
        let info = stored.info();
        update(path, |all| {
            all.push(stored);
            Ok(())
        })?;
        tracing::info!(target: "trib::apikeys", %account, id = %info.id, "API key created");
        Ok(NewApiKey { key, info })
    }

    /// The keys charging `account`, oldest first.
    pub fn list(&self, account: &Address) -> Result<Vec<ApiKeyInfo>, ApiKeyError> {
        let mut keys: Vec<ApiKeyInfo> = read_file(&self.path)?
            .iter()
            .filter(|k| k.account == *account)
            .map(StoredKey::info)
            .collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    /// Deletes `account`'s key `id`: from the next request on it is
    /// refused. Another account's key is [`ApiKeyError::NotFound`] too.
    pub fn revoke(&self, account: &Address, id: &str) -> Result<ApiKeyInfo, ApiKeyError> {
        let info = update(&self.path, |all| {
            let pos = all
                .iter()
                .position(|k| k.account == *account && key_id(&k.key_hash) == id)
                .ok_or_else(|| ApiKeyError::NotFound {
                    id: id.to_string(),
                    account: *account,
                })?;
            Ok(all.remove(pos).info())
        })?;
        tracing::info!(target: "trib::apikeys", %account, id, "API key revoked");
        Ok(info)
    }

    /// The account a presented key charges; `None` for an unknown or
    /// revoked key. Re-reads the file when it changed since the last read
    /// (an unreadable file keeps the keys last read, with a warning).
    pub fn account(&self, key: &str) -> Option<Address> {
        let h = hash_key(key);
        let now = stamp(&self.path);
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if cache.stamp == now {
                return cache.keys.get(&h).copied();
            }
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        match read_file(&self.path) {
            Ok(all) => {
                cache.keys = all.into_iter().map(|k| (k.key_hash, k.account)).collect();
                cache.stamp = now;
            }
            Err(e) => {
                tracing::warn!(target: "trib::apikeys", error = %e, "API key file unreadable; using the keys read before");
            }
        }
        cache.keys.get(&h).copied()
    }
}

#[cfg(test)]
mod tests {
    use trib_types::SecretKey;

    use super::*;

    fn addr(seed: u8) -> Address {
        SecretKey::from_seed([seed; 32]).address()
    }

    #[test]
    fn keys_are_listed_per_account_without_their_secret_and_revoked_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = ApiKeys::path_in(dir.path());
        let keys = ApiKeys::open(path.clone()).unwrap();
        let (alice, bob) = (addr(1), addr(2));
        let a1 = keys.issue(alice).unwrap();
        let a2 = ApiKeys::create(&path, alice).unwrap();
        let b1 = keys.issue(bob).unwrap();
        assert_eq!(keys.account(&a1.key), Some(alice));
        assert_eq!(keys.account(&a2), Some(alice));
        assert_eq!(keys.account(&b1.key), Some(bob));

        let listed = keys.list(&alice).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&a1.info));
        assert_eq!(a1.info.prefix.as_deref(), Some(&a1.key[..12]));
        assert_eq!(a1.info.id.len(), 16);
        // Neither the key text nor anything past its shown prefix is stored.
        let stored = std::fs::read_to_string(&path).unwrap();
        for k in [&a1.key, &a2, &b1.key] {
            assert!(!stored.contains(&k[..20]), "{stored}");
        }

        // Bob cannot revoke (or learn of) Alice's key.
        let e = keys.revoke(&bob, &a1.info.id).unwrap_err();
        assert!(matches!(e, ApiKeyError::NotFound { .. }), "{e}");
        assert_eq!(keys.account(&a1.key), Some(alice));
        assert_eq!(keys.revoke(&alice, &a1.info.id).unwrap(), a1.info);
        assert_eq!(keys.account(&a1.key), None, "a revoked key is refused");
        assert_eq!(keys.account(&a2), Some(alice));
        assert_eq!(keys.list(&alice).unwrap().len(), 1);
        let e = keys.revoke(&alice, &a1.info.id).unwrap_err();
        assert!(e.to_string().contains(&a1.info.id), "{e}");
    }

    #[test]
    fn a_key_revoked_through_another_handle_is_refused_at_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = ApiKeys::path_in(dir.path());
        // Serving's handle and the routes' handle, as in a running node.
        let serving = ApiKeys::open(path.clone()).unwrap();
        let routes = ApiKeys::open(path.clone()).unwrap();
        let k = routes.issue(addr(1)).unwrap();
        assert_eq!(serving.account(&k.key), Some(addr(1)));
        routes.revoke(&addr(1), &k.info.id).unwrap();
        assert_eq!(serving.account(&k.key), None);
        // A key made by another process (`trib apikey new`) counts at once.
        let later = ApiKeys::create(&path, addr(3)).unwrap();
        assert_eq!(serving.account(&later), Some(addr(3)));
    }

    #[test]
    fn keys_written_before_prefixes_were_kept_still_load_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = ApiKeys::path_in(dir.path());
        let key = format!("{API_KEY_PREFIX}{}", "ab".repeat(32));
        let old = serde_json::json!([{
            "key_hash": hash_key(&key), "account": addr(1), "created_ms": 5,
        }]);
        std::fs::write(&path, old.to_string()).unwrap();
        let keys = ApiKeys::open(path).unwrap();
        assert_eq!(keys.account(&key), Some(addr(1)));
        let listed = keys.list(&addr(1)).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].prefix, None);
        assert_eq!(listed[0].created_ms, 5);
    }
}
