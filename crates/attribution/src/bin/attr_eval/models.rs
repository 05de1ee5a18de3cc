//! The two small classifiers of the LDS experiment, trained full-batch with a
//! deterministic L-BFGS: multinomial logistic regression and a one-hidden-layer
//! tanh MLP, both with an L2 penalty `(reg/2)‖θ‖²` on every parameter.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};

pub const CLASSES: usize = 10;

/// A classifier over inputs with a bias column already appended.
pub trait Classifier: Sync {
    fn name(&self) -> String;
    fn params(&self) -> usize;
    /// `(name, parameter range)` of each layer, for per-layer methods.
    fn layers(&self) -> Vec<(String, std::ops::Range<usize>)>;
    fn init(&self) -> Vec<f64>;
    /// Logits (rows × 10).
    fn logits(&self, theta: &[f64], x: ArrayView2<'_, f64>) -> Array2<f64>;
    /// Mean cross-entropy over `x, y` plus the L2 penalty, and its gradient.
    fn objective(
        &self,
        theta: &[f64],
        x: ArrayView2<'_, f64>,
        y: &[usize],
        reg: f64,
    ) -> (f64, Vec<f64>);
    /// Jacobian of the logits for one input (10 × params).
    fn jacobian(&self, theta: &[f64], x: &[f64]) -> Array2<f64>;
}

pub fn softmax_rows(z: &mut Array2<f64>) {
    for mut r in z.rows_mut() {
        let m = r.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        r.mapv_inplace(|v| (v - m).exp());
        let s = r.sum();
        r /= s;
    }
}

/// Cross-entropy pieces: probabilities, mean loss, and (P − Y) / n.
fn ce(mut z: Array2<f64>, y: &[usize]) -> (Array2<f64>, f64, Array2<f64>) {
    softmax_rows(&mut z);
    let n = y.len() as f64;
    let mut loss = 0.0;
    let mut d = z.clone();
    for (i, &c) in y.iter().enumerate() {
        loss -= z[[i, c]].max(1e-300).ln();
        d[[i, c]] -= 1.0;
    }
    d /= n;
    (z, loss / n, d)
}

pub struct Logistic {
    pub dim: usize,
}

impl Classifier for Logistic {
    fn name(&self) -> String {
        "logistic regression".into()
    }
    fn params(&self) -> usize {
        CLASSES * self.dim
    }
    fn layers(&self) -> Vec<(String, std::ops::Range<usize>)> {
        vec![("W".into(), 0..self.params())]
    }
    fn init(&self) -> Vec<f64> {
        vec![0.0; self.params()]
    }
    fn logits(&self, theta: &[f64], x: ArrayView2<'_, f64>) -> Array2<f64> {
        let w = ArrayView2::from_shape((CLASSES, self.dim), theta).unwrap();
        x.dot(&w.t())
    }
    fn objective(
        &self,
        theta: &[f64],
        x: ArrayView2<'_, f64>,
        y: &[usize],
        reg: f64,
    ) -> (f64, Vec<f64>) {
        let (_, loss, d) = ce(self.logits(theta, x), y);
        let g = d.t().dot(&x); // 10 × dim
        let mut grad: Vec<f64> = g.iter().copied().collect();
        let mut pen = 0.0;
        for (gi, t) in grad.iter_mut().zip(theta) {
            *gi += reg * t;
            pen += t * t;
        }
        (loss + 0.5 * reg * pen, grad)
    }
    fn jacobian(&self, _theta: &[f64], x: &[f64]) -> Array2<f64> {
        let mut j = Array2::zeros((CLASSES, self.params()));
        for c in 0..CLASSES {
            j.slice_mut(s![c, c * self.dim..(c + 1) * self.dim])
                .assign(&ndarray::aview1(x));
        }
        j
    }
}

pub struct Mlp {
    pub dim: usize,
    pub hidden: usize,
    pub seed: u64,
}

impl Mlp {
    fn split<'a>(&self, theta: &'a [f64]) -> (ArrayView2<'a, f64>, ArrayView2<'a, f64>) {
        let n1 = self.hidden * self.dim;
        let w1 = ArrayView2::from_shape((self.hidden, self.dim), &theta[..n1]).unwrap();
        let w2 = ArrayView2::from_shape((CLASSES, self.hidden + 1), &theta[n1..]).unwrap();
        (w1, w2)
    }

    fn hidden(&self, theta: &[f64], x: ArrayView2<'_, f64>) -> (Array2<f64>, Array2<f64>) {
        let (w1, _) = self.split(theta);
        let a = x.dot(&w1.t()).mapv(f64::tanh);
        let mut ab = Array2::ones((a.nrows(), self.hidden + 1));
        ab.slice_mut(s![.., ..self.hidden]).assign(&a);
        (a, ab)
    }
}

impl Classifier for Mlp {
    fn name(&self) -> String {
        format!("MLP (64-{}-10, tanh)", self.hidden)
    }
    fn params(&self) -> usize {
        self.hidden * self.dim + CLASSES * (self.hidden + 1)
    }
    fn layers(&self) -> Vec<(String, std::ops::Range<usize>)> {
        let n1 = self.hidden * self.dim;
        vec![("W1".into(), 0..n1), ("W2".into(), n1..self.params())]
    }
    fn init(&self) -> Vec<f64> {
        let mut rng = trib_attribution::quality::SplitMix64::new(self.seed);
        let n1 = self.hidden * self.dim;
        (0..self.params())
            .map(|i| {
                let fan_in = if i < n1 { self.dim } else { self.hidden + 1 } as f64;
                rng.normal() / fan_in.sqrt()
            })
            .collect()
    }
    fn logits(&self, theta: &[f64], x: ArrayView2<'_, f64>) -> Array2<f64> {
        let (_, w2) = self.split(theta);
        let (_, ab) = self.hidden(theta, x);
        ab.dot(&w2.t())
    }
    fn objective(
        &self,
        theta: &[f64],
        x: ArrayView2<'_, f64>,
        y: &[usize],
        reg: f64,
    ) -> (f64, Vec<f64>) {
        let (_, w2) = self.split(theta);
        let (a, ab) = self.hidden(theta, x);
        let (_, loss, d) = ce(ab.dot(&w2.t()), y);
        let g2 = d.t().dot(&ab); // 10 × (h+1)
        let da = d.dot(&w2.slice(s![.., ..self.hidden])); // n × h
        let dz = da * a.mapv(|v| 1.0 - v * v);
        let g1 = dz.t().dot(&x); // h × dim
        let mut grad: Vec<f64> = g1.iter().chain(g2.iter()).copied().collect();
        let mut pen = 0.0;
        for (gi, t) in grad.iter_mut().zip(theta) {
            *gi += reg * t;
            pen += t * t;
        }
        (loss + 0.5 * reg * pen, grad)
    }
    fn jacobian(&self, theta: &[f64], x: &[f64]) -> Array2<f64> {
        let (w1, w2) = self.split(theta);
        let xv = ndarray::aview1(x);
        let a: Array1<f64> = w1.dot(&xv).mapv(f64::tanh);
        let n1 = self.hidden * self.dim;
        let mut j = Array2::zeros((CLASSES, self.params()));
        for c in 0..CLASSES {
            for k in 0..self.hidden {
                let f = w2[[c, k]] * (1.0 - a[k] * a[k]);
                j.slice_mut(s![c, k * self.dim..(k + 1) * self.dim])
                    .assign(&(&xv * f));
            }
            let off = n1 + c * (self.hidden + 1);
            j.slice_mut(s![c, off..off + self.hidden]).assign(&a);
            j[[c, off + self.hidden]] = 1.0;
        }
        j
    }
}

/// Deterministic L-BFGS (memory 10) with Armijo backtracking.
pub fn lbfgs(
    f: impl Fn(&[f64]) -> (f64, Vec<f64>),
    mut x: Vec<f64>,
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, usize, f64) {
    let m = 10;
    let (mut fx, mut g) = f(&x);
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let mut it = 0;
    while it < max_iter {
        let gnorm = g.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        if gnorm < tol {
            break;
        }
        // Two-loop recursion.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = hist
            .back()
            .map_or(1.0 / dot(&g, &g).sqrt().max(1e-12), |(s, y, _)| {
                dot(s, y) / dot(y, y)
            });
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        let dir = if slope >= 0.0 {
            hist.clear();
            slope = -dot(&g, &g);
            g.iter().map(|v| -v).collect()
        } else {
            dir
        };
        let mut step = 1.0;
        let (mut xn, mut fxn, mut gn);
        loop {
            xn = x
                .iter()
                .zip(&dir)
                .map(|(a, d)| a + step * d)
                .collect::<Vec<_>>();
            (fxn, gn) = f(&xn);
            if fxn <= fx + 1e-4 * step * slope || step < 1e-20 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if hist.len() == m {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        let done = (fx - fxn).abs() <= 1e-15 * fx.abs().max(1.0);
        x = xn;
        fx = fxn;
        g = gn;
        it += 1;
        if done {
            break;
        }
    }
    let gnorm = g.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    (x, it, gnorm)
}

/// Rows `idx` of `x`.
pub fn select_rows(x: &Array2<f64>, idx: &[usize]) -> Array2<f64> {
    x.select(Axis(0), idx)
}
