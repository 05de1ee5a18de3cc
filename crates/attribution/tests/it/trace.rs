use trib_attribution::{PromptMask, SpanTracer, TraceParams};
use trib_types::{ContributionId, Hash};

use crate::{set_of, ToyText};

fn params(min: usize, density: f64) -> TraceParams {
    TraceParams {
        min_span_tokens: min,
        span_density: density,
        ..TraceParams::default()
    }
}

fn spans_of(docs: &[Vec<u32>], answer: &[u32], p: TraceParams) -> Vec<(usize, usize)> {
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), docs, &vec![1; docs.len()]);
    let t = SpanTracer::new(&set, &ToyText, p)
        .unwrap()
        .trace(answer)
        .unwrap();
    t.spans.iter().map(|s| (s.start, s.end)).collect()
}

#[test]
fn spans_are_cut_after_a_delimiter() {
    let doc = vec![10, 11, 0, 12, 13, 14, 15];
    assert_eq!(
        spans_of(std::slice::from_ref(&doc), &doc, params(2, 1.0)),
        vec![(0, 3), (3, 7)]
    );
}

#[test]
fn spans_back_off_to_a_word_boundary() {
    // The corpus continues the word differently (1002 vs 1003): the match
    // [10, 1001, 20] would end inside the word "20+1003".
    let spans = spans_of(
        &[vec![10, 1001, 20, 1002]],
        &[10, 1001, 20, 1003],
        params(2, 1.0),
    );
    assert_eq!(spans, vec![(0, 2)]);
}

#[test]
fn only_maximal_spans_are_kept() {
    let spans = spans_of(
        &[vec![10, 11, 12, 13], vec![11, 12, 13]],
        &[10, 11, 12, 13],
        params(2, 1.0),
    );
    assert_eq!(spans, vec![(0, 4)]);
}

#[test]
fn short_spans_and_boilerplate_earn_nothing() {
    let boiler: Vec<Vec<u32>> = (0..20).map(|i| vec![50, 51, 52, 53, 100 + i]).collect();
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), &boiler, &[1; 20]);
    let t = SpanTracer::new(&set, &ToyText, params(2, 1.0))
        .unwrap()
        .trace(&[50, 51, 52, 53, 7])
        .unwrap();
    assert!(
        t.spans.is_empty(),
        "a span seen 20 times is above max_span_count = 16"
    );
    assert!(t.weights.is_empty());
    // A rare continuation makes a span that does count.
    let t = SpanTracer::new(&set, &ToyText, params(2, 1.0))
        .unwrap()
        .trace(&[50, 51, 52, 53, 105])
        .unwrap();
    assert_eq!(
        t.spans
            .iter()
            .map(|s| (s.start, s.end, s.count))
            .collect::<Vec<_>>(),
        vec![(0, 5, 1)]
    );
    // Too short for min_span_tokens = 6.
    assert!(spans_of(&boiler[..1], &[50, 51, 52, 53, 100], params(6, 1.0)).is_empty());
}

#[test]
fn the_rarest_spans_are_kept_when_density_limits_them() {
    // Common tokens 20..24 appear in many documents; 30..34 once.
    let mut docs: Vec<Vec<u32>> = (0..10).map(|i| vec![20, 21, 22, 23, 200 + i]).collect();
    docs.push(vec![20, 21, 22, 23]);
    docs.push(vec![30, 31, 32, 33]);
    // answer: [20 21 22 23] . [30 31 32 33] → two spans; density gives K = ceil(0.1 * 10) = 1.
    let answer = [20, 21, 22, 23, 0, 30, 31, 32, 33, 0];
    let spans = spans_of(&docs, &answer, params(3, 0.1));
    assert_eq!(spans, vec![(5, 9)]);
}

#[test]
fn the_first_contributor_of_a_copied_row_keeps_the_credit() {
    // Row 0 (contribution 1, first) and a verbatim copy and a near copy
    // (one token changed) by contribution 2; a different row by contribution 3
    // also holds the span.
    let original: Vec<u32> = (40..70).collect();
    let mut near = original.clone();
    near[29] = 999;
    let other = vec![5, 6, 50, 51, 52, 53, 54, 7, 8, 9];
    let docs = vec![original.clone(), original.clone(), near, other];
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), &docs, &[1, 2, 2, 3]);
    let t = SpanTracer::new(&set, &ToyText, params(3, 1.0))
        .unwrap()
        .trace(&[50, 51, 52, 53, 54])
        .unwrap();
    assert_eq!(t.spans.len(), 1);
    assert_eq!(t.spans[0].rows.len(), 4);
    let w: Vec<(ContributionId, u64)> = t
        .weights
        .iter()
        .map(|w| (w.contribution, w.weight))
        .collect();
    assert_eq!(w.len(), 2, "contribution 2 earns nothing: {w:?}");
    assert_eq!(w[0].0, ContributionId(Hash([1; 32])));
    assert_eq!(w[1].0, ContributionId(Hash([3; 32])));
    assert_eq!(
        w[0].1, w[1].1,
        "two distinct owner groups share the span equally"
    );
}

#[test]
fn overlapping_spans_merge_into_one_highlight() {
    let docs = vec![vec![10, 11, 12, 13], vec![12, 13, 14, 15]];
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), &docs, &[1, 2]);
    let t = SpanTracer::new(&set, &ToyText, params(3, 1.0))
        .unwrap()
        .trace(&[10, 11, 12, 13, 14, 15])
        .unwrap();
    assert_eq!(
        t.spans.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
        vec![(0, 4), (2, 6)]
    );
    assert_eq!(t.highlights, vec![(0, 6)]);
}

#[test]
fn invalid_thresholds_are_refused() {
    let set = trib_attribution::IndexSet::empty();
    assert!(SpanTracer::new(&set, &ToyText, params(0, 0.05)).is_err());
    assert!(SpanTracer::new(&set, &ToyText, params(3, 0.0)).is_err());
    let t = SpanTracer::new(&set, &ToyText, params(3, 0.05))
        .unwrap()
        .trace(&[1, 2, 3])
        .unwrap();
    assert!(t.spans.is_empty());
}

/// A decoder for [`ToyText`] ids: word starts are `" w{id}"`, other ids `"x"`.
fn toy_decode(ids: &[u32]) -> Result<String, std::convert::Infallible> {
    Ok(ids
        .iter()
        .map(|&i| {
            if i < 1000 {
                format!(" w{i}")
            } else {
                "x".into()
            }
        })
        .collect())
}

#[test]
fn an_answer_repeating_the_questions_words_gets_no_credit_for_them() {
    // Contribution 1's row names the island (w50 w51) the question asks
    // about; contribution 2's row holds the fact the answer adds (w70..w72).
    let docs = vec![vec![50, 51, 60, 61], vec![70, 71, 72, 73]];
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), &docs, &[1, 2]);
    let tracer = SpanTracer::new(&set, &ToyText, params(2, 1.0)).unwrap();
    let question = "What does W50 w51 export?";
    let answer = [50, 51, 70, 71, 72, 0];
    let credited = |t: &trib_attribution::Trace| -> Vec<u8> {
        t.weights.iter().map(|w| w.contribution.0 .0[0]).collect()
    };
    // Plain tracing credits the island's name, copied from the question.
    let plain = tracer.trace(&answer).unwrap();
    assert_eq!(credited(&plain), vec![1, 2]);
    // Masked: only what the answer adds earns.
    let mask = PromptMask::new(question, &answer, &ToyText, toy_decode).unwrap();
    assert_eq!(mask.ranges(), vec![(0, 2)]);
    let masked = tracer.trace_masked(&answer, &mask).unwrap();
    assert_eq!(
        masked
            .spans
            .iter()
            .map(|s| (s.start, s.end))
            .collect::<Vec<_>>(),
        vec![(2, 5)]
    );
    assert_eq!(credited(&masked), vec![2]);
    // An answer made only of the question's words earns nothing at all.
    let echo = [50, 51, 0];
    assert_eq!(credited(&tracer.trace(&echo).unwrap()), vec![1]);
    let mask = PromptMask::new(question, &echo, &ToyText, toy_decode).unwrap();
    let t = tracer.trace_masked(&echo, &mask).unwrap();
    assert!(t.spans.is_empty() && t.weights.is_empty(), "{t:?}");
    // A mask made for another answer is refused, naming the lengths.
    let err = tracer.trace_masked(&answer, &mask).unwrap_err();
    assert!(err.to_string().contains("covers 3 tokens"), "{err}");
}

#[test]
fn a_masked_word_cuts_a_span_that_would_run_over_it() {
    // The row holds w20 w21 w22 w23 w24; the prompt holds w22. The span
    // stops before w22 and a new one starts after it, both at least 2 tokens.
    let docs = vec![vec![20, 21, 22, 23, 24]];
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), &docs, &[1]);
    let tracer = SpanTracer::new(&set, &ToyText, params(2, 1.0)).unwrap();
    let answer = [20, 21, 22, 23, 24];
    let mask = PromptMask::new("w22", &answer, &ToyText, toy_decode).unwrap();
    let t = tracer.trace_masked(&answer, &mask).unwrap();
    assert_eq!(
        t.spans.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
        vec![(0, 2), (3, 5)]
    );
    // At the default 4-token minimum nothing is left.
    let strict = SpanTracer::new(&set, &ToyText, params(4, 1.0)).unwrap();
    assert!(strict
        .trace_masked(&answer, &mask)
        .unwrap()
        .spans
        .is_empty());
}

/// [`ToyText`] where ids 500..1000 are digits and punctuation (no letter).
struct DigitText;

impl trib_attribution::TokenText for DigitText {
    fn is_word_start(&self, token: u32) -> bool {
        ToyText.is_word_start(token)
    }
    fn is_delimiter(&self, token: u32) -> bool {
        ToyText.is_delimiter(token)
    }
    fn has_letter(&self, token: u32) -> bool {
        !(500..1000).contains(&token)
    }
}

#[test]
fn a_span_without_a_letter_earns_nothing_when_letters_are_required() {
    use trib_attribution::TokenText;
    // The row holds "w20 501 502" ("Section 1 2") and "w30 w31".
    let docs = vec![vec![20, 501, 502, 40], vec![30, 31, 41]];
    let dir = tempfile::tempdir().unwrap();
    let set = set_of(dir.path(), &docs, &[1, 2]);
    let answer = [501, 502, 7, 30, 31];
    let spans = |require_letter| {
        let p = TraceParams {
            require_letter,
            ..params(2, 1.0)
        };
        SpanTracer::new(&set, &DigitText, p)
            .unwrap()
            .trace(&answer)
            .unwrap()
            .spans
            .iter()
            .map(|s| (s.start, s.end))
            .collect::<Vec<_>>()
    };
    assert_eq!(spans(false), vec![(0, 2), (3, 5)]);
    assert_eq!(spans(true), vec![(3, 5)], "the digits-only span is dropped");
    assert!(DigitText.has_letter(30) && !DigitText.has_letter(501));
}
