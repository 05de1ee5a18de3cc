use trib_attribution::quality::{planted_recall, GradientMethod, SplitMix64};
use trib_attribution::{
    datainf_scores, exact_influence_scores, tracin_scores, Damping, LayerGradients,
};

fn random_layer(name: &str, n: usize, d: usize, rng: &mut SplitMix64) -> LayerGradients {
    let data = (0..n * d).map(|_| rng.normal() as f32).collect();
    LayerGradients::new(name, n, d, data).unwrap()
}

/// Solves `A x = b` by Gaussian elimination with partial pivoting (test oracle).
#[allow(clippy::needless_range_loop)]
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * x[k]).sum::<f64>()) / a[r][r];
    }
    x
}

fn row(l: &LayerGradients, i: usize) -> Vec<f64> {
    l.row(i).iter().map(|&x| x as f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn datainf_matches_the_dense_average_of_rank_one_inverses() {
    let mut rng = SplitMix64::new(7);
    let (n, t) = (7, 3);
    let train = vec![
        random_layer("a", n, 5, &mut rng),
        random_layer("b", n, 3, &mut rng),
    ];
    let test = vec![
        random_layer("a", t, 5, &mut rng),
        random_layer("b", t, 3, &mut rng),
    ];
    let got = datainf_scores(&train, &test, Damping::Relative(0.1)).unwrap();
    for ti in 0..t {
        for k in 0..n {
            let mut want = 0.0;
            for (g, v) in train.iter().zip(&test) {
                let d = g.cols;
                let lam = Damping::Relative(0.1).lambda(g);
                // r = (1/n) Σ_i (g_i g_iᵀ + λ I)⁻¹ v, solved densely.
                let mut r = vec![0.0; d];
                for i in 0..n {
                    let gi = row(g, i);
                    let a: Vec<Vec<f64>> = (0..d)
                        .map(|p| {
                            (0..d)
                                .map(|q| gi[p] * gi[q] + if p == q { lam } else { 0.0 })
                                .collect()
                        })
                        .collect();
                    let x = solve(a, row(v, ti));
                    for p in 0..d {
                        r[p] += x[p] / n as f64;
                    }
                }
                want += dot(&r, &row(g, k));
            }
            let g = got.test(ti)[k];
            assert!(
                (g - want).abs() < 1e-3 * (1.0 + want.abs()),
                "test {ti} row {k}: {g} vs {want}"
            );
        }
    }
}

fn check_exact(n: usize, d: usize, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let train = vec![random_layer("a", n, d, &mut rng)];
    let test = vec![random_layer("a", 2, d, &mut rng)];
    let lam = 0.3;
    let got = exact_influence_scores(&train, &test, Damping::Fixed(lam)).unwrap();
    let g = &train[0];
    let h: Vec<Vec<f64>> = (0..d)
        .map(|p| {
            (0..d)
                .map(|q| {
                    (0..n).map(|i| row(g, i)[p] * row(g, i)[q]).sum::<f64>() / n as f64
                        + if p == q { lam } else { 0.0 }
                })
                .collect()
        })
        .collect();
    for ti in 0..2 {
        let x = solve(h.clone(), row(&test[0], ti));
        for k in 0..n {
            let want = dot(&x, &row(g, k));
            let gk = got.test(ti)[k];
            assert!(
                (gk - want).abs() < 1e-6 * (1.0 + want.abs()),
                "n={n} d={d}: {gk} vs {want}"
            );
        }
    }
}

#[test]
fn exact_influence_matches_a_dense_solve_when_d_is_small() {
    check_exact(9, 4, 1);
}

#[test]
fn exact_influence_uses_woodbury_correctly_when_d_exceeds_n() {
    check_exact(4, 9, 2);
}

#[test]
fn tracin_is_the_summed_dot_product() {
    let mut rng = SplitMix64::new(3);
    let train = vec![
        random_layer("a", 5, 4, &mut rng),
        random_layer("b", 5, 2, &mut rng),
    ];
    let test = vec![
        random_layer("a", 1, 4, &mut rng),
        random_layer("b", 1, 2, &mut rng),
    ];
    let s = tracin_scores(&train, &test).unwrap();
    for k in 0..5 {
        let want =
            dot(&row(&train[0], k), &row(&test[0], 0)) + dot(&row(&train[1], k), &row(&test[1], 0));
        assert!((s.test(0)[k] - want).abs() < 1e-5);
    }
}

#[test]
fn mismatched_shapes_and_non_finite_gradients_are_refused() {
    let mut rng = SplitMix64::new(4);
    let train = vec![random_layer("a", 5, 4, &mut rng)];
    let test = vec![random_layer("a", 1, 3, &mut rng)];
    assert!(datainf_scores(&train, &test, Damping::default()).is_err());
    assert!(LayerGradients::new("x", 1, 2, vec![1.0, f32::NAN]).is_err());
    assert!(LayerGradients::new("x", 1, 2, vec![1.0]).is_err());
    let zero = vec![LayerGradients::new("z", 2, 2, vec![0.0; 4]).unwrap()];
    assert!(
        datainf_scores(&zero, &zero, Damping::default()).is_err(),
        "λ = 0 for all-zero gradients"
    );
}

#[test]
fn gradient_cache_reads_from_safetensors() {
    let a: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let b: Vec<u8> = [7.0f32, 8.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let ta = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &a).unwrap();
    let tb = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 1], &b).unwrap();
    let bytes = safetensors::serialize([("layer.b", tb), ("layer.a", ta)], None).unwrap();
    let layers = LayerGradients::from_safetensors(&bytes).unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(
        (layers[0].name.as_str(), layers[0].rows, layers[0].cols),
        ("layer.a", 2, 3)
    );
    assert_eq!(layers[0].row(1), &[4.0, 5.0, 6.0]);
    assert_eq!(layers[1].data, vec![7.0, 8.0]);
}

/// Synthetic planted data: 20 contributions × 5 rows; each answer's gradient
/// is a noisy copy of one row of its planted contribution.
#[test]
fn planted_recall_finds_planted_contributions_on_synthetic_gradients() {
    let mut rng = SplitMix64::new(11);
    let (n, d, t) = (100, 32, 20);
    let train = vec![random_layer("a", n, d, &mut rng)];
    let contrib: Vec<usize> = (0..n).map(|i| i / 5).collect();
    let truth: Vec<usize> = (0..t).collect();
    let mut data = Vec::with_capacity(t * d);
    for q in 0..t {
        let src = q * 5 + rng.below(5);
        data.extend(
            train[0]
                .row(src)
                .iter()
                .map(|&x| x + 0.3 * rng.normal() as f32),
        );
    }
    let test = vec![LayerGradients::new("a", t, d, data).unwrap()];
    for m in [
        GradientMethod::DataInf(Damping::default()),
        GradientMethod::TracIn,
        GradientMethod::Exact(Damping::default()),
    ] {
        let r = planted_recall(m, &train, &test, &contrib, &truth).unwrap();
        assert!(r.at1 >= 0.8 && r.at5 >= r.at1, "{m:?}: {r:?}");
    }
    // Against wrong ground truth, recall collapses.
    let wrong: Vec<usize> = (0..t).map(|q| (q + 7) % 20).collect();
    let r = planted_recall(GradientMethod::TracIn, &train, &test, &contrib, &wrong).unwrap();
    assert!(r.at1 <= 0.2, "{r:?}");
}
