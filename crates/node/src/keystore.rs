//! The local keystore: one JSON file per ed25519 key under `<home>/keys/`.
//!
//! A key file holds the public half in clear (so `trib keys list` never needs a
//! passphrase) and the 32-byte seed either in clear or sealed with
//! XChaCha20-Poly1305 under a key derived from a passphrase by Argon2id
//! (RFC 9106; OWASP's minimum of 19 MiB, 2 passes, 1 lane by default). The
//! public key is the AEAD's associated data, so a ciphertext moved into another
//! key's file fails to open instead of silently yielding the wrong key.
//!
//! Files are created with mode 0600 (directory 0700), written to a temporary
//! file, fsynced and linked into place without overwriting, so a crash never
//! leaves a half-written key and an existing key is never clobbered. Loading a
//! key whose file is readable by group or others is refused, as ssh does.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use trib_types::{Address, PublicKey, SecretKey};
use zeroize::Zeroizing;

/// Version of the key file format written by this code.
const FORMAT_VERSION: u32 = 1;
/// Name of the only cipher suite so far.
const SUITE: &str = "argon2id-xchacha20poly1305";
/// Longest accepted key name.
const MAX_NAME_LEN: usize = 64;

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The key name has characters other than ASCII letters, digits, `-`, `_`,
    /// or is empty or too long.
    #[error("invalid key name {0:?}: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    InvalidName(String),
    /// A key of that name already exists; keys are never overwritten.
    #[error("a key named {name:?} already exists at {path}")]
    AlreadyExists {
        /// The key name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// No key of that name.
    #[error("no key named {name:?} in keystore {dir}")]
    NotFound {
        /// The key name.
        name: String,
        /// The keystore directory.
        dir: PathBuf,
    },
    /// The key is encrypted and no passphrase was given.
    #[error("key {0:?} is encrypted: a passphrase is required")]
    PassphraseRequired(String),
    /// The passphrase does not open the key (or the file was tampered with).
    #[error("wrong passphrase for key {0:?} (or its file was modified)")]
    WrongPassphrase(String),
    /// An empty passphrase was given for encryption.
    #[error("refusing to encrypt key {0:?} with an empty passphrase")]
    EmptyPassphrase(String),
    /// The key file is readable or writable by group or others.
    #[error("key file {path} has permissions {mode:o}; it must be 0600 (run: chmod 600 {path})")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a valid key file.
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("keystore I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The public facts about a stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's name in the keystore.
    pub name: String,
    /// The account address.
    pub address: Address,
    /// The ed25519 public key.
    pub public_key: PublicKey,
    /// Whether the seed is passphrase-encrypted.
    pub encrypted: bool,
}

/// A directory of key files.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
    kdf: KdfParams,
}

/// Argon2id cost parameters, stored in each encrypted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct KdfParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl KdfParams {
    /// OWASP's recommended minimum for Argon2id.
    const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
}

/// The on-disk format of one key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    name: String,
    address: Address,
    public_key: PublicKey,
    secret: SecretField,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum SecretField {
    /// The seed in hex, protected only by the file permissions.
    Plain { seed: String },
    /// The seed sealed under a passphrase.
    Encrypted {
        suite: String,
        kdf: KdfParams,
        salt: String,
        nonce: String,
        ciphertext: String,
    },
}

impl Keystore {
    /// Opens (creating with mode 0700 if needed) the keystore at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeystoreError> {
        let dir = dir.into();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|source| KeystoreError::Io {
                path: dir.clone(),
                source,
            })?;
            set_mode(&dir, 0o700)?;
        }
        Ok(Keystore {
            dir,
            kdf: KdfParams::DEFAULT,
        })
    }

    /// Uses cheap KDF parameters: for tests only, where 19 MiB per derivation
    /// would only slow the suite down.
    #[cfg(test)]
    fn with_test_kdf(mut self) -> Self {
        self.kdf = KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        self
    }

    /// The keystore directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generates a fresh key named `name`, encrypted when `passphrase` is given.
    pub fn generate(&self, name: &str, passphrase: Option<&str>) -> Result<KeyInfo, KeystoreError> {
        self.import(name, &SecretKey::generate(), passphrase)
    }

    /// Stores `key` under `name`, encrypted when `passphrase` is given. Fails
    /// if the name is taken.
    pub fn import(
        &self,
        name: &str,
        key: &SecretKey,
        passphrase: Option<&str>,
    ) -> Result<KeyInfo, KeystoreError> {
        validate_name(name)?;
        let path = self.path_of(name);
        if path.exists() {
            return Err(KeystoreError::AlreadyExists {
                name: name.to_string(),
                path,
            });
        }
        let public_key = key.public_key();
        let seed = Zeroizing::new(key.to_seed());
        let secret = match passphrase {
            None => SecretField::Plain {
                seed: hex::encode(*seed),
            },
            Some("") => return Err(KeystoreError::EmptyPassphrase(name.to_string())),
            Some(pass) => seal(&seed, &public_key, pass, self.kdf),
        };
        let file = KeyFile {
            version: FORMAT_VERSION,
            name: name.to_string(),
            address: public_key.address(),
            public_key,
            secret,
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("key file serialises"));
        write_new_private_file(&self.dir, &path, &json).map_err(|e| match e {
            KeystoreError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                KeystoreError::AlreadyExists {
                    name: name.to_string(),
                    path: path.clone(),
                }
            }
            other => other,
        })?;
        tracing::info!(target: "trib::keystore", name, address = %file.address, encrypted = passphrase.is_some(), "key stored");
        Ok(KeyInfo {
            name: name.to_string(),
            address: file.address,
            public_key,
            encrypted: passphrase.is_some(),
        })
    }

    /// The public facts of key `name` (no passphrase needed).
    pub fn info(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        let (_, file) = self.read(name)?;
        Ok(KeyInfo {
            name: file.name,
            address: file.address,
            public_key: file.public_key,
            encrypted: matches!(file.secret, SecretField::Encrypted { .. }),
        })
    }

    /// Every key, sorted by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if validate_name(name).is_ok() {
                names.push(name.to_string());
            }
        }
        names.sort();
        names.iter().map(|n| self.info(n)).collect()
    }

    /// Whether a key named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        validate_name(name).is_ok() && self.path_of(name).is_file()
    }

    /// Loads the secret key `name`, decrypting with `passphrase` if the file is
    /// encrypted (a passphrase given for a plain key is ignored).
    pub fn load(&self, name: &str, passphrase: Option<&str>) -> Result<SecretKey, KeystoreError> {
        let (path, file) = self.read(name)?;
        let corrupt = |reason: String| KeystoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let seed: Zeroizing<[u8; 32]> = match &file.secret {
            SecretField::Plain { seed } => {
                Zeroizing::new(decode_fixed(seed).map_err(|r| corrupt(format!("seed: {r}")))?)
            }
            SecretField::Encrypted {
                suite,
                kdf,
                salt,
                nonce,
                ciphertext,
            } => {
                if suite != SUITE {
                    return Err(corrupt(format!("unknown cipher suite {suite:?}")));
                }
                let pass = passphrase
                    .ok_or_else(|| KeystoreError::PassphraseRequired(name.to_string()))?;
                let salt: [u8; 16] =
                    decode_fixed(salt).map_err(|r| corrupt(format!("salt: {r}")))?;
                let nonce: [u8; 24] =
                    decode_fixed(nonce).map_err(|r| corrupt(format!("nonce: {r}")))?;
                let ct =
                    hex::decode(ciphertext).map_err(|e| corrupt(format!("ciphertext: {e}")))?;
                let key =
                    derive_key(pass, &salt, *kdf).map_err(|r| corrupt(format!("kdf: {r}")))?;
                let cipher = XChaCha20Poly1305::new(key.as_ref().into());
                let plain = Zeroizing::new(
                    cipher
                        .decrypt(
                            XNonce::from_slice(&nonce),
                            Payload {
                                msg: &ct,
                                aad: &file.public_key.0,
                            },
                        )
                        .map_err(|_| KeystoreError::WrongPassphrase(name.to_string()))?,
                );
                let seed: [u8; 32] = plain
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("sealed seed is not 32 bytes".into()))?;
                Zeroizing::new(seed)
            }
        };
        let key = SecretKey::from_seed(*seed);
        if key.public_key() != file.public_key {
            return Err(corrupt(
                "the seed does not match the stored public key".into(),
            ));
        }
        Ok(key)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn read(&self, name: &str) -> Result<(PathBuf, KeyFile), KeystoreError> {
        validate_name(name)?;
        let path = self.path_of(name);
        let bytes = match fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound {
                    name: name.to_string(),
                    dir: self.dir.clone(),
                })
            }
            Err(source) => return Err(KeystoreError::Io { path, source }),
        };
        check_private(&path)?;
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if file.version != FORMAT_VERSION {
            return Err(KeystoreError::Corrupt {
                path,
                reason: format!("unsupported format version {}", file.version),
            });
        }
        if file.name != name || file.public_key.address() != file.address {
            return Err(KeystoreError::Corrupt {
                path,
                reason: "name or address does not match the file".into(),
            });
        }
        Ok((path, file))
    }
}

fn validate_name(name: &str) -> Result<(), KeystoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::InvalidName(name.chars().take(80).collect()))
    }
}

fn derive_key(pass: &str, salt: &[u8; 16], kdf: KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    let params =
        Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32)).map_err(|e| e.to_string())?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass.as_bytes(), salt, out.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn seal(seed: &[u8; 32], pk: &PublicKey, pass: &str, kdf: KdfParams) -> SecretField {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    // Our own parameters are valid by construction; only a file's can be bad.
    let key = derive_key(pass, &salt, kdf).expect("the keystore's Argon2id parameters are valid");
    let ct = XChaCha20Poly1305::new(key.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: seed,
                aad: &pk.0,
            },
        )
        .expect("XChaCha20-Poly1305 encryption of 32 bytes cannot fail");
    SecretField::Encrypted {
        suite: SUITE.to_string(),
        kdf,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    }
}

fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let v = Zeroizing::new(hex::decode(s).map_err(|e| e.to_string())?);
    v.as_slice()
        .try_into()
        .map_err(|_| format!("expected {N} bytes, found {}", v.len()))
}

/// Writes `bytes` to a new file `path` with mode 0600: temporary file, fsync,
/// link into place (fails if `path` exists), fsync the directory.
pub(crate) fn write_new_private_file(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), KeystoreError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| KeystoreError::Io { path: p, source }
    };
    // tempfile creates the file with mode 0600 on Unix.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-key-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(tmp.path()))?;
    set_mode(tmp.path(), 0o600)?;
    tmp.persist_noclobber(path).map_err(|e| KeystoreError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), KeystoreError> {
    crate::private::set_mode(path, mode).map_err(|source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeystoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| KeystoreError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeystoreError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeystoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Keystore) {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path().join("keys"))
            .unwrap()
            .with_test_kdf();
        (dir, ks)
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_created_with_mode_0600_in_a_0700_directory() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, ks) = store();
        ks.generate("alice", None).unwrap();
        ks.generate("bob", Some("pw")).unwrap();
        for name in ["alice", "bob"] {
            let mode = fs::metadata(ks.dir().join(format!("{name}.json")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(
            fs::metadata(ks.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn passphrase_round_trip_recovers_the_same_key() {
        let (_d, ks) = store();
        let sk = SecretKey::from_seed([9; 32]);
        let info = ks.import("carol", &sk, Some("correct horse")).unwrap();
        assert!(info.encrypted);
        assert_eq!(info.address, sk.address());
        let loaded = ks.load("carol", Some("correct horse")).unwrap();
        assert_eq!(loaded.to_seed(), sk.to_seed());
        // the seed never appears in the file
        let text = fs::read_to_string(ks.dir().join("carol.json")).unwrap();
        assert!(!text.contains(&hex::encode(sk.to_seed())));
    }

    #[test]
    fn wrong_or_missing_passphrase_is_a_clear_error() {
        let (_d, ks) = store();
        ks.generate("dave", Some("right")).unwrap();
        let err = ks.load("dave", Some("wrong")).unwrap_err();
        assert!(
            matches!(err, KeystoreError::WrongPassphrase(ref n) if n == "dave"),
            "{err}"
        );
        assert!(err.to_string().contains("wrong passphrase"));
        assert!(matches!(
            ks.load("dave", None),
            Err(KeystoreError::PassphraseRequired(_))
        ));
    }

    #[test]
    fn plain_keys_load_without_passphrase_and_list_is_sorted() {
        let (_d, ks) = store();
        let b = ks.generate("bob", None).unwrap();
        let a = ks.generate("alice", Some("x")).unwrap();
        assert_eq!(ks.load("bob", None).unwrap().public_key(), b.public_key);
        let names: Vec<_> = ks.list().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(ks.info("alice").unwrap(), a);
    }

    #[test]
    fn existing_keys_are_never_overwritten() {
        let (_d, ks) = store();
        let first = ks.generate("eve", None).unwrap();
        assert!(matches!(
            ks.generate("eve", None),
            Err(KeystoreError::AlreadyExists { .. })
        ));
        assert_eq!(ks.info("eve").unwrap().address, first.address);
    }

    #[test]
    fn bad_names_and_unknown_keys_are_rejected() {
        let (_d, ks) = store();
        for bad in ["", "../x", "a b", "x.json", &"n".repeat(65)] {
            assert!(
                matches!(ks.generate(bad, None), Err(KeystoreError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ks.load("nobody", None),
            Err(KeystoreError::NotFound { .. })
        ));
        assert!(matches!(
            ks.generate("x", Some("")),
            Err(KeystoreError::EmptyPassphrase(_))
        ));
    }

    #[test]
    fn a_ciphertext_moved_into_another_keys_file_does_not_open() {
        let (_d, ks) = store();
        ks.generate("a", Some("pw")).unwrap();
        ks.generate("b", Some("pw")).unwrap();
        let read = |n: &str| {
            serde_json::from_str::<serde_json::Value>(
                &fs::read_to_string(ks.dir().join(format!("{n}.json"))).unwrap(),
            )
            .unwrap()
        };
        let mut b = read("b");
        b["secret"] = read("a")["secret"].clone();
        fs::write(ks.dir().join("b.json"), serde_json::to_vec(&b).unwrap()).unwrap();
        assert!(matches!(
            ks.load("b", Some("pw")),
            Err(KeystoreError::WrongPassphrase(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_key_files_are_refused() {
        let (_d, ks) = store();
        ks.generate("f", None).unwrap();
        set_mode(&ks.dir().join("f.json"), 0o644).unwrap();
        assert!(matches!(
            ks.load("f", None),
            Err(KeystoreError::InsecurePermissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn debug_output_never_contains_the_seed() {
        let sk = SecretKey::from_seed([0xab; 32]);
        assert!(!format!("{sk:?}").contains("abab"));
    }
}
