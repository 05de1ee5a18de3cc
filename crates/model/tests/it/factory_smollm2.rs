//! ModelFactory on the real demo model, SmolLM2-135M-Instruct: a LoRA (r = 8
//! on q, v) trained for a few steps on one paragraph of the US Constitution
//! lowers its loss every step. Skipped, with a message, when the model file
//! is absent (scripts/fetch-model.sh fetches it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use trib_model::factory::{GradientCache, JobConfig, ProgressEvent, TrainOptions};
use trib_model::SMOLLM2_FILE;

use super::factory::fixture;

fn model_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(SMOLLM2_FILE);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; run scripts/fetch-model.sh to run the SmolLM2 training test",
            p.display()
        );
        None
    }
}

#[test]
fn smollm2_lora_training_lowers_the_loss_on_the_constitution() {
    let Some(base) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("constitution.txt")).unwrap();
    let first_paragraph = text.split("\n\n").next().unwrap();
    let src = dir.path().join("preamble.txt");
    std::fs::write(&src, first_paragraph).unwrap();
    let job = format!(
        r#"
[model]
base = "{base}"
[data]
sources = ["{src}"]
max_length = 64
validation_fraction = 0.0
[lora]
r = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "v_proj"]
[train]
learning_rate = 1e-3
schedule = "constant"
epochs = 4
batch_size = 1
[gradient_cache]
projection_dim = 1024
[output]
dir = "{out}"
"#,
        base = base.display(),
        src = src.display(),
        out = dir.path().join("run").display()
    );
    let job = JobConfig::from_toml_str(&job, Path::new("")).unwrap();
    let losses = Arc::new(Mutex::new(Vec::new()));
    let sink = losses.clone();
    let opts = TrainOptions {
        progress: Some(Arc::new(move |e: &ProgressEvent| {
            if let ProgressEvent::Step(m) = e {
                sink.lock().unwrap().push(m.loss);
            }
        })),
        ..TrainOptions::default()
    };
    let out = trib_model::factory::train(&job, opts).unwrap();
    let losses = losses.lock().unwrap().clone();
    eprintln!("SmolLM2 LoRA losses per step: {losses:?}");
    assert_eq!(losses.len(), 4);
    for w in losses.windows(2) {
        assert!(w[1] < w[0], "loss did not decrease: {losses:?}");
    }
    assert!(
        losses[0] > 0.5 && losses[0] < 6.0,
        "a pretrained model knows English: {losses:?}"
    );
    // The gradient cache covers the one example: 30 layers of q and v, each
    // r·(576 + 576) + r·(576 + 192) = 15,360 coordinates, sketched to 1,024.
    let cache = GradientCache::load(out.summary.gradient_cache.as_ref().unwrap()).unwrap();
    assert_eq!(cache.layers.len(), 30);
    assert_eq!(cache.index.layers[0].dim, 8 * (576 + 576) + 8 * (576 + 192));
    assert_eq!(cache.layers[0].dims(), [1, 1024]);
}
