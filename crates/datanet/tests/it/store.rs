//! The store: the whole loop from file to exported version, curation,
//! paging, and no partial state on bad input.

use trib_datanet::{
    export_rows, verify_export, BlobStore, ContributionRejection, CurationStatus, DatanetError,
    DatanetStore, Decision, InclusionProof, LocalBlobStore, ObjectBlobStore, PageRequest,
    Validator, VersionLeaf,
};
use trib_types::Hash;

use crate::common::*;

/// The UTC day the tests submit on (days since 1970-01-01).
pub const DAY: u64 = 20_416;

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
                DAY,
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
fn an_exports_rows_read_back_with_provenance_and_text_or_record_json() {
    let (version, export) = build_and_export();
    let rows = export_rows(&export).unwrap();
    assert_eq!(rows.len() as u64, version.row_count);
    assert!(rows.windows(2).all(|w| w[0].row_hash < w[1].row_hash));
    assert!(rows.iter().all(|r| !r.content.is_empty()));
    assert!(rows
        .iter()
        .any(|r| r.contributor == alice() && r.content.contains("Congress")));
    assert!(rows.iter().any(|r| r.contributor == bob()));
    // A structured row reads as its record's JSON.
    let line = format!(
        "{{\"index\":0,\"row_hash\":\"{}\",\"contributor\":\"{}\",\"contribution\":\"{}\",\"record\":{{\"prompt\":\"p\",\"response\":\"r\"}}}}",
        rows[0].row_hash, rows[0].contributor, rows[0].contribution
    );
    let structured = export_rows(format!("{{}}\n{line}\n").as_bytes()).unwrap();
    assert_eq!(structured[0].content, r#"{"prompt":"p","response":"r"}"#);
    match export_rows(b"{}\n{\"index\":0}\n") {
        Err(DatanetError::BadExport { line, reason }) => {
            assert_eq!(line, 2);
            assert!(reason.contains("does not parse"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
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
        CurationStatus::Rejected {
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
    // Accepted: d.md; rejected by curation: c.txt; rejected at validation:
    // c2.txt (all duplicates). 1 of 3.
    assert_eq!(alice_rep.rejected_at_validation, 1);
    assert_eq!(alice_rep.acceptance_rate_bp(), 3_333);
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
    // Only the rejection records (for reputation) were written.
    let rejected = e
        .store
        .validation_rejections(&id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(rejected.len(), hostile.len());
    assert!(rejected.iter().all(|r| r.reason_code == "unparseable"));
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
            DAY,
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

#[test]
fn quota_counters_survive_reopening_the_store_and_roll_over_at_the_utc_day() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datanets.redb");
    let blobs = LocalBlobStore::open(dir.path().join("blobs")).unwrap();
    let v = Validator::default();
    let mut d = text_datanet();
    d.quotas.files_per_contributor_per_day = 2;
    let (f0, f1, f2) = (
        distinct_paragraphs(3, 1),
        distinct_paragraphs(3, 2),
        distinct_paragraphs(3, 3),
    );
    let id = {
        let store = DatanetStore::open(&path).unwrap();
        let id = store.create_datanet(&d).unwrap();
        let r = store
            .submit(&id, alice(), &src("a.txt", f0.as_bytes()), DAY, &v, &blobs)
            .unwrap();
        assert!(r.is_accepted(), "{:?}", r.rejection);
        id
    };
    // "Restart": a new handle on the same file sees the same counters.
    let store = DatanetStore::open(&path).unwrap();
    let used = store.quota_usage(&id, &alice(), DAY).unwrap();
    assert_eq!(used.contributor_files_today, 1);
    assert_eq!(used.contributor_bytes_today, f0.len() as u64);
    assert_eq!(used.datanet_bytes_today, f0.len() as u64);
    assert_eq!(
        store
            .quota_usage(&id, &bob(), DAY)
            .unwrap()
            .contributor_files_today,
        0
    );
    // The second file of the day is the last one allowed (inclusive limit).
    let r = store
        .submit(&id, alice(), &src("b.txt", f1.as_bytes()), DAY, &v, &blobs)
        .unwrap();
    assert!(r.is_accepted(), "{:?}", r.rejection);
    let r = store
        .submit(&id, alice(), &src("c.txt", f2.as_bytes()), DAY, &v, &blobs)
        .unwrap();
    assert!(
        matches!(
            r.rejection,
            Some(ContributionRejection::QuotaExceeded {
                quota: trib_datanet::QuotaKind::ContributorFilesPerDay,
                used: 2,
                adding: 1,
                limit: 2
            })
        ),
        "{:?}",
        r.rejection
    );
    // A rejected file does not count against the quota.
    assert_eq!(
        store
            .quota_usage(&id, &alice(), DAY)
            .unwrap()
            .contributor_files_today,
        2
    );
    drop(store);
    let store = DatanetStore::open(&path).unwrap();
    // Next UTC day: the counters start again and yesterday's are dropped.
    let r = store
        .submit(
            &id,
            alice(),
            &src("c.txt", f2.as_bytes()),
            DAY + 1,
            &v,
            &blobs,
        )
        .unwrap();
    assert!(r.is_accepted(), "{:?}", r.rejection);
    let today = store.quota_usage(&id, &alice(), DAY + 1).unwrap();
    assert_eq!(today.contributor_files_today, 1);
    assert_eq!(today.datanet_bytes_today, f2.len() as u64);
    assert_eq!(
        store.quota_usage(&id, &alice(), DAY).unwrap(),
        trib_datanet::QuotaUsage::default(),
        "yesterday's counters were pruned"
    );
}

#[test]
fn the_same_file_resubmitted_after_a_curation_rejection_gets_a_new_contribution_id() {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    let bytes = fixture("declaration.md");
    let first = e.submit(alice(), "d.md", &bytes);
    assert!(first.is_accepted());
    // While the first is pending, the same file is all duplicates, and its
    // report carries yet another id.
    let dup = e.submit(alice(), "d.md", &bytes);
    assert!(matches!(
        dup.rejection,
        Some(ContributionRejection::AllDuplicates { .. })
    ));
    assert_ne!(dup.contribution, first.contribution);
    e.store
        .decide(
            &first.contribution,
            &Decision::Reject {
                reason: "needs a source".into(),
            },
        )
        .unwrap();
    let again = e.submit(alice(), "d.md", &bytes);
    assert!(again.is_accepted(), "{:?}", again.rejection);
    assert_ne!(again.contribution, first.contribution);
    assert_ne!(again.contribution, dup.contribution);
    assert_eq!(again.rows_accepted, first.rows_accepted);
    // Both stored contributions are listed; the old one keeps its verdict.
    let listed = e
        .store
        .list_contributions(&id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(listed.len(), 2);
    assert!(matches!(listed[0].status, CurationStatus::Rejected { .. }));
    assert_eq!(listed[1].status, CurationStatus::Pending);
    // Another contributor's same file has another id too (ids are per
    // contributor), and is a duplicate of the pending rows.
    let bob_copy = e.submit(bob(), "d.md", &bytes);
    assert_ne!(bob_copy.contribution, again.contribution);
    assert!(!bob_copy.is_accepted());
}

#[test]
fn submissions_rejected_at_validation_are_recorded_with_their_reason_for_reputation() {
    let e = env();
    let id = e.store.create_datanet(&text_datanet()).unwrap();
    let a = e.submit(alice(), "c.txt", &fixture("constitution.txt"));
    let dup = e.submit(bob(), "copy.txt", &fixture("constitution.txt"));
    let bad = e.submit(bob(), "bad.jsonl", b"{\"text\":1}");
    assert!(a.is_accepted() && !dup.is_accepted() && !bad.is_accepted());
    let recs = e
        .store
        .validation_rejections(&id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].id, dup.contribution);
    assert_eq!(recs[0].contributor, bob());
    assert_eq!(recs[0].reason_code, "all_duplicates");
    assert_eq!(recs[0].duplicates_rejected, dup.duplicates_rejected);
    assert_eq!(recs[0].day, DAY);
    assert_eq!(recs[1].reason_code, "unparseable");
    assert!(recs[1].reason.contains("bad.jsonl"), "{}", recs[1].reason);
    assert!(recs[0].seq < recs[1].seq);
    let reps = trib_datanet::compute_reputation(&e.store.reputation_events(&id).unwrap());
    let b = reps.iter().find(|r| r.contributor == bob()).unwrap();
    assert_eq!(b.rejected_at_validation, 2);
    assert_eq!(b.contributions_submitted, 0);
    assert_eq!(b.duplicates_rejected, dup.duplicates_rejected as u64);
    assert_eq!(b.acceptance_rate_bp(), 0);
}

#[test]
fn only_pending_contributions_are_listed_for_curation_and_the_list_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datanets.redb");
    let blobs = LocalBlobStore::open(dir.path().join("blobs")).unwrap();
    let v = Validator::default();
    let store = DatanetStore::open(&path).unwrap();
    let id = store.create_datanet(&text_datanet()).unwrap();
    let ids: Vec<_> = (1..=4)
        .map(|i| {
            let text = distinct_paragraphs(2, i);
            let r = store
                .submit(
                    &id,
                    alice(),
                    &src("f.txt", text.as_bytes()),
                    DAY,
                    &v,
                    &blobs,
                )
                .unwrap();
            assert!(r.is_accepted(), "{:?}", r.rejection);
            r.contribution
        })
        .collect();
    // A rejection at validation is never pending.
    let dup = distinct_paragraphs(2, 1);
    let r = store
        .submit(&id, bob(), &src("dup.txt", dup.as_bytes()), DAY, &v, &blobs)
        .unwrap();
    assert!(!r.is_accepted());
    store.decide(&ids[0], &Decision::Accept).unwrap();
    store
        .decide(
            &ids[2],
            &Decision::Reject {
                reason: "off topic".into(),
            },
        )
        .unwrap();
    let pending = |store: &DatanetStore, limit| {
        let mut page = PageRequest::first(limit);
        let mut out = Vec::new();
        loop {
            let p = store.pending_contributions(&id, &page).unwrap();
            assert!(p.items.len() <= limit);
            out.extend(p.items.into_iter().map(|c| {
                assert_eq!(c.status, CurationStatus::Pending);
                c.id
            }));
            match p.next {
                Some(n) => page.after = Some(n),
                None => return out,
            }
        }
    };
    assert_eq!(pending(&store, 1), vec![ids[1], ids[3]]);
    drop(store);
    let store = DatanetStore::open(&path).unwrap();
    assert_eq!(pending(&store, 10), vec![ids[1], ids[3]]);
    store.decide(&ids[3], &Decision::Accept).unwrap();
    assert_eq!(pending(&store, 10), vec![ids[1]]);
}
