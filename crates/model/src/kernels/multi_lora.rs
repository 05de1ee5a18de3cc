//! The LoRA terms of an inference step whose rows carry different
//! adapters, over one shared base projection: per adapter group with candle
//! matmuls (SGMV, [`add_lora_grouped`]) or per row in one pass (BGMV,
//! [`add_lora_per_row`]), CPU forms of the two kernels Punica names (Chen et
//! al. 2023, "Punica: Multi-Tenant LoRA Serving", arXiv:2310.18547).
//! [`lora_plan`] picks one for a step by rows per adapter. The candle
//! inference forward of every architecture adds these terms to its base
//! projections; the lean decode path ([`crate::kernels::decode`]) has its
//! own per-row loop over slices.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::cpu_f32::{dot, with_f32};
use crate::lora::{LoraAdapter, LoraTarget};
use crate::step::SeqChunk;

/// Up to this many rows per adapter (on average over the adapters in a
/// step), the LoRA term runs per row (BGMV, [`add_lora_per_row`]); above
/// it, per adapter group with candle matmuls (SGMV, [`add_lora_grouped`]).
/// Decode steps with many distinct adapters have 1–4 rows per adapter;
/// prefill chunks and single-adapter batches have many. See docs/model.md.
pub(crate) const BGMV_MAX_ROWS_PER_ADAPTER: usize = 4;

/// How the LoRA terms of one inference step are computed.
pub(crate) enum LoraPlan<'a> {
    /// SGMV: per adapter, gather its rows, two matmuls, scatter-add.
    Grouped(Vec<AdapterGroup<'a>>),
    /// BGMV: one pass over the rows, each with its own adapter (or none).
    PerRow(Vec<Option<&'a LoraAdapter>>),
}

/// Rows of a stacked batch that share one adapter.
pub(crate) struct AdapterGroup<'a> {
    adapter: &'a LoraAdapter,
    /// Row indices (u32), `None` when the group covers every row.
    rows: Option<Tensor>,
}

impl LoraPlan<'_> {
    /// `y` (the base projection of `x` for `target` in `layer`) plus the
    /// LoRA term of every adapted row.
    pub(crate) fn add(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &Tensor,
        y: Tensor,
    ) -> Result<Tensor> {
        match self {
            LoraPlan::Grouped(groups) => add_lora_grouped(layer, target, x, y, groups),
            LoraPlan::PerRow(rows) => add_lora_per_row(layer, target, x, y, rows),
        }
    }
}

/// Picks BGMV or SGMV for a step by rows per adapter.
pub(crate) fn lora_plan<'a>(chunks: &[SeqChunk<'a>], n_rows: usize) -> Result<LoraPlan<'a>> {
    let mut distinct: Vec<&LoraAdapter> = Vec::new();
    let mut adapted_rows = 0;
    for c in chunks {
        if let Some(a) = c.adapter {
            adapted_rows += c.tokens.len();
            if !distinct.iter().any(|d| std::ptr::eq(*d, a)) {
                distinct.push(a);
            }
        }
    }
    if distinct.len() >= 2 && adapted_rows <= BGMV_MAX_ROWS_PER_ADAPTER * distinct.len() {
        let rows = chunks
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.adapter, c.tokens.len()))
            .collect();
        return Ok(LoraPlan::PerRow(rows));
    }
    Ok(LoraPlan::Grouped(adapter_groups(chunks, n_rows)?))
}

fn adapter_groups<'a>(chunks: &[SeqChunk<'a>], n_rows: usize) -> Result<Vec<AdapterGroup<'a>>> {
    let mut groups: Vec<(&'a LoraAdapter, Vec<u32>)> = Vec::new();
    let mut row = 0u32;
    for c in chunks {
        let n = c.tokens.len() as u32;
        if let Some(a) = c.adapter {
            match groups.iter_mut().find(|(g, _)| std::ptr::eq(*g, a)) {
                Some((_, rows)) => rows.extend(row..row + n),
                None => groups.push((a, (row..row + n).collect())),
            }
        }
        row += n;
    }
    groups
        .into_iter()
        .map(|(adapter, rows)| {
            let rows = if rows.len() == n_rows {
                None
            } else {
                let len = rows.len();
                Some(Tensor::from_vec(rows, len, &Device::Cpu)?)
            };
            Ok(AdapterGroup { adapter, rows })
        })
        .collect()
}

/// SGMV: `y + s·(x_g·Aᵀ)·Bᵀ` per adapter group `g` (gather, two matmuls,
/// scatter-add), about five candle ops per group.
fn add_lora_grouped(
    layer: usize,
    target: LoraTarget,
    x: &Tensor,
    mut y: Tensor,
    groups: &[AdapterGroup<'_>],
) -> Result<Tensor> {
    for g in groups {
        let Some(pair) = g.adapter.pair(layer, target) else {
            continue;
        };
        let s = g.adapter.scaling();
        match &g.rows {
            None => {
                let d = x.matmul(&pair.a.t()?)?.matmul(&pair.b.t()?)?;
                y = (y + (d * s)?)?;
            }
            Some(rows) => {
                let xs = x.index_select(rows, 0)?;
                let d = (xs.matmul(&pair.a.t()?)?.matmul(&pair.b.t()?)? * s)?;
                y = y.index_add(rows, &d, 0)?;
            }
        }
    }
    Ok(y)
}

/// BGMV: `y_i + s_a·B_a·(A_a·x_i)` for each row `i` with adapter `a`, in one
/// pass over the rows: `O(rows·r·(in + out))` flops, one tensor built for
/// the whole delta, no per-adapter gathers or scatters.
fn add_lora_per_row(
    layer: usize,
    target: LoraTarget,
    x: &Tensor,
    y: Tensor,
    rows: &[Option<&LoraAdapter>],
) -> Result<Tensor> {
    let (n, k) = x.dims2()?;
    let out = y.dim(1)?;
    if rows.len() != n {
        return Err(ModelError::Generation(format!(
            "per-row LoRA: {} row adapters for {n} rows",
            rows.len()
        )));
    }
    let mut delta = vec![0f32; n * out];
    let mut any = false;
    with_f32(x, |xs| -> Result<()> {
        let mut tmp = Vec::new();
        for (i, a) in rows.iter().enumerate() {
            let Some(adapter) = a else { continue };
            let Some(pair) = adapter.pair(layer, target) else {
                continue;
            };
            any = true;
            let s = adapter.scaling() as f32;
            let r = pair.a.dim(0)?;
            if pair.a.dims() != [r, k] || pair.b.dims() != [out, r] {
                return Err(ModelError::AdapterMismatch(format!(
                    "layer {layer} {}: A {:?} and B {:?} do not fit a [{out}, {k}] projection",
                    target.name(),
                    pair.a.dims(),
                    pair.b.dims()
                )));
            }
            let xi = &xs[i * k..(i + 1) * k];
            with_f32(&pair.a, |a| {
                tmp.clear();
                tmp.extend(a.chunks_exact(k).map(|ar| dot(ar, xi) * s));
            })?;
            let di = &mut delta[i * out..(i + 1) * out];
            with_f32(&pair.b, |b| {
                for (d, br) in di.iter_mut().zip(b.chunks_exact(r)) {
                    *d = dot(br, &tmp);
                }
            })?;
        }
        Ok(())
    })??;
    if !any {
        return Ok(y);
    }
    Ok((y + Tensor::from_vec(delta, (n, out), &Device::Cpu)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_row_lora_matches_grouped_lora_on_random_adapters() -> Result<()> {
        use crate::lora::LoraConfig;
        use crate::tiny::TinySpec;
        let cfg = TinySpec::default().config();
        let lora = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: vec![LoraTarget::QProj, LoraTarget::DownProj],
            use_rslora: false,
        };
        let adapters: Vec<LoraAdapter> = (0..3u64)
            .map(|seed| {
                let a = LoraAdapter::init(lora.clone(), &cfg, "tiny", seed)?;
                for (_, _, p) in a.iter_pairs() {
                    p.b.set(&Tensor::randn(0f32, 0.5, p.b.dims(), &Device::Cpu)?)?;
                }
                Ok(a)
            })
            .collect::<Result<_>>()?;
        // Seven rows: adapters 0, none, 1, 0, 2, 2, none.
        let rows: Vec<Option<&LoraAdapter>> =
            [Some(0), None, Some(1), Some(0), Some(2), Some(2), None]
                .iter()
                .map(|i| i.map(|i| &adapters[i]))
                .collect();
        let mut groups = Vec::new();
        for a in &adapters {
            let idx: Vec<u32> = (0..rows.len() as u32)
                .filter(|&i| rows[i as usize].is_some_and(|r| std::ptr::eq(r, a)))
                .collect();
            let len = idx.len();
            groups.push(AdapterGroup {
                adapter: a,
                rows: Some(Tensor::from_vec(idx, len, &Device::Cpu)?),
            });
        }
        for target in [LoraTarget::QProj, LoraTarget::DownProj, LoraTarget::UpProj] {
            let (inp, out) = target.dims(&cfg);
            let x = Tensor::randn(0f32, 1.0, (rows.len(), inp), &Device::Cpu)?;
            let y = Tensor::randn(0f32, 1.0, (rows.len(), out), &Device::Cpu)?;
            let sgmv = add_lora_grouped(1, target, &x, y.clone(), &groups)?;
            let bgmv = add_lora_per_row(1, target, &x, y.clone(), &rows)?;
            let diff: f32 = (&sgmv - &bgmv)?.abs()?.flatten_all()?.max(0)?.to_scalar()?;
            assert!(diff < 1e-4, "{target:?}: max diff {diff}");
            // Rows without an adapter are untouched.
            let untouched: f32 = (bgmv.get(1)? - y.get(1)?)?.abs()?.max(0)?.to_scalar()?;
            assert_eq!(untouched, 0.0);
            if target != LoraTarget::UpProj {
                let moved: f32 = (bgmv.get(0)? - y.get(0)?)?.abs()?.max(0)?.to_scalar()?;
                assert!(moved > 1e-3, "{target:?}: the adapter changed nothing");
            }
        }
        Ok(())
    }
}
