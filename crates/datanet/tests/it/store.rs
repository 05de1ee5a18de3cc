//! The store: the whole loop from file to exported version, curation,
//! paging, and no partial state on bad input.

use trib_datanet::{
    verify_export, BlobStore, ContributionRejection, ContributionStatus, DatanetError,
    DatanetStore, Decision, InclusionProof, LocalBlobStore, ObjectBlobStore, PageRequest,
    QuotaUsage, Validator, VersionLeaf,
};
use trib_types::Hash;

use crate::common::*;

struct Env {
    _dir: tempfile::TempDir,
    store: DatanetStore,
    blobs: LocalBlobStore,
    validator: Validator,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = DatanetStore::open(dir.path().join("datanets.redb")).unwrap();
    let blobs = LocalBlobStore::open(dir.path().join("blobs")).unwrap();
    Env {
        _dir: dir,
        store,
        blobs,
        validator: Validator::default(),
    }
}

impl Env {
    fn submit(
        &self,
        who: trib_types::Address,
        name: &str,
        bytes: &[u8],
    ) -> trib_datanet::ValidationReport {
        let id = self.store.resolve("us-law").unwrap();
        self.store
            .submit(
                &id,
                who,
                &src(name, bytes),
                &QuotaUsage::default(),
                &self.validator,
                &self.blobs,
            )
            .unwrap()
    }
}

/// Builds the same datanet from the same inputs and exports version 1.
fn build_and_export() -> (trib_datanet::DatanetVersion, Vec<u8>) {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    let a = e.submit(alice(), "constitution.txt", &fixture("constitution.txt"));
    let b = e.submit(bob(), "declaration.md", &fixture("declaration.md"));
    e.store.decide(&a.contribution, &Decision::Accept).unwrap();
    e.store.decide(&b.contribution, &Decision::Accept).unwrap();
    let v = e.store.publish(&id).unwrap();
    let mut out = Vec::new();
    e.store.export("us-law", 1, &mut out).unwrap();
    (v, out)
}

#[test]
fn a_published_versions_root_is_reproduced_from_its_export() {
    let (version, export) = build_and_export();
    assert_eq!(version.number, 1);
    assert_eq!(version.previous_root, Hash::ZERO);
    let check = verify_export(export.as_slice()).unwrap();
    assert_eq!(check.computed_root, version.root);
    assert_eq!(check.declared_root, version.root);
    assert_eq!(check.rows, version.row_count);
    assert!(check.is_consistent());
    let text = String::from_utf8(export).unwrap();
    assert!(text.ends_with('\n') && !text.contains('\r'));
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("{\"index\":0,\"row_hash\":\""));
}

#[test]
fn export_is_byte_identical_across_two_independent_runs() {
    let (v1, e1) = build_and_export();
    let (v2, e2) = build_and_export();
    assert_eq!(v1, v2);
    assert_eq!(e1, e2);
}

#[test]
fn a_tampered_export_is_detected() {
    let (_, export) = build_and_export();
    let text = String::from_utf8(export).unwrap();
    let tampered = text.replacen("Congress", "Parliament", 1);
    match verify_export(tampered.as_bytes()) {
        Err(DatanetError::BadExport { reason, .. }) => {
            assert!(reason.contains("does not match the content"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    assert!(verify_export((lines.join("\n") + "\n").as_bytes()).is_err());
}

#[test]
fn instruction_records_keep_their_structure_through_export() {
    let e = env();
    let mut d = text_datanet();
    d.data_type = trib_datanet::DataType::Instruction;
    let id = e.store.create_datanet(&d).unwrap();
    let r = e.submit(
        alice(),
        "instructions.jsonl",
        &fixture("instructions.jsonl"),
    );
    assert_eq!(r.rows_accepted, 5, "{:?}", r.rows);
    let rows_root = r.rows_root;
    e.store.decide(&r.contribution, &Decision::Accept).unwrap();
    let v = e.store.publish(&id).unwrap();
    let mut out = Vec::new();
    e.store.export("us-law", 1, &mut out).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("\"record\":{\"instruction\":"));
    assert!(text.contains("\"record\":{\"messages\":[{\"role\":\"user\",\"content\":"));
    assert_eq!(verify_export(out.as_slice()).unwrap().computed_root, v.root);
    // A version of exactly one contribution has that contribution's rows_root.
    assert_eq!(rows_root, v.root);
}

#[test]
fn curation_moves_rows_between_pending_accepted_and_rejected() {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    let a = e.submit(alice(), "c.txt", &fixture("constitution.txt"));
    assert!(a.is_accepted());
    // Pending rows already block duplicates.
    let dup = e.submit(bob(), "copy.txt", &fixture("constitution.txt"));
    assert!(matches!(
        dup.rejection,
        Some(ContributionRejection::AllDuplicates { .. })
    ));
    assert!(
        matches!(e.store.publish(&id), Err(DatanetError::NothingToPublish(_))),
        "pending rows are not published"
    );

    let rec = e
        .store
        .decide(
            &a.contribution,
            &Decision::Reject {
                reason: "off topic".into(),
            },
        )
        .unwrap();
    assert_eq!(
        rec.status,
        ContributionStatus::Rejected {
            reason: "off topic".into()
        }
    );
    assert!(matches!(
        e.store.decide(&a.contribution, &Decision::Accept),
        Err(DatanetError::NotPending { .. })
    ));
    // Rejected rows leave the dedup index, so the same text can come again.
    let (stored, indexed) = e.store.row_counts(&id).unwrap();
    assert_eq!(indexed, 0);
    assert_eq!(
        stored, a.rows_accepted as u64,
        "rejected rows are kept as evidence"
    );
    let again = e.submit(bob(), "copy.txt", &fixture("constitution.txt"));
    assert!(again.is_accepted());
    e.store
        .decide(&again.contribution, &Decision::Accept)
        .unwrap();
    let v1 = e.store.publish(&id).unwrap();
    assert_eq!(v1.row_count, again.rows_accepted as u64);
    // Published rows block duplicates across versions too.
    let third = e.submit(alice(), "c2.txt", &fixture("constitution.txt"));
    assert!(matches!(
        third.rejection,
        Some(ContributionRejection::AllDuplicates { .. })
    ));
    let decl = e.submit(alice(), "d.md", &fixture("declaration.md"));
    e.store
        .decide(&decl.contribution, &Decision::Accept)
        .unwrap();
    let v2 = e.store.publish(&id).unwrap();
    assert_eq!(v2.number, 2);
    assert_eq!(v2.previous_root, v1.root);
    assert_eq!(v2.row_count, v1.row_count + decl.rows_accepted as u64);

    // Reputation from the store's events.
    let reps = trib_datanet::compute_reputation(&e.store.reputation_events(&id).unwrap());
    let board = trib_datanet::leaderboard(&reps, &id);
    let alice_rep = board.iter().find(|r| r.contributor == alice()).unwrap();
    assert_eq!(alice_rep.acceptance_rate_bp(), 5_000);
    assert_eq!(alice_rep.rows_accepted, decl.rows_accepted as u64);
}

#[test]
fn every_row_of_a_version_has_an_inclusion_proof() {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    let a = e.submit(alice(), "c.txt", &fixture("constitution.txt"));
    e.store.decide(&a.contribution, &Decision::Accept).unwrap();
    let v = e.store.publish(&id).unwrap();
    let rows = e
        .store
        .version_rows(&id, 1, &PageRequest::first(1_000))
        .unwrap();
    assert_eq!(rows.items.len() as u64, v.row_count);
    for r in &rows.items {
        let (leaf, proof): (VersionLeaf, InclusionProof) =
            e.store.prove_row(&id, 1, &r.row.row_hash).unwrap();
        assert_eq!(proof.index, r.index);
        assert!(proof.verify(&v.root, &leaf.hash()));
    }
}

#[test]
fn listings_are_paged() {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    for i in 0..5 {
        let text = distinct_paragraphs(3, i);
        let r = e.submit(alice(), &format!("f{i}.txt"), text.as_bytes());
        assert!(r.is_accepted(), "{i}: {:?} {:?}", r.rejection, r.rows);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = e.store.list_contributions(&id, &page).unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.iter().map(|c| c.file_name.clone()));
        match p.next {
            Some(n) => page.after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]);
    let hist = e
        .store
        .contributor_history(&alice(), &PageRequest::first(3))
        .unwrap();
    assert_eq!(hist.items.len(), 3);
    assert!(hist.next.is_some());
    assert!(e
        .store
        .contributor_history(&bob(), &PageRequest::default())
        .unwrap()
        .items
        .is_empty());
    let first = e
        .store
        .list_contributions(&id, &PageRequest::first(1))
        .unwrap()
        .items
        .remove(0);
    let rows = e
        .store
        .list_rows(&first.id, &PageRequest::first(2))
        .unwrap();
    assert_eq!(rows.items.len(), 2);
    assert_eq!(
        e.store
            .list_datanets(&PageRequest::default())
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(matches!(
        e.store.create_datanet(&text_datanet()),
        Err(DatanetError::DatanetExists(_))
    ));
}

#[test]
fn hostile_files_leave_no_partial_state_in_the_store_or_content_store() {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    let mut huge_line = b"ok\n".to_vec();
    huge_line.extend(std::iter::repeat_n(b'x', 10 << 20));
    let traversal = zip_of(&[("word/document.xml", b"<w:document/>"), ("../evil", b"x")]);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "bomb.docx",
            zip_of(&[("word/document.xml", &vec![b' '; 70 << 20])]),
        ),
        ("evil.docx", traversal),
        ("huge.txt", huge_line),
        ("bin.txt", vec![0u8, 1, 2, 3, 0xff, 0xfe]),
        ("latin1.txt", b"caf\xe9".to_vec()),
        ("bad.jsonl", b"{\"text\":1}".to_vec()),
    ];
    for (name, bytes) in &hostile {
        let r = e.submit(alice(), name, bytes);
        assert!(
            matches!(r.rejection, Some(ContributionRejection::Unparseable { .. })),
            "{name}: {:?}",
            r.rejection
        );
        assert!(!r.rejection.unwrap().to_string().is_empty());
    }
    assert_eq!(e.store.row_counts(&id).unwrap(), (0, 0));
    assert!(e
        .store
        .list_contributions(&id, &PageRequest::default())
        .unwrap()
        .items
        .is_empty());
    assert!(e
        .store
        .contributor_history(&alice(), &PageRequest::default())
        .unwrap()
        .items
        .is_empty());
    assert!(
        e.blobs.list().unwrap().is_empty(),
        "no blob written for a rejected file"
    );
}

#[test]
fn the_raw_file_lands_in_the_content_store_under_its_hash() {
    let e = env();
    e.store.create_datanet(&text_datanet()).unwrap();
    let bytes = fixture("constitution.txt");
    let r = e.submit(alice(), "c.txt", &bytes);
    assert_eq!(r.file_hash, Hash::of(&bytes));
    assert_eq!(e.blobs.get(&r.file_hash).unwrap().unwrap(), bytes);
    // The object_store path: same trait, in-memory backend.
    let mem = ObjectBlobStore::in_memory().unwrap();
    let id = e.store.resolve("us-law").unwrap();
    let r2 = e
        .store
        .submit(
            &id,
            bob(),
            &src("d.md", &fixture("declaration.md")),
            &QuotaUsage::default(),
            &e.validator,
            &mem,
        )
        .unwrap();
    assert_eq!(mem.list().unwrap(), vec![r2.file_hash]);
}

#[test]
fn version_refs_parse() {
    assert_eq!(
        trib_datanet::parse_version_ref("us-law@3").unwrap(),
        ("us-law", Some(3))
    );
    assert_eq!(
        trib_datanet::parse_version_ref("us-law").unwrap(),
        ("us-law", None)
    );
    assert!(trib_datanet::parse_version_ref("us-law@zero").is_err());
    assert!(trib_datanet::parse_version_ref("us-law@0").is_err());
}
