//! Validation: every rejection reason, quota edges, duplicates.

use trib_datanet::{
    ContributionRejection, DataType, FileKind, MemoryDedupIndex, ParseFailure, QuotaKind,
    QuotaUsage, RowRejection, SourceFile, Validator,
};

use crate::common::*;

fn validate(
    d: &trib_datanet::Datanet,
    name: &str,
    bytes: &[u8],
) -> trib_datanet::ValidatedContribution {
    Validator::default()
        .validate(
            d,
            alice(),
            &src(name, bytes),
            &QuotaUsage::default(),
            &MemoryDedupIndex::new(),
        )
        .unwrap()
}

fn rejection(d: &trib_datanet::Datanet, name: &str, bytes: &[u8]) -> ContributionRejection {
    validate(d, name, bytes).report.rejection.expect("rejected")
}

#[test]
fn a_clean_text_file_is_accepted_row_by_row_with_quality_components() {
    let text = paragraphs(5, "alpha");
    let v = validate(&text_datanet(), "law.txt", text.as_bytes());
    assert!(v.report.is_accepted(), "{:?}", v.report.rejection);
    assert_eq!(v.report.rows.len(), 5);
    assert_eq!(v.report.rows_accepted, 5);
    assert_eq!(v.rows.len(), 5);
    for (i, r) in v.report.rows.iter().enumerate() {
        assert_eq!(r.line, 1 + 2 * i as u64);
        assert!(r.quality.score_bp > 8_000, "{:?}", r.quality);
        assert_eq!(r.row_hash, v.rows[i].content.row_hash());
    }
    assert_ne!(v.rows_root(), trib_types::Hash::ZERO);
    // The report is what users see: it serialises to JSON with the reasons.
    let json = serde_json::to_string(&v.report).unwrap();
    assert!(json.contains("\"quality\":{\"score_bp\":"));
}

#[test]
fn every_contribution_rejection_reason_is_reported() {
    let d = text_datanet();
    let v = Validator::default();
    let idx = MemoryDedupIndex::new();
    let ok = paragraphs(2, "x");

    let mut small = d.clone();
    small.quotas.max_file_bytes = 10;
    let r = v
        .validate(
            &small,
            alice(),
            &src("a.txt", ok.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    assert!(matches!(
        r.report.rejection,
        Some(ContributionRejection::FileTooLarge { max: 10, .. })
    ));

    let full = QuotaUsage {
        contributor_files_today: d.quotas.files_per_contributor_per_day,
        ..QuotaUsage::default()
    };
    let r = v
        .validate(&d, alice(), &src("a.txt", ok.as_bytes()), &full, &idx)
        .unwrap();
    assert!(matches!(
        r.report.rejection,
        Some(ContributionRejection::QuotaExceeded {
            quota: QuotaKind::ContributorFilesPerDay,
            ..
        })
    ));

    match rejection(&d, "a.exe", b"MZ\x90") {
        ContributionRejection::Unparseable {
            failure: ParseFailure::UnsupportedType(t),
            ..
        } => assert_eq!(t, "exe"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        rejection(&d, "a.txt", &pdf_of(&["hi"])),
        ContributionRejection::Unparseable {
            failure: ParseFailure::TypeMismatch { .. },
            ..
        }
    ));
    let mut instr = d.clone();
    instr.data_type = DataType::Instruction;
    assert!(matches!(
        rejection(&instr, "a.txt", ok.as_bytes()),
        ContributionRejection::WrongDataType {
            kind: FileKind::Txt,
            data_type: DataType::Instruction
        }
    ));
    assert!(matches!(
        rejection(&d, "a.txt", b""),
        ContributionRejection::Unparseable {
            failure: ParseFailure::Empty,
            ..
        }
    ));
    assert!(matches!(
        rejection(&d, "a.txt", b"  \n\t\n"),
        ContributionRejection::Unparseable {
            failure: ParseFailure::NoText,
            ..
        }
    ));
    // All rows low quality (symbol soup): rejected, not as duplicates.
    assert!(matches!(
        rejection(
            &d,
            "a.txt",
            b"%%% $$$ ### @@@ ^^^ &&& *** !!! ??? +++ === ~~~ ||| <<< >>>"
        ),
        ContributionRejection::NoAcceptedRows { rows: 1 }
    ));
    // Exact duplicates of each other only.
    let dup = format!("{ok}\n\n{ok}");
    let r = validate(&d, "a.txt", dup.as_bytes());
    assert!(r.report.is_accepted());
    assert_eq!(r.report.duplicates_rejected, 2);
}

#[test]
fn every_row_rejection_reason_is_reported() {
    let v = Validator::default();
    let mut d = text_datanet();
    d.rules.max_row_bytes = 300;
    let base = paragraphs(3, "rows");
    let mut idx = MemoryDedupIndex::new();
    let first = v
        .validate(
            &d,
            alice(),
            &src("a.txt", base.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    idx.add(&first);

    let paras: Vec<&str> = base.split("\n\n").collect();
    // 0: new; 1: exact dup in datanet; 2: dup of 0 in this file; 3: near dup
    // (one word edited) of a datanet row; 4: low quality.
    let new_para = paragraphs(4, "fresh")
        .split("\n\n")
        .last()
        .unwrap()
        .to_string();
    let near = paras[1].replace("according", "pursuant");
    let text = [
        new_para.as_str(),
        paras[0],
        new_para.as_str(),
        near.as_str(),
        "zzzz qqqq 1234 5678 $$$$ #### @@@@ ^^^^",
    ]
    .join("\n\n");
    let r = v
        .validate(
            &d,
            alice(),
            &src("b.txt", text.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    let reasons: Vec<Option<RowRejection>> =
        r.report.rows.iter().map(|x| x.rejection.clone()).collect();
    assert_eq!(reasons[0], None);
    assert_eq!(reasons[1], Some(RowRejection::DuplicateInDatanet));
    assert_eq!(
        reasons[2],
        Some(RowRejection::DuplicateInContribution { of_index: 0 })
    );
    match &reasons[3] {
        Some(RowRejection::NearDuplicate { of, similarity_bp }) => {
            assert_eq!(*of, first.rows[1].row_hash);
            assert!(
                *similarity_bp >= 7_000 && *similarity_bp < 10_000,
                "{similarity_bp}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            reasons[4],
            Some(RowRejection::LowQuality { min_bp: 3_000, .. })
        ),
        "{:?}",
        reasons[4]
    );
    assert!(r.report.is_accepted());
    assert_eq!(r.report.rows_accepted, 1);
    assert_eq!(r.report.duplicates_rejected, 3);
    assert_eq!(
        r.rows.len(),
        1,
        "a partly duplicated contribution keeps only its new rows"
    );

    // Records: wrong shape for the data type, and too large.
    let mut instr = d.clone();
    instr.data_type = DataType::Instruction;
    let big = "word ".repeat(100);
    let jsonl = format!(
        "{{\"text\":\"plain text row\"}}\n{{\"instruction\":\"{big}\",\"output\":\"x\"}}\n{{\"prompt\":\"What is the supreme law of the land?\",\"response\":\"The Constitution, with the laws and treaties made under it.\"}}\n"
    );
    let r = v
        .validate(
            &instr,
            alice(),
            &src("c.jsonl", jsonl.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    let reasons: Vec<_> = r.report.rows.iter().map(|x| x.rejection.clone()).collect();
    assert_eq!(reasons[0], Some(RowRejection::WrongShape { shape: "text" }));
    assert_eq!(
        reasons[1],
        Some(RowRejection::TooLarge {
            bytes: 501,
            max: 300
        })
    );
    assert_eq!(reasons[2], None);
    assert_eq!(r.report.rows[2].line, 3);
}

#[test]
fn a_contribution_of_only_duplicates_is_rejected() {
    let v = Validator::default();
    let d = text_datanet();
    let text = paragraphs(4, "dup");
    let mut idx = MemoryDedupIndex::new();
    let first = v
        .validate(
            &d,
            alice(),
            &src("a.txt", text.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    idx.add(&first);
    // Same rows, and an edited copy (near duplicates) from another contributor.
    let again = v
        .validate(
            &d,
            bob(),
            &src("b.md", text.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    assert_eq!(
        again.report.rejection,
        Some(ContributionRejection::AllDuplicates { rows: 4 })
    );
    assert!(again.rows.is_empty());
    let edited = text.replace("according to", "under");
    let near = v
        .validate(
            &d,
            bob(),
            &src("c.txt", edited.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    assert_eq!(
        near.report.rejection,
        Some(ContributionRejection::AllDuplicates { rows: 4 })
    );
    assert!(near
        .report
        .rows
        .iter()
        .all(|r| matches!(r.rejection, Some(RowRejection::NearDuplicate { .. }))));
}

#[test]
fn quotas_accept_exactly_the_limit_and_reject_one_byte_over() {
    let v = Validator::default();
    let mut d = text_datanet();
    let text = paragraphs(2, "quota");
    let n = text.len() as u64;
    d.quotas.bytes_per_contributor_per_day = 1_000;
    d.quotas.bytes_per_datanet_per_day = 5_000;
    d.quotas.files_per_contributor_per_day = 3;
    d.quotas.max_file_bytes = n;
    let idx = MemoryDedupIndex::new();
    let run = |q: QuotaUsage, bytes: &[u8]| {
        v.validate(
            &d,
            alice(),
            &SourceFile {
                name: "q.txt",
                declared: None,
                csv_column: None,
                bytes,
            },
            &q,
            &idx,
        )
        .unwrap()
        .report
        .rejection
    };
    let at = |c, f, dn| QuotaUsage {
        contributor_bytes_today: c,
        contributor_files_today: f,
        datanet_bytes_today: dn,
    };
    assert_eq!(
        run(at(1_000 - n, 2, 5_000 - n), text.as_bytes()),
        None,
        "exactly at every limit"
    );
    assert_eq!(
        run(at(1_000 - n + 1, 0, 0), text.as_bytes()),
        Some(ContributionRejection::QuotaExceeded {
            quota: QuotaKind::ContributorBytesPerDay,
            used: 1_000 - n + 1,
            adding: n,
            limit: 1_000
        })
    );
    assert!(matches!(
        run(at(0, 0, 5_000 - n + 1), text.as_bytes()),
        Some(ContributionRejection::QuotaExceeded {
            quota: QuotaKind::DatanetBytesPerDay,
            ..
        })
    ));
    assert!(matches!(
        run(at(0, 3, 0), text.as_bytes()),
        Some(ContributionRejection::QuotaExceeded {
            quota: QuotaKind::ContributorFilesPerDay,
            used: 3,
            adding: 1,
            limit: 3
        })
    ));
    let over = format!("{text} ");
    assert_eq!(
        run(QuotaUsage::default(), over.as_bytes()),
        Some(ContributionRejection::FileTooLarge {
            bytes: n + 1,
            max: n
        })
    );
    // Overflowing usage counters are a rejection, not a panic.
    assert!(run(at(u64::MAX, 0, 0), text.as_bytes()).is_some());
}

#[test]
fn near_duplicates_are_caught_on_edited_copies_but_not_on_distinct_text() {
    let v = Validator::default();
    let d = text_datanet();
    let original = crate::common::fixture("constitution.txt");
    let original = String::from_utf8(original).unwrap();
    let mut idx = MemoryDedupIndex::new();
    let first = v
        .validate(
            &d,
            alice(),
            &src("c.txt", original.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    assert!(first.report.is_accepted());
    idx.add(&first);
    // An edited copy: a few words changed, case changed, punctuation changed.
    let edited = original
        .replace("shall be", "will be")
        .replace("United States", "UNITED STATES")
        .replace(';', ",");
    let r = v
        .validate(
            &d,
            bob(),
            &src("e.txt", edited.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    let near = r
        .report
        .rows
        .iter()
        .filter(|x| {
            matches!(
                x.rejection,
                Some(RowRejection::NearDuplicate { .. }) | Some(RowRejection::DuplicateInDatanet)
            )
        })
        .count();
    let long_rows = r.report.rows.iter().filter(|x| x.bytes > 300).count();
    assert!(
        near >= long_rows,
        "{near} near duplicates among {} rows ({long_rows} long)",
        r.report.rows.len()
    );
    // Unrelated prose is not flagged.
    let other = paragraphs(6, "unrelated");
    let r = v
        .validate(
            &d,
            bob(),
            &src("o.txt", other.as_bytes()),
            &QuotaUsage::default(),
            &idx,
        )
        .unwrap();
    assert_eq!(r.report.duplicates_rejected, 0);
}
