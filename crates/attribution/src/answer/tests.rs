//! The answer-time module without a node: a byte-level toy tokenizer, rows
//! held in memory, and receipts built by hand. The node's own tests run the
//! same code over a real datanet store, ledger and model
//! (`crates/node/src/attribution.rs`, `serving_tests.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use trib_ledger::{FeeSplit, InferenceReceipt, PayoutLine, PayoutRole};
use trib_types::{
    split_by_weight, AdapterId, Address, Amount, ContributionId, DatanetId, Hash, ModelId,
    ReceiptId, RowHash,
};

use super::*;
use crate::index::RowProvenance;
use crate::index::SuffixIndex;
use crate::trace::TraceParams;

/// One token per byte; a piece is its byte as a character.
struct Bytes;

impl AnswerTokenizer for Bytes {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }
}

fn bytes_tokens(identity: &[u8]) -> Tokens {
    let pieces: Vec<String> = (0u8..=255).map(|b| char::from(b).to_string()).collect();
    Tokens::new(Arc::new(Bytes), &pieces, identity).unwrap()
}

/// Rows per published version, and which datanets are public.
#[derive(Default)]
struct Rows {
    versions: Mutex<HashMap<(DatanetId, u32), Vec<VersionRow>>>,
    public: Mutex<HashMap<DatanetId, bool>>,
}

impl Rows {
    fn publish(&self, datanet: DatanetId, public: bool, rows: &[(&str, u8)]) {
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, (text, who))| VersionRow {
                provenance: RowProvenance {
                    row: RowHash(Hash::of(text.as_bytes())),
                    contribution: contribution(*who),
                    contributor: Address([*who; 20]),
                    first_seen: i as u64,
                },
                text: text.to_string(),
            })
            .collect();
        self.versions.lock().unwrap().insert((datanet, 1), rows);
        self.public.lock().unwrap().insert(datanet, public);
    }
}

impl DatanetRows for Rows {
    fn rows(&self, datanet: &DatanetId, version: u32) -> Result<Vec<VersionRow>, String> {
        self.versions
            .lock()
            .unwrap()
            .get(&(*datanet, version))
            .cloned()
            .ok_or_else(|| format!("{datanet}@{version} is not published"))
    }
    fn published(&self) -> Result<Vec<PublishedDatanet>, String> {
        Ok(self
            .versions
            .lock()
            .unwrap()
            .keys()
            .map(|(id, v)| PublishedDatanet {
                id: *id,
                name: id.to_string(),
                latest_version: *v,
            })
            .collect())
    }
    fn is_public(&self, datanet: &DatanetId) -> bool {
        self.public
            .lock()
            .unwrap()
            .get(datanet)
            .copied()
            .unwrap_or(false)
    }
}

fn contribution(who: u8) -> ContributionId {
    ContributionId(Hash([who; 32]))
}

fn datanet(n: u8) -> DatanetId {
    DatanetId(Hash::of(&[n]))
}

const QUOKKAS: &str = "The quokka orchestra rehearses beneath the violet lighthouse every second Tuesday of the month.";
const COVES: &str = "The keeper's private almanac lists nineteen hidden coves between the basalt cape and the reed estuary.";
const STORMS: &str = "Our village keeps a ledger of every storm since the harbour wall was rebuilt, and the older fishermen still argue.";

fn catalog(dir: &Path, rows: &Arc<Rows>, tokens: Tokens) -> IndexCatalog {
    IndexCatalog::new(dir.join("indexes"), rows.clone(), Arc::new(tokens))
}

#[test]
fn an_index_is_built_once_found_after_a_restart_and_rebuilt_when_damaged_or_of_another_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Arc::new(Rows::default());
    rows.publish(datanet(1), true, &[(QUOKKAS, 1), (STORMS, 2)]);
    let c = catalog(dir.path(), &rows, bytes_tokens(b"bytes"));
    let at = c.ensure(&datanet(1), 1).unwrap();
    assert_eq!(at, c.dir(&datanet(1), 1));
    for f in INDEX_FILES.iter().chain([&CHECKSUMS]) {
        assert!(at.join(f).is_file(), "{f}");
    }
    c.ensure(&datanet(1), 1).unwrap();
    assert_eq!(c.builds(), 1);
    // A restarted node checks the files and builds nothing.
    let again = catalog(dir.path(), &rows, bytes_tokens(b"bytes"));
    assert_eq!(again.problem(&at), None);
    again.ensure(&datanet(1), 1).unwrap();
    assert_eq!(again.builds(), 0);
    // A flipped byte is found, and the index rebuilt to the same content.
    let good = SuffixIndex::open(&at).unwrap().manifest().content_hash;
    let table = at.join("table.0");
    let mut b = std::fs::read(&table).unwrap();
    b[0] ^= 0xff;
    std::fs::write(&table, b).unwrap();
    assert!(again.problem(&at).unwrap().contains("table.0"));
    again.ensure(&datanet(1), 1).unwrap();
    assert_eq!(again.builds(), 1);
    assert_eq!(
        SuffixIndex::open(&at).unwrap().manifest().content_hash,
        good
    );
    // Another tokenizer: rebuilt under its hash.
    let other = bytes_tokens(b"another tokenizer");
    let hash = other.hash();
    let c = catalog(dir.path(), &rows, other);
    assert!(c.problem(&at).unwrap().contains("tokenizer"));
    c.ensure(&datanet(1), 1).unwrap();
    assert_eq!(c.builds(), 1);
    assert_eq!(
        SuffixIndex::open(&at).unwrap().manifest().tokenizer_hash,
        hash
    );
    // An unpublished version: the source's reason, and no directory.
    let err = c.ensure(&datanet(1), 2).unwrap_err();
    assert!(err.to_string().contains("not published"), "{err}");
    assert!(!c.dir(&datanet(1), 2).exists());
}

#[test]
fn the_eager_pass_builds_every_published_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Arc::new(Rows::default());
    rows.publish(datanet(1), true, &[(QUOKKAS, 1)]);
    rows.publish(datanet(2), false, &[(COVES, 3)]);
    let c = catalog(dir.path(), &rows, bytes_tokens(b"bytes"));
    assert_eq!(c.index_missing(), 2);
    assert_eq!(c.index_missing(), 0);
}

#[test]
fn a_quoted_row_is_credited_and_the_text_of_a_private_row_is_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Arc::new(Rows::default());
    rows.publish(datanet(1), true, &[(QUOKKAS, 1), (STORMS, 2)]);
    rows.publish(datanet(2), false, &[(COVES, 3)]);
    let c = catalog(dir.path(), &rows, bytes_tokens(b"bytes"));
    let versions = [(datanet(1), 1), (datanet(2), 1)];
    let t = c
        .trace(
            &versions,
            None,
            &format!("As the notes say: {QUOKKAS} Also, {COVES}"),
            &TraceParams::default(),
        )
        .unwrap();
    assert_eq!(t.method(), TOKEN_SPANS);
    let paid: Vec<ContributionId> = t.ledger_weights().iter().map(|w| w.0).collect();
    assert!(
        paid.contains(&contribution(1)) && paid.contains(&contribution(3)),
        "{paid:?}"
    );
    let rows_shown: Vec<&SpanRowView> = t.spans.iter().flat_map(|s| &s.rows).collect();
    for r in rows_shown {
        assert_eq!(
            r.snippet.is_none(),
            r.contribution == contribution(3),
            "{r:?}"
        );
    }
    // No datanet: the fallback, and the view says why.
    let base = c
        .trace(&[], None, QUOKKAS, &TraceParams::default())
        .unwrap();
    assert_eq!(base.method(), DATANET_FALLBACK);
    assert!(base.view(5)["reason"]
        .as_str()
        .unwrap()
        .contains("no datanet"));
}

/// A source with no gradient cache for any adapter.
struct NoGradients;

impl AnswerGradients for NoGradients {
    fn location(&self) -> String {
        "nowhere".into()
    }
    fn has_cache(&self, _: &AdapterId) -> bool {
        false
    }
    fn prepare(&self) -> Result<(), GradientAttributionError> {
        Ok(())
    }
    fn cache(&self, _: &AdapterId) -> Result<CachedGradients, GradientAttributionError> {
        unreachable!("no adapter has a cache")
    }
    fn answer_gradient(
        &self,
        _: &AdapterId,
        _: &str,
        _: &str,
    ) -> Result<Option<AnswerGradient>, GradientAttributionError> {
        unreachable!("no adapter has a cache")
    }
}

/// The receipt a ledger would write for `a` under the default fee split:
/// the contributors' half split by weight, the rest to the treasury.
fn receipt_for(a: &Attributed, id: ReceiptId, adapter: AdapterId) -> InferenceReceipt {
    let fee = Amount(1_000_000);
    let contributors = FeeSplit::default().parts(fee).unwrap().contributors;
    let weights: Vec<u128> = a.weights.iter().map(|w| u128::from(w.1)).collect();
    let evidence = &a.trace.as_ref().unwrap().evidence;
    let mut lines: Vec<PayoutLine> = split_by_weight(contributors, &weights)
        .unwrap()
        .into_iter()
        .zip(&evidence.weights)
        .map(|(amount, w)| PayoutLine {
            recipient: w.contributor,
            role: PayoutRole::Contributor {
                contribution: w.contribution,
            },
            amount,
        })
        .collect();
    lines.push(PayoutLine {
        recipient: Address([9; 20]),
        role: PayoutRole::Treasury,
        amount: Amount(fee.0 - contributors.0),
    });
    InferenceReceipt {
        id,
        operator: Address([7; 20]),
        payer: Address([8; 20]),
        adapter: Some(adapter),
        base: ModelId(Hash::of(b"base")),
        prompt_tokens: 20,
        completion_tokens: 40,
        price_in_per_1k: Amount(1),
        price_out_per_1k: Amount(1),
        fee,
        method: a.method.to_string(),
        evidence_hash: a.evidence_hash,
        datanets: a.datanets.clone(),
        weights: a.weights.clone(),
        fallback: a.weights.is_empty(),
        lines,
        height: 3,
    }
}

#[test]
fn a_settled_answer_verifies_and_an_edited_answer_or_payout_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Arc::new(Rows::default());
    rows.publish(datanet(1), true, &[(QUOKKAS, 1), (STORMS, 2)]);
    let attributor = AnswerAttributor::new(
        Arc::new(catalog(dir.path(), &rows, bytes_tokens(b"bytes"))),
        Arc::new(GradientAttributor::new(
            Arc::new(NoGradients),
            GRADIENT_BUDGET,
        )),
        answer_trace_params(),
    );
    let adapter = AdapterId(Hash::of(b"facts-lora"));
    let prompt = "What do the village notes say?";
    let answer = format!("They say: {QUOKKAS}");
    let a = attributor.attribute(&[(datanet(1), 1)], Some(&adapter), prompt, &answer);
    assert_eq!(a.method, TOKEN_SPANS);
    assert_eq!(a.weights, vec![(contribution(1), 1_000_000_000)]);
    assert_eq!(a.trace_error, None);
    let id = ReceiptId(Hash::of(b"receipt"));
    let receipt = receipt_for(&a, id, adapter);
    let stored = a.stored(id, "facts-lora", prompt, &answer);
    assert_eq!(stored.evidence_hash, receipt.evidence_hash);
    let split = || Ok(FeeSplit::default());
    attributor.verify(&stored, &receipt, split()).unwrap();

    let mut edited = stored.clone();
    edited.answer = format!("They say: {STORMS}");
    let bad = attributor.verify(&edited, &receipt, split()).unwrap_err();
    assert!(
        bad.iter().any(|p| p.contains("answer text was edited")),
        "{bad:?}"
    );

    let mut moved = receipt.clone();
    moved.lines[0].amount.0 -= 1;
    moved.lines.last_mut().unwrap().amount.0 += 1;
    let bad = attributor.verify(&stored, &moved, split()).unwrap_err();
    assert!(
        bad.iter().any(|p| p.contains("contributor lines pay")),
        "{bad:?}"
    );
    let bad = attributor
        .verify(&stored, &receipt, Err("no state".into()))
        .unwrap_err();
    assert_eq!(bad, vec!["cannot read the fee split: no state".to_string()]);

    // A version whose rows cannot be read: settled once, by the fallback,
    // with the prompt-and-answer hash, and the error says why.
    let unread = (datanet(9), 1);
    let untraced = attributor.attribute(&[unread], Some(&adapter), prompt, &answer);
    assert_eq!(
        (
            untraced.method,
            untraced.weights.len(),
            untraced.datanets.clone()
        ),
        (DATANET_FALLBACK, 0, vec![unread])
    );
    let why = untraced.trace_error.clone().expect("the trace error");
    assert!(why.contains(&datanet(9).to_string()), "{why}");
    assert_eq!(
        untraced.evidence_hash,
        StoredAnswer::hash_of(prompt, &answer)
    );
    assert_eq!(untraced.stored(id, "m", prompt, &answer).attribution, None);
}

#[test]
fn the_receipt_method_names_spans_datainf_both_or_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Arc::new(Rows::default());
    rows.publish(datanet(1), true, &[(QUOKKAS, 1)]);
    let c = catalog(dir.path(), &rows, bytes_tokens(b"bytes"));
    let spans = c
        .trace(&[(datanet(1), 1)], None, QUOKKAS, &TraceParams::default())
        .unwrap()
        .evidence;
    assert_eq!(receipt_method(&spans), TOKEN_SPANS);
    let gradient = |who: u8| crate::evidence::GradientEvidence {
        method: crate::evidence::AttributionMethod::DataInf,
        adapter_version: Hash::of(b"adapter"),
        damping_ppm: 100_000,
        weights: vec![crate::trace::ContributionWeight {
            contribution: contribution(who),
            contributor: Address([who; 20]),
            weight: 1_000_000_000,
        }],
    };
    assert_eq!(
        receipt_method(&spans.with_gradient(gradient(2)).unwrap()),
        TOKEN_SPANS_DATAINF
    );
    let none = c
        .trace(
            &[(datanet(1), 1)],
            None,
            "Nothing here at all.",
            &TraceParams::default(),
        )
        .unwrap()
        .evidence;
    assert_eq!(receipt_method(&none), DATANET_FALLBACK);
    assert_eq!(
        receipt_method(&none.with_gradient(gradient(2)).unwrap()),
        DATAINF
    );
}
