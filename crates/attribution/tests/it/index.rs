use proptest::prelude::*;
use trib_attribution::{
    build_index, AttributionError, IndexBuildOptions, IndexDocument, IndexSet, SuffixIndex,
};
use trib_types::Hash;

use crate::{build, prov};

fn naive_count(docs: &[Vec<u32>], q: &[u32]) -> u64 {
    if q.is_empty() {
        return docs.iter().map(|d| d.len() as u64).sum();
    }
    docs.iter()
        .map(|d| d.windows(q.len()).filter(|w| *w == q).count() as u64)
        .sum()
}

#[test]
fn files_follow_the_infini_gram_layout() {
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![vec![0x0102, 3], vec![0x0201]];
    let path = build(dir.path(), "i", &docs, &[1, 2], 5000);
    let tok = std::fs::read(path.join("tokenized.0")).unwrap();
    assert_eq!(
        tok,
        vec![0xFF, 0xFF, 0x02, 0x01, 0x03, 0x00, 0xFF, 0xFF, 0x01, 0x02]
    );
    let off = std::fs::read(path.join("offset.0")).unwrap();
    assert_eq!(off, [0u64.to_le_bytes(), 6u64.to_le_bytes()].concat());
    // 10 bytes → 1-byte entries; suffixes sorted by bytes:
    // 8:[01 02] < 2:[02 01 ..] < 4:[03 00 ..] < 6:[ff ff 01 02] < 0:[ff ff 02 01 ..]
    let table = std::fs::read(path.join("table.0")).unwrap();
    assert_eq!(table, vec![8, 2, 4, 6, 0]);
    assert_eq!(std::fs::read(path.join("rows.0")).unwrap().len(), 2 * 92);
}

#[test]
fn empty_and_single_token_indexes_answer_queries() {
    let dir = tempfile::tempdir().unwrap();
    let empty = build(dir.path(), "empty", &[], &[], 5000);
    let idx = SuffixIndex::open(&empty).unwrap();
    assert_eq!(idx.count(&[5]), 0);
    assert_eq!(idx.longest_prefix(&[5, 6]), (0, 0));
    let one = build(dir.path(), "one", &[vec![7]], &[1], 5000);
    let idx = SuffixIndex::open(&one).unwrap();
    assert_eq!(idx.count(&[7]), 1);
    assert_eq!(idx.longest_prefix(&[7, 8]), (1, 1));
    let empty_doc = build(dir.path(), "emptydoc", &[vec![]], &[1], 5000);
    assert_eq!(SuffixIndex::open(&empty_doc).unwrap().count(&[7]), 0);
    assert_eq!(IndexSet::empty().count(&[1]), 0);
}

#[test]
fn building_into_an_existing_directory_is_refused_and_bad_tokens_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "i", &[vec![1, 2]], &[1], 5000);
    let opts = IndexBuildOptions {
        label: "x".into(),
        tokenizer_hash: Hash::of(b"toy"),
        vocab_size: 5000,
        threads: 1,
    };
    let doc = [IndexDocument {
        tokens: &[1],
        provenance: prov(0, 1),
    }];
    assert!(matches!(
        build_index(&path, doc, &opts),
        Err(AttributionError::IndexExists(_))
    ));
    let fresh = dir.path().join("bad");
    let bad = [IndexDocument {
        tokens: &[1, 6000],
        provenance: prov(0, 1),
    }];
    assert!(matches!(
        build_index(&fresh, bad, &opts),
        Err(AttributionError::TokenOutOfRange { token: 6000, .. })
    ));
    assert!(!fresh.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary directory left behind"
    );
}

#[test]
fn truncated_table_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "i", &[vec![1, 2, 3]], &[1], 5000);
    std::fs::write(path.join("table.0"), [0u8; 2]).unwrap();
    assert!(matches!(
        SuffixIndex::open(&path),
        Err(AttributionError::CorruptIndex { .. })
    ));
}

#[test]
fn retrieval_returns_the_document_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![vec![10, 11, 12, 13, 14], vec![20, 12, 13, 21]];
    let path = build(dir.path(), "i", &docs, &[1, 2], 5000);
    let idx = SuffixIndex::open(&path).unwrap();
    let mut m = idx.retrieve(&[12, 13], 10, 1);
    m.sort_by_key(|r| r.document);
    assert_eq!(m.len(), 2);
    assert_eq!(
        (
            m[0].document,
            m[0].start,
            m[0].before.clone(),
            m[0].after.clone()
        ),
        (0, 2, vec![11], vec![14])
    );
    assert_eq!(
        (
            m[1].document,
            m[1].start,
            m[1].before.clone(),
            m[1].after.clone()
        ),
        (1, 1, vec![20], vec![21])
    );
    assert_eq!(m[1].provenance, prov(1, 2));
    assert_eq!(idx.document_tokens(1), docs[1]);
}

#[test]
fn an_index_set_adds_counts_across_versions() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(dir.path(), "a", &[vec![1, 2, 3]], &[1], 5000);
    let b = build(dir.path(), "b", &[vec![1, 2, 9], vec![2, 3]], &[2, 3], 5000);
    let set = IndexSet::open(&[a, b]).unwrap();
    assert_eq!(set.count(&[1, 2]), 2);
    assert_eq!(set.count(&[2, 3]), 2);
    assert_eq!(set.longest_prefix(&[1, 2, 3, 4]), (3, 1));
    assert_eq!(set.occurrences(&[2, 3], 10).len(), 2);
    assert_eq!(set.total_tokens(), 8);
}

#[test]
fn a_set_refuses_indexes_of_different_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(dir.path(), "a", &[vec![1]], &[1], 5000);
    let b = dir.path().join("b");
    build_index(
        &b,
        [IndexDocument {
            tokens: &[1],
            provenance: prov(0, 1),
        }],
        &IndexBuildOptions {
            label: "b".into(),
            tokenizer_hash: Hash::of(b"other"),
            vocab_size: 5000,
            threads: 1,
        },
    )
    .unwrap();
    assert!(matches!(
        IndexSet::open(&[a, b]),
        Err(AttributionError::IncompatibleIndex { .. })
    ));
}

fn docs_strategy(max_token: u32) -> impl Strategy<Value = Vec<Vec<u32>>> {
    // Small alphabets (including ids ≥ 0x100 whose byte order differs from
    // numeric order) so that n-grams repeat.
    let tok = prop_oneof![0u32..3, 0xFFu32..0x102, 0x200u32..0x202, Just(max_token)];
    proptest::collection::vec(proptest::collection::vec(tok, 0..12), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn counts_and_longest_prefix_match_a_naive_scan(
        docs in docs_strategy(0xFFFE),
        queries in proptest::collection::vec(proptest::collection::vec(prop_oneof![0u32..3, 0xFFu32..0x102, 0x200u32..0x202], 1..4), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let contribs = vec![1u8; docs.len()];
        let idx = SuffixIndex::open(&build(dir.path(), "i", &docs, &contribs, 0xFFFF)).unwrap();
        for q in &queries {
            prop_assert_eq!(idx.count(q), naive_count(&docs, q));
            let (len, count) = idx.longest_prefix(q);
            let naive_len = (0..=q.len()).rev().find(|&l| l == 0 || naive_count(&docs, &q[..l]) > 0).unwrap();
            prop_assert_eq!(len, naive_len);
            prop_assert_eq!(count, if len == 0 { 0 } else { naive_count(&docs, &q[..len]) });
        }
    }

    #[test]
    fn wide_vocabularies_use_four_byte_tokens_and_still_count_right(
        docs in docs_strategy(70_000),
        q in proptest::collection::vec(prop_oneof![0u32..3, 0x100u32..0x102, Just(70_000u32)], 1..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let contribs = vec![1u8; docs.len()];
        let idx = SuffixIndex::open(&build(dir.path(), "i", &docs, &contribs, 100_000)).unwrap();
        prop_assert_eq!(idx.manifest().token_width, 4);
        prop_assert_eq!(idx.count(&q), naive_count(&docs, &q));
    }
}
