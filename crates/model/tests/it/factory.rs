//! ModelFactory on a tiny random model in the real Hugging Face format:
//! job validation, label masks, training, checkpoints, cancellation, adapter
//! files, evaluation, export and the gradient cache.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use trib_model::factory::{
    encode_pair, eval_with, evaluate, example_gradient, export_merged, prepare_data, test_gradient,
    train, CancelFlag, DataFormat, DatanetResolver, DatanetRow, FactoryError, GradientCache,
    JobConfig, ProgressEvent, ResolvedDatanet, SourceRef, StepMetrics, TrainOptions, TrainOutcome,
};
use trib_model::{
    decode, load_peft, write_tiny_hf_dir, AdapterLimits, LoraAdapter, LoraTarget, Model, TinySpec,
    WeightFormat,
};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/factory")
        .join(name)
}

fn tiny_model(dir: &Path) -> PathBuf {
    let p = dir.join("hf");
    if !p.exists() {
        write_tiny_hf_dir(&p, &TinySpec::default(), 11).unwrap();
    }
    p
}

/// A job over the tiny model; `format` and `source` pick the data.
fn job(dir: &Path, format: &str, source: &Path, extra_train: &str) -> JobConfig {
    let text = format!(
        r#"
name = "tiny"
[model]
base = "{base}"
chat_template = "chatml"
[data]
sources = ["{src}"]
format = "{format}"
max_length = 160
validation_fraction = 0.2
[lora]
r = 4
alpha = 8
dropout = 0.1
target_modules = ["q", "k", "v", "o", "gate", "up", "down"]
[train]
learning_rate = 0.01
schedule = "cosine"
warmup_steps = 1
batch_size = 2
epochs = 2
seed = 5
{extra_train}
[gradient_cache]
projection_dim = 300
[output]
dir = "{out}"
[pricing]
input_per_1k = "0.001"
output_per_1k = "0.002"
"#,
        base = tiny_model(dir).display(),
        src = source.display(),
        out = dir.join("run").display(),
    );
    JobConfig::from_toml_str(&text, Path::new("")).unwrap()
}

fn load(dir: &Path) -> Model {
    Model::load(&tiny_model(dir), WeightFormat::F32).unwrap()
}

fn steps_of(events: &Mutex<Vec<ProgressEvent>>) -> Vec<StepMetrics> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Step(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn recorder() -> (Arc<Mutex<Vec<ProgressEvent>>>, TrainOptions) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let opts = TrainOptions {
        progress: Some(Arc::new(move |e: &ProgressEvent| {
            sink.lock().unwrap().push(e.clone())
        })),
        ..TrainOptions::default()
    };
    (events, opts)
}

#[test]
fn every_invalid_job_key_is_named_in_its_error() {
    let base = r#"
[model]
base = "m.gguf"
[data]
sources = ["a.txt"]
[output]
dir = "out"
"#;
    assert!(JobConfig::from_toml_str(base, Path::new("")).is_ok());
    let cases: &[(&str, &str, &str)] = &[
        (
            "[model]\nbase = \"m.gguf\"",
            "[model]\nbase = \"  \"",
            "model.base",
        ),
        ("sources = [\"a.txt\"]", "sources = []", "data.sources"),
        ("sources = [\"a.txt\"]", "sources = [\"a.csv\"]", "a.csv"),
        (
            "sources = [\"a.txt\"]",
            "sources = [\"bad name@3\"]",
            "datanet name",
        ),
        (
            "sources = [\"a.txt\"]",
            "sources = [\"legal@\"]",
            "datanet version",
        ),
        ("[data]", "[data]\ntext_field = \"\"", "data.text_field"),
        ("[data]", "[data]\nmax_length = 1", "data.max_length"),
        (
            "[data]",
            "[data]\nvalidation_fraction = 1.0",
            "data.validation_fraction",
        ),
        ("[output]", "[lora]\nr = 0\n[output]", "lora.r"),
        ("[output]", "[lora]\nalpha = 0\n[output]", "lora.alpha"),
        (
            "[output]",
            "[lora]\ndropout = 1.0\n[output]",
            "lora.dropout",
        ),
        (
            "[output]",
            "[lora]\ntarget_modules = []\n[output]",
            "lora.target_modules",
        ),
        (
            "[output]",
            "[lora]\ntarget_modules = [\"lm_head\"]\n[output]",
            "unknown module",
        ),
        (
            "[output]",
            "[lora]\ntarget_modules = [\"q\", \"q_proj\"]\n[output]",
            "listed twice",
        ),
        (
            "[output]",
            "[train]\nlearning_rate = 0\n[output]",
            "train.learning_rate",
        ),
        (
            "[output]",
            "[train]\nwarmup_ratio = 1.5\n[output]",
            "train.warmup_ratio",
        ),
        (
            "[output]",
            "[train]\nprecision = \"fp8\"\n[output]",
            "unknown variant `fp8`, expected one of `auto`, `f32`, `bf16`",
        ),
        (
            "[output]",
            "[train]\nwarmup_ratio = 0.1\nwarmup_steps = 3\n[output]",
            "not both",
        ),
        (
            "[output]",
            "[train]\nmin_lr_ratio = 2\n[output]",
            "train.min_lr_ratio",
        ),
        ("[output]", "[train]\nepochs = 0\n[output]", "train.epochs"),
        (
            "[output]",
            "[train]\nmax_steps = 0\n[output]",
            "train.max_steps",
        ),
        (
            "[output]",
            "[train]\nbatch_size = 0\n[output]",
            "train.batch_size",
        ),
        (
            "[output]",
            "[train]\ngradient_accumulation = 0\n[output]",
            "train.gradient_accumulation",
        ),
        (
            "[output]",
            "[train]\nweight_decay = -1\n[output]",
            "train.weight_decay",
        ),
        (
            "[output]",
            "[train]\nadam_beta1 = 1.0\n[output]",
            "train.adam_beta1",
        ),
        (
            "[output]",
            "[train]\nadam_beta2 = -0.1\n[output]",
            "train.adam_beta2",
        ),
        (
            "[output]",
            "[train]\nadam_eps = 0\n[output]",
            "train.adam_eps",
        ),
        (
            "[output]",
            "[train]\nmax_grad_norm = -1\n[output]",
            "train.max_grad_norm",
        ),
        (
            "[output]",
            "[checkpoint]\nkeep_last = 0\n[output]",
            "checkpoint.keep_last",
        ),
        (
            "[output]",
            "[checkpoint]\nresume_from = \"\"\n[output]",
            "checkpoint.resume_from",
        ),
        (
            "[output]",
            "[gradient_cache]\nprojection_dim = 0\n[output]",
            "gradient_cache.projection_dim",
        ),
        (
            "[output]",
            "[pricing]\ninput_per_1k = \"-1\"\n[output]",
            "not an OPEN amount",
        ),
        (
            "[output]",
            "[train]\nlearning_rat = 0.1\n[output]",
            "unknown field `learning_rat`",
        ),
        (
            "[output]",
            "[train]\nschedule = \"step\"\n[output]",
            "unknown variant `step`",
        ),
        (
            "[data]",
            "[data]\nformat = \"csv\"",
            "unknown variant `csv`",
        ),
        (
            "[output]\ndir = \"out\"",
            "[output]\ndir = \"\"",
            "output.dir",
        ),
    ];
    for (from, to, want) in cases {
        assert!(
            base.contains(from),
            "case {want}: {from:?} not in the base job"
        );
        let text = base.replacen(from, to, 1);
        let err = JobConfig::from_toml_str(&text, Path::new(""))
            .expect_err(want)
            .to_string();
        assert!(err.contains(want), "expected {want:?} in: {err}");
    }
}

#[test]
fn example_job_files_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            JobConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "expected the example jobs in {}", dir.display());
}

fn target_text(model: &Model, ex: &trib_model::factory::Example) -> String {
    let ids: Vec<u32> = ex
        .tokens
        .iter()
        .zip(&ex.targets)
        .filter(|(_, t)| **t)
        .map(|(i, _)| *i)
        .collect();
    decode(model.tokenizer(), &ids, false).unwrap()
}

#[test]
fn alpaca_rows_carry_loss_only_on_the_answer_and_its_end_of_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), "alpaca", &fixture("qa.alpaca.jsonl"), "");
    j.data.validation_fraction = 0.0;
    let model = load(dir.path());
    let data = prepare_data(&j, &model, None).unwrap();
    assert_eq!(data.train.len(), 8);
    let first = data.train.iter().find(|e| e.provenance.row == 0).unwrap();
    assert_eq!(target_text(&model, first), "Twenty five years.<|im_end|>\n");
    let all = decode(model.tokenizer(), &first.tokens, false).unwrap();
    assert_eq!(
        all,
        "<|im_start|>user\nHow old must a Representative be?<|im_end|>\n<|im_start|>assistant\nTwenty five years.<|im_end|>\n"
    );
    let with_input = data.train.iter().find(|e| e.provenance.row == 7).unwrap();
    assert!(decode(model.tokenizer(), &with_input.tokens, false)
        .unwrap()
        .contains("Summarise.\n\nAll legislative"));
    assert_eq!(
        target_text(&model, with_input),
        "Congress makes the laws.<|im_end|>\n"
    );
}

#[test]
fn chat_rows_carry_loss_only_on_assistant_turns() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), "messages", &fixture("chat.messages.jsonl"), "");
    j.data.validation_fraction = 0.0;
    j.data.max_length = 512;
    let model = load(dir.path());
    let data = prepare_data(&j, &model, None).unwrap();
    let first = data.train.iter().find(|e| e.provenance.row == 0).unwrap();
    assert_eq!(
        target_text(&model, first),
        "hello there<|im_end|>\nfour years<|im_end|>\n"
    );
    let sharegpt = data.train.iter().find(|e| e.provenance.row == 1).unwrap();
    assert_eq!(target_text(&model, sharegpt), "the Congress<|im_end|>\n");
}

#[test]
fn text_rows_carry_loss_on_every_token_but_the_first_and_keep_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "text", &fixture("constitution.txt"), "");
    let model = load(dir.path());
    let data = prepare_data(&j, &model, None).unwrap();
    assert_eq!(data.stats.rows, 16);
    assert_eq!(data.train.len() + data.validation.len(), 16);
    assert_eq!(data.validation.len(), 3);
    assert!(
        data.stats.truncated > 0,
        "max_length 160 cuts the long paragraphs"
    );
    for e in data.train.iter().chain(&data.validation) {
        assert!(e.tokens.len() <= 160);
        assert!(!e.targets[0]);
        assert!(e.targets[1..].iter().all(|t| *t));
        assert_eq!(
            e.provenance.source,
            fixture("constitution.txt").display().to_string()
        );
    }
    let src = &data.sources[0];
    assert_eq!(src.rows, 16);
    assert_eq!(
        src.content_hash,
        trib_types::Hash::of(&std::fs::read(fixture("constitution.txt")).unwrap())
    );
}

#[test]
fn a_datanet_source_without_a_resolver_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), "text", &fixture("constitution.txt"), "");
    j.data.sources = vec!["legal@3".into()];
    let model = load(dir.path());
    let err = prepare_data(&j, &model, None).unwrap_err();
    assert!(matches!(err, FactoryError::NoResolver { .. }), "{err}");
    assert!(err.to_string().contains("legal@3"));
}

#[test]
fn a_few_steps_lower_the_training_loss_and_the_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), "text", &fixture("constitution.txt"), "");
    j.train.epochs = 4;
    j.train.gradient_accumulation = 2;
    let (events, opts) = recorder();
    let out = train(&j, opts).unwrap();
    let steps = steps_of(&events);
    // 13 training examples, batches of 2 → 7 micro-batches → 4 steps per epoch.
    assert_eq!(steps.len(), 16);
    let first: f64 = steps[..4].iter().map(|m| m.loss).sum::<f64>() / 4.0;
    let last: f64 = steps[12..].iter().map(|m| m.loss).sum::<f64>() / 4.0;
    assert!(
        last < first * 0.9,
        "epoch-mean training loss {first} → {last}"
    );
    let s = &out.summary;
    let (before, after) = (s.eval_before.unwrap(), s.eval_after.unwrap());
    assert!(
        after.loss < before.loss,
        "validation loss {} → {}",
        before.loss,
        after.loss
    );
    assert!((before.perplexity - before.loss.exp()).abs() < 1e-9);
    // The metrics file has one line per step.
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 16);
    let m0: StepMetrics = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!((m0.step, m0.tokens), (steps[0].step, steps[0].tokens));
    assert!((m0.loss - steps[0].loss).abs() < 1e-9);
    assert!(m0.lr > 0.0 && m0.tokens > 0 && m0.tokens_per_s > 0.0);
    // The summary records what registration needs.
    assert_eq!(s.steps, 16);
    assert_eq!(s.base_model_hash, load(dir.path()).info().id.0);
    assert_eq!(s.config_hash, j.config_hash());
    assert_eq!(
        s.price_output_per_1k,
        trib_types::Amount::parse_open("0.002").unwrap()
    );
    let on_disk: trib_model::factory::TrainingSummary =
        serde_json::from_slice(&std::fs::read(&out.summary_path).unwrap()).unwrap();
    assert_eq!(&on_disk, s);
    assert_eq!(
        trib_model::adapter_content_hash(&out.adapter_dir).unwrap(),
        s.adapter_id
    );
}

/// `precision = "bf16"` runs the frozen products in bf16 (AMX tiles where
/// the CPU has them, the emulation elsewhere) and `"f32"` in f32: the same
/// job trains to nearly the same losses, validation (always f32) starts
/// from the same number, and the summary says which precision ran.
#[test]
fn bf16_and_f32_precision_train_to_nearly_the_same_losses_and_the_summary_says_which_ran() {
    let mut runs = Vec::new();
    for precision in ["f32", "bf16"] {
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("max_steps = 4\nprecision = \"{precision}\"");
        let mut j = job(dir.path(), "text", &fixture("constitution.txt"), &extra);
        j.gradient_cache.enabled = false;
        let (events, opts) = recorder();
        let out = train(&j, opts).unwrap();
        let losses: Vec<f64> = steps_of(&events).iter().map(|m| m.loss).collect();
        runs.push((losses, out.summary));
    }
    let ((f32_losses, f32_run), (bf16_losses, bf16_run)) = (&runs[0], &runs[1]);
    assert_eq!(f32_run.precision, "F32");
    assert!(
        bf16_run.precision.starts_with("BF16 (") && bf16_run.precision.contains("bf16"),
        "{}",
        bf16_run.precision
    );
    assert_eq!(f32_losses.len(), 4);
    assert_eq!(bf16_losses.len(), 4);
    for (a, b) in f32_losses.iter().zip(bf16_losses) {
        assert!(
            (a - b).abs() < 0.02 * a.abs().max(1.0),
            "f32 {f32_losses:?} vs bf16 {bf16_losses:?}"
        );
    }
    assert_ne!(f32_losses, bf16_losses, "bf16 products round differently");
    // Validation runs on the f32 model in both: the same start.
    assert_eq!(f32_run.eval_before, bf16_run.eval_before);
    assert!(
        bf16_losses[3] < bf16_losses[0],
        "bf16 training lowers the loss: {bf16_losses:?}"
    );
}

#[test]
fn every_lora_tensor_gets_a_finite_nonzero_gradient_and_the_adapter_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(
        dir.path(),
        "text",
        &fixture("constitution.txt"),
        "max_steps = 2",
    );
    j.gradient_cache.enabled = false;
    let out = train(&j, TrainOptions::default()).unwrap();
    let model = load(dir.path());
    let adapter = load_peft(&out.adapter_dir, model.config(), &AdapterLimits::default()).unwrap();
    // The loaded adapter reproduces the validation loss measured in training.
    let data = prepare_data(&j, &model, None).unwrap();
    let ev = evaluate(&model, Some(&adapter), &data.validation).unwrap();
    assert!((ev.loss - out.summary.eval_after.unwrap().loss).abs() < 1e-5);
    // Two steps made B non-zero, so A and B both receive gradient.
    let ex = &data.train[0];
    let (loss, layers) = example_gradient(&model, &adapter, &ex.tokens, &ex.targets).unwrap();
    assert!(loss.is_finite());
    let cfg = model.config();
    for (l, grads) in layers.iter().enumerate() {
        let mut off = 0;
        for t in LoraTarget::ALL {
            let (fan_in, fan_out) = t.dims(cfg);
            for (half, n) in [("A", 4 * fan_in), ("B", fan_out * 4)] {
                let g = &grads[off..off + n];
                off += n;
                assert!(
                    g.iter().all(|x| x.is_finite()),
                    "layer {l} {t} {half}: non-finite gradient"
                );
                assert!(
                    g.iter().any(|x| *x != 0.0),
                    "layer {l} {t} {half}: zero gradient"
                );
            }
        }
        assert_eq!(off, grads.len());
    }
}

#[test]
fn resuming_from_a_checkpoint_follows_the_uninterrupted_trajectory() {
    let straight = tempfile::tempdir().unwrap();
    let mut j = job(
        straight.path(),
        "text",
        &fixture("constitution.txt"),
        "max_steps = 6",
    );
    j.gradient_cache.enabled = false;
    let (events, opts) = recorder();
    train(&j, opts).unwrap();
    let reference = steps_of(&events);
    assert_eq!(reference.len(), 6);

    // Same job, checkpoint every 3 steps, cancelled right after step 3.
    let split = tempfile::tempdir().unwrap();
    let mut j2 = job(
        split.path(),
        "text",
        &fixture("constitution.txt"),
        "max_steps = 6",
    );
    j2.gradient_cache.enabled = false;
    j2.checkpoint.every_steps = 3;
    let cancel = CancelFlag::new();
    let events2 = Arc::new(Mutex::new(Vec::new()));
    let (sink, flag) = (events2.clone(), cancel.clone());
    let opts = TrainOptions {
        progress: Some(Arc::new(move |e: &ProgressEvent| {
            if matches!(e, ProgressEvent::Step(m) if m.step == 3) {
                flag.cancel();
            }
            sink.lock().unwrap().push(e.clone());
        })),
        cancel,
        ..TrainOptions::default()
    };
    let err = train(&j2, opts).unwrap_err();
    assert!(matches!(err, FactoryError::Cancelled { step: 3 }), "{err}");
    assert!(split
        .path()
        .join("run/checkpoints/step-00000003/state.json")
        .is_file());
    assert!(
        !split.path().join("run/adapter").exists(),
        "a cancelled job writes no adapter"
    );

    j2.checkpoint.resume_from = Some("latest".into());
    let (events3, opts) = recorder();
    let out = train(&j2, opts).unwrap();
    let resumed = steps_of(&events3);
    assert_eq!(
        resumed.iter().map(|m| m.step).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    for (a, b) in reference[3..].iter().zip(&resumed) {
        assert!(
            (a.loss - b.loss).abs() < 1e-4 * a.loss.abs().max(1.0),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        assert_eq!(a.lr, b.lr);
    }
    let eval_ref = events.lock().unwrap().iter().rev().find_map(|e| match e {
        ProgressEvent::Evaluated { loss, .. } => Some(*loss),
        _ => None,
    });
    let eval_after = out.summary.eval_after.map(|e| e.loss);
    assert!((eval_ref.unwrap() - eval_after.unwrap()).abs() < 1e-4);
    assert!(
        out.summary.eval_before.is_some(),
        "the before-training evaluation survives the resume"
    );
    // metrics.jsonl continues across the two runs.
    let metrics = std::fs::read_to_string(split.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 6);
}

#[test]
fn a_checkpoint_from_another_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(
        dir.path(),
        "text",
        &fixture("constitution.txt"),
        "max_steps = 2",
    );
    j.gradient_cache.enabled = false;
    j.checkpoint.every_steps = 1;
    train(&j, TrainOptions::default()).unwrap();
    j.train.learning_rate = 0.5;
    j.checkpoint.resume_from = Some("latest".into());
    let err = train(&j, TrainOptions::default()).unwrap_err();
    assert!(err.to_string().contains("different job"), "{err}");
}

#[test]
fn cancelling_before_the_first_step_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "text", &fixture("constitution.txt"), "");
    let cancel = CancelFlag::new();
    cancel.cancel();
    let err = train(
        &j,
        TrainOptions {
            cancel,
            ..TrainOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, FactoryError::Cancelled { step: 0 }), "{err}");
    assert!(!dir.path().join("run/adapter").exists());
    assert!(!dir.path().join("run/training_summary.json").exists());
}

/// The Q&A fixture trained for `steps` (no validation split) on a tiny model
/// in `dir`: the outcome, its gradient cache, the base model, the adapter,
/// and the cache row of the pair ("How many Senators per State?", "Two.").
fn trained_qa(dir: &Path, steps: &str) -> (TrainOutcome, GradientCache, Model, LoraAdapter, usize) {
    let mut j = job(dir, "alpaca", &fixture("qa.alpaca.jsonl"), steps);
    j.data.validation_fraction = 0.0;
    let out = train(&j, TrainOptions::default()).unwrap();
    let cache = GradientCache::load(out.summary.gradient_cache.as_ref().unwrap()).unwrap();
    let model = load(dir);
    let adapter = load_peft(&out.adapter_dir, model.config(), &AdapterLimits::default()).unwrap();
    let row = cache
        .index
        .examples
        .iter()
        .position(|e| e.provenance.row == 2)
        .unwrap();
    (out, cache, model, adapter, row)
}

/// Each layer of `grads` equals the cache's row `row` within 1e-4 of the
/// row's largest entry (which must be non-zero).
fn assert_cached_row(cache: &GradientCache, row: usize, grads: &[Vec<f32>]) {
    for (l, t) in cache.layers.iter().enumerate() {
        let cached: Vec<f32> = t.get(row).unwrap().to_vec1().unwrap();
        let scale = cached.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let diff = cached
            .iter()
            .zip(&grads[l])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            scale > 0.0 && diff <= 1e-4 * scale,
            "layer {l}: max diff {diff} (scale {scale})"
        );
    }
}

#[test]
fn gradient_cache_rows_match_the_test_gradient_of_the_same_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (_out, cache, model, adapter, row) = trained_qa(dir.path(), "max_steps = 3");
    let idx = &cache.index;
    assert_eq!(idx.examples.len(), 8);
    assert_eq!(idx.layers.len(), 2);
    assert_eq!(idx.data_format, DataFormat::Alpaca);
    // Tiny model, r = 4, all seven modules: d_l = 4·Σ(in + out) per layer.
    let cfg = model.config();
    let d: usize = LoraTarget::ALL
        .iter()
        .map(|t| t.dims(cfg))
        .map(|(i, o)| 4 * (i + o))
        .sum();
    for (e, t) in idx.layers.iter().zip(&cache.layers) {
        assert_eq!(e.dim, d);
        assert!(e.projected);
        assert_eq!(e.stored_dim, 300);
        assert_eq!(t.dims(), [8, 300]);
    }
    // The cached row of "How many Senators per State?" equals the test
    // gradient of the same (prompt, answer) pair: same formatting, same
    // projection.
    let g = test_gradient(
        &model,
        &adapter,
        &cache,
        "How many Senators per State?",
        "Two.",
    )
    .unwrap();
    let (tokens, _) = encode_pair(&model, idx, "How many Senators per State?", "Two.").unwrap();
    assert!(tokens.len() > 10);
    assert_cached_row(&cache, row, &g);
    assert_eq!(
        idx.examples[row].provenance.row_hash,
        trib_types::RowHash(trib_types::Hash::of(
            br#"{"instruction": "How many Senators per State?", "input": "", "output": "Two."}"#
        ))
    );
}

#[test]
fn the_answer_gradient_of_a_training_pair_is_its_cached_row_and_new_tokens_drop_the_prompts() {
    use trib_model::factory::{answer_gradient, AnswerTokens};
    let dir = tempfile::tempdir().unwrap();
    let (_out, cache, model, adapter, row) = trained_qa(dir.path(), "max_steps = 2");
    let (q, a) = ("How many Senators per State?", "Two.");
    // Every answer token, not normalised: the cached row itself (same
    // formatting, same loss mask, same CountSketch).
    let all = answer_gradient(&model, &adapter, &cache, q, a, AnswerTokens::All, false)
        .unwrap()
        .unwrap();
    assert_eq!(
        all.target_tokens as u64,
        cache.index.examples[row].target_tokens
    );
    assert!((all.loss - cache.index.examples[row].loss).abs() < 1e-4);
    assert_cached_row(&cache, row, &all.layers);
    // A question that repeats the answer's words leaves fewer targets, and
    // the gradient changes with them; unit length per layer.
    let asked = "Two Senators? How many Senators per State?";
    let new = answer_gradient(
        &model,
        &adapter,
        &cache,
        asked,
        a,
        AnswerTokens::NewInAnswer,
        true,
    )
    .unwrap()
    .unwrap();
    assert!(new.target_tokens < all.target_tokens);
    for l in &new.layers {
        let n: f64 = l.iter().map(|&v| v as f64 * v as f64).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
}

#[test]
fn eval_compares_base_and_adapter_and_export_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), "alpaca", &fixture("qa.alpaca.jsonl"), "");
    j.train.epochs = 6;
    j.gradient_cache.enabled = false;
    let out = train(&j, TrainOptions::default()).unwrap();
    let model = load(dir.path());
    let adapter = load_peft(&out.adapter_dir, model.config(), &AdapterLimits::default()).unwrap();
    let heldout = [SourceRef::File {
        path: fixture("qa.alpaca.jsonl"),
    }];
    let report = eval_with(&j, &model, &adapter, &heldout, None).unwrap();
    assert!(
        report.loss_delta() < 0.0,
        "trained on these rows, the adapter must fit them better: {report:?}"
    );
    // Export: the merged model without an adapter gives the adapter's loss.
    let merged_dir = dir.path().join("merged");
    export_merged(&tiny_model(dir.path()), &out.adapter_dir, &merged_dir).unwrap();
    let merged = Model::load(&merged_dir, WeightFormat::F32).unwrap();
    let data = prepare_data(&j, &merged, None).unwrap();
    let all: Vec<_> = data.train.iter().chain(&data.validation).cloned().collect();
    let m = evaluate(&merged, None, &all).unwrap();
    assert!(
        (m.loss - report.adapter.loss).abs() < 1e-3,
        "merged {} vs adapter {}",
        m.loss,
        report.adapter.loss
    );
}

/// A datanet with two contributors, and a permissioned one this job may not read.
struct TestResolver;

impl DatanetResolver for TestResolver {
    fn resolve(&self, name: &str, version: &str) -> Result<ResolvedDatanet, String> {
        match (name, version) {
            ("legal", "1") => {
                let alice = trib_types::SecretKey::from_seed([1; 32]).address();
                let bob = trib_types::SecretKey::from_seed([2; 32]).address();
                let text = std::fs::read_to_string(fixture("qa.alpaca.jsonl")).unwrap();
                let rows = text
                    .lines()
                    .enumerate()
                    .map(|(i, l)| DatanetRow {
                        content: l.to_string(),
                        row_hash: trib_types::RowHash(trib_types::Hash::of(l.as_bytes())),
                        contribution: Some(trib_types::ContributionId(trib_types::Hash::of(&[i
                            as u8
                            % 2]))),
                        contributor: Some(if i % 2 == 0 { alice } else { bob }),
                    })
                    .collect();
                Ok(ResolvedDatanet {
                    version_root: trib_types::Hash::of(b"legal v1"),
                    rows,
                })
            }
            ("secret", _) => Err("permissioned datanet: the job owner has no access".into()),
            _ => Err(format!("unknown datanet {name}@{version}")),
        }
    }
}

#[test]
fn datanet_rows_keep_their_contributors_through_training_into_the_gradient_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(
        dir.path(),
        "alpaca",
        &fixture("qa.alpaca.jsonl"),
        "max_steps = 2",
    );
    j.data.sources = vec!["legal@1".into()];
    j.data.validation_fraction = 0.25;
    let opts = TrainOptions {
        resolver: Some(Arc::new(TestResolver)),
        ..TrainOptions::default()
    };
    let out = train(&j, opts).unwrap();
    assert_eq!(out.summary.sources[0].source, "legal@1");
    assert_eq!(
        out.summary.sources[0].content_hash,
        trib_types::Hash::of(b"legal v1")
    );
    assert_eq!(out.summary.train_examples, 6);
    let cache = GradientCache::load(out.summary.gradient_cache.as_ref().unwrap()).unwrap();
    let alice = trib_types::SecretKey::from_seed([1; 32]).address();
    for e in &cache.index.examples {
        let p = &e.provenance;
        assert_eq!(p.source, "legal@1");
        assert_eq!(
            p.contributor.unwrap() == alice,
            p.row % 2 == 0,
            "row {}",
            p.row
        );
        assert!(p.contribution.is_some());
        assert!(e.loss.is_finite() && e.target_tokens > 0);
    }
}

#[test]
fn a_permissioned_datanet_without_access_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), "alpaca", &fixture("qa.alpaca.jsonl"), "");
    j.data.sources = vec!["secret@4".into()];
    let opts = TrainOptions {
        resolver: Some(Arc::new(TestResolver)),
        ..TrainOptions::default()
    };
    let err = train(&j, opts).unwrap_err();
    assert!(matches!(err, FactoryError::Resolve { .. }), "{err}");
    assert!(
        err.to_string().contains("secret@4") && err.to_string().contains("no access"),
        "{err}"
    );
    assert!(
        !dir.path().join("run").exists(),
        "nothing is written for a refused job"
    );
}

#[test]
fn summary_floats_read_back_exactly_from_json() {
    // 19.609716570294374 parsed back as …378 with serde_json's default
    // parser (a CI flake of the summary-on-disk check); the workspace turns
    // on `float_roundtrip`.
    for x in [
        19.609716570294374f64,
        19.609716570294378,
        0.1,
        1e-300,
        6.789175790313225,
    ] {
        let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x}");
    }
}
