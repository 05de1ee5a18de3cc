//! Datanet exports as a client trusts them: the JSONL a node serves is
//! checked twice before use. Its rows must reproduce the root its header
//! declares (`trib_datanet::verify_export` re-hashes every row), and that
//! root must be the one the ledger recorded for the version, so a node
//! cannot serve rows other than those the owner published.

use trib_datanet::{export_rows, verify_export};
use trib_model::factory::{DatanetRow, ResolvedDatanet};
use trib_types::Hash;

use super::NodeClient;
use crate::error::ClientError;

/// An export that matched the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedExport {
    /// The JSONL bytes as served.
    pub bytes: Vec<u8>,
    /// The version root, recomputed from the rows and equal to the ledger's.
    pub root: Hash,
    /// Rows in the export.
    pub rows: u64,
}

impl NodeClient {
    /// Recomputes the root of `bytes` (an export of `name@version`) from its
    /// rows and checks it against the ledger's record of that version.
    /// Returns the root and the row count.
    pub async fn verify_export(
        &self,
        name: &str,
        version: u32,
        bytes: &[u8],
    ) -> Result<(Hash, u64), ClientError> {
        let datanet = format!("{name}@{version}");
        let check = verify_export(bytes).map_err(|source| ClientError::BadExport {
            datanet: datanet.clone(),
            source,
        })?;
        if !check.is_consistent() {
            return Err(ClientError::ExportRootMismatch {
                datanet,
                computed: check.computed_root,
                expected: check.declared_root,
                source_of_expected: "the header says",
            });
        }
        let on_chain = self
            .versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == version && v.height.is_some())
            .ok_or_else(|| ClientError::NotPublished {
                datanet: datanet.clone(),
            })?;
        if on_chain.root != check.computed_root {
            return Err(ClientError::ExportRootMismatch {
                datanet,
                computed: check.computed_root,
                expected: on_chain.root,
                source_of_expected: "the ledger records",
            });
        }
        tracing::debug!(target: "trib::client", %name, version, root = %check.computed_root,
            rows = check.rows, "export verified against the ledger");
        Ok((check.computed_root, check.rows))
    }

    /// `GET` the export of `name@version` (signed when this client has a
    /// signer) and [verify](Self::verify_export) it.
    pub async fn verified_export(
        &self,
        name: &str,
        version: u32,
    ) -> Result<VerifiedExport, ClientError> {
        let bytes = self.export(name, version).await?;
        let (root, rows) = self.verify_export(name, version, &bytes).await?;
        Ok(VerifiedExport { bytes, root, rows })
    }

    /// The rows of `name@version` for training: the
    /// [verified export](Self::verified_export), each row with its
    /// provenance (text rows as text, structured rows as their JSON record).
    pub async fn training_rows(
        &self,
        name: &str,
        version: u32,
    ) -> Result<ResolvedDatanet, ClientError> {
        let export = self.verified_export(name, version).await?;
        let rows = export_rows(&export.bytes).map_err(|source| ClientError::BadExport {
            datanet: format!("{name}@{version}"),
            source,
        })?;
        Ok(ResolvedDatanet {
            version_root: export.root,
            rows: rows
                .into_iter()
                .map(|r| DatanetRow {
                    content: r.content,
                    row_hash: r.row_hash,
                    contribution: Some(r.contribution),
                    contributor: Some(r.contributor),
                })
                .collect(),
        })
    }
}
