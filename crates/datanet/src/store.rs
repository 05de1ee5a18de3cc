//! The local datanet store: datanets, contributions, rows, the dedup index
//! and versions in one embedded redb file.
//!
//! It is independent of the ledger: the ledger records what must be agreed
//! on (descriptors, stakes, curation transactions, version roots), the node
//! keeps the bulk data here and calls [`DatanetStore::decide`] and
//! [`DatanetStore::publish`] when the ledger says so.
//!
//! Layout (all keys big-endian so that byte order is numeric order; values
//! are borsh) is described in `docs/datanets.md`. Every operation is one
//! redb transaction: it commits whole (durably) or not at all.

use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Canonical, ContributionId, DatanetId, Hash, RowHash};

use crate::blob::BlobStore;
use crate::descriptor::{Datanet, MAX_DESCRIPTOR_BYTES};
use crate::error::DatanetError;
use crate::export::write_export;
use crate::minhash::{MinHashSignature, MinHasher};
use crate::parse::{FileKind, SourceFile};
use crate::reputation::ReputationEvent;
use crate::row::StoredRow;
use crate::validate::{
    DedupIndex, QuotaUsage, ValidatedContribution, ValidatedRow, ValidationReport, Validator,
};
use crate::version::{canonical_order, merkle_root, DatanetVersion, InclusionProof, VersionLeaf};

/// Raw key/value pairs of a scan.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

type Tbl = TableDefinition<'static, &'static [u8], &'static [u8]>;

const DATANETS: Tbl = TableDefinition::new("datanets");
const NAMES: Tbl = TableDefinition::new("datanet_names");
const CONTRIBUTIONS: Tbl = TableDefinition::new("contributions");
const CONTRIBUTION_IDS: Tbl = TableDefinition::new("contribution_ids");
const ROWS: Tbl = TableDefinition::new("rows");
const ROW_INDEX: Tbl = TableDefinition::new("row_index");
const LSH: Tbl = TableDefinition::new("lsh");
const SIGNATURES: Tbl = TableDefinition::new("signatures");
const VERSIONS: Tbl = TableDefinition::new("versions");
const VERSION_ROWS: Tbl = TableDefinition::new("version_rows");
const HISTORY: Tbl = TableDefinition::new("contributor_history");
const META: Tbl = TableDefinition::new("meta");
/// (UTC day, datanet, contributor) → bytes (u64 BE) ++ files (u32 BE)
/// accepted that day.
const QUOTA_CONTRIBUTOR: Tbl = TableDefinition::new("quota_contributor");
/// (UTC day, datanet) → bytes (u64 BE) accepted that day.
const QUOTA_DATANET: Tbl = TableDefinition::new("quota_datanet");
/// (datanet, contributor) → submissions so far (u64 BE), rejected ones
/// included: the `attempt` of the next contribution id.
const SUBMISSIONS: Tbl = TableDefinition::new("submission_counts");
/// (datanet, seq) → [`RejectedSubmission`].
const VALIDATION_REJECTIONS: Tbl = TableDefinition::new("validation_rejections");
/// (datanet, seq) → contribution id, for contributions still pending: what
/// the node checks against the ledger's curation without scanning every
/// contribution.
const PENDING: Tbl = TableDefinition::new("pending_contributions");
/// `META` key set once `PENDING` holds every pending contribution (stores
/// written before the table existed are indexed on open).
const PENDING_INDEXED: &[u8] = b"pending_indexed";

const ALL_TABLES: [Tbl; 17] = [
    DATANETS,
    NAMES,
    CONTRIBUTIONS,
    CONTRIBUTION_IDS,
    ROWS,
    ROW_INDEX,
    LSH,
    SIGNATURES,
    VERSIONS,
    VERSION_ROWS,
    HISTORY,
    META,
    QUOTA_CONTRIBUTOR,
    QUOTA_DATANET,
    SUBMISSIONS,
    VALIDATION_REJECTIONS,
    PENDING,
];

/// Largest stored value we decode (a row is at most 64 KiB of text plus
/// provenance; a record carries small fixed fields).
const MAX_VALUE_BYTES: usize = 1 << 20;

/// Where a stored contribution stands in curation, as this store records
/// it: whether its rows go into the next version.
///
/// Not the on-chain status ([`trib_types::ContributionStatus`], which also
/// tracks the escrowed stake: released, expired). The node mirrors the
/// ledger's decisions into this one (accepted or released → `Accepted`,
/// rejected or expired → `Rejected`); the store knows nothing of stakes.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CurationStatus {
    /// Validated, waiting for the owner or validators.
    Pending,
    /// Accepted: its rows join the next version.
    Accepted,
    /// Rejected by curation, with the reason given.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for CurationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CurationStatus::Pending => f.write_str("pending"),
            CurationStatus::Accepted => f.write_str("accepted"),
            CurationStatus::Rejected { .. } => f.write_str("rejected"),
        }
    }
}

/// A curation decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Accept the contribution.
    Accept,
    /// Reject it with a reason.
    Reject {
        /// Why.
        reason: String,
    },
}

/// A stored contribution.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ContributionRecord {
    /// Its id.
    pub id: ContributionId,
    /// The datanet.
    pub datanet: DatanetId,
    /// Who contributed.
    pub contributor: Address,
    /// The file name.
    pub file_name: String,
    /// The file's content-store hash.
    pub file_hash: Hash,
    /// File size.
    pub file_bytes: u64,
    /// File type.
    pub kind: FileKind,
    /// Store-wide sequence number (submission order).
    pub seq: u64,
    /// Rows accepted at validation.
    pub rows_accepted: u32,
    /// Rows in the file.
    pub rows_total: u32,
    /// Rows rejected as duplicates at validation.
    pub duplicates_rejected: u32,
    /// Curation status.
    pub status: CurationStatus,
}

impl Canonical for ContributionRecord {
    const NAME: &'static str = "datanet contribution record";
}

/// A submission that validation rejected as a whole (all duplicates, bad
/// format, quota, …). Nothing of it is stored but this record, which feeds
/// the contributor's reputation (docs/datanets.md, "Reputation").
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RejectedSubmission {
    /// The id the report carried.
    pub id: ContributionId,
    /// The datanet.
    pub datanet: DatanetId,
    /// Who submitted.
    pub contributor: Address,
    /// The file name.
    pub file_name: String,
    /// blake3 of the file.
    pub file_hash: Hash,
    /// File size.
    pub file_bytes: u64,
    /// Store-wide sequence number (shared with stored contributions).
    pub seq: u64,
    /// UTC day of the submission (days since 1970-01-01).
    pub day: u64,
    /// Rows in the file (0 when it did not parse).
    pub rows_total: u32,
    /// Rows rejected as exact or near duplicates.
    pub duplicates_rejected: u32,
    /// Machine-readable reason (`all_duplicates`, `quota_exceeded`, …).
    pub reason_code: String,
    /// The reason as shown to the contributor.
    pub reason: String,
}

impl Canonical for RejectedSubmission {
    const NAME: &'static str = "datanet rejected submission";
}

/// The UTC day of `t`: whole days since 1970-01-01T00:00:00Z. Quota
/// counters roll over at 00:00 UTC.
pub fn utc_day(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// A page request: items after the `after` cursor (from a previous page),
/// at most `limit` (capped at 1,000).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Cursor from [`Page::next`].
    pub after: Option<String>,
    /// Page size (0 or absent means 100).
    #[serde(default)]
    pub limit: usize,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest { after: None, limit }
    }
    fn limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(1_000),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, `None` at the end.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Every item of a paged listing: calls `fetch` with pages of 1,000,
    /// following [`Page::next`] until the last page.
    pub fn all<E>(mut fetch: impl FnMut(&PageRequest) -> Result<Page<T>, E>) -> Result<Vec<T>, E> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(1_000);
        loop {
            let p = fetch(&page)?;
            out.extend(p.items);
            match p.next {
                Some(n) => page.after = Some(n),
                None => return Ok(out),
            }
        }
    }
}

/// A version row with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// Position in the version (canonical order).
    pub index: u64,
    /// The row.
    pub row: StoredRow,
}

fn get<T: Canonical>(r: &ReadTransaction, t: Tbl, key: &[u8]) -> Result<Option<T>, DatanetError> {
    let table = r.open_table(t)?;
    let value = table.get(key)?;
    match value {
        Some(v) => Ok(Some(T::decode(v.value(), MAX_VALUE_BYTES)?)),
        None => Ok(None),
    }
}

fn get_w<T: Canonical>(
    w: &WriteTransaction,
    t: Tbl,
    key: &[u8],
) -> Result<Option<T>, DatanetError> {
    let table = w.open_table(t)?;
    let value = table.get(key)?;
    match value {
        Some(v) => Ok(Some(T::decode(v.value(), MAX_VALUE_BYTES)?)),
        None => Ok(None),
    }
}

fn put<T: Canonical>(w: &WriteTransaction, t: Tbl, key: &[u8], v: &T) -> Result<(), DatanetError> {
    w.open_table(t)?.insert(key, v.encode().as_slice())?;
    Ok(())
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The smallest key greater than every key with this prefix (`None` when
/// the prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Keys and values under `prefix`, after the cursor, at most `limit`.
fn scan(
    r: &ReadTransaction,
    t: Tbl,
    prefix: &[u8],
    page: &PageRequest,
) -> Result<(Entries, Option<String>), DatanetError> {
    let table = r.open_table(t)?;
    let start = match &page.after {
        Some(c) => {
            let suffix = hex::decode(c).map_err(|_| DatanetError::NotFound {
                what: "page cursor",
                id: c.clone(),
            })?;
            Bound::Excluded(cat(&[prefix, &suffix]))
        }
        None => Bound::Included(prefix.to_vec()),
    };
    let end = match prefix_end(prefix) {
        Some(e) => Bound::Excluded(e),
        None => Bound::Unbounded,
    };
    let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_ref_bound(&start), as_ref_bound(&end));
    let limit = page.limit();
    let mut out: Entries = Vec::new();
    for item in table.range::<&[u8]>(bounds)? {
        let (k, v) = item?;
        if out.len() == limit {
            let next = hex::encode(&out[limit - 1].0[prefix.len()..]);
            return Ok((out, Some(next)));
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok((out, None))
}

/// One page of [`scan`], each entry (key, value) turned into an item by
/// `item` (`None` leaves the entry out).
fn scan_page<T>(
    r: &ReadTransaction,
    t: Tbl,
    prefix: &[u8],
    page: &PageRequest,
    mut item: impl FnMut(Vec<u8>, Vec<u8>) -> Result<Option<T>, DatanetError>,
) -> Result<Page<T>, DatanetError> {
    let (entries, next) = scan(r, t, prefix, page)?;
    let mut items = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        items.extend(item(k, v)?);
    }
    Ok(Page { items, next })
}

/// For [`scan_page`]: the entry's value is the item, canonically encoded.
fn decoded<T: Canonical>(_key: Vec<u8>, value: Vec<u8>) -> Result<Option<T>, DatanetError> {
    Ok(Some(T::decode(&value, MAX_VALUE_BYTES)?))
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A row's signature and band keys, as stored.
#[derive(BorshSerialize, BorshDeserialize)]
struct StoredSignature {
    signature: Vec<u32>,
    band_keys: Vec<u64>,
}

impl Canonical for StoredSignature {
    const NAME: &'static str = "datanet row signature";
}

#[derive(BorshSerialize, BorshDeserialize)]
struct Counter(u64);

impl Canonical for Counter {
    const NAME: &'static str = "datanet counter";
}

/// A big-endian u64 value (0 when absent).
fn read_u64(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<u64, DatanetError> {
    Ok(match t.get(key)? {
        Some(v) => be_u64(v.value(), 0)?,
        None => 0,
    })
}

fn be_u64(bytes: &[u8], at: usize) -> Result<u64, DatanetError> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| DatanetError::Store(format!("counter value of {} bytes", bytes.len())))
}

/// Adds `by` to the u64 counter at `key`.
fn bump_u64(
    t: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    by: u64,
) -> Result<u64, DatanetError> {
    let n = read_u64(t, key)?.saturating_add(by);
    t.insert(key, n.to_be_bytes().as_slice())?;
    Ok(n)
}

/// Today's counters of one contributor in one datanet.
fn read_quota(
    r: &ReadTransaction,
    datanet: &DatanetId,
    contributor: &Address,
    day: u64,
) -> Result<QuotaUsage, DatanetError> {
    let day_b = day.to_be_bytes();
    let d = datanet.0.as_bytes();
    let (bytes, files) = match r
        .open_table(QUOTA_CONTRIBUTOR)?
        .get(cat(&[&day_b, d, &contributor.0]).as_slice())?
    {
        Some(v) => {
            let v = v.value();
            let files = v
                .get(8..12)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                .ok_or_else(|| DatanetError::Store(format!("quota value of {} bytes", v.len())))?;
            (be_u64(v, 0)?, files)
        }
        None => (0, 0),
    };
    let datanet_bytes = read_u64(&r.open_table(QUOTA_DATANET)?, &cat(&[&day_b, d]))?;
    Ok(QuotaUsage {
        contributor_bytes_today: bytes,
        contributor_files_today: files,
        datanet_bytes_today: datanet_bytes,
    })
}

/// Counts one accepted file of `bytes` on `day`, and drops the counters of
/// earlier days (they can no longer limit anything).
fn add_quota(
    w: &WriteTransaction,
    datanet: &DatanetId,
    contributor: &Address,
    day: u64,
    bytes: u64,
) -> Result<(), DatanetError> {
    let day_b = day.to_be_bytes();
    let d = datanet.0.as_bytes();
    for t in [QUOTA_CONTRIBUTOR, QUOTA_DATANET] {
        let mut table = w.open_table(t)?;
        let stale: Vec<Vec<u8>> = table
            .range::<&[u8]>(..day_b.as_slice())?
            .map(|item| item.map(|(k, _)| k.value().to_vec()))
            .collect::<Result<_, _>>()?;
        for k in stale {
            table.remove(k.as_slice())?;
        }
    }
    let key = cat(&[&day_b, d, &contributor.0]);
    let mut t = w.open_table(QUOTA_CONTRIBUTOR)?;
    let (old_bytes, old_files) = match t.get(key.as_slice())? {
        Some(v) => {
            let v = v.value();
            let files = v
                .get(8..12)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                .unwrap_or(0);
            (be_u64(v, 0)?, files)
        }
        None => (0, 0),
    };
    let value = cat(&[
        &old_bytes.saturating_add(bytes).to_be_bytes(),
        &old_files.saturating_add(1).to_be_bytes(),
    ]);
    t.insert(key.as_slice(), value.as_slice())?;
    bump_u64(&mut w.open_table(QUOTA_DATANET)?, &cat(&[&day_b, d]), bytes)?;
    Ok(())
}

/// The embedded store. Cheap to share behind an `Arc`; writes are serialised.
pub struct DatanetStore {
    db: Database,
    write_lock: Mutex<()>,
}

/// Writes the accepted `rows` of the contribution stored under
/// `contrib_key` (by `contributor`) with their dedup entries: the exact
/// index (`row_index`) and, for rows with a MinHash signature, the LSH band
/// keys and the signature.
fn put_rows(
    w: &WriteTransaction,
    datanet_id: &DatanetId,
    contrib_key: &[u8],
    (contributor, contribution): (Address, ContributionId),
    rows: Vec<ValidatedRow>,
) -> Result<(), DatanetError> {
    let d = datanet_id.0.as_bytes();
    let mut stored_rows = w.open_table(ROWS)?;
    let mut index = w.open_table(ROW_INDEX)?;
    let mut lsh = w.open_table(LSH)?;
    let mut sigs = w.open_table(SIGNATURES)?;
    for row in rows {
        let row_key = cat(&[contrib_key, &row.index.to_be_bytes()]);
        let stored = StoredRow {
            row_hash: row.row_hash,
            contributor,
            contribution,
            index: row.index,
            content: row.content,
        };
        stored_rows.insert(row_key.as_slice(), stored.encode().as_slice())?;
        let dk = cat(&[d, row.row_hash.0.as_bytes()]);
        index.insert(dk.as_slice(), row_key.as_slice())?;
        if let Some(sig) = row.signature {
            for (band, key) in row.band_keys.iter().enumerate() {
                let lk = cat(&[
                    d,
                    &(band as u16).to_be_bytes(),
                    &key.to_be_bytes(),
                    row.row_hash.0.as_bytes(),
                ]);
                lsh.insert(lk.as_slice(), [].as_slice())?;
            }
            let s = StoredSignature {
                signature: sig.0,
                band_keys: row.band_keys,
            };
            sigs.insert(dk.as_slice(), s.encode().as_slice())?;
        }
    }
    Ok(())
}

impl std::fmt::Debug for DatanetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatanetStore").finish_non_exhaustive()
    }
}

/// The read-side dedup index of one datanet inside a read transaction.
struct StoreIndex<'a> {
    txn: &'a ReadTransaction,
    datanet: DatanetId,
}

impl DedupIndex for StoreIndex<'_> {
    fn contains_row(&self, row: &RowHash) -> Result<bool, DatanetError> {
        let t = self.txn.open_table(ROW_INDEX)?;
        Ok(
            t.get(cat(&[self.datanet.0.as_bytes(), row.0.as_bytes()]).as_slice())?
                .is_some(),
        )
    }

    fn nearest(
        &self,
        hasher: &MinHasher,
        sig: &MinHashSignature,
        band_keys: &[u64],
        threshold_bp: u16,
    ) -> Result<Option<(RowHash, u16)>, DatanetError> {
        let lsh = self.txn.open_table(LSH)?;
        let mut rows: Vec<RowHash> = Vec::new();
        for (band, key) in band_keys.iter().enumerate() {
            let prefix = cat(&[
                self.datanet.0.as_bytes(),
                &(band as u16).to_be_bytes(),
                &key.to_be_bytes(),
            ]);
            let end = prefix_end(&prefix).expect("prefix has non-0xff bytes");
            for item in lsh.range::<&[u8]>(prefix.as_slice()..end.as_slice())? {
                let (k, _) = item?;
                let k = k.value();
                let mut h = [0u8; 32];
                h.copy_from_slice(&k[k.len() - 32..]);
                rows.push(RowHash(Hash(h)));
            }
        }
        rows.sort();
        rows.dedup();
        let mut best: Option<(RowHash, u16)> = None;
        for row in rows {
            let key = cat(&[self.datanet.0.as_bytes(), row.0.as_bytes()]);
            if let Some(s) = get::<StoredSignature>(self.txn, SIGNATURES, &key)? {
                let similarity = hasher.similarity_bp(sig, &MinHashSignature(s.signature));
                if similarity >= threshold_bp && best.is_none_or(|(_, b)| similarity > b) {
                    best = Some((row, similarity));
                }
            }
        }
        Ok(best)
    }
}

impl DatanetStore {
    /// Opens (creating) the store file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DatanetError> {
        let db = Database::create(path.as_ref())?;
        let w = db.begin_write()?;
        for t in ALL_TABLES {
            w.open_table(t)?;
        }
        if w.open_table(META)?.get(PENDING_INDEXED)?.is_none() {
            let pending: Vec<(Vec<u8>, ContributionId)> = {
                let t = w.open_table(CONTRIBUTIONS)?;
                let mut v = Vec::new();
                for item in t.iter()? {
                    let (k, val) = item?;
                    let rec = ContributionRecord::decode(val.value(), MAX_VALUE_BYTES)?;
                    if rec.status == CurationStatus::Pending {
                        v.push((k.value().to_vec(), rec.id));
                    }
                }
                v
            };
            let mut t = w.open_table(PENDING)?;
            for (k, id) in &pending {
                t.insert(k.as_slice(), id.0.as_bytes().as_slice())?;
            }
            w.open_table(META)?
                .insert(PENDING_INDEXED, [1u8].as_slice())?;
        }
        w.commit()?;
        Ok(DatanetStore {
            db,
            write_lock: Mutex::new(()),
        })
    }

    fn write(&self) -> Result<(std::sync::MutexGuard<'_, ()>, WriteTransaction), DatanetError> {
        let guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok((guard, self.db.begin_write()?))
    }

    /// Registers a datanet (after validating its descriptor). Names are
    /// unique within a store.
    pub fn create_datanet(&self, datanet: &Datanet) -> Result<DatanetId, DatanetError> {
        datanet.validate()?;
        let id = datanet.id();
        let (_g, w) = self.write()?;
        if w.open_table(NAMES)?.get(datanet.name.as_bytes())?.is_some() {
            return Err(DatanetError::DatanetExists(datanet.name.clone()));
        }
        w.open_table(NAMES)?
            .insert(datanet.name.as_bytes(), id.0.as_bytes().as_slice())?;
        put(&w, DATANETS, id.0.as_bytes(), datanet)?;
        w.commit()?;
        tracing::info!(target: "trib::datanet", name = %datanet.name, id = %id, "created datanet");
        Ok(id)
    }

    /// Replaces the descriptor stored under `datanet`'s name (which must
    /// exist) with `datanet` (after validating it). The caller decides when
    /// that is sound (the node: a draft whose `CreateDatanet` has not
    /// landed, holding no contribution).
    pub fn replace_datanet(&self, datanet: &Datanet) -> Result<DatanetId, DatanetError> {
        datanet.validate()?;
        let id = datanet.id();
        let (_g, w) = self.write()?;
        if w.open_table(NAMES)?.get(datanet.name.as_bytes())?.is_none() {
            return Err(DatanetError::NotFound {
                what: "datanet",
                id: datanet.name.clone(),
            });
        }
        put(&w, DATANETS, id.0.as_bytes(), datanet)?;
        w.commit()?;
        tracing::info!(target: "trib::datanet", name = %datanet.name, id = %id, "replaced datanet descriptor");
        Ok(id)
    }

    /// A datanet by id.
    pub fn datanet(&self, id: &DatanetId) -> Result<Datanet, DatanetError> {
        let r = self.db.begin_read()?;
        let d: Option<Datanet> = get(&r, DATANETS, id.0.as_bytes())?;
        d.ok_or_else(|| DatanetError::NotFound {
            what: "datanet",
            id: id.to_string(),
        })
    }

    /// A datanet's id by name.
    pub fn resolve(&self, name: &str) -> Result<DatanetId, DatanetError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(NAMES)?;
        let v = t.get(name.as_bytes())?;
        let v = v.ok_or_else(|| DatanetError::NotFound {
            what: "datanet",
            id: name.to_string(),
        })?;
        let mut h = [0u8; 32];
        h.copy_from_slice(v.value());
        Ok(DatanetId(Hash(h)))
    }

    /// Datanets by name.
    pub fn list_datanets(&self, page: &PageRequest) -> Result<Page<Datanet>, DatanetError> {
        let r = self.db.begin_read()?;
        scan_page(&r, NAMES, &[], page, |_, id| get(&r, DATANETS, &id))
    }

    /// Validates `file`, submitted on UTC day `day` (see [`utc_day`]),
    /// against the datanet's rows and the day's quota counters kept here.
    /// When accepted, stores the raw file in `blobs`, the contribution as
    /// pending with its accepted rows (indexed for dedup), and adds the
    /// file to the day's counters, all in one transaction. When rejected,
    /// only a [`RejectedSubmission`] record is written (for reputation).
    /// Either way the contributor's submission count goes up, so the next
    /// submission of the same file gets a new id. The report is returned
    /// either way.
    pub fn submit(
        &self,
        datanet_id: &DatanetId,
        contributor: Address,
        file: &SourceFile<'_>,
        day: u64,
        validator: &Validator,
        blobs: &dyn BlobStore,
    ) -> Result<ValidationReport, DatanetError> {
        let datanet = self.datanet(datanet_id)?;
        // Parsing is the costly step (a PDF can take seconds): it reads no
        // store state, so it runs before the write lock, and another
        // contributor's upload is not held behind it.
        let parsed = validator.parse(&datanet, file);
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let sub_key = cat(&[datanet_id.0.as_bytes(), &contributor.0]);
        let validated = {
            let r = self.db.begin_read()?;
            let quota = read_quota(&r, datanet_id, &contributor, day)?;
            let attempt = read_u64(&r.open_table(SUBMISSIONS)?, &sub_key)?;
            let index = StoreIndex {
                txn: &r,
                datanet: *datanet_id,
            };
            validator.validate_parsed(
                &datanet,
                contributor,
                attempt,
                file,
                parsed,
                &quota,
                &index,
            )?
        };
        if !validated.report.is_accepted() {
            self.record_rejection(datanet_id, contributor, day, &sub_key, &validated.report)?;
            return Ok(validated.report);
        }
        blobs.put(file.bytes)?;
        self.store_contribution(datanet_id, contributor, day, &sub_key, validated)
    }

    /// [`DatanetStore::submit`] of a file rejected at validation: counts the
    /// submission and writes its [`RejectedSubmission`], nothing else.
    fn record_rejection(
        &self,
        datanet_id: &DatanetId,
        contributor: Address,
        day: u64,
        sub_key: &[u8],
        report: &ValidationReport,
    ) -> Result<(), DatanetError> {
        let w = self.db.begin_write()?;
        bump_u64(&mut w.open_table(SUBMISSIONS)?, sub_key, 1)?;
        let seq = get_w::<Counter>(&w, META, b"seq")?.map_or(1, |c| c.0 + 1);
        put(&w, META, b"seq", &Counter(seq))?;
        let rejection = report
            .rejection
            .as_ref()
            .expect("a rejected report has a rejection");
        let record = RejectedSubmission {
            id: report.contribution,
            datanet: *datanet_id,
            contributor,
            file_name: report.file_name.clone(),
            file_hash: report.file_hash,
            file_bytes: report.file_bytes,
            seq,
            day,
            rows_total: report.rows.len() as u32,
            duplicates_rejected: report.duplicates_rejected,
            reason_code: rejection.code().to_string(),
            reason: rejection.to_string(),
        };
        put(
            &w,
            VALIDATION_REJECTIONS,
            &cat(&[datanet_id.0.as_bytes(), &seq.to_be_bytes()]),
            &record,
        )?;
        w.commit()?;
        tracing::info!(
            target: "trib::datanet",
            contribution = %report.contribution,
            reason = record.reason_code,
            "recorded a submission rejected at validation"
        );
        Ok(())
    }

    /// [`DatanetStore::submit`] of a file accepted at validation: in one
    /// transaction, the contribution as pending (record, pending and id
    /// indexes, contributor history), the submission and quota counters,
    /// and its rows ([`put_rows`]).
    fn store_contribution(
        &self,
        datanet_id: &DatanetId,
        contributor: Address,
        day: u64,
        sub_key: &[u8],
        validated: ValidatedContribution,
    ) -> Result<ValidationReport, DatanetError> {
        let report = validated.report;
        let kind = report
            .kind
            .expect("an accepted contribution has a detected kind");
        let w = self.db.begin_write()?;
        if w.open_table(CONTRIBUTION_IDS)?
            .get(report.contribution.0.as_bytes().as_slice())?
            .is_some()
        {
            return Err(DatanetError::ContributionExists(
                report.contribution.to_string(),
            ));
        }
        let seq = get_w::<Counter>(&w, META, b"seq")?.map_or(1, |c| c.0 + 1);
        put(&w, META, b"seq", &Counter(seq))?;
        bump_u64(&mut w.open_table(SUBMISSIONS)?, sub_key, 1)?;
        add_quota(&w, datanet_id, &contributor, day, report.file_bytes)?;
        let contrib_key = cat(&[datanet_id.0.as_bytes(), &seq.to_be_bytes()]);
        let record = ContributionRecord {
            id: report.contribution,
            datanet: *datanet_id,
            contributor,
            file_name: report.file_name.clone(),
            file_hash: report.file_hash,
            file_bytes: report.file_bytes,
            kind,
            seq,
            rows_accepted: report.rows_accepted,
            rows_total: report.rows.len() as u32,
            duplicates_rejected: report.duplicates_rejected,
            status: CurationStatus::Pending,
        };
        put(&w, CONTRIBUTIONS, &contrib_key, &record)?;
        w.open_table(PENDING)?.insert(
            contrib_key.as_slice(),
            report.contribution.0.as_bytes().as_slice(),
        )?;
        w.open_table(CONTRIBUTION_IDS)?.insert(
            report.contribution.0.as_bytes().as_slice(),
            contrib_key.as_slice(),
        )?;
        w.open_table(HISTORY)?.insert(
            cat(&[&contributor.0, &seq.to_be_bytes()]).as_slice(),
            report.contribution.0.as_bytes().as_slice(),
        )?;
        put_rows(
            &w,
            datanet_id,
            &contrib_key,
            (contributor, report.contribution),
            validated.rows,
        )?;
        w.commit()?;
        tracing::info!(
            target: "trib::datanet",
            contribution = %report.contribution,
            rows = report.rows_accepted,
            "stored pending contribution"
        );
        Ok(report)
    }

    fn contribution_key(r: &ReadTransaction, id: &ContributionId) -> Result<Vec<u8>, DatanetError> {
        let t = r.open_table(CONTRIBUTION_IDS)?;
        let v = t.get(id.0.as_bytes().as_slice())?;
        v.map(|v| v.value().to_vec())
            .ok_or_else(|| DatanetError::NotFound {
                what: "contribution",
                id: id.to_string(),
            })
    }

    /// A contribution by id.
    pub fn contribution(&self, id: &ContributionId) -> Result<ContributionRecord, DatanetError> {
        let r = self.db.begin_read()?;
        let key = Self::contribution_key(&r, id)?;
        let rec: Option<ContributionRecord> = get(&r, CONTRIBUTIONS, &key)?;
        rec.ok_or_else(|| DatanetError::NotFound {
            what: "contribution",
            id: id.to_string(),
        })
    }

    /// Applies a curation decision to a pending contribution. Rejection takes
    /// its rows out of the dedup index (they may be contributed again) but
    /// keeps them stored as evidence.
    pub fn decide(
        &self,
        id: &ContributionId,
        decision: &Decision,
    ) -> Result<ContributionRecord, DatanetError> {
        let (_g, w) = self.write()?;
        let key = {
            let t = w.open_table(CONTRIBUTION_IDS)?;
            let v = t.get(id.0.as_bytes().as_slice())?;
            v.map(|v| v.value().to_vec())
                .ok_or_else(|| DatanetError::NotFound {
                    what: "contribution",
                    id: id.to_string(),
                })?
        };
        let mut rec: ContributionRecord =
            get_w(&w, CONTRIBUTIONS, &key)?.ok_or_else(|| DatanetError::NotFound {
                what: "contribution",
                id: id.to_string(),
            })?;
        if rec.status != CurationStatus::Pending {
            return Err(DatanetError::NotPending {
                id: id.to_string(),
                status: rec.status.to_string(),
            });
        }
        match decision {
            Decision::Accept => rec.status = CurationStatus::Accepted,
            Decision::Reject { reason } => {
                rec.status = CurationStatus::Rejected {
                    reason: reason.clone(),
                };
                let d = rec.datanet.0;
                let rows: Vec<StoredRow> = {
                    let t = w.open_table(ROWS)?;
                    let end = prefix_end(&key).expect("key has non-0xff bytes");
                    let mut v = Vec::new();
                    for item in t.range::<&[u8]>(key.as_slice()..end.as_slice())? {
                        let (_, val) = item?;
                        v.push(StoredRow::decode(val.value(), MAX_VALUE_BYTES)?);
                    }
                    v
                };
                let mut index = w.open_table(ROW_INDEX)?;
                let mut lsh = w.open_table(LSH)?;
                let mut sigs = w.open_table(SIGNATURES)?;
                for row in rows {
                    let dk = cat(&[d.as_bytes(), row.row_hash.0.as_bytes()]);
                    index.remove(dk.as_slice())?;
                    let removed = sigs.remove(dk.as_slice())?.map(|v| v.value().to_vec());
                    if let Some(bytes) = removed {
                        let s = StoredSignature::decode(&bytes, MAX_VALUE_BYTES)?;
                        for (band, k) in s.band_keys.iter().enumerate() {
                            let lk = cat(&[
                                d.as_bytes(),
                                &(band as u16).to_be_bytes(),
                                &k.to_be_bytes(),
                                row.row_hash.0.as_bytes(),
                            ]);
                            lsh.remove(lk.as_slice())?;
                        }
                    }
                }
            }
        }
        put(&w, CONTRIBUTIONS, &key, &rec)?;
        w.open_table(PENDING)?.remove(key.as_slice())?;
        w.commit()?;
        tracing::info!(target: "trib::datanet", contribution = %id, status = %rec.status, "curation decision");
        Ok(rec)
    }

    /// A datanet's contributions in submission order.
    pub fn list_contributions(
        &self,
        datanet: &DatanetId,
        page: &PageRequest,
    ) -> Result<Page<ContributionRecord>, DatanetError> {
        let r = self.db.begin_read()?;
        scan_page(&r, CONTRIBUTIONS, datanet.0.as_bytes(), page, decoded)
    }

    /// A datanet's contributions still pending (no curation decision
    /// applied here yet), in submission order; reads only those, however
    /// many were decided before.
    pub fn pending_contributions(
        &self,
        datanet: &DatanetId,
        page: &PageRequest,
    ) -> Result<Page<ContributionRecord>, DatanetError> {
        let r = self.db.begin_read()?;
        scan_page(&r, PENDING, datanet.0.as_bytes(), page, |key, _| {
            let rec = get::<ContributionRecord>(&r, CONTRIBUTIONS, &key)?.ok_or_else(|| {
                DatanetError::Store(format!(
                    "pending index names a missing contribution (key {})",
                    hex::encode(&key)
                ))
            })?;
            Ok(Some(rec))
        })
    }

    /// A contribution's stored rows in order.
    pub fn list_rows(
        &self,
        id: &ContributionId,
        page: &PageRequest,
    ) -> Result<Page<StoredRow>, DatanetError> {
        let r = self.db.begin_read()?;
        let key = Self::contribution_key(&r, id)?;
        scan_page(&r, ROWS, &key, page, decoded)
    }

    /// A contributor's contributions (all datanets), oldest first.
    pub fn contributor_history(
        &self,
        contributor: &Address,
        page: &PageRequest,
    ) -> Result<Page<ContributionRecord>, DatanetError> {
        let r = self.db.begin_read()?;
        scan_page(&r, HISTORY, &contributor.0, page, |_, id| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&id);
            let key = Self::contribution_key(&r, &ContributionId(Hash(h)))?;
            get::<ContributionRecord>(&r, CONTRIBUTIONS, &key)
        })
    }

    /// Publishes the next version: every accepted row of the datanet in
    /// canonical order, its Merkle root, the previous root. Fails when no row
    /// was accepted since the last version.
    pub fn publish(&self, datanet: &DatanetId) -> Result<DatanetVersion, DatanetError> {
        let (_g, w) = self.write()?;
        if get_w::<Datanet>(&w, DATANETS, datanet.0.as_bytes())?.is_none() {
            return Err(DatanetError::NotFound {
                what: "datanet",
                id: datanet.to_string(),
            });
        }
        let d = datanet.0.as_bytes();
        let previous: Option<DatanetVersion> = {
            let t = w.open_table(VERSIONS)?;
            let end = prefix_end(d).expect("id has non-0xff bytes");
            let last = t
                .range::<&[u8]>(d.as_slice()..end.as_slice())?
                .next_back()
                .transpose()?;
            match last {
                Some((_, v)) => Some(DatanetVersion::decode(v.value(), MAX_VALUE_BYTES)?),
                None => None,
            }
        };
        // Every accepted row with its key.
        let mut rows: Vec<(VersionLeaf, Vec<u8>)> = Vec::new();
        {
            let contributions = w.open_table(CONTRIBUTIONS)?;
            let row_table = w.open_table(ROWS)?;
            let end = prefix_end(d).expect("id has non-0xff bytes");
            for item in contributions.range::<&[u8]>(d.as_slice()..end.as_slice())? {
                let (k, v) = item?;
                let rec = ContributionRecord::decode(v.value(), MAX_VALUE_BYTES)?;
                if rec.status != CurationStatus::Accepted {
                    continue;
                }
                let ck = k.value().to_vec();
                let cend = prefix_end(&ck).expect("key has non-0xff bytes");
                for ritem in row_table.range::<&[u8]>(ck.as_slice()..cend.as_slice())? {
                    let (rk, rv) = ritem?;
                    let row = StoredRow::decode(rv.value(), MAX_VALUE_BYTES)?;
                    rows.push((
                        VersionLeaf {
                            row_hash: row.row_hash,
                            contributor: row.contributor,
                            contribution: row.contribution,
                        },
                        rk.value().to_vec(),
                    ));
                }
            }
        }
        rows.sort_by_key(|r| r.0.row_hash);
        rows.dedup_by(|a, b| a.0.row_hash == b.0.row_hash);
        let previous_count = previous.as_ref().map_or(0, |p| p.row_count);
        if rows.len() as u64 <= previous_count {
            return Err(DatanetError::NothingToPublish(datanet.to_string()));
        }
        let leaves: Vec<Hash> = rows.iter().map(|(l, _)| l.hash()).collect();
        let version = DatanetVersion {
            datanet: *datanet,
            number: previous.as_ref().map_or(1, |p| p.number + 1),
            root: merkle_root(&leaves),
            row_count: rows.len() as u64,
            previous_root: previous.as_ref().map_or(Hash::ZERO, |p| p.root),
        };
        let vkey = cat(&[d, &version.number.to_be_bytes()]);
        put(&w, VERSIONS, &vkey, &version)?;
        {
            let mut vr = w.open_table(VERSION_ROWS)?;
            for (i, (_, rk)) in rows.iter().enumerate() {
                vr.insert(
                    cat(&[&vkey, &(i as u64).to_be_bytes()]).as_slice(),
                    rk.as_slice(),
                )?;
            }
        }
        w.commit()?;
        tracing::info!(target: "trib::datanet", datanet = %datanet, version = version.number, rows = version.row_count, root = %version.root, "published version");
        Ok(version)
    }

    /// One version.
    pub fn version(
        &self,
        datanet: &DatanetId,
        number: u64,
    ) -> Result<DatanetVersion, DatanetError> {
        let r = self.db.begin_read()?;
        let v: Option<DatanetVersion> = get(
            &r,
            VERSIONS,
            &cat(&[datanet.0.as_bytes(), &number.to_be_bytes()]),
        )?;
        v.ok_or_else(|| DatanetError::NotFound {
            what: "version",
            id: format!("{datanet}@{number}"),
        })
    }

    /// A datanet's versions, oldest first.
    pub fn list_versions(
        &self,
        datanet: &DatanetId,
        page: &PageRequest,
    ) -> Result<Page<DatanetVersion>, DatanetError> {
        let r = self.db.begin_read()?;
        scan_page(&r, VERSIONS, datanet.0.as_bytes(), page, decoded)
    }

    /// A version's rows in canonical order.
    pub fn version_rows(
        &self,
        datanet: &DatanetId,
        number: u64,
        page: &PageRequest,
    ) -> Result<Page<VersionRow>, DatanetError> {
        self.version(datanet, number)?;
        let r = self.db.begin_read()?;
        let vkey = cat(&[datanet.0.as_bytes(), &number.to_be_bytes()]);
        scan_page(&r, VERSION_ROWS, &vkey, page, |k, rk| {
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&k[k.len() - 8..]);
            let row: StoredRow = get(&r, ROWS, &rk)?.ok_or_else(|| {
                DatanetError::Store(format!("version row {} missing", hex::encode(&rk)))
            })?;
            Ok(Some(VersionRow {
                index: u64::from_be_bytes(idx),
                row,
            }))
        })
    }

    fn all_version_rows(
        &self,
        datanet: &DatanetId,
        number: u64,
    ) -> Result<Vec<StoredRow>, DatanetError> {
        let rows = Page::all(|page| self.version_rows(datanet, number, page))?;
        Ok(rows.into_iter().map(|v| v.row).collect())
    }

    /// Writes `NAME@VERSION` as JSONL (see [`crate::write_export`]).
    pub fn export<W: std::io::Write>(
        &self,
        name: &str,
        number: u64,
        out: &mut W,
    ) -> Result<u64, DatanetError> {
        let id = self.resolve(name)?;
        let version = self.version(&id, number)?;
        let rows = self.all_version_rows(&id, number)?;
        write_export(out, name, &version, rows)
    }

    /// The inclusion proof of `row` in a version, with its leaf.
    pub fn prove_row(
        &self,
        datanet: &DatanetId,
        number: u64,
        row: &RowHash,
    ) -> Result<(VersionLeaf, InclusionProof), DatanetError> {
        let rows = self.all_version_rows(datanet, number)?;
        let leaves: Vec<VersionLeaf> = canonical_order(
            rows.iter()
                .map(|r| VersionLeaf {
                    row_hash: r.row_hash,
                    contributor: r.contributor,
                    contribution: r.contribution,
                })
                .collect(),
        );
        let i = leaves
            .iter()
            .position(|l| l.row_hash == *row)
            .ok_or_else(|| DatanetError::NotFound {
                what: "row in version",
                id: format!("{row}@{number}"),
            })?;
        let hashes: Vec<Hash> = leaves.iter().map(VersionLeaf::hash).collect();
        let proof = InclusionProof::build(&hashes, i).expect("index is in range");
        Ok((leaves[i], proof))
    }

    /// Reputation events known locally (submissions and curation) for a
    /// datanet; the node adds the ledger's slashes and earnings.
    pub fn reputation_events(
        &self,
        datanet: &DatanetId,
    ) -> Result<Vec<ReputationEvent>, DatanetError> {
        let mut events = Vec::new();
        for c in Page::all(|page| self.list_contributions(datanet, page))? {
            events.push(ReputationEvent::Submitted {
                datanet: c.datanet,
                contributor: c.contributor,
                contribution: c.id,
                rows: c.rows_accepted,
                duplicates_rejected: c.duplicates_rejected,
            });
            match c.status {
                CurationStatus::Pending => {}
                CurationStatus::Accepted => events.push(ReputationEvent::Accepted {
                    datanet: c.datanet,
                    contributor: c.contributor,
                    contribution: c.id,
                    rows: c.rows_accepted,
                }),
                CurationStatus::Rejected { .. } => events.push(ReputationEvent::Rejected {
                    datanet: c.datanet,
                    contributor: c.contributor,
                    contribution: c.id,
                }),
            }
        }
        let rejected = Page::all(|page| self.validation_rejections(datanet, page))?;
        events.extend(
            rejected
                .into_iter()
                .map(|r| ReputationEvent::RejectedAtValidation {
                    datanet: r.datanet,
                    contributor: r.contributor,
                    contribution: r.id,
                    duplicates_rejected: r.duplicates_rejected,
                }),
        );
        Ok(events)
    }

    /// The quota counters of `contributor` in `datanet` on UTC `day`: what
    /// [`DatanetStore::submit`] checks the datanet's quotas against.
    pub fn quota_usage(
        &self,
        datanet: &DatanetId,
        contributor: &Address,
        day: u64,
    ) -> Result<QuotaUsage, DatanetError> {
        read_quota(&self.db.begin_read()?, datanet, contributor, day)
    }

    /// A datanet's submissions rejected at validation, oldest first.
    pub fn validation_rejections(
        &self,
        datanet: &DatanetId,
        page: &PageRequest,
    ) -> Result<Page<RejectedSubmission>, DatanetError> {
        let r = self.db.begin_read()?;
        scan_page(
            &r,
            VALIDATION_REJECTIONS,
            datanet.0.as_bytes(),
            page,
            decoded,
        )
    }

    /// Counts of stored rows and index entries for a datanet (for tests and
    /// the status page): (rows stored, rows in the dedup index).
    pub fn row_counts(&self, datanet: &DatanetId) -> Result<(u64, u64), DatanetError> {
        let r = self.db.begin_read()?;
        let count = |t: Tbl| -> Result<u64, DatanetError> {
            let table = r.open_table(t)?;
            let d = datanet.0.as_bytes();
            let end = prefix_end(d).expect("id has non-0xff bytes");
            let mut n = 0;
            for item in table.range::<&[u8]>(d.as_slice()..end.as_slice())? {
                item?;
                n += 1;
            }
            Ok(n)
        };
        Ok((count(ROWS)?, count(ROW_INDEX)?))
    }
}

/// Splits `NAME@VERSION` (the version is optional: `NAME` alone is `None`).
pub fn parse_version_ref(s: &str) -> Result<(&str, Option<u64>), DatanetError> {
    match s.rsplit_once('@') {
        None => Ok((s, None)),
        Some((name, v)) => v
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(|n| (name, Some(n)))
            .ok_or_else(|| DatanetError::NotFound {
                what: "version",
                id: s.to_string(),
            }),
    }
}

const _: () = assert!(MAX_DESCRIPTOR_BYTES <= MAX_VALUE_BYTES);

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::blob::LocalBlobStore;
    use crate::validate::ParseHook;

    fn file<'a>(name: &'a str, bytes: &'a [u8]) -> SourceFile<'a> {
        SourceFile {
            name,
            declared: FileKind::from_file_name(name),
            csv_column: None,
            bytes,
        }
    }

    #[test]
    fn a_small_upload_is_not_held_behind_another_uploads_parse() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DatanetStore::open(dir.path().join("d.redb")).unwrap());
        let blobs = Arc::new(LocalBlobStore::open(dir.path().join("blobs")).unwrap());
        let mut d = Datanet::new(Address([1; 20]), "notes", "# Notes");
        d.rules.min_row_bytes = 0;
        let id = store.create_datanet(&d).unwrap();
        // The slow upload's parse tells us it started, then waits until
        // released: it stands for a PDF that takes seconds to read.
        let (started_tx, started) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let mut slow = Validator::default();
        slow.on_parse = Some(ParseHook(Arc::new(move || {
            started_tx.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        })));
        let slow_upload = {
            let (store, blobs) = (store.clone(), blobs.clone());
            std::thread::spawn(move || {
                let text = "A long report on the harbour's tides, read slowly.";
                store
                    .submit(
                        &id,
                        Address([0xa1; 20]),
                        &file("report.txt", text.as_bytes()),
                        1,
                        &slow,
                        blobs.as_ref(),
                    )
                    .unwrap()
            })
        };
        started.recv().unwrap();
        // While that parse is held, another contributor's small upload is
        // parsed, validated and stored to the end.
        let (done_tx, done) = mpsc::channel();
        {
            let (store, blobs) = (store.clone(), blobs.clone());
            std::thread::spawn(move || {
                let r = store
                    .submit(
                        &id,
                        Address([0xb0; 20]),
                        &file("note.txt", b"A one-line note about the lighthouse keeper."),
                        1,
                        &Validator::default(),
                        blobs.as_ref(),
                    )
                    .unwrap();
                done_tx.send(r).unwrap();
            });
        }
        // A guard against a hang, not a timing assertion: before the fix the
        // small upload waited on the store's lock until the release below.
        let small = done
            .recv_timeout(Duration::from_secs(120))
            .expect("the small upload finished while the other upload's parse was held");
        assert!(small.is_accepted(), "{small:?}");
        release.send(()).unwrap();
        let big = slow_upload.join().unwrap();
        assert!(big.is_accepted(), "{big:?}");
        let pending = store
            .pending_contributions(&id, &PageRequest::default())
            .unwrap();
        assert_eq!(pending.items.len(), 2);
    }
}
