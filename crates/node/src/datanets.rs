//! The node's datanet service: the bridge between the ledger (status,
//! stakes, versions, access: the source of truth) and `trib-datanet`'s
//! [`DatanetStore`] (descriptors, row bytes, dedup indexes).
//!
//! Flow (docs/node.md, "Datanets"): the node stores the descriptor and
//! answers with its hash, which the owner signs into `CreateDatanet`; a
//! contribution is parsed, chunked and validated here, stored as pending and
//! answered with the values the contributor signs into `Contribute`; curation
//! happens on the ledger only, and the node mirrors the ledger's decisions
//! into the store ([`DatanetService::sync`]) before it computes a version
//! root for `PublishVersion`. A store version beyond the ledger's latest is a
//! draft until its `PublishVersion` is committed.
//!
//! The service knows nothing of HTTP: it returns ledger, store and
//! `trib-client` wire types and a [`DatanetServiceError`] naming what went
//! wrong; `api/datanets.rs` maps each variant to a status and a code, and
//! gets the signer of signed requests from the `api/auth.rs` middleware.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use trib_client::wire::{
    ContributionResponse, ContributionView, CreateDatanetRequest, CreateDatanetResponse,
    DatanetView, LeaderboardEntry, PublishPlan, RowView, VersionView,
};
use trib_datanet::{
    canonical_order, merkle_root, quality_score, BlobStore, ContributionRecord, CurationStatus,
    Datanet as Descriptor, DatanetError, DatanetStore, Decision, FileKind, LocalBlobStore,
    ObjectBlobStore, Page, PageRequest, SourceFile, Validator, VersionLeaf,
};
use trib_ledger::{Action, Datanet, DatanetRef, LedgerError};
use trib_types::{
    Address, Amount, Canonical, ContributionId, ContributionStatus, DatanetId, Hash, Visibility,
};

use crate::chain::Chain;
use crate::config::{store_options, DatanetsConfig};

/// One row of a published version, as the token-attribution index needs it.
#[derive(Debug, Clone)]
pub(crate) struct IndexRow {
    /// Content hash.
    pub(crate) row: trib_types::RowHash,
    /// The contribution it came from.
    pub(crate) contribution: ContributionId,
    /// Who contributed it.
    pub(crate) contributor: Address,
    /// Acceptance order (see [`DatanetService::index_rows`]).
    pub(crate) first_seen: u64,
    /// The row's plain text.
    pub(crate) text: String,
}

/// The datanet service (one per node).
pub(crate) struct DatanetService {
    store: DatanetStore,
    /// Raw contributed files: `<dir>/blobs` by default, or the object
    /// store named by [`BLOB_STORE_ENV`].
    blobs: Box<dyn BlobStore>,
    validator: Validator,
    chain: Arc<Chain>,
}

/// Why a datanet request was refused or failed. Each variant names what
/// the user can fix (the datanet, the version, the missing grant); the
/// HTTP layer (`api/datanets.rs`) maps them to statuses and codes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatanetServiceError {
    /// The ledger could not be read (a storage error).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The datanet store refused the request (an invalid descriptor or
    /// file, a duplicate, a decision on a contribution that is not
    /// pending, nothing to publish…) or failed; its message names which.
    #[error(transparent)]
    Store(#[from] DatanetError),
    /// No datanet of this name on the ledger: create it first
    /// (`trib datanet create`).
    #[error("no datanet {name:?} on the ledger (create it first: `trib datanet create`)")]
    UnknownDatanet {
        /// The name asked for.
        name: String,
    },
    /// No datanet with this id on the ledger.
    #[error("no datanet {id} on the ledger")]
    UnknownDatanetId {
        /// The id asked for.
        id: DatanetId,
    },
    /// The datanet is on the ledger but this node holds no descriptor for
    /// it, or not the one its `CreateDatanet` committed to: its owner
    /// stores it here with `POST /v1/datanets` (the same descriptor).
    #[error("datanet {name:?} is on the ledger but this node holds no descriptor matching its CreateDatanet (its owner can store it here with the same descriptor)")]
    NoDescriptor {
        /// The datanet.
        name: String,
    },
    /// A datanet of this name already exists on the ledger: pick another
    /// name.
    #[error("datanet {name:?} already exists on the ledger (owner {owner})")]
    ExistsOnLedger {
        /// The name.
        name: String,
        /// Its owner.
        owner: Address,
    },
    /// This node holds a different descriptor under this name that already
    /// has contributions: pick another name.
    #[error("this node already holds a different descriptor named {name:?}, with contributions")]
    DifferentDescriptor {
        /// The name.
        name: String,
    },
    /// The version is not published on the ledger.
    #[error("{name}@{version} is not published on the ledger")]
    NotPublished {
        /// The datanet.
        name: String,
        /// The version asked for.
        version: u32,
    },
    /// The version is not published on the ledger; `latest` is.
    #[error("{name}@{version} is not published on the ledger (latest: {latest})")]
    PastLatest {
        /// The datanet.
        name: String,
        /// The version asked for.
        version: u32,
        /// The ledger's latest version (0: none yet).
        latest: u32,
    },
    /// This node's rows of a version do not hash to the root the ledger
    /// records (a damaged or diverged store): nothing is served from it.
    #[error(
        "{name}@{version}: this node's rows have root {local} but the ledger records {ledger}"
    )]
    RootMismatch {
        /// The datanet.
        name: String,
        /// The version.
        version: u32,
        /// The root of this node's rows.
        local: Hash,
        /// The ledger's root.
        ledger: Hash,
    },
    /// The store's next version is not the one after the ledger's latest
    /// (the store and the ledger diverged).
    #[error("store version {store} does not follow the ledger's latest version {latest}")]
    VersionGap {
        /// The store's version number.
        store: u64,
        /// The ledger's latest version.
        latest: u64,
    },
    /// A row of this node's export does not parse (a damaged store).
    #[error("{name}@{version}: export row does not parse: {reason}")]
    BadExportRow {
        /// The datanet.
        name: String,
        /// The version.
        version: u32,
        /// The parse error.
        reason: String,
    },
    /// A permissioned datanet's rows are served only to a signed request
    /// from the owner or a granted address.
    #[error("datanet {name:?} is permissioned: its rows are served only to a signed request from the owner or a granted address (x-trib-* headers; `trib datanet rows|export --key KEY` signs)")]
    SignatureRequired {
        /// The datanet.
        name: String,
    },
    /// The reader has no access to a permissioned datanet: the owner
    /// grants it with `trib datanet grant`.
    #[error("datanet {name:?} is permissioned and {} has no training access (the owner grants it with `trib datanet grant`)", .reader.map_or("an anonymous reader".to_string(), |a| a.to_string()))]
    NoAccess {
        /// The datanet.
        name: String,
        /// Who asked (`None`: anonymous).
        reader: Option<Address>,
    },
}

type Result<T, E = DatanetServiceError> = std::result::Result<T, E>;

/// Today's UTC day number: the quota counters roll over at 00:00 UTC.
fn today() -> u64 {
    trib_datanet::utc_day(std::time::SystemTime::now())
}

/// The environment variable naming an object store for contributed files
/// instead of the home's `datanets/blobs` directory; when set and not empty
/// it takes precedence over `[datanets] blob_store` in `config.toml`. Same
/// URL syntax as the config key (and as `[serving] adapter_store`):
/// `s3://bucket/prefix` (nodes built with `trib-datanet`'s `s3` feature),
/// `file:///path` or `memory:///`; same options
/// ([`crate::config::store_options`]: the `AWS_*` variables, lower-cased,
/// then `[datanets] blob_store_options`).
pub(crate) const BLOB_STORE_ENV: &str = "TRIB_DATANET_BLOBS";

/// The content store for raw files: the object store [`BLOB_STORE_ENV`] in
/// `vars` or `config` names, else `<dir>/blobs`.
fn blob_store(
    dir: &Path,
    config: &DatanetsConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Box<dyn BlobStore>, DatanetError> {
    let vars: Vec<(String, String)> = vars.collect();
    let from_env = vars
        .iter()
        .find(|(k, v)| k == BLOB_STORE_ENV && !v.is_empty())
        .map(|(_, v)| v.clone());
    let (url, named_by) = match (from_env, &config.blob_store) {
        (Some(url), _) => (url, BLOB_STORE_ENV),
        (None, Some(url)) => (url.clone(), "[datanets] blob_store"),
        (None, None) => return Ok(Box::new(LocalBlobStore::open(dir.join("blobs"))?)),
    };
    let options = store_options(&config.blob_store_options, vars);
    let store = ObjectBlobStore::from_url(&url, options).map_err(|e| {
        DatanetError::Store(format!(
            "{named_by}={url:?} is not a usable object store: {e}"
        ))
    })?;
    tracing::info!(target: "trib::node::datanets", url, named_by, "contributed files go to an object store");
    Ok(Box::new(store))
}

impl DatanetService {
    /// Opens (or creates) the store under `dir`, contributed files in
    /// `<dir>/blobs` unless the environment names an object store.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn open(dir: &Path, chain: Arc<Chain>) -> Result<Self, DatanetError> {
        Self::open_configured(dir, chain, &DatanetsConfig::default())
    }

    /// Opens (or creates) the store under `dir`, contributed files where
    /// `config` (or the environment: [`BLOB_STORE_ENV`]) says.
    pub(crate) fn open_configured(
        dir: &Path,
        chain: Arc<Chain>,
        config: &DatanetsConfig,
    ) -> Result<Self, DatanetError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| DatanetError::Store(format!("cannot create {}: {e}", dir.display())))?;
        Ok(DatanetService {
            store: DatanetStore::open(dir.join("datanets.redb"))?,
            blobs: blob_store(dir, config, std::env::vars())?,
            validator: Validator::default(),
            chain,
        })
    }

    fn ledger_datanet(&self, name: &str) -> Result<Datanet> {
        self.chain
            .ledger()
            .datanet(DatanetRef::Name(name))?
            .ok_or_else(|| DatanetServiceError::UnknownDatanet { name: name.into() })
    }

    /// The store id of a datanet created on the ledger, whose stored
    /// descriptor is the one its `CreateDatanet` committed to (same hash,
    /// same owner): a draft another account stored under the name never
    /// stands in for the ledger's datanet.
    fn store_id(&self, name: &str) -> Result<(Datanet, DatanetId)> {
        let d = self.ledger_datanet(name)?;
        let no_descriptor = || DatanetServiceError::NoDescriptor { name: name.into() };
        let id = self.store.resolve(name).map_err(|_| no_descriptor())?;
        let desc = self.store.datanet(&id)?;
        if desc.owner != d.owner || Hash::of(&desc.encode()) != d.metadata_hash {
            return Err(no_descriptor());
        }
        Ok((d, id))
    }

    /// Stores the descriptor (default quotas); returns the action the
    /// owner signs.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn create(&self, req: CreateDatanetRequest) -> Result<CreateDatanetResponse> {
        self.create_with_quotas(req, None)
    }

    /// Stores the descriptor with these quotas for `req.owner` (the HTTP
    /// layer has checked that the owner signed); returns the action the
    /// owner signs.
    ///
    /// A name belongs to whoever's `CreateDatanet` lands on the ledger
    /// first, not to whoever stored a descriptor here first: a stored
    /// draft without contributions is replaced by another owner's (each
    /// signs its own `CreateDatanet`; the ledger takes one). Once the name
    /// is on the ledger, only its owner can store the very descriptor the
    /// ledger committed to (to a node that holds none or another);
    /// anything else is 409.
    pub(crate) fn create_with_quotas(
        &self,
        req: CreateDatanetRequest,
        quotas: Option<trib_datanet::Quotas>,
    ) -> Result<CreateDatanetResponse> {
        let on_ledger = self.chain.ledger().datanet(DatanetRef::Name(&req.name))?;
        let mut d = Descriptor::new(req.owner, req.name.clone(), req.description);
        d.tags = req.tags;
        if let Some(q) = quotas {
            d.quotas = q;
        }
        d.data_type = req.data_type;
        d.curation = req.curation;
        d.stake_per_contribution = req.stake_per_contribution;
        d.visibility = req.visibility;
        d.validate()?;
        let metadata_hash = Hash::of(&d.encode());
        if let Some(existing) = on_ledger {
            if existing.owner != d.owner || existing.metadata_hash != metadata_hash {
                return Err(DatanetServiceError::ExistsOnLedger {
                    name: req.name,
                    owner: existing.owner,
                });
            }
        }
        match self.store.resolve(&d.name) {
            // A descriptor stored earlier is reused when identical (a
            // retried create) and replaced otherwise, unless it already
            // holds contributions.
            Ok(id) => {
                let old = self.store.datanet(&id)?;
                if old != d {
                    if !self
                        .store
                        .list_contributions(&id, &PageRequest::first(1))?
                        .items
                        .is_empty()
                    {
                        return Err(DatanetServiceError::DifferentDescriptor { name: d.name });
                    }
                    self.store.replace_datanet(&d)?;
                    tracing::info!(target: "trib::node::datanets", name = %d.name, previous_owner = %old.owner, owner = %d.owner, "draft descriptor replaced");
                }
            }
            Err(_) => {
                self.store.create_datanet(&d)?;
            }
        }
        tracing::info!(target: "trib::node::datanets", name = %d.name, %metadata_hash, "descriptor stored");
        Ok(CreateDatanetResponse {
            id: d.id(),
            metadata_hash,
            action: Action::CreateDatanet {
                name: d.name,
                metadata_hash,
                data_type: req.data_type,
                curation: req.curation,
                stake_per_contribution: req.stake_per_contribution,
                visibility: req.visibility,
            },
        })
    }

    /// The largest file datanet `name` takes (its `max_file_bytes`
    /// quota): uploads are refused as soon as they pass it.
    pub(crate) fn max_file_bytes(&self, name: &str) -> Result<u64> {
        let (_, id) = self.store_id(name)?;
        Ok(self.store.datanet(&id)?.quotas.max_file_bytes)
    }

    /// Parses, validates and stores a contribution as pending.
    pub(crate) fn contribute(
        &self,
        name: &str,
        contributor: Address,
        file_name: &str,
        declared: Option<FileKind>,
        csv_column: Option<&str>,
        bytes: &[u8],
    ) -> Result<ContributionResponse> {
        let (ledger_d, id) = self.store_id(name)?;
        // Rows of contributions the ledger rejected leave the dedup index
        // first, so a corrected re-submission is not refused as their
        // duplicate.
        self.sync(name)?;
        let file = SourceFile {
            name: file_name,
            declared,
            csv_column,
            bytes,
        };
        let report = self.store.submit(
            &id,
            contributor,
            &file,
            today(),
            &self.validator,
            self.blobs.as_ref(),
        )?;
        if !report.is_accepted() {
            tracing::info!(target: "trib::node::datanets", datanet = name, file = file_name,
                reason = ?report.rejection, "contribution rejected at validation");
            return Ok(ContributionResponse {
                report,
                action: None,
            });
        }
        let leaves: Vec<VersionLeaf> = report
            .rows
            .iter()
            .filter(|r| r.rejection.is_none())
            .map(|r| VersionLeaf {
                row_hash: r.row_hash,
                contributor,
                contribution: report.contribution,
            })
            .collect();
        let hashes: Vec<Hash> = canonical_order(leaves)
            .iter()
            .map(VersionLeaf::hash)
            .collect();
        let row_bytes: u64 = report
            .rows
            .iter()
            .filter(|r| r.rejection.is_none())
            .map(|r| r.bytes)
            .sum();
        let action = Action::Contribute {
            datanet: ledger_d.id,
            contribution: report.contribution,
            rows_root: merkle_root(&hashes),
            rows: report.rows_accepted,
            bytes: row_bytes.max(1),
        };
        Ok(ContributionResponse {
            report,
            action: Some(action),
        })
    }

    /// Mirrors the ledger's curation decisions into the store; returns how
    /// many contributions changed.
    pub(crate) fn sync(&self, name: &str) -> Result<usize> {
        let (_, id) = self.store_id(name)?;
        let mut changed = 0;
        // Read every pending contribution first: deciding one removes it
        // from the pending listing being read.
        let pending = Page::all(|page| self.store.pending_contributions(&id, page))?;
        for c in pending {
            let Some(on_chain) = self.chain.ledger().contribution(&c.id)? else {
                continue;
            };
            let decision = match on_chain.status {
                s if s.is_accepted() => Decision::Accept,
                ContributionStatus::Rejected { reason } => Decision::Reject { reason },
                ContributionStatus::Expired => Decision::Reject {
                    reason: "curation period expired".into(),
                },
                _ => continue,
            };
            self.store.decide(&c.id, &decision)?;
            changed += 1;
        }
        if changed > 0 {
            tracing::info!(target: "trib::node::datanets", datanet = name, changed, "mirrored ledger curation into the store");
        }
        Ok(changed)
    }

    /// The next version to publish: the store's draft after the ledger's
    /// latest version (computed now if there is none yet).
    pub(crate) fn plan_publish(&self, name: &str) -> Result<PublishPlan> {
        self.sync(name)?;
        let (d, id) = self.store_id(name)?;
        let latest = d.latest_version as u64;
        let next = match self.store.version(&id, latest + 1) {
            Ok(v) => v,
            Err(DatanetError::NotFound { .. }) => {
                let v = self.store.publish(&id)?;
                if v.number != latest + 1 {
                    return Err(DatanetServiceError::VersionGap {
                        store: v.number,
                        latest,
                    });
                }
                v
            }
            Err(e) => return Err(e.into()),
        };
        let contributions: Vec<ContributionId> = self
            .all_contributions(&id)?
            .into_iter()
            .filter(|c| c.status == CurationStatus::Accepted)
            .map(|c| c.id)
            .collect();
        let version = next.number as u32;
        Ok(PublishPlan {
            version,
            root: next.root,
            rows: next.row_count,
            contributions: contributions.clone(),
            action: Action::PublishVersion {
                datanet: d.id,
                root: next.root,
                rows: next.row_count,
                contributions,
            },
        })
    }

    /// `NAME@VERSION` as JSONL, after checking the store's root against the
    /// ledger's version record.
    pub(crate) fn export(&self, name: &str, version: u32) -> Result<Vec<u8>> {
        let (d, id) = self.store_id(name)?;
        let on_chain = self
            .chain
            .ledger()
            .versions(&d.id)?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| DatanetServiceError::NotPublished {
                name: name.into(),
                version,
            })?;
        let local = self.store.version(&id, version as u64)?;
        if local.root != on_chain.root {
            return Err(DatanetServiceError::RootMismatch {
                name: name.into(),
                version,
                local: local.root,
                ledger: on_chain.root,
            });
        }
        let mut out = Vec::new();
        self.store.export(name, version as u64, &mut out)?;
        Ok(out)
    }

    /// The HTTP read check of a datanet's rows: a permissioned datanet
    /// needs a signed request (401 `missing_signature` without one) from
    /// its owner or a granted address (403 `no_access` otherwise); a public
    /// one is open to anonymous readers. `reader` is the verified signer.
    pub(crate) fn authorize_read(&self, name: &str, reader: Option<&Address>) -> Result<()> {
        let d = self.ledger_datanet(name)?;
        if d.visibility == Visibility::Permissioned && reader.is_none() {
            return Err(DatanetServiceError::SignatureRequired { name: name.into() });
        }
        self.check_read_access(name, reader)
    }

    /// Refuses `reader` on a permissioned datanet it has no access to.
    pub(crate) fn check_read_access(&self, name: &str, reader: Option<&Address>) -> Result<()> {
        let d = self.ledger_datanet(name)?;
        if d.visibility == Visibility::Permissioned {
            let allowed = match reader {
                Some(a) => self.chain.ledger().has_access(&d.id, a)?,
                None => false,
            };
            if !allowed {
                return Err(DatanetServiceError::NoAccess {
                    name: name.into(),
                    reader: reader.copied(),
                });
            }
        }
        Ok(())
    }

    /// The rows of a published version (for training): refused when
    /// `reader` has no access to a permissioned datanet.
    pub(crate) fn resolve_rows(
        &self,
        name: &str,
        version: u32,
        reader: Option<&Address>,
    ) -> Result<trib_model::factory::ResolvedDatanet> {
        self.check_read_access(name, reader)?;
        // The export is root-checked against the ledger; training reads the
        // same rows a `trib datanet export` shows (text rows as text,
        // structured rows as their JSON record).
        let bytes = self.export(name, version)?;
        let (_, id) = self.store_id(name)?;
        let v = self.store.version(&id, version as u64)?;
        #[derive(Deserialize)]
        struct Line {
            row_hash: trib_types::RowHash,
            contributor: Address,
            contribution: ContributionId,
            text: Option<String>,
            record: Option<serde_json::Value>,
        }
        let mut rows = Vec::new();
        for line in bytes
            .split(|b| *b == b'\n')
            .skip(1)
            .filter(|l| !l.is_empty())
        {
            let l: Line =
                serde_json::from_slice(line).map_err(|e| DatanetServiceError::BadExportRow {
                    name: name.into(),
                    version,
                    reason: e.to_string(),
                })?;
            rows.push(trib_model::factory::DatanetRow {
                content: l
                    .text
                    .unwrap_or_else(|| l.record.map(|r| r.to_string()).unwrap_or_default()),
                row_hash: l.row_hash,
                contribution: Some(l.contribution),
                contributor: Some(l.contributor),
            });
        }
        Ok(trib_model::factory::ResolvedDatanet {
            version_root: v.root,
            rows,
        })
    }

    pub(crate) fn list(&self) -> Result<Vec<DatanetView>> {
        let mut out = Vec::new();
        for d in self.chain.ledger().datanets()? {
            out.push(self.view(d)?);
        }
        Ok(out)
    }

    fn view(&self, d: Datanet) -> Result<DatanetView> {
        // Only the descriptor the ledger's CreateDatanet committed to.
        let desc = self
            .store
            .resolve(&d.name)
            .and_then(|id| self.store.datanet(&id))
            .ok()
            .filter(|x| x.owner == d.owner && Hash::of(&x.encode()) == d.metadata_hash);
        Ok(DatanetView {
            description: desc
                .as_ref()
                .map(|x| x.description.clone())
                .unwrap_or_default(),
            quotas: desc.as_ref().map(|x| x.quotas),
            tags: desc.map(|x| x.tags).unwrap_or_default(),
            ledger: d,
        })
    }

    pub(crate) fn show(&self, name: &str) -> Result<DatanetView> {
        let d = self.ledger_datanet(name)?;
        self.view(d)
    }

    pub(crate) fn contributions(
        &self,
        name: &str,
        page: &PageRequest,
    ) -> Result<(Vec<ContributionView>, Option<String>)> {
        let (_, id) = self.store_id(name)?;
        let p = self.store.list_contributions(&id, page)?;
        let mut out = Vec::with_capacity(p.items.len());
        for c in p.items {
            out.push(self.contribution_view(c)?);
        }
        Ok((out, p.next))
    }

    fn contribution_view(&self, c: ContributionRecord) -> Result<ContributionView> {
        let on_chain = self.chain.ledger().contribution(&c.id)?;
        let datanet_name = self.store.datanet(&c.datanet)?.name;
        let quality_bp = self.mean_quality(&c.id)?;
        Ok(ContributionView {
            id: c.id,
            datanet: c.datanet,
            datanet_name,
            contributor: c.contributor,
            file_name: c.file_name,
            rows: c.rows_accepted,
            duplicates_rejected: c.duplicates_rejected,
            quality_bp,
            status: on_chain
                .as_ref()
                .map_or("unsubmitted (no Contribute transaction)".into(), |x| {
                    x.status.to_string()
                }),
            on_ledger: on_chain.is_some(),
            stake: on_chain.as_ref().map_or(Amount::ZERO, |x| x.stake),
            slashed: on_chain.as_ref().map_or(Amount::ZERO, |x| x.slashed),
        })
    }

    /// The mean quality score (basis points) of a contribution's stored
    /// rows, scored as validation scored them (`quality_score` of the row's
    /// plain text); `None` when it stored no row. The store keeps the rows,
    /// not the report, so this reads them page by page.
    fn mean_quality(&self, id: &ContributionId) -> Result<Option<u16>> {
        let mut sum = 0u64;
        let mut n = 0u64;
        let mut page = PageRequest::first(500);
        loop {
            let p = self.store.list_rows(id, &page)?;
            for row in &p.items {
                sum += u64::from(quality_score(&row.content.plain_text()).score_bp);
                n += 1;
            }
            match p.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        // A mean of u16 values fits a u16.
        Ok((n > 0).then(|| (sum / n) as u16))
    }

    /// A contributor's contributions. Those in permissioned datanets are
    /// shown only to a signed `reader` that is the contributor or has
    /// access to that datanet; the others are left out of the page.
    pub(crate) fn history(
        &self,
        who: &Address,
        page: &PageRequest,
        reader: Option<&Address>,
    ) -> Result<(Vec<ContributionView>, Option<String>)> {
        let p = self.store.contributor_history(who, page)?;
        let mut out = Vec::with_capacity(p.items.len());
        let mut visible: HashMap<DatanetId, bool> = HashMap::new();
        for c in p.items {
            let shown = match visible.get(&c.datanet) {
                Some(v) => *v,
                None => {
                    let v = match reader {
                        Some(r) if r == who => true,
                        Some(r) => self.chain.ledger().has_access(&c.datanet, r)?,
                        None => self
                            .chain
                            .ledger()
                            .datanet(DatanetRef::Id(c.datanet))?
                            .is_none_or(|d| d.visibility == Visibility::Public),
                    };
                    visible.insert(c.datanet, v);
                    v
                }
            };
            if shown {
                out.push(self.contribution_view(c)?);
            }
        }
        Ok((out, p.next))
    }

    pub(crate) fn versions(&self, name: &str) -> Result<Vec<VersionView>> {
        let (d, id) = self.store_id(name)?;
        let on_chain = self.chain.ledger().versions(&d.id)?;
        let mut out: Vec<VersionView> = on_chain
            .iter()
            .map(|v| VersionView {
                version: v.version,
                root: v.root,
                rows: v.rows,
                on_ledger: true,
                height: Some(v.height),
            })
            .collect();
        if let Ok(draft) = self.store.version(&id, d.latest_version as u64 + 1) {
            out.push(VersionView {
                version: draft.number as u32,
                root: draft.root,
                rows: draft.row_count,
                on_ledger: false,
                height: None,
            });
        }
        Ok(out)
    }

    pub(crate) fn rows(
        &self,
        name: &str,
        version: u32,
        page: &PageRequest,
    ) -> Result<(Vec<RowView>, Option<String>)> {
        let (d, id) = self.store_id(name)?;
        if version == 0 || version > d.latest_version {
            return Err(DatanetServiceError::PastLatest {
                name: name.into(),
                version,
                latest: d.latest_version,
            });
        }
        let p = self.store.version_rows(&id, version as u64, page)?;
        let rows = p
            .items
            .into_iter()
            .map(|r| RowView {
                index: r.index,
                row_hash: r.row.row_hash.0,
                contributor: r.row.contributor,
                contribution: r.row.contribution,
                text: r.row.content.plain_text(),
            })
            .collect();
        Ok((rows, p.next))
    }

    /// Every row of a published version for the token-attribution index,
    /// in acceptance order: `first_seen` = the contribution's store-wide
    /// submission sequence × 2³² + the row's position in its contribution,
    /// so the first contributor of a duplicated row sorts first. The
    /// store's version root is checked against the ledger's record first.
    pub(crate) fn index_rows(&self, datanet: &DatanetId, version: u32) -> Result<Vec<IndexRow>> {
        let d = self
            .chain
            .ledger()
            .datanet(DatanetRef::Id(*datanet))?
            .ok_or(DatanetServiceError::UnknownDatanetId { id: *datanet })?;
        let (_, id) = self.store_id(&d.name)?;
        let on_chain = self
            .chain
            .ledger()
            .versions(&d.id)?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| DatanetServiceError::NotPublished {
                name: d.name.clone(),
                version,
            })?;
        let local = self.store.version(&id, version as u64)?;
        if local.root != on_chain.root {
            return Err(DatanetServiceError::RootMismatch {
                name: d.name,
                version,
                local: local.root,
                ledger: on_chain.root,
            });
        }
        let seq: HashMap<ContributionId, u64> = self
            .all_contributions(&id)?
            .into_iter()
            .map(|c| (c.id, c.seq))
            .collect();
        let rows = Page::all(|page| self.store.version_rows(&id, version as u64, page))?;
        let mut out: Vec<IndexRow> = rows
            .into_iter()
            .map(|r| {
                let s = seq
                    .get(&r.row.contribution)
                    .copied()
                    .unwrap_or(u64::MAX >> 32);
                IndexRow {
                    row: r.row.row_hash,
                    contribution: r.row.contribution,
                    contributor: r.row.contributor,
                    first_seen: (s << 32) | u64::from(r.row.index),
                    text: r.row.content.plain_text(),
                }
            })
            .collect();
        out.sort_by_key(|r| (r.first_seen, r.row));
        Ok(out)
    }

    /// Every contribution to a datanet in this node's store, oldest first.
    fn all_contributions(&self, id: &DatanetId) -> Result<Vec<ContributionRecord>> {
        Ok(Page::all(|page| self.store.list_contributions(id, page))?)
    }

    pub(crate) fn leaderboard(&self, name: &str) -> Result<Vec<LeaderboardEntry>> {
        let (d, id) = self.store_id(name)?;
        let mut dups: HashMap<Address, u64> = HashMap::new();
        let mut at_validation: HashMap<Address, u64> = HashMap::new();
        for c in self.all_contributions(&id)? {
            *dups.entry(c.contributor).or_default() += c.duplicates_rejected as u64;
        }
        let rejected = Page::all(|page| self.store.validation_rejections(&id, page))?;
        for r in rejected {
            *dups.entry(r.contributor).or_default() += r.duplicates_rejected as u64;
            *at_validation.entry(r.contributor).or_default() += 1;
        }
        let mut board: Vec<(Address, trib_ledger::Reputation)> =
            self.chain.ledger().leaderboard(&d.id)?;
        for who in at_validation.keys() {
            if !board.iter().any(|(a, _)| a == who) {
                board.push((*who, trib_ledger::Reputation::default()));
            }
        }
        let mut out: Vec<LeaderboardEntry> = board
            .into_iter()
            .map(|(a, r)| {
                let rejected_at_validation = at_validation.get(&a).copied().unwrap_or(0);
                LeaderboardEntry {
                    contributor: a,
                    contributions: r.contributions,
                    accepted: r.accepted,
                    rejected: r.rejected,
                    rejected_at_validation,
                    rows_accepted: r.rows_accepted,
                    acceptance_bps: (r.accepted * 10_000)
                        .checked_div(r.contributions + rejected_at_validation)
                        .unwrap_or(0),
                    duplicates_rejected: dups.get(&a).copied().unwrap_or(0),
                    slashed: r.slashed,
                    earnings: r.earnings,
                }
            })
            .collect();
        // The ledger's order (earnings, rows, accepted, fewest rejections,
        // address), with rejections at validation counted as rejections.
        out.sort_by(|a, b| {
            b.earnings
                .cmp(&a.earnings)
                .then(b.rows_accepted.cmp(&a.rows_accepted))
                .then(b.accepted.cmp(&a.accepted))
                .then(
                    (a.rejected + a.rejected_at_validation)
                        .cmp(&(b.rejected + b.rejected_at_validation)),
                )
                .then(a.contributor.cmp(&b.contributor))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn contributed_files_go_to_the_home_directory_unless_an_object_store_is_named() {
        let home = tempfile::tempdir().unwrap();
        let none = DatanetsConfig::default();
        let local = blob_store(home.path(), &none, vars(&[("PATH", "/bin")])).unwrap();
        let h = local.put(b"a contributed file").unwrap();
        assert_eq!(local.get(&h).unwrap().unwrap(), b"a contributed file");
        assert!(home.path().join("blobs").is_dir());

        // An object store by URL (the local-file backend stands in for S3);
        // AWS_* options are passed through and ignored by it.
        let bucket = tempfile::tempdir().unwrap();
        let url = format!("file://{}", bucket.path().display());
        let elsewhere = tempfile::tempdir().unwrap();
        let remote = blob_store(
            elsewhere.path(),
            &none,
            vars(&[(BLOB_STORE_ENV, &url), ("AWS_REGION", "eu-west-1")]),
        )
        .unwrap();
        let h = remote.put(b"a contributed file").unwrap();
        assert!(remote.has(&h).unwrap());
        assert_eq!(remote.get(&h).unwrap().unwrap(), b"a contributed file");
        assert!(
            std::fs::read_dir(bucket.path()).unwrap().next().is_some(),
            "the file landed in the object store's directory"
        );
        assert!(!elsewhere.path().join("blobs").exists());

        let err = blob_store(home.path(), &none, vars(&[(BLOB_STORE_ENV, "not a url")]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(BLOB_STORE_ENV) && err.contains("not a url"),
            "{err}"
        );
    }

    #[test]
    fn the_config_key_names_the_blob_store_and_the_variable_overrides_it() {
        let bucket = tempfile::tempdir().unwrap();
        let configured = DatanetsConfig {
            blob_store: Some(format!("file://{}", bucket.path().display())),
            blob_store_options: [("aws_region".to_string(), "eu-west-1".to_string())].into(),
        };
        let home = tempfile::tempdir().unwrap();
        let store = blob_store(home.path(), &configured, vars(&[])).unwrap();
        let h = store.put(b"via config.toml").unwrap();
        assert!(bucket.path().join(h.to_hex()).is_file());
        assert!(!home.path().join("blobs").exists());

        // The variable wins over the key; an empty one is ignored.
        let other = tempfile::tempdir().unwrap();
        let url = format!("file://{}", other.path().display());
        let store = blob_store(home.path(), &configured, vars(&[(BLOB_STORE_ENV, &url)])).unwrap();
        let h = store.put(b"via the environment").unwrap();
        assert!(other.path().join(h.to_hex()).is_file());
        let store = blob_store(home.path(), &configured, vars(&[(BLOB_STORE_ENV, "")])).unwrap();
        let h = store.put(b"empty variable").unwrap();
        assert!(bucket.path().join(h.to_hex()).is_file());

        let bad = DatanetsConfig {
            blob_store: Some("gopher://x".into()),
            ..DatanetsConfig::default()
        };
        let err = blob_store(home.path(), &bad, vars(&[]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("[datanets] blob_store") && err.contains("gopher://x"),
            "{err}"
        );
    }
}
