use trib_attribution::{
    attribute_answer, verify_evidence, AttributionMethod, GradientEvidence, IndexSet, PromptMask,
    TraceParams, DEFAULT_TOKEN_SHARE_PPM, WEIGHT_SCALE,
};
use trib_types::{ContributionId, Hash};

use crate::{build, ToyText};

fn corpus() -> Vec<Vec<u32>> {
    vec![
        vec![10, 11, 12, 13, 14, 0, 15, 16],
        vec![20, 21, 22, 23, 24, 25, 0],
        vec![30, 31, 32, 10, 11, 12, 13],
        vec![40, 41, 42, 43, 44],
    ]
}

#[test]
fn re_running_the_trace_reproduces_weights_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "v1", &corpus(), &[1, 2, 3, 4], 5000);
    let answer = [
        10, 11, 12, 13, 14, 0, 20, 21, 22, 23, 24, 25, 0, 40, 41, 42, 43,
    ];
    let params = TraceParams {
        min_span_tokens: 3,
        span_density: 0.2,
        ..TraceParams::default()
    };
    let set = IndexSet::open(&[&path]).unwrap();
    let a = attribute_answer(
        &set,
        &ToyText,
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert!(!a.fallback_to_datanets);
    assert_eq!(a.methods, vec![AttributionMethod::TokenSpans]);
    let total: u64 = a.weights.iter().map(|w| w.weight).sum();
    assert!(
        total.abs_diff(WEIGHT_SCALE) < 10,
        "weights sum to {total} ppb"
    );
    // Re-open the index from disk, as an auditor would.
    let reopened = IndexSet::open(&[&path]).unwrap();
    let b = attribute_answer(
        &reopened,
        &ToyText,
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.evidence_hash, b.evidence_hash);
    assert!(verify_evidence(&a, &reopened, &ToyText, &answer, &params).unwrap());
    // A changed answer or threshold gives different evidence.
    let mut other = answer;
    other[16] = 44;
    let c = attribute_answer(
        &set,
        &ToyText,
        &other,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert_ne!(c.evidence_hash, a.evidence_hash);
}

#[test]
fn tampered_weights_break_the_evidence_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "v1", &corpus(), &[1, 2, 3, 4], 5000);
    let set = IndexSet::open(&[&path]).unwrap();
    let answer = [20, 21, 22, 23, 24, 25, 0];
    let params = TraceParams {
        min_span_tokens: 3,
        span_density: 1.0,
        ..TraceParams::default()
    };
    let mut ev = attribute_answer(
        &set,
        &ToyText,
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert!(ev.hash_is_valid());
    ev.weights[0].weight -= 1;
    assert!(!ev.hash_is_valid());
    assert!(!verify_evidence(&ev, &set, &ToyText, &answer, &params).unwrap());
}

#[test]
fn an_answer_with_no_traced_span_falls_back_to_datanets() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "v1", &corpus(), &[1, 2, 3, 4], 5000);
    let set = IndexSet::open(&[&path]).unwrap();
    let ev = attribute_answer(
        &set,
        &ToyText,
        &[90, 91, 92, 93],
        &TraceParams::default(),
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert!(ev.fallback_to_datanets);
    assert!(ev.weights.is_empty());
}

#[test]
fn gradient_weights_combine_with_token_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "v1", &corpus(), &[1, 2, 3, 4], 5000);
    let set = IndexSet::open(&[&path]).unwrap();
    let answer = [20, 21, 22, 23, 24, 25, 0];
    let params = TraceParams {
        min_span_tokens: 3,
        span_density: 1.0,
        ..TraceParams::default()
    };
    let grad = GradientEvidence {
        method: AttributionMethod::DataInf,
        adapter_version: Hash::of(b"adapter"),
        damping_ppm: 100_000,
        weights: vec![trib_attribution::ContributionWeight {
            contribution: ContributionId(Hash([4; 32])),
            contributor: trib_types::Address([4; 20]),
            weight: 1,
        }],
    };
    let ev = attribute_answer(&set, &ToyText, &answer, &params, Some(grad), 700_000).unwrap();
    assert_eq!(
        ev.methods,
        vec![AttributionMethod::TokenSpans, AttributionMethod::DataInf]
    );
    let w: Vec<(u8, u64)> = ev
        .weights
        .iter()
        .map(|w| (w.contribution.0 .0[0], w.weight))
        .collect();
    assert_eq!(w, vec![(2, 700_000_000), (4, 300_000_000)]);
}

#[test]
fn adding_the_gradient_part_after_sealing_gives_the_evidence_sealed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "v1", &corpus(), &[1, 2, 3, 4], 5000);
    let set = IndexSet::open(&[&path]).unwrap();
    let answer = [20, 21, 22, 23, 24, 25, 0];
    let params = TraceParams {
        min_span_tokens: 3,
        span_density: 1.0,
        ..TraceParams::default()
    };
    let grad = |w: u64| GradientEvidence {
        method: AttributionMethod::DataInf,
        adapter_version: Hash::of(b"adapter"),
        damping_ppm: 100_000,
        weights: vec![trib_attribution::ContributionWeight {
            contribution: ContributionId(Hash([4; 32])),
            contributor: trib_types::Address([4; 20]),
            weight: w,
        }],
    };
    let at_once =
        attribute_answer(&set, &ToyText, &answer, &params, Some(grad(7)), 700_000).unwrap();
    let tokens_only = attribute_answer(&set, &ToyText, &answer, &params, None, 700_000).unwrap();
    let later = tokens_only.with_gradient(grad(7)).unwrap();
    assert_eq!(later, at_once);
    assert!(later.hash_is_valid());
    assert_ne!(later.evidence_hash, tokens_only.evidence_hash);
    // Replacing the gradient part re-seals too; an empty one leaves the
    // token weights alone and the method list without the gradient method.
    let empty = later
        .with_gradient(GradientEvidence {
            weights: vec![],
            ..grad(1)
        })
        .unwrap();
    assert_eq!(empty.weights, tokens_only.weights);
    assert_eq!(empty.methods, vec![AttributionMethod::TokenSpans]);
    assert!(empty.hash_is_valid());
}

#[test]
fn masked_evidence_commits_to_the_prompt_and_unmasked_evidence_keeps_format_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "v1", &corpus(), &[1, 2, 3, 4], 5000);
    let set = IndexSet::open(&[&path]).unwrap();
    // The answer repeats w10..w14 from the prompt and adds w20..w25.
    let answer = [10, 11, 12, 13, 14, 0, 20, 21, 22, 23, 24, 25, 0];
    let params = TraceParams {
        min_span_tokens: 2,
        span_density: 1.0,
        ..TraceParams::default()
    };
    let decode = |ids: &[u32]| -> Result<String, String> {
        Ok(ids.iter().map(|i| format!(" w{i}")).collect())
    };
    let prompt = "Tell me about w10 w11 w12 w13 w14.";
    let ev = trib_attribution::attribute_masked_answer(
        &set,
        &ToyText,
        decode,
        prompt,
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert_eq!(ev.format_version, 2);
    let p = ev.prompt.as_ref().unwrap();
    assert_eq!(p.prompt_hash, PromptMask::hash_prompt(prompt));
    assert_eq!(p.masked, vec![(0, 5)]);
    // Only contribution 2 (w20..w25) is credited; plain tracing also pays 1 and 3.
    let paid: Vec<u8> = ev.weights.iter().map(|w| w.contribution.0 .0[0]).collect();
    assert_eq!(paid, vec![2]);
    let plain = attribute_answer(
        &set,
        &ToyText,
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert_eq!(plain.format_version, 1);
    assert!(plain.prompt.is_none());
    assert!(plain.weights.len() > 1, "{:?}", plain.weights);
    // Re-running with the same prompt reproduces it; another prompt does not.
    let again = trib_attribution::attribute_masked_answer(
        &set,
        &ToyText,
        decode,
        prompt,
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert_eq!(again, ev);
    let edited = trib_attribution::attribute_masked_answer(
        &set,
        &ToyText,
        decode,
        "Tell me about w10 w11 w12 w13 w14!",
        &answer,
        &params,
        None,
        DEFAULT_TOKEN_SHARE_PPM,
    )
    .unwrap();
    assert_eq!(edited.weights, ev.weights, "same words masked");
    assert_ne!(
        edited.evidence_hash, ev.evidence_hash,
        "the hash covers the prompt"
    );
    // The hash covers the prompt commitment: editing it breaks the seal.
    let mut forged = ev.clone();
    forged.prompt.as_mut().unwrap().prompt_hash = Hash::of(b"another prompt");
    assert!(!forged.hash_is_valid());
    let mut forged = ev.clone();
    forged.prompt.as_mut().unwrap().masked.clear();
    assert!(!forged.hash_is_valid());
    // Dropping the prompt and claiming format 1 does not re-seal either.
    let mut forged = ev.clone();
    forged.prompt = None;
    forged.format_version = 1;
    assert!(!forged.hash_is_valid());
}
