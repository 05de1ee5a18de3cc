//! Domain demonstration: a LoRA trained on legal text (12 paragraphs of the
//! US Constitution) lowers SmolLM2's held-out loss on unseen Constitution
//! paragraphs, and not on computing text. Prints a Markdown table.
//!
//! ```text
//! cargo run --release -p trib-model --example factory_domain_demo
//! ```

use std::path::Path;
use std::sync::Arc;

use trib_model::factory::{eval_with, train, JobConfig, SourceRef, TrainOptions};
use trib_model::{load_peft, AdapterLimits, Model, WeightFormat};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixtures = root.join("crates/model/tests/fixtures/factory");
    let base = root.join("models").join(trib_model::SMOLLM2_FILE);
    anyhow::ensure!(
        base.is_file(),
        "{} is absent: run scripts/fetch-model.sh",
        base.display()
    );
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(fixtures.join("constitution.txt"))?;
    let paras: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let (train_paras, held) = paras.split_at(12);
    std::fs::write(dir.path().join("legal-train.txt"), train_paras.join("\n\n"))?;
    std::fs::write(dir.path().join("legal-heldout.txt"), held.join("\n\n"))?;
    let job = format!(
        r#"
[model]
base = "{base}"
[data]
sources = ["{src}"]
max_length = 128
validation_fraction = 0.0
[lora]
r = 8
alpha = 16
dropout = 0.05
target_modules = ["q_proj", "v_proj"]
[train]
learning_rate = 2e-3
schedule = "cosine"
epochs = 2
batch_size = 4
[gradient_cache]
enabled = false
[output]
dir = "{out}"
"#,
        base = base.display(),
        src = dir.path().join("legal-train.txt").display(),
        out = dir.path().join("run").display()
    );
    let job = JobConfig::from_toml_str(&job, Path::new(""))?;
    let model = Arc::new(Model::load(&base, WeightFormat::F32)?);
    let out = train(
        &job,
        TrainOptions {
            model: Some(model.clone()),
            ..TrainOptions::default()
        },
    )?;
    let adapter = load_peft(&out.adapter_dir, model.config(), &AdapterLimits::default())?;
    println!("| held-out set | examples | target tokens | base loss | adapter loss | Δ loss | base ppl | adapter ppl |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, path) in [
        (
            "legal (4 unseen Constitution paragraphs)",
            dir.path().join("legal-heldout.txt"),
        ),
        ("computing (4 paragraphs)", fixtures.join("computing.txt")),
    ] {
        let r = eval_with(&job, &model, &adapter, &[SourceRef::File { path }], None)?;
        println!(
            "| {name} | {} | {} | {:.4} | {:.4} | {:+.4} | {:.2} | {:.2} |",
            r.base.examples,
            r.base.tokens,
            r.base.loss,
            r.adapter.loss,
            r.loss_delta(),
            r.base.perplexity,
            r.adapter.perplexity
        );
    }
    Ok(())
}
