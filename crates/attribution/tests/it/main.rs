//! Integration tests of trib-attribution (one binary).

mod evidence;
mod index;
mod influence;
mod planted;
mod trace;

use trib_attribution::{
    build_index, IndexBuildOptions, IndexDocument, IndexSet, RowProvenance, TokenText,
};
use trib_types::{Address, ContributionId, Hash, RowHash};

/// Test vocabulary: 0 = ".", 1 = "\n", 2..1000 start a word, 1000.. continue one.
pub struct ToyText;

impl TokenText for ToyText {
    fn is_word_start(&self, token: u32) -> bool {
        token < 1000
    }
    fn is_delimiter(&self, token: u32) -> bool {
        token <= 1
    }
}

/// Provenance of document `i` contributed by contribution `c`.
pub fn prov(i: u64, c: u8) -> RowProvenance {
    RowProvenance {
        row: RowHash(Hash::of(&i.to_le_bytes())),
        contribution: ContributionId(Hash([c; 32])),
        contributor: Address([c; 20]),
        first_seen: i,
    }
}

/// Builds an index of `docs` (document i contributed by `contribs[i]`) in a fresh temp dir.
pub fn build(
    dir: &std::path::Path,
    name: &str,
    docs: &[Vec<u32>],
    contribs: &[u8],
    vocab: u32,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let provs: Vec<RowProvenance> = (0..docs.len())
        .map(|i| prov(i as u64, contribs[i]))
        .collect();
    build_index(
        &path,
        docs.iter().zip(&provs).map(|(t, p)| IndexDocument {
            tokens: t,
            provenance: *p,
        }),
        &IndexBuildOptions {
            label: name.into(),
            tokenizer_hash: Hash::of(b"toy"),
            vocab_size: vocab,
            threads: 1,
        },
    )
    .unwrap();
    path
}

/// An index set over one freshly built index.
pub fn set_of(dir: &std::path::Path, docs: &[Vec<u32>], contribs: &[u8]) -> IndexSet {
    IndexSet::open(&[build(dir, "idx", docs, contribs, 5000)]).unwrap()
}
