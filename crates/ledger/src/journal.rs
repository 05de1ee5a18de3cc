//! The mempool journal: an append-only, fsynced file of the transactions a
//! node has accepted and not yet seen committed, so that "accepted" survives
//! a crash.
//!
//! Why a file beside the ledger rather than a redb table in it: a block holds
//! the ledger's one redb write transaction while it executes and commits,
//! and submissions must not wait for a block. The journal has its own file,
//! so an append never waits for the ledger.
//!
//! Format: the 8-byte magic `TRIBMPJ1`, then records of
//! `u32 LE length ‖ blake3(payload) ‖ payload`, the payload being the
//! transaction's canonical borsh encoding. Opening reads records up to the
//! first incomplete or mismatching one (a write cut by a crash, never
//! acknowledged: the caller fsyncs before answering) and truncates the file
//! there. Records of transactions that were committed since are not removed
//! one by one: the owner filters them at open (they are in the ledger) and
//! [`MempoolJournal::rewrite`]s the file with what is still pending, which
//! replaces it atomically (temporary file, fsync, rename, directory fsync).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use trib_types::Hash;

use crate::tx::SignedTransaction;

const MAGIC: &[u8; 8] = b"TRIBMPJ1";
/// Length prefix and checksum of one record.
const RECORD_HEAD: usize = 4 + 32;
/// Largest record accepted when reading (far above any transaction size
/// limit a genesis can set; a larger length is a torn or foreign file).
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file-system operation on the journal failed (disk full, read-only
    /// storage, permissions); the path and the operation are named.
    #[error("mempool journal {path}: cannot {op}: {source}")]
    Io {
        /// The journal (or its temporary file).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file exists but is not a mempool journal.
    #[error("{0} is not a mempool journal (bad magic bytes); move it away to start with an empty mempool")]
    NotAJournal(PathBuf),
}

/// A write that still needs its fsync before the transaction may be
/// acknowledged: [`Durable::sync`] it after releasing the mempool's lock, so
/// that concurrent submissions share the disk's flushes.
#[must_use = "a journal write is durable only after sync"]
pub struct Durable {
    file: Arc<File>,
    path: PathBuf,
}

impl Durable {
    /// Flushes the journal file to stable storage.
    pub fn sync(self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path,
            op: "fsync",
            source,
        })
    }
}

/// The journal file of one node's mempool.
#[derive(Debug)]
pub struct MempoolJournal {
    path: PathBuf,
    file: Arc<File>,
    /// Records in the file (pending or committed since).
    records: usize,
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { path, op, source }
}

fn record_bytes(stx: &SignedTransaction) -> Vec<u8> {
    let payload = borsh::to_vec(stx).expect("borsh encoding into a Vec cannot fail");
    let mut out = Vec::with_capacity(RECORD_HEAD + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(Hash::of(&payload).as_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parses records from `bytes` (after the magic): the transactions and the
/// length of the valid prefix.
fn parse(bytes: &[u8]) -> (Vec<SignedTransaction>, usize) {
    let mut txs = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= RECORD_HEAD {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let start = at + RECORD_HEAD;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if Hash::of(payload).as_bytes()[..] != bytes[at + 4..start] {
            break;
        }
        match borsh::from_slice::<SignedTransaction>(payload) {
            Ok(stx) => txs.push(stx),
            Err(_) => break,
        }
        at = start + len;
    }
    (txs, at)
}

impl MempoolJournal {
    /// Opens the journal at `path` (creating it, mode 0600, if absent) and
    /// returns it with every transaction it holds, in the order written. A
    /// torn tail is cut off with a warning.
    pub fn open(
        path: impl AsRef<Path>,
    ) -> Result<(MempoolJournal, Vec<SignedTransaction>), JournalError> {
        let path = path.as_ref().to_path_buf();
        let mut file = private_options()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path, "open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path, "read"))?;
        if bytes.is_empty() {
            file.write_all(MAGIC).map_err(io(&path, "write"))?;
            file.sync_all().map_err(io(&path, "fsync"))?;
            sync_dir(&path)?;
            return Ok((
                MempoolJournal {
                    path,
                    file: Arc::new(file),
                    records: 0,
                },
                Vec::new(),
            ));
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(JournalError::NotAJournal(path));
        }
        let body = &bytes[MAGIC.len()..];
        let (txs, valid) = parse(body);
        if valid < body.len() {
            tracing::warn!(target: "trib::mempool", path = %path.display(), bytes = body.len() - valid,
                "mempool journal ends with an incomplete record (a write cut by a crash, never acknowledged); truncated");
            file.set_len((MAGIC.len() + valid) as u64)
                .map_err(io(&path, "truncate"))?;
            file.sync_all().map_err(io(&path, "fsync"))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(&path, "seek"))?;
        let records = txs.len();
        Ok((
            MempoolJournal {
                path,
                file: Arc::new(file),
                records,
            },
            txs,
        ))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the file, pending or committed since the last rewrite.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Appends `stx` (written, not yet flushed): [`Durable::sync`] the
    /// result before acknowledging the transaction.
    pub fn append(&mut self, stx: &SignedTransaction) -> Result<Durable, JournalError> {
        (&*self.file)
            .write_all(&record_bytes(stx))
            .map_err(io(&self.path, "append"))?;
        self.records += 1;
        Ok(Durable {
            file: self.file.clone(),
            path: self.path.clone(),
        })
    }

    /// Replaces the file with one holding exactly `pending`, in order,
    /// durably (temporary file, fsync, rename, directory fsync). On error
    /// the old file stays in place and in use.
    pub fn rewrite<'a>(
        &mut self,
        pending: impl IntoIterator<Item = &'a SignedTransaction>,
    ) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("rewriting");
        let mut bytes = MAGIC.to_vec();
        let mut records = 0;
        for stx in pending {
            bytes.extend_from_slice(&record_bytes(stx));
            records += 1;
        }
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp, "create"))?;
        let written = file
            .write_all(&bytes)
            .map_err(io(&tmp, "write"))
            .and_then(|()| file.sync_all().map_err(io(&tmp, "fsync")))
            .and_then(|()| std::fs::rename(&tmp, &self.path).map_err(io(&self.path, "replace")));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&self.path)?;
        // Reopen in append mode (the renamed file is the journal now).
        let file = private_options()
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path, "reopen"))?;
        self.file = Arc::new(file);
        self.records = records;
        tracing::debug!(target: "trib::mempool", path = %self.path.display(), records, "mempool journal rewritten");
        Ok(())
    }
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Makes a file's creation or rename durable.
fn sync_dir(path: &Path) -> Result<(), JournalError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync the directory of"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{Action, Transaction};
    use trib_types::{Amount, SecretKey};

    fn tx(nonce: u64) -> SignedTransaction {
        let key = SecretKey::from_seed([7; 32]);
        Transaction {
            chain_id: "test".into(),
            sender: key.public_key(),
            nonce,
            fee: Amount::open(1),
            action: Action::Transfer {
                to: SecretKey::from_seed([8; 32]).address(),
                amount: Amount::open(2),
            },
        }
        .sign(&key)
    }

    #[test]
    fn appended_transactions_come_back_in_order_and_a_rewrite_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mempool.journal");
        let (mut j, txs) = MempoolJournal::open(&path).unwrap();
        assert!(txs.is_empty());
        for n in 0..3 {
            j.append(&tx(n)).unwrap().sync().unwrap();
        }
        drop(j);
        let (mut j, txs) = MempoolJournal::open(&path).unwrap();
        assert_eq!(txs, vec![tx(0), tx(1), tx(2)]);
        assert_eq!(j.records(), 3);
        j.rewrite([&tx(2)]).unwrap();
        j.append(&tx(3)).unwrap().sync().unwrap();
        drop(j);
        let (j, txs) = MempoolJournal::open(&path).unwrap();
        assert_eq!(txs, vec![tx(2), tx(3)]);
        assert_eq!(j.records(), 2);
        assert!(!path.with_extension("rewriting").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{mode:o}");
        }
    }

    #[test]
    fn a_torn_or_corrupted_tail_is_cut_and_the_records_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mempool.journal");
        let (mut j, _) = MempoolJournal::open(&path).unwrap();
        j.append(&tx(0)).unwrap().sync().unwrap();
        j.append(&tx(1)).unwrap().sync().unwrap();
        drop(j);
        let full = std::fs::read(&path).unwrap();
        let one = MAGIC.len() + record_bytes(&tx(0)).len();
        // A write cut in the middle of the second record.
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        let (mut j, txs) = MempoolJournal::open(&path).unwrap();
        assert_eq!(txs, vec![tx(0)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, one);
        // Appends continue after the cut.
        j.append(&tx(1)).unwrap().sync().unwrap();
        drop(j);
        assert_eq!(MempoolJournal::open(&path).unwrap().1, vec![tx(0), tx(1)]);
        // A flipped payload byte fails the checksum: that record and the rest go.
        let mut bad = std::fs::read(&path).unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(MempoolJournal::open(&path).unwrap().1, vec![tx(0)]);
    }

    #[test]
    fn a_foreign_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mempool.journal");
        std::fs::write(&path, b"not a journal at all").unwrap();
        let e = MempoolJournal::open(&path).unwrap_err().to_string();
        assert!(e.contains("not a mempool journal"), "{e}");
    }
}
