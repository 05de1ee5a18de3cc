//! `attr-eval`: measured attribution quality on scikit-learn's `digits`.
//!
//! Linear datamodeling score (LDS) of exact influence, DataInf and TracIn on
//! multinomial logistic regression and a small MLP (m random half-subsets,
//! retrained from the same initialisation with a deterministic full-batch
//! L-BFGS; target = log-probability of the true label of each test point),
//! with bootstrap 95% intervals over test points; DataInf's damping is tuned
//! on separate subsets. Then mislabel detection AUROC by self-influence with
//! 10% of the training labels flipped.
//!
//! Run `scripts/attribution/attr_fetch_digits.sh` once, then
//! `cargo run --release -p trib-attribution --bin attr-eval`.
//! Options: `--train N --test T --subsets M --tune-subsets M --hidden H --data PATH --quick`.

mod models;

use std::error::Error;
use std::time::Instant;

use ndarray::{s, Array2, Axis};
use rayon::prelude::*;
use trib_attribution::quality::{
    auroc, bootstrap_mean_ci, lds_per_test, GradientMethod, SplitMix64,
};
use trib_attribution::{
    datainf_scores, exact_influence_scores, tracin_scores, Cholesky, Damping,
    GradientNormalisation, LayerGradients, ScoreMatrix,
};

use models::{lbfgs, select_rows, softmax_rows, Classifier, Logistic, Mlp, CLASSES};

struct Config {
    train: usize,
    test: usize,
    subsets: usize,
    tune_subsets: usize,
    hidden: usize,
    data: String,
    reg: f64,
}

fn parse_args() -> Result<Config, Box<dyn Error>> {
    let mut c = Config {
        train: 1000,
        test: 200,
        subsets: 100,
        tune_subsets: 30,
        hidden: 16,
        data: "target/attr-data/digits.csv".into(),
        reg: 1e-3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--train" => c.train = val()?.parse()?,
            "--test" => c.test = val()?.parse()?,
            "--subsets" => c.subsets = val()?.parse()?,
            "--tune-subsets" => c.tune_subsets = val()?.parse()?,
            "--hidden" => c.hidden = val()?.parse()?,
            "--data" => c.data = val()?,
            "--reg" => c.reg = val()?.parse()?,
            "--quick" => {
                (c.train, c.test, c.subsets, c.tune_subsets) = (300, 50, 20, 10);
                i += 1;
                continue;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 2;
    }
    Ok(c)
}

/// Digits CSV: 64 pixel values (0..16) then the label. Returns inputs scaled
/// to [0, 1] with a bias column appended, and labels.
fn load_digits(path: &str) -> Result<(Array2<f64>, Vec<usize>), Box<dyn Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e}; run scripts/attribution/attr_fetch_digits.sh first"))?;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let v: Vec<f64> = line
            .split(',')
            .map(|s| s.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{path}:{}: {e}", ln + 1))?;
        if v.len() != 65 {
            return Err(format!("{path}:{}: {} columns, expected 65", ln + 1, v.len()).into());
        }
        xs.extend(v[..64].iter().map(|p| p / 16.0));
        xs.push(1.0);
        ys.push(v[64] as usize);
    }
    Ok((Array2::from_shape_vec((ys.len(), 65), xs)?, ys))
}

fn train(model: &dyn Classifier, x: &Array2<f64>, y: &[usize], reg: f64) -> Vec<f64> {
    let tol = 1e-7;
    let (theta, _, _) = lbfgs(
        |t| model.objective(t, x.view(), y, reg),
        model.init(),
        3000,
        tol,
    );
    theta
}

/// log p(true label) for each row.
fn log_prob_true(model: &dyn Classifier, theta: &[f64], x: &Array2<f64>, y: &[usize]) -> Vec<f64> {
    let mut z = model.logits(theta, x.view());
    softmax_rows(&mut z);
    y.iter()
        .enumerate()
        .map(|(i, &c)| z[[i, c]].max(1e-300).ln())
        .collect()
}

/// Per-example loss gradients (rows × params) and the Gauss–Newton matrix
/// `(1/n) Σ J_iᵀ (diag p_i − p_i p_iᵀ) J_i` (exact Hessian for logistic regression).
fn gradients(
    model: &dyn Classifier,
    theta: &[f64],
    x: &Array2<f64>,
    y: &[usize],
    want_ggn: bool,
) -> (Array2<f64>, Option<Array2<f64>>) {
    let p = model.params();
    let n = y.len();
    let mut probs = model.logits(theta, x.view());
    softmax_rows(&mut probs);
    type PerExample = (Vec<f64>, Option<(Array2<f64>, Vec<f64>)>);
    let per: Vec<PerExample> = (0..n)
        .into_par_iter()
        .map(|i| {
            let j = model.jacobian(theta, x.row(i).as_slice().unwrap());
            let pi = probs.row(i);
            let mut r = pi.to_owned();
            r[y[i]] -= 1.0;
            let g = j.t().dot(&r).to_vec();
            let extra = want_ggn.then(|| {
                let mut b1 = j.clone();
                for c in 0..CLASSES {
                    let w = pi[c].sqrt();
                    b1.row_mut(c).mapv_inplace(|v| v * w);
                }
                (b1, j.t().dot(&pi).to_vec())
            });
            (g, extra)
        })
        .collect();
    let mut gm = Array2::zeros((n, p));
    for (i, (g, _)) in per.iter().enumerate() {
        gm.row_mut(i).assign(&ndarray::aview1(g));
    }
    let ggn = want_ggn.then(|| {
        let mut b1 = Array2::zeros((n * CLASSES, p));
        let mut b2 = Array2::zeros((n, p));
        for (i, (_, e)) in per.iter().enumerate() {
            let (j, jp) = e.as_ref().unwrap();
            b1.slice_mut(s![i * CLASSES..(i + 1) * CLASSES, ..])
                .assign(j);
            b2.row_mut(i).assign(&ndarray::aview1(jp));
        }
        (b1.t().dot(&b1) - b2.t().dot(&b2)) / n as f64
    });
    (gm, ggn)
}

fn to_layers(model: &dyn Classifier, g: &Array2<f64>) -> Vec<LayerGradients> {
    model
        .layers()
        .into_iter()
        .map(|(name, r)| {
            let sl = g.slice(s![.., r.clone()]);
            LayerGradients::new(
                name,
                g.nrows(),
                r.len(),
                sl.iter().map(|&v| v as f32).collect(),
            )
            .unwrap()
        })
        .collect()
}

/// Exact influence with the full (GGN + L2) Hessian: `V H⁻¹ Gᵀ`.
fn exact_hessian_scores(
    h: &Array2<f64>,
    reg: f64,
    train: &Array2<f64>,
    test: &Array2<f64>,
) -> ScoreMatrix {
    let p = h.nrows();
    let mut hm = h.clone();
    for i in 0..p {
        hm[[i, i]] += reg;
    }
    let chol = Cholesky::factor(hm.iter().copied().collect(), p)
        .expect("damped Hessian is positive definite");
    let mut x: Vec<f64> = test.iter().copied().collect();
    chol.solve_rows(&mut x);
    let xm = Array2::from_shape_vec((test.nrows(), p), x).unwrap();
    let s = xm.dot(&train.t());
    ScoreMatrix {
        tests: test.nrows(),
        rows: train.nrows(),
        data: s.iter().copied().collect(),
    }
}

fn targets(
    model: &dyn Classifier,
    subsets: &[Vec<usize>],
    xtr: &Array2<f64>,
    ytr: &[usize],
    xte: &Array2<f64>,
    yte: &[usize],
    reg: f64,
) -> Vec<Vec<f64>> {
    subsets
        .par_iter()
        .map(|sub| {
            let xs = select_rows(xtr, sub);
            let ys: Vec<usize> = sub.iter().map(|&i| ytr[i]).collect();
            let th = train(model, &xs, &ys, reg);
            log_prob_true(model, &th, xte, yte)
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

const GRID: [f64; 8] = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4];

fn lds_section(
    model: &dyn Classifier,
    cfg: &Config,
    xtr: &Array2<f64>,
    ytr: &[usize],
    xte: &Array2<f64>,
    yte: &[usize],
) {
    let t0 = Instant::now();
    let theta = train(model, xtr, ytr, cfg.reg);
    let (g, h) = gradients(model, &theta, xtr, ytr, true);
    let (v, _) = gradients(model, &theta, xte, yte, false);
    let (gl, vl) = (to_layers(model, &g), to_layers(model, &v));
    let half = cfg.train / 2;
    let mut rng = SplitMix64::new(1);
    let tune: Vec<Vec<usize>> = (0..cfg.tune_subsets)
        .map(|_| rng.subset(cfg.train, half))
        .collect();
    let mut rng = SplitMix64::new(2);
    let report: Vec<Vec<usize>> = (0..cfg.subsets)
        .map(|_| rng.subset(cfg.train, half))
        .collect();
    let tune_y = targets(model, &tune, xtr, ytr, xte, yte, cfg.reg);
    let report_y = targets(model, &report, xtr, ytr, xte, yte, cfg.reg);
    let retrain_s = t0.elapsed().as_secs_f64();

    let mut rows: Vec<(String, ScoreMatrix, f64)> = Vec::new();
    let ts = Instant::now();
    let exact = exact_hessian_scores(h.as_ref().unwrap(), cfg.reg, &g, &v);
    rows.push((
        "exact influence (full Hessian: GGN + L2)".into(),
        exact,
        ts.elapsed().as_secs_f64(),
    ));
    let best = |f: &dyn Fn(f64) -> ScoreMatrix| -> (f64, ScoreMatrix, f64) {
        let mut best: Option<(f64, f64)> = None;
        for c in GRID {
            let m = mean(&lds_per_test(&f(c), &tune, &tune_y).unwrap());
            if best.is_none_or(|(_, b)| m > b) {
                best = Some((c, m));
            }
        }
        let c = best.unwrap().0;
        let ts = Instant::now();
        let s = f(c);
        (c, s, ts.elapsed().as_secs_f64())
    };
    let (c, s, secs) = best(&|c| datainf_scores(&gl, &vl, Damping::Relative(c)).unwrap());
    rows.push((format!("DataInf (per-layer λ, c = {c} tuned)"), s, secs));
    let ts = Instant::now();
    let s = datainf_scores(&gl, &vl, Damping::Relative(0.1)).unwrap();
    rows.push((
        "DataInf (c = 0.1, paper default)".into(),
        s,
        ts.elapsed().as_secs_f64(),
    ));
    let (c, s, secs) = best(&|c| exact_influence_scores(&gl, &vl, Damping::Relative(c)).unwrap());
    rows.push((
        format!("exact damped Fisher per layer (c = {c} tuned)"),
        s,
        secs,
    ));
    let ts = Instant::now();
    let s = tracin_scores(&gl, &vl).unwrap();
    rows.push((
        "TracIn (gradient dot product)".into(),
        s,
        ts.elapsed().as_secs_f64(),
    ));
    // Normalised variants (an option, not the reference forms): the
    // planted-recall experiment on LoRA adapters tries them too.
    for (label, how) in [
        ("unit gradients", GradientNormalisation::Whole),
        ("unit per layer", GradientNormalisation::PerLayer),
    ] {
        for (name, m) in [
            (
                "DataInf (c = 0.1)",
                GradientMethod::DataInf(Damping::Relative(0.1)),
            ),
            ("TracIn", GradientMethod::TracIn),
        ] {
            let ts = Instant::now();
            let s = m.scores_normalised(&gl, &vl, how).unwrap();
            rows.push((format!("{name}, {label}"), s, ts.elapsed().as_secs_f64()));
        }
    }

    println!(
        "\n### LDS, {} ({} parameters)\n",
        model.name(),
        model.params()
    );
    println!(
        "n_train = {}, n_test = {}, m = {} reported subsets + {} tuning subsets (α = 0.5), L2 = {}; retraining took {:.1} s\n",
        cfg.train, cfg.test, cfg.subsets, cfg.tune_subsets, cfg.reg, retrain_s
    );
    println!("| method | LDS (mean Spearman) | 95% bootstrap CI | scoring time |");
    println!("|---|---|---|---|");
    for (name, s, secs) in &rows {
        let per = lds_per_test(s, &report, &report_y).unwrap();
        let (m, lo, hi) = bootstrap_mean_ci(&per, 1000, 9);
        println!("| {name} | {m:.3} | [{lo:.3}, {hi:.3}] | {:.3} s |", secs);
    }
}

fn mislabel_section(model: &dyn Classifier, cfg: &Config, xtr: &Array2<f64>, ytr: &[usize]) {
    let mut rng = SplitMix64::new(5);
    let n = ytr.len();
    let flip = rng.subset(n, n / 10);
    let mut y = ytr.to_vec();
    let mut flipped = vec![false; n];
    for &i in &flip {
        y[i] = (y[i] + 1 + rng.below(CLASSES - 1)) % CLASSES;
        flipped[i] = true;
    }
    let theta = train(model, xtr, &y, cfg.reg);
    let (g, h) = gradients(model, &theta, xtr, &y, true);
    let gl = to_layers(model, &g);
    let diag = |s: &ScoreMatrix| (0..n).map(|i| s.test(i)[i]).collect::<Vec<f64>>();
    let exact = exact_hessian_scores(h.as_ref().unwrap(), cfg.reg, &g, &g);
    let rows = [
        ("exact influence (full Hessian)", diag(&exact)),
        (
            "DataInf (c = 0.1)",
            diag(&datainf_scores(&gl, &gl, Damping::Relative(0.1)).unwrap()),
        ),
        (
            "exact damped Fisher per layer (c = 0.1)",
            diag(&exact_influence_scores(&gl, &gl, Damping::Relative(0.1)).unwrap()),
        ),
        ("TracIn (‖g‖²)", diag(&tracin_scores(&gl, &gl).unwrap())),
    ];
    println!(
        "\n### Mislabel detection, {} (10% of {} labels flipped)\n",
        model.name(),
        n
    );
    println!("| self-influence | AUROC |");
    println!("|---|---|");
    for (name, s) in rows {
        println!("| {name} | {:.3} |", auroc(&s, &flipped));
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let cfg = parse_args()?;
    let (x, y) = load_digits(&cfg.data)?;
    if cfg.train + cfg.test > y.len() {
        return Err(format!(
            "--train {} + --test {} exceeds {} rows",
            cfg.train,
            cfg.test,
            y.len()
        )
        .into());
    }
    let mut rng = SplitMix64::new(0);
    let perm = rng.subset(y.len(), y.len());
    // `subset` sorts; shuffle explicitly instead.
    let mut order: Vec<usize> = perm;
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let (tr, te) = (&order[..cfg.train], &order[cfg.train..cfg.train + cfg.test]);
    let xtr = x.select(Axis(0), tr);
    let ytr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
    let xte = x.select(Axis(0), te);
    let yte: Vec<usize> = te.iter().map(|&i| y[i]).collect();
    println!(
        "attr-eval: digits {} × 64, {} rayon threads",
        y.len(),
        rayon::current_num_threads()
    );
    let started = Instant::now();
    let lr = Logistic { dim: 65 };
    let mlp = Mlp {
        dim: 65,
        hidden: cfg.hidden,
        seed: 42,
    };
    lds_section(&lr, &cfg, &xtr, &ytr, &xte, &yte);
    lds_section(&mlp, &cfg, &xtr, &ytr, &xte, &yte);
    mislabel_section(&lr, &cfg, &xtr, &ytr);
    mislabel_section(&mlp, &cfg, &xtr, &ytr);
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
