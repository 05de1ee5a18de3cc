//! Datanets: community data repositories.
//!
//! Owns the content store, file parsers, the row chunker, validation (format,
//! quota, exact and near duplicates, quality score) and versions. Records itself
//! on the ledger through `trib-ledger`.
