//! Planted recall on a real LoRA adapter trained on SmolLM2-135M: which
//! attribution method finds the one contribution an answer depends on?
//! See `harness.rs` for the procedure and `docs/attribution.md` for results.
//!
//! ```text
//! cargo run --release -p trib-attribution --example planted_recall [-- --contributors 24 --epochs 8]
//! ```
//!
//! `--reuse` re-scores the adapter an earlier run with the same settings left
//! in `target/attribution/planted-run` instead of training again.
//!
//! Prints a Markdown table and writes `planted_recall.json` (and the work
//! directory `planted-run/`) under `--out DIR`, by default
//! `target/attribution/`.

mod harness;

use std::path::{Path, PathBuf};

use anyhow::Context;
use harness::Settings;

/// Settings, and the output directory when `--out` names one.
fn parse_args() -> anyhow::Result<(Settings, Option<PathBuf>)> {
    let mut s = Settings::default();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--contributors" => s.contributors = value()?.parse()?,
            "--filler" => s.filler_rows = value()?.parse()?,
            "--epochs" => s.epochs = value()?.parse()?,
            "--lr" => s.learning_rate = value()?.parse()?,
            "--rank" => s.lora_r = value()?.parse()?,
            "--seed" => s.seed = value()?.parse()?,
            "--reuse" => s.reuse_adapter = true,
            "--out" => out = Some(PathBuf::from(value()?)),
            other => anyhow::bail!(
                "unknown argument {other}; known: --contributors N --filler N --epochs N --lr X --rank N --seed N --reuse --out DIR"
            ),
        }
    }
    Ok((s, out))
}

fn main() -> anyhow::Result<()> {
    let (settings, out) = parse_args()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let base = trib_model::locate_smollm2(&root.join("models"))
        .context("the SmolLM2 model is needed: run scripts/fetch-model.sh")?;
    let filler =
        std::fs::read_to_string(root.join("crates/model/tests/fixtures/factory/constitution.txt"))?;
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = out.unwrap_or_else(|| target.join("attribution"));
    std::fs::create_dir_all(&out)?;
    // The job config names its paths absolutely.
    let out = out.canonicalize()?;
    let work = out.join("planted-run");
    if work.exists() && !settings.reuse_adapter {
        std::fs::remove_dir_all(&work)?;
    }
    let started = std::time::Instant::now();
    let cpu0 = harness::cpu_seconds();
    let report = harness::run(&base, &filler, &settings, &work)?;
    println!("{}", harness::table(&report));
    println!(
        "total: {:.0} s wall, {:.0} CPU s, {} rayon threads",
        started.elapsed().as_secs_f64(),
        harness::cpu_seconds() - cpu0,
        report.threads
    );
    for p in &report.phases {
        println!("  {}: {:.1} s wall, {:.1} CPU s", p.name, p.wall_s, p.cpu_s);
    }
    let path = out.join("planted_recall.json");
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("report: {}", path.display());
    Ok(())
}
