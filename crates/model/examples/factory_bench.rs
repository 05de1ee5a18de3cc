//! ModelFactory training benchmark: LoRA r = 8 on q, v over SmolLM2-135M,
//! one 128-token sequence per optimiser step, through the real training loop
//! (`trib_model::factory::train`). Prints mean step time, tokens/s and peak
//! memory (VmHWM). Set the thread count with RAYON_NUM_THREADS.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p trib-model --example factory_bench -- [steps] [auto|f32|bf16]
//! ```
//!
//! The second argument is `[train] precision` (default `auto`); the engine
//! column names the precision that ran (`F32`, `BF16 (amx-bf16)`, ...).
//!
//! The peer (PyTorch + PEFT, same GGUF weights, same LoRA config) is
//! `scripts/bench/peft_train.py`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use trib_model::factory::{train, JobConfig, ProgressEvent, TrainOptions};

fn vm_hwm_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU seconds of this process so far (all threads), from
/// /proc/self/stat (clock ticks, assumed 100 per second as on Linux x86-64).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let steps: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(6);
    let precision = std::env::args().nth(2).unwrap_or_else(|| "auto".into());
    anyhow::ensure!(
        ["auto", "f32", "bf16"].contains(&precision.as_str()),
        "precision must be auto, f32 or bf16, got {precision}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let base = root.join("models").join(trib_model::SMOLLM2_FILE);
    anyhow::ensure!(
        base.is_file(),
        "{} is absent: run scripts/fetch-model.sh",
        base.display()
    );
    let dir = tempfile::tempdir()?;
    // One document longer than 128 tokens, truncated to exactly 128.
    let text =
        std::fs::read_to_string(root.join("crates/model/tests/fixtures/factory/constitution.txt"))?
            .replace("\n\n", " ");
    let src: PathBuf = dir.path().join("doc.txt");
    std::fs::write(&src, text)?;
    let job = format!(
        r#"
[model]
base = "{base}"
[data]
sources = ["{src}"]
max_length = 128
add_eos = false
validation_fraction = 0.0
[lora]
r = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "v_proj"]
[train]
learning_rate = 1e-4
schedule = "constant"
epochs = {steps}
batch_size = 1
precision = "{precision}"
[gradient_cache]
enabled = false
[output]
dir = "{out}"
"#,
        base = base.display(),
        src = src.display(),
        out = dir.path().join("run").display()
    );
    let job = JobConfig::from_toml_str(&job, Path::new(""))?;
    let metrics = Arc::new(Mutex::new(Vec::new()));
    let sink = metrics.clone();
    let opts = TrainOptions {
        progress: Some(Arc::new(move |e: &ProgressEvent| {
            if let ProgressEvent::Step(m) = e {
                sink.lock().unwrap().push((m.clone(), cpu_seconds()));
            }
        })),
        ..TrainOptions::default()
    };
    let outcome = train(&job, opts)?;
    let with_cpu = metrics.lock().unwrap().clone();
    anyhow::ensure!(with_cpu.len() >= 2, "need at least 2 steps");
    let m: Vec<_> = with_cpu.iter().map(|x| x.0.clone()).collect();
    // CPU seconds per step (all threads): on a loaded machine this is the
    // load-independent measure; at one thread it approximates the wall time
    // a quiet machine would show.
    let cpu_per_step = (with_cpu.last().unwrap().1 - with_cpu[0].1) / (with_cpu.len() - 1) as f64;
    // The first step includes one-off allocations; report the rest.
    let rest = &m[1..];
    let secs: Vec<f64> = rest
        .iter()
        .map(|s| s.tokens as f64 / s.tokens_per_s)
        .collect();
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    let min = secs.iter().cloned().fold(f64::INFINITY, f64::min);
    let tokens = rest[0].tokens;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!("| engine | threads | tokens/step | s/step (mean) | s/step (min) | tokens/s | CPU s/step | peak RSS (VmHWM) |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| trib ModelFactory (candle, {}) | {threads} | {tokens} | {mean:.3} | {min:.3} | {:.0} | {cpu_per_step:.2} | {:.0} MiB |",
        outcome.summary.precision,
        tokens as f64 / mean,
        vm_hwm_mib().unwrap_or(f64::NAN)
    );
    println!(
        "losses: {:?}",
        m.iter()
            .map(|s| (s.loss * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    Ok(())
}
