//! Checkpoints: everything needed to continue a job exactly where it stopped.
//!
//! Layout (one directory per checkpoint, written under a temporary name and
//! renamed into place, so a crash never leaves a half checkpoint behind):
//!
//! ```text
//! <output>/checkpoints/step-00000050/
//!     adapter.safetensors    LoRA tensors under their PEFT names
//!     optimizer.safetensors  AdamW moments: "m.<PEFT name>", "v.<PEFT name>"
//!     state.json             {format, step, total_steps, adam_t, training_hash}
//! ```
//!
//! The data order and the dropout masks are functions of `(seed, epoch)` and
//! `(seed, step, micro-batch)`, so the step number is the whole generator
//! state: a resumed run draws the same masks and batches as an uninterrupted
//! one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use trib_types::Hash;

use super::error::{FactoryError, Result};
use super::optim::AdamW;

const FORMAT: u32 = 1;

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub(crate) format: u32,
    /// Optimiser steps completed.
    pub(crate) step: u64,
    /// Optimiser steps in the whole job.
    pub(crate) total_steps: u64,
    /// AdamW's bias-correction counter.
    pub(crate) adam_t: u64,
    /// [`super::JobConfig::training_hash`] of the job that wrote it.
    pub(crate) training_hash: Hash,
}

pub(crate) fn checkpoints_dir(output: &Path) -> PathBuf {
    output.join("checkpoints")
}

fn step_dir(output: &Path, step: u64) -> PathBuf {
    checkpoints_dir(output).join(format!("step-{step:08}"))
}

/// Writes a checkpoint and prunes old ones; returns its directory.
pub(crate) fn save(
    output: &Path,
    names: &[String],
    vars: &[Var],
    opt: &AdamW,
    state: &CheckpointState,
    keep_last: usize,
) -> Result<PathBuf> {
    let final_dir = step_dir(output, state.step);
    let tmp = final_dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| FactoryError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| FactoryError::io(&tmp, e))?;
    let adapter: HashMap<String, Tensor> = names
        .iter()
        .cloned()
        .zip(vars.iter().map(|v| v.as_tensor().clone()))
        .collect();
    let p = tmp.join("adapter.safetensors");
    candle_core::safetensors::save(&adapter, &p).map_err(|e| FactoryError::format(&p, e))?;
    let mut moments = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        moments.insert(format!("m.{n}"), opt.m[i].clone());
        moments.insert(format!("v.{n}"), opt.v[i].clone());
    }
    let p = tmp.join("optimizer.safetensors");
    candle_core::safetensors::save(&moments, &p).map_err(|e| FactoryError::format(&p, e))?;
    let p = tmp.join("state.json");
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    std::fs::write(&p, json).map_err(|e| FactoryError::io(&p, e))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| FactoryError::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| FactoryError::io(&final_dir, e))?;
    prune(output, keep_last)?;
    tracing::info!(target: "trib::factory", step = state.step, dir = %final_dir.display(), "checkpoint written");
    Ok(final_dir)
}

/// Completed checkpoints, oldest first.
pub(crate) fn list(output: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = checkpoints_dir(output);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| FactoryError::io(&dir, e))? {
        let entry = entry.map_err(|e| FactoryError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if entry.path().join("state.json").is_file() {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn prune(output: &Path, keep_last: usize) -> Result<()> {
    let all = list(output)?;
    if all.len() > keep_last {
        for (_, p) in &all[..all.len() - keep_last] {
            std::fs::remove_dir_all(p).map_err(|e| FactoryError::io(p, e))?;
        }
    }
    Ok(())
}

/// Resolves `checkpoint.resume_from`: `"latest"` (None when there is none yet)
/// or an explicit directory (which must exist).
pub(crate) fn resolve(output: &Path, resume_from: &str) -> Result<Option<PathBuf>> {
    if resume_from == "latest" {
        return Ok(list(output)?.pop().map(|(_, p)| p));
    }
    let p = PathBuf::from(resume_from);
    if !p.join("state.json").is_file() {
        return Err(FactoryError::Checkpoint {
            path: p,
            message: "no state.json: not a checkpoint directory".into(),
        });
    }
    Ok(Some(p))
}

/// Restores the adapter tensors and optimiser moments; returns the state.
pub(crate) fn load(
    dir: &Path,
    names: &[String],
    vars: &[Var],
    opt: &mut AdamW,
    training_hash: Hash,
) -> Result<CheckpointState> {
    let bad = |m: String| FactoryError::Checkpoint {
        path: dir.to_path_buf(),
        message: m,
    };
    let p = dir.join("state.json");
    let text = std::fs::read(&p).map_err(|e| FactoryError::io(&p, e))?;
    let state: CheckpointState =
        serde_json::from_slice(&text).map_err(|e| bad(format!("state.json: {e}")))?;
    if state.format != FORMAT {
        return Err(bad(format!(
            "format {} (this build reads {FORMAT})",
            state.format
        )));
    }
    if state.training_hash != training_hash {
        return Err(bad(format!(
            "written by a different job (training hash {} vs {}): data, model, LoRA or optimiser settings changed",
            state.training_hash.short(),
            training_hash.short()
        )));
    }
    let p = dir.join("adapter.safetensors");
    let adapter = candle_core::safetensors::load(&p, &Device::Cpu)
        .map_err(|e| FactoryError::format(&p, e))?;
    let p = dir.join("optimizer.safetensors");
    let moments = candle_core::safetensors::load(&p, &Device::Cpu)
        .map_err(|e| FactoryError::format(&p, e))?;
    // Check everything before touching any variable: a bad checkpoint leaves
    // the adapter as it was.
    let mut staged = Vec::with_capacity(names.len());
    for (n, v) in names.iter().zip(vars) {
        let get = |map: &HashMap<String, Tensor>, k: &str| -> Result<Tensor> {
            let t = map
                .get(k)
                .ok_or_else(|| bad(format!("tensor {k} is missing")))?;
            if t.dims() != v.dims() {
                return Err(bad(format!(
                    "tensor {k} has shape {:?}, expected {:?}",
                    t.dims(),
                    v.dims()
                )));
            }
            Ok(t.clone())
        };
        staged.push((
            get(&adapter, n)?,
            get(&moments, &format!("m.{n}"))?,
            get(&moments, &format!("v.{n}"))?,
        ));
    }
    for (i, (w, m, v)) in staged.into_iter().enumerate() {
        vars[i].set(&w)?;
        opt.m[i] = m;
        opt.v[i] = v;
    }
    opt.t = state.adam_t;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::config::TrainSection;

    #[test]
    fn save_load_round_trips_and_prunes() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let vars = vec![Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev)?)?];
        let names = vec!["w".to_string()];
        let mut opt = AdamW::new(&vars, &TrainSection::default())?;
        opt.step(&vars, &[Tensor::new(&[0.1f32, -0.1], &dev)?], 0.1)?;
        let h = Hash::of(b"job");
        for step in 1..=3 {
            let st = CheckpointState {
                format: FORMAT,
                step,
                total_steps: 9,
                adam_t: opt.t,
                training_hash: h,
            };
            save(dir.path(), &names, &vars, &opt, &st, 2)?;
        }
        assert_eq!(
            list(dir.path())?.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let latest = resolve(dir.path(), "latest")?.unwrap();
        let saved = vars[0].as_tensor().to_vec1::<f32>()?;
        let m = opt.m[0].to_vec1::<f32>()?;
        let vars2 = vec![Var::from_tensor(&Tensor::new(&[0f32, 0.0], &dev)?)?];
        let mut opt2 = AdamW::new(&vars2, &TrainSection::default())?;
        let st = load(&latest, &names, &vars2, &mut opt2, h)?;
        assert_eq!(st.step, 3);
        assert_eq!(opt2.t, 1);
        assert_eq!(vars2[0].as_tensor().to_vec1::<f32>()?, saved);
        assert_eq!(opt2.m[0].to_vec1::<f32>()?, m);
        let e = load(&latest, &names, &vars2, &mut opt2, Hash::of(b"other")).unwrap_err();
        assert!(e.to_string().contains("different job"), "{e}");
        Ok(())
    }
}
