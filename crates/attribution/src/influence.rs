//! Gradient influence of training rows on an answer.
//!
//! Inputs are per-layer gradient matrices: for each LoRA layer `l`, the
//! per-example training gradients `G_l` (n × d_l, row-major `f32`, possibly
//! randomly projected by the producer) and the test gradients `V_l` (T × d_l,
//! one row per answer). Scores use the *helpfulness* sign: a positive score
//! means up-weighting the row lowers the answer's loss (it is −1 × the
//! influence of Koh & Liang and of the DataInf paper).
//!
//! - [`datainf_scores`]: DataInf (Kwon et al., ICLR 2024). Per layer the
//!   inverse of the damped Fisher `(1/n) Σ g_i g_iᵀ + λ_l I` is replaced by the
//!   average of the rank-one inverses, which Sherman–Morrison gives in closed
//!   form: `r_l = (1/(n λ_l)) Σ_i [v − (vᵀg_i / (λ_l + ‖g_i‖²)) g_i]`, and the
//!   score of row k is `Σ_l r_lᵀ g_{l,k}`. Cost O(T · n · Σ d_l), three GEMMs
//!   per layer.
//! - [`tracin_scores`]: the plain dot product `Σ_l vᵀ g_{l,k}` (TracIn with a
//!   single checkpoint).
//! - [`exact_influence_scores`]: the same block-diagonal damped Fisher,
//!   inverted exactly (Cholesky on `d_l × d_l`, or on `n × n` through the
//!   Woodbury identity when `n < d_l`). For small dimensions and for checking
//!   DataInf's approximation.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::error::{AttributionError, Result};

/// Per-example gradients of one layer: `rows × cols`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerGradients {
    /// Layer name (for example the PEFT module path).
    pub name: String,
    /// Number of examples.
    pub rows: usize,
    /// Parameters (or projected dimensions) of the layer.
    pub cols: usize,
    /// `rows × cols` values.
    pub data: Vec<f32>,
}

impl LayerGradients {
    /// Checks that `data` has `rows × cols` finite values.
    pub fn new(name: impl Into<String>, rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        let name = name.into();
        if data.len() != rows * cols {
            return Err(AttributionError::Shape(format!(
                "layer {name}: {} values for {rows} × {cols}",
                data.len()
            )));
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(AttributionError::Shape(format!(
                "layer {name}: non-finite gradient value at row {}, column {}",
                i / cols.max(1),
                i % cols.max(1)
            )));
        }
        Ok(LayerGradients {
            name,
            rows,
            cols,
            data,
        })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Reads a gradient cache written as safetensors: every tensor is one
    /// layer, `f32`, shape `[rows, cols]`; layers are returned sorted by name
    /// and must agree on `rows`.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Vec<LayerGradients>> {
        let err = |m: String| AttributionError::GradientCache(m);
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let t = st.tensor(&name).map_err(|e| err(e.to_string()))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
                return Err(err(format!(
                    "tensor {name} is {:?} with shape {:?}; expected a 2-D f32 [rows, cols] matrix",
                    t.dtype(),
                    t.shape()
                )));
            }
            let data: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.push(LayerGradients::new(name, t.shape()[0], t.shape()[1], data)?);
        }
        if let Some(first) = out.first() {
            if let Some(bad) = out.iter().find(|l| l.rows != first.rows) {
                return Err(err(format!(
                    "layer {} has {} rows, layer {} has {}",
                    bad.name, bad.rows, first.name, first.rows
                )));
            }
        }
        Ok(out)
    }
}

/// How per-example gradients are rescaled before scoring (an option of the
/// planted-recall and LDS experiments; the reference forms use `None`).
///
/// Short or badly-fit examples have much larger LoRA gradients than the rest,
/// so raw dot products rank rows by gradient norm as much as by direction.
/// Unit normalisation turns TracIn into cosine similarity (as in LESS, Xia et
/// al., ICML 2024) and makes DataInf compare directions only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GradientNormalisation {
    /// Gradients as produced.
    #[default]
    None,
    /// Every row of every layer scaled to unit length: each layer votes
    /// equally in the sum over layers.
    PerLayer,
    /// Every row scaled so that its concatenation over all layers has unit
    /// length: layers keep their relative weight.
    Whole,
}

/// Rescales every example's gradient as `how` says. All-zero rows stay zero.
pub fn normalise_gradients(
    layers: &[LayerGradients],
    how: GradientNormalisation,
) -> Vec<LayerGradients> {
    let norm = |x: &[f32]| x.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
    let scale = |n2: f64| if n2 > 0.0 { 1.0 / n2.sqrt() } else { 0.0 };
    match how {
        GradientNormalisation::None => layers.to_vec(),
        GradientNormalisation::PerLayer => layers
            .iter()
            .map(|l| {
                let mut out = l.clone();
                if l.cols > 0 {
                    for row in out.data.chunks_mut(l.cols) {
                        let s = scale(norm(row));
                        row.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
                    }
                }
                out
            })
            .collect(),
        GradientNormalisation::Whole => {
            let rows = layers.first().map_or(0, |l| l.rows);
            let scales: Vec<f64> = (0..rows)
                .map(|i| {
                    scale(
                        layers
                            .iter()
                            .filter(|l| l.rows == rows)
                            .map(|l| norm(l.row(i)))
                            .sum(),
                    )
                })
                .collect();
            layers
                .iter()
                .map(|l| {
                    let mut out = l.clone();
                    if l.cols > 0 && l.rows == rows {
                        for (row, s) in out.data.chunks_mut(l.cols).zip(&scales) {
                            row.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
                        }
                    }
                    out
                })
                .collect()
        }
    }
}

/// How the per-layer damping λ_l is chosen.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Damping {
    /// `λ_l = c · mean_i ‖g_i‖² / d_l`; DataInf's default is `c = 0.1`.
    Relative(f64),
    /// The same λ for every layer.
    Fixed(f64),
}

impl Default for Damping {
    fn default() -> Self {
        Damping::Relative(0.1)
    }
}

impl Damping {
    /// λ for a layer.
    pub fn lambda(&self, layer: &LayerGradients) -> f64 {
        match *self {
            Damping::Fixed(l) => l,
            Damping::Relative(c) => {
                let total: f64 = layer.data.iter().map(|&x| x as f64 * x as f64).sum();
                c * total / (layer.rows.max(1) as f64 * layer.cols.max(1) as f64)
            }
        }
    }
}

/// Scores of every training row for every test row: `tests × rows`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreMatrix {
    /// Number of test gradients (answers).
    pub tests: usize,
    /// Number of training rows.
    pub rows: usize,
    /// `tests × rows` scores; positive = helpful.
    pub data: Vec<f64>,
}

impl ScoreMatrix {
    /// Scores of all training rows for test `t`.
    pub fn test(&self, t: usize) -> &[f64] {
        &self.data[t * self.rows..(t + 1) * self.rows]
    }
}

fn check_shapes(train: &[LayerGradients], test: &[LayerGradients]) -> Result<(usize, usize)> {
    if train.is_empty() || train.len() != test.len() {
        return Err(AttributionError::Shape(format!(
            "{} training layers and {} test layers; need the same non-zero number",
            train.len(),
            test.len()
        )));
    }
    let (n, t) = (train[0].rows, test[0].rows);
    for (a, b) in train.iter().zip(test) {
        if a.rows != n || b.rows != t || a.cols != b.cols {
            return Err(AttributionError::Shape(format!(
                "layer {}: training {}×{}, test {}×{} (expected {n} and {t} rows, equal columns)",
                a.name, a.rows, a.cols, b.rows, b.cols
            )));
        }
    }
    Ok((n, t))
}

fn view<'a, T>(rows: usize, cols: usize, data: &'a [T]) -> ArrayView2<'a, T> {
    ArrayView2::from_shape((rows, cols), data).expect("shape checked by the caller")
}

fn view_mut<'a, T>(rows: usize, cols: usize, data: &'a mut [T]) -> ArrayViewMut2<'a, T> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("shape checked by the caller")
}

/// Row chunks so that rayon has a few tasks per thread.
fn chunk_rows(t: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    t.div_ceil(threads * 2).max(1)
}

/// TracIn (single checkpoint): `score[t][k] = Σ_l v_{l,t} · g_{l,k}`.
pub fn tracin_scores(train: &[LayerGradients], test: &[LayerGradients]) -> Result<ScoreMatrix> {
    let (n, t) = check_shapes(train, test)?;
    let mut out = vec![0f64; t * n];
    let ch = chunk_rows(t);
    out.par_chunks_mut(ch * n)
        .enumerate()
        .for_each(|(ci, block)| {
            let t0 = ci * ch;
            let tb = block.len() / n.max(1);
            let mut acc = vec![0f32; tb * n];
            for (g, v) in train.iter().zip(test) {
                let d = g.cols;
                let vb = view(tb, d, &v.data[t0 * d..(t0 + tb) * d]);
                general_mat_mul(
                    1.0,
                    &vb,
                    &view(n, d, &g.data).t(),
                    1.0,
                    &mut view_mut(tb, n, &mut acc),
                );
            }
            for (o, a) in block.iter_mut().zip(acc) {
                *o = a as f64;
            }
        });
    Ok(ScoreMatrix {
        tests: t,
        rows: n,
        data: out,
    })
}

/// DataInf scores (see the module documentation) with per-layer damping.
pub fn datainf_scores(
    train: &[LayerGradients],
    test: &[LayerGradients],
    damping: Damping,
) -> Result<ScoreMatrix> {
    let (n, t) = check_shapes(train, test)?;
    let lambdas = layer_lambdas(train, damping)?;
    let norms: Vec<Vec<f64>> = train
        .iter()
        .map(|g| {
            (0..g.rows)
                .map(|i| g.row(i).iter().map(|&x| x as f64 * x as f64).sum())
                .collect()
        })
        .collect();
    let mut out = vec![0f64; t * n];
    let ch = chunk_rows(t);
    out.par_chunks_mut(ch * n)
        .enumerate()
        .for_each(|(ci, block)| {
            let t0 = ci * ch;
            let tb = block.len() / n.max(1);
            let mut acc = vec![0f32; tb * n];
            for (l, (g, v)) in train.iter().zip(test).enumerate() {
                let d = g.cols;
                let lam = lambdas[l];
                let vs = &v.data[t0 * d..(t0 + tb) * d];
                let (vb, gv) = (view(tb, d, vs), view(n, d, &g.data));
                // A = V Gᵀ, C = A / (λ + ‖g_i‖²)
                let mut c = vec![0f32; tb * n];
                general_mat_mul(1.0, &vb, &gv.t(), 0.0, &mut view_mut(tb, n, &mut c));
                for row in c.chunks_mut(n) {
                    for (x, s) in row.iter_mut().zip(&norms[l]) {
                        *x = (*x as f64 / (lam + s)) as f32;
                    }
                }
                // R = (n V − C G) / (n λ)
                let scale = 1.0 / (n as f64 * lam);
                let mut r: Vec<f32> = vs
                    .iter()
                    .map(|&x| (x as f64 * n as f64 * scale) as f32)
                    .collect();
                general_mat_mul(
                    -(scale as f32),
                    &view(tb, n, &c),
                    &gv,
                    1.0,
                    &mut view_mut(tb, d, &mut r),
                );
                // S += R Gᵀ
                general_mat_mul(
                    1.0,
                    &view(tb, d, &r),
                    &gv.t(),
                    1.0,
                    &mut view_mut(tb, n, &mut acc),
                );
            }
            for (o, a) in block.iter_mut().zip(acc) {
                *o = a as f64;
            }
        });
    Ok(ScoreMatrix {
        tests: t,
        rows: n,
        data: out,
    })
}

fn layer_lambdas(train: &[LayerGradients], damping: Damping) -> Result<Vec<f64>> {
    train
        .iter()
        .map(|g| {
            let l = damping.lambda(g);
            if l > 0.0 && l.is_finite() {
                Ok(l)
            } else {
                Err(AttributionError::InvalidParameter {
                    name: "damping",
                    reason: format!(
                        "λ for layer {} is {l}; it must be positive (all-zero gradients?)",
                        g.name
                    ),
                })
            }
        })
        .collect()
}

/// Largest matrix side the exact solve accepts.
pub(crate) const MAX_DENSE: usize = 6000;

/// Exact influence with the damped block-diagonal Fisher
/// `H_l = (1/n) G_lᵀ G_l + λ_l I`: `score[t][k] = Σ_l v_{l,t}ᵀ H_l⁻¹ g_{l,k}`.
pub fn exact_influence_scores(
    train: &[LayerGradients],
    test: &[LayerGradients],
    damping: Damping,
) -> Result<ScoreMatrix> {
    let (n, t) = check_shapes(train, test)?;
    let lambdas = layer_lambdas(train, damping)?;
    let mut out = vec![0f64; t * n];
    for (l, (g, v)) in train.iter().zip(test).enumerate() {
        let d = g.cols;
        let lam = lambdas[l];
        let gd: Vec<f64> = g.data.iter().map(|&x| x as f64).collect();
        let vd: Vec<f64> = v.data.iter().map(|&x| x as f64).collect();
        // X = V H⁻¹ (t × d)
        let x: Vec<f64> = if d <= n {
            if d > MAX_DENSE {
                return Err(AttributionError::TooLarge {
                    layer: g.name.clone(),
                    dim: d,
                    max: MAX_DENSE,
                });
            }
            let mut h = vec![0f64; d * d];
            let gm = view(n, d, &gd);
            general_mat_mul(
                1.0 / n as f64,
                &gm.t(),
                &gm,
                0.0,
                &mut view_mut(d, d, &mut h),
            );
            for i in 0..d {
                h[i * d + i] += lam;
            }
            let chol = crate::dense::Cholesky::factor(h, d).ok_or_else(|| {
                AttributionError::NotPositiveDefinite {
                    layer: g.name.clone(),
                }
            })?;
            let mut x = vd.clone();
            chol.solve_rows(&mut x);
            x
        } else {
            if n > MAX_DENSE {
                return Err(AttributionError::TooLarge {
                    layer: g.name.clone(),
                    dim: n,
                    max: MAX_DENSE,
                });
            }
            // Woodbury: H⁻¹ v = (v − Gᵀ (nλ I + G Gᵀ)⁻¹ G v) / λ
            let gm = view(n, d, &gd);
            let mut k = vec![0f64; n * n];
            general_mat_mul(1.0, &gm, &gm.t(), 0.0, &mut view_mut(n, n, &mut k));
            for i in 0..n {
                k[i * n + i] += n as f64 * lam;
            }
            let chol = crate::dense::Cholesky::factor(k, n).ok_or_else(|| {
                AttributionError::NotPositiveDefinite {
                    layer: g.name.clone(),
                }
            })?;
            // Y = V Gᵀ (t × n), solve each row against K, X = (V − Y K⁻¹ G) / λ
            let mut y = vec![0f64; t * n];
            general_mat_mul(
                1.0,
                &view(t, d, &vd),
                &gm.t(),
                0.0,
                &mut view_mut(t, n, &mut y),
            );
            chol.solve_rows(&mut y);
            let mut x = vd.clone();
            general_mat_mul(-1.0, &view(t, n, &y), &gm, 1.0, &mut view_mut(t, d, &mut x));
            x.iter_mut().for_each(|e| *e /= lam);
            x
        };
        // out += X Gᵀ
        general_mat_mul(
            1.0,
            &view(t, d, &x),
            &view(n, d, &gd).t(),
            1.0,
            &mut view_mut(t, n, &mut out),
        );
    }
    Ok(ScoreMatrix {
        tests: t,
        rows: n,
        data: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, rows: usize, cols: usize, data: &[f32]) -> LayerGradients {
        LayerGradients::new(name, rows, cols, data.to_vec()).unwrap()
    }

    #[test]
    fn per_layer_normalisation_gives_unit_rows_and_keeps_zero_rows() {
        let l = [layer("a", 2, 2, &[3.0, 4.0, 0.0, 0.0])];
        let n = normalise_gradients(&l, GradientNormalisation::PerLayer);
        assert_eq!(n[0].data, vec![0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn whole_normalisation_keeps_the_ratio_between_layers() {
        let l = [layer("a", 1, 1, &[3.0]), layer("b", 1, 1, &[4.0])];
        let n = normalise_gradients(&l, GradientNormalisation::Whole);
        assert!((n[0].data[0] - 0.6).abs() < 1e-7);
        assert!((n[1].data[0] - 0.8).abs() < 1e-7);
        assert_eq!(normalise_gradients(&l, GradientNormalisation::None), l);
    }

    #[test]
    fn cosine_tracin_ignores_gradient_norms() {
        // Row 1 points the same way as the test but is tiny; row 0 is long and
        // off-axis. The plain dot product prefers row 0, cosine prefers row 1.
        let train = [layer("a", 2, 2, &[10.0, 10.0, 0.1, 0.0])];
        let test = [layer("a", 1, 2, &[1.0, 0.0])];
        let raw = tracin_scores(&train, &test).unwrap();
        assert!(raw.data[0] > raw.data[1]);
        let cos = tracin_scores(
            &normalise_gradients(&train, GradientNormalisation::Whole),
            &test,
        )
        .unwrap();
        assert!(cos.data[1] > cos.data[0]);
    }
}
