//! Integration tests of trib-datanet, one binary: parsers and hostile files,
//! validation (every rejection reason, quotas, duplicates), and the store
//! (curation, versions, export, paging, no partial state).

mod common;
mod parsers;
mod store;
mod validation;
