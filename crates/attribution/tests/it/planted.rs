//! The planted-recall harness of `examples/planted_recall` end to end on a
//! tiny random model (ModelFactory training, gradient cache, generation,
//! token index, span tracing, every gradient method and the combined rule),
//! so the experiment cannot rot between SmolLM2 runs. The tiny model learns
//! nothing, so the attributed answers are the planted reference answers.

#[path = "../../examples/planted_recall/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::{synthesise, Settings};
use trib_model::{write_tiny_hf_dir, TinySpec};

const FILLER: &str = "We the People of the United States, in Order to form a more perfect Union, establish Justice.\n\n\
All legislative Powers herein granted shall be vested in a Congress of the United States.\n\n\
The Senate of the United States shall be composed of two Senators from each State.";

fn tiny_settings() -> Settings {
    Settings {
        contributors: 3,
        filler_rows: 3,
        epochs: 1,
        batch_size: 4,
        learning_rate: 1e-2,
        lora_r: 4,
        lora_alpha: 8.0,
        targets: vec!["q".into(), "v".into(), "down".into()],
        projection_dim: 64,
        max_new_tokens: 6,
        max_length: 96,
        seed: 3,
        attribute_reference: true,
        reuse_adapter: false,
    }
}

#[test]
fn every_island_has_two_rows_two_questions_and_words_no_other_island_uses() {
    let s = Settings {
        contributors: 20,
        ..tiny_settings()
    };
    let d = synthesise(&s, FILLER);
    assert_eq!(d.rows.len(), 2 * 20 + 3);
    assert_eq!(d.questions.len(), 40);
    assert_eq!(d.contributions.len(), 22);
    for q in &d.questions {
        let own: Vec<_> = d
            .rows
            .iter()
            .filter(|r| r.output.contains(&q.expect))
            .collect();
        assert_eq!(own.len(), 1, "{} is planted once", q.expect);
        assert!(
            own.iter().all(|r| r.contribution == q.contribution),
            "{} appears only in its own contribution",
            q.expect
        );
        assert!(d.rows.iter().any(|r| r.output == q.reference));
    }
    // Deterministic from the seed.
    let again = synthesise(&s, FILLER);
    assert_eq!(again.rows[5].output, d.rows[5].output);
}

#[test]
fn the_planted_recall_harness_runs_end_to_end_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    write_tiny_hf_dir(&base, &TinySpec::default(), 11).unwrap();
    let s = tiny_settings();
    let work = dir.path().join("work");
    let r = harness::run(&base, FILLER, &s, &work).unwrap();
    assert_eq!(r.rows, 9);
    assert_eq!(r.contributions, 5);
    assert_eq!(r.answers.len(), 6);
    assert!(r.steps >= 1);
    assert!(r.adapter_correct <= 6 && r.base_correct <= 6);
    // 3 span rows (plain; question words masked with spans of at least 4
    // and 2 tokens), each with its base-model control, then 2 test-token
    // choices × 3 normalisations × 3 methods × (alone, combined with the
    // plain spans, combined with the masked 2-token spans).
    assert_eq!(r.methods.len(), 6 + 2 * 3 * 3 * 3);
    assert_eq!(
        r.methods[2].method,
        "token spans, question words masked (spans ≥ 4 tokens)"
    );
    for m in &r.methods {
        assert_eq!(m.all.questions, 6, "{}", m.method);
        assert!((0.0..=1.0).contains(&m.all.at1) && m.all.at1 <= m.all.at5);
        // Reference answers state their own island's fact: nothing is borrowed.
        assert_eq!(m.borrowed.questions, 0, "{}", m.method);
    }
    // The reference answers are rows of their own contribution, verbatim:
    // span tracing must credit the planted contribution first every time,
    // and the combined rule (70% spans) must keep it first.
    let spans = &r.methods[0];
    assert_eq!(spans.method, "token spans (OLMoTrace)");
    assert_eq!((spans.all.at1, spans.all.at5), (1.0, 1.0));
    for m in r
        .methods
        .iter()
        .filter(|m| m.method.starts_with("combined: 70% spans"))
    {
        assert_eq!(m.all.at1, 1.0, "{}", m.method);
    }
    // Every gradient variant is also combined with the masked spans.
    let masked_combined = r
        .methods
        .iter()
        .filter(|m| m.method.starts_with("combined: 70% masked spans"))
        .count();
    assert_eq!(masked_combined, 2 * 3 * 3);
    // The report serialises (the example writes it as JSON).
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["answers"].as_array().unwrap().len(), 6);
    assert!(harness::table(&r).contains("| token spans (OLMoTrace) | 1.000 | 1.000 |"));

    // Re-scoring the same run (`--reuse`) trains nothing and reproduces
    // every method's recall; other settings are refused.
    let again = harness::run(
        &base,
        FILLER,
        &Settings {
            reuse_adapter: true,
            ..tiny_settings()
        },
        &work,
    )
    .unwrap();
    assert_eq!(again.steps, r.steps);
    for (a, b) in again.methods.iter().zip(&r.methods) {
        assert_eq!(
            (&a.method, a.all.at1, a.all.at5),
            (&b.method, b.all.at1, b.all.at5)
        );
    }
    let other = Settings {
        reuse_adapter: true,
        epochs: 2,
        ..tiny_settings()
    };
    let err = harness::run(&base, FILLER, &other, &work).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
}
