//! The datanet descriptor: what a datanet is and the rules it enforces.
//!
//! The node stores this value and the owner signs its hash (of its
//! [`Canonical`] encoding) into the ledger's `CreateDatanet`; the node and
//! the validator read the rules from it. Its data type, curation mode and
//! visibility are the ledger's own types (`trib_types`), so the descriptor
//! and the on-chain record hold the same values.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{
    datanet_id, Address, Amount, Canonical, CurationMode, DataType, DatanetId, Visibility,
};

use crate::chunk::ChunkerConfig;
use crate::error::DatanetError;
use crate::parse::{FileKind, ParseLimits};

/// Whether files of `kind` can feed a datanet of `data_type`: any file
/// for text, JSONL records only for instruction and chat datanets.
pub(crate) fn accepts(data_type: DataType, kind: FileKind) -> bool {
    !data_type.takes_records() || kind == FileKind::Jsonl
}

/// Upload quotas. Limits are inclusive: usage may reach them exactly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(default)]
pub struct Quotas {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Bytes one contributor may upload per day.
    pub bytes_per_contributor_per_day: u64,
    /// Files one contributor may upload per day.
    pub files_per_contributor_per_day: u32,
    /// Bytes the whole datanet accepts per day.
    pub bytes_per_datanet_per_day: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_file_bytes: 16 << 20,
            bytes_per_contributor_per_day: 64 << 20,
            files_per_contributor_per_day: 100,
            bytes_per_datanet_per_day: 1 << 30,
        }
    }
}

/// Row rules: chunking, quality and near-duplicate thresholds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(default)]
pub struct RowRules {
    /// Largest row, in UTF-8 bytes (64..=65,536).
    pub max_row_bytes: u32,
    /// Paragraphs shorter than this merge with the next (0..max_row_bytes).
    pub min_row_bytes: u32,
    /// Rows scoring below this (basis points) are rejected.
    pub min_quality_bp: u16,
    /// Estimated Jaccard (basis points) at or above which a row is a near
    /// duplicate (5,000..=10,000).
    pub near_duplicate_bp: u16,
}

impl Default for RowRules {
    fn default() -> Self {
        RowRules {
            max_row_bytes: 4096,
            min_row_bytes: 200,
            min_quality_bp: 3_000,
            near_duplicate_bp: 7_000,
        }
    }
}

/// A datanet descriptor.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Datanet {
    /// The creator, who owns it.
    pub owner: Address,
    /// Unique: 3–64 of `a-z`, `0-9`, `-`, starting with a letter and not
    /// ending with `-`.
    pub name: String,
    /// Markdown description (at most 16 KiB).
    pub description: String,
    /// Up to 16 tags of 1–32 of `a-z`, `0-9`, `-`.
    pub tags: Vec<String>,
    /// The row type, fixed at creation.
    pub data_type: DataType,
    /// How contributions are curated.
    pub curation: CurationMode,
    /// OPEN staked with each contribution.
    pub stake_per_contribution: Amount,
    /// Upload quotas.
    pub quotas: Quotas,
    /// Who may train on it.
    pub visibility: Visibility,
    /// Row rules.
    pub rules: RowRules,
}

impl Canonical for Datanet {
    const NAME: &'static str = "datanet descriptor";
}

/// Largest encoded descriptor the decoder accepts.
pub const MAX_DESCRIPTOR_BYTES: usize = 64 << 10;

fn valid_slug(s: &str, min: usize, max: usize, first_letter: bool) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && (!first_letter || s.as_bytes()[0].is_ascii_lowercase())
}

impl Datanet {
    /// A public, owner-curated text datanet with default rules and quotas.
    pub fn new(owner: Address, name: impl Into<String>, description: impl Into<String>) -> Self {
        Datanet {
            owner,
            name: name.into(),
            description: description.into(),
            tags: Vec::new(),
            data_type: DataType::Text,
            curation: CurationMode::OwnerApproval,
            stake_per_contribution: Amount::ZERO,
            quotas: Quotas::default(),
            visibility: Visibility::Public,
            rules: RowRules::default(),
        }
    }

    /// The id: a domain-separated hash of the name
    /// ([`trib_types::datanet_id`], the ledger's derivation).
    pub fn id(&self) -> DatanetId {
        datanet_id(&self.name)
    }

    /// Checks every field; the first broken rule is the error.
    pub fn validate(&self) -> Result<(), DatanetError> {
        let bad = |field, reason: String| Err(DatanetError::InvalidDescriptor { field, reason });
        if !valid_slug(&self.name, 3, 64, true) || self.name.ends_with('-') {
            return bad(
                "name",
                format!(
                    "{:?} must be 3-64 of a-z, 0-9, '-' starting with a letter",
                    self.name
                ),
            );
        }
        if self.description.len() > 16 << 10 {
            return bad(
                "description",
                format!("{} bytes, over 16384", self.description.len()),
            );
        }
        if self.tags.len() > 16 {
            return bad("tags", format!("{} tags, at most 16", self.tags.len()));
        }
        if let Some(t) = self.tags.iter().find(|t| !valid_slug(t, 1, 32, false)) {
            return bad("tags", format!("{t:?} must be 1-32 of a-z, 0-9, '-'"));
        }
        let mut sorted = self.tags.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.tags.len() {
            return bad("tags", "duplicate tag".into());
        }
        if let CurationMode::ValidatorVote { quorum_bps } = self.curation {
            if !(1..=10_000).contains(&quorum_bps) {
                return bad(
                    "curation.quorum_bps",
                    format!("{quorum_bps} is not in 1..=10000"),
                );
            }
        }
        let q = &self.quotas;
        if q.max_file_bytes == 0
            || q.bytes_per_contributor_per_day == 0
            || q.files_per_contributor_per_day == 0
            || q.bytes_per_datanet_per_day == 0
        {
            return bad("quotas", "every quota must be above zero".into());
        }
        let r = &self.rules;
        if !(64..=65_536).contains(&r.max_row_bytes) {
            return bad(
                "rules.max_row_bytes",
                format!("{} is not in 64..=65536", r.max_row_bytes),
            );
        }
        if r.min_row_bytes >= r.max_row_bytes {
            return bad(
                "rules.min_row_bytes",
                format!("{} must be below max_row_bytes", r.min_row_bytes),
            );
        }
        if r.min_quality_bp > 10_000 {
            return bad(
                "rules.min_quality_bp",
                format!("{} is over 10000", r.min_quality_bp),
            );
        }
        if !(5_000..=10_000).contains(&r.near_duplicate_bp) {
            return bad(
                "rules.near_duplicate_bp",
                format!("{} is not in 5000..=10000", r.near_duplicate_bp),
            );
        }
        Ok(())
    }

    /// The chunker configuration these rules imply.
    pub fn chunker(&self) -> ChunkerConfig {
        ChunkerConfig {
            max_row_bytes: self.rules.max_row_bytes as usize,
            min_row_bytes: self.rules.min_row_bytes as usize,
        }
    }

    /// The parser limits these quotas imply.
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_file_bytes: self.quotas.max_file_bytes,
            ..ParseLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Datanet {
        let mut d = Datanet::new(Address([7; 20]), "us-law", "# US law\nPublic domain texts.");
        d.tags = vec!["legal".into(), "public-domain".into()];
        d.curation = CurationMode::ValidatorVote { quorum_bps: 3_340 };
        d
    }

    #[test]
    fn descriptor_round_trips_in_borsh_and_json() {
        let d = sample();
        d.validate().unwrap();
        assert_eq!(
            Datanet::decode(&d.encode(), MAX_DESCRIPTOR_BYTES).unwrap(),
            d
        );
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Datanet>(&j).unwrap(), d);
        assert_eq!(d.id(), datanet_id("us-law"));
        // Pinned: the ledger derives the same id from the name.
        assert_eq!(
            d.id().0,
            trib_types::Hash::domain("tributary datanet id v1", &[b"us-law"])
        );
    }

    #[test]
    fn every_rule_is_checked() {
        type Breaker = Box<dyn Fn(&mut Datanet)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("name", Box::new(|d| d.name = "US Law".into())),
            ("name", Box::new(|d| d.name = "9lives".into())),
            ("name", Box::new(|d| d.name = "trailing-".into())),
            (
                "description",
                Box::new(|d| d.description = "x".repeat(20_000)),
            ),
            ("tags", Box::new(|d| d.tags = vec!["Bad Tag".into()])),
            ("tags", Box::new(|d| d.tags = vec!["a".into(), "a".into()])),
            (
                "tags",
                Box::new(|d| d.tags = (0..17).map(|i| format!("t{i}")).collect()),
            ),
            (
                "curation.quorum_bps",
                Box::new(|d| d.curation = CurationMode::ValidatorVote { quorum_bps: 0 }),
            ),
            (
                "quotas",
                Box::new(|d| d.quotas.files_per_contributor_per_day = 0),
            ),
            (
                "rules.max_row_bytes",
                Box::new(|d| d.rules.max_row_bytes = 10),
            ),
            (
                "rules.min_row_bytes",
                Box::new(|d| d.rules.min_row_bytes = 5000),
            ),
            (
                "rules.min_quality_bp",
                Box::new(|d| d.rules.min_quality_bp = 10_001),
            ),
            (
                "rules.near_duplicate_bp",
                Box::new(|d| d.rules.near_duplicate_bp = 100),
            ),
        ];
        for (field, break_it) in cases {
            let mut d = sample();
            break_it(&mut d);
            match d.validate() {
                Err(DatanetError::InvalidDescriptor { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
