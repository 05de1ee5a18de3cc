//! A small dense Cholesky factorisation for the exact influence solve.

/// Lower-triangular Cholesky factor `L` of a symmetric positive-definite
/// matrix `A = L Lᵀ` (row-major, `dim × dim`).
pub struct Cholesky {
    l: Vec<f64>,
    dim: usize,
}

impl Cholesky {
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors the textbook algorithm
    /// Factors `a`; `None` if it is not (numerically) positive definite.
    pub fn factor(mut a: Vec<f64>, dim: usize) -> Option<Self> {
        assert_eq!(a.len(), dim * dim, "matrix is dim × dim");
        for j in 0..dim {
            let mut diag = a[j * dim + j];
            for k in 0..j {
                diag -= a[j * dim + k] * a[j * dim + k];
            }
            if !diag.is_finite() || diag <= 0.0 {
                return None;
            }
            let djj = diag.sqrt();
            a[j * dim + j] = djj;
            let (head, tail) = a.split_at_mut((j + 1) * dim);
            let rowj = &head[j * dim..j * dim + j];
            for (r, row) in tail.chunks_mut(dim).enumerate() {
                let _ = r;
                let mut s = row[j];
                for k in 0..j {
                    s -= row[k] * rowj[k];
                }
                row[j] = s / djj;
            }
        }
        for i in 0..dim {
            for j in i + 1..dim {
                a[i * dim + j] = 0.0;
            }
        }
        Some(Cholesky { l: a, dim })
    }

    #[allow(clippy::needless_range_loop)]
    /// Solves `A x = b` in place for every row `b` of the row-major `rhs`
    /// (`rhs.len()` a multiple of `dim`).
    pub fn solve_rows(&self, rhs: &mut [f64]) {
        let n = self.dim;
        for b in rhs.chunks_mut(n) {
            // L y = b
            for i in 0..n {
                let mut s = b[i];
                for k in 0..i {
                    s -= self.l[i * n + k] * b[k];
                }
                b[i] = s / self.l[i * n + i];
            }
            // Lᵀ x = y
            for i in (0..n).rev() {
                let mut s = b[i];
                for k in i + 1..n {
                    s -= self.l[k * n + i] * b[k];
                }
                b[i] = s / self.l[i * n + i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_spd_system() {
        // A = [[4, 2], [2, 3]], b = [2, 5] → x = [-0.5, 2]
        let c = Cholesky::factor(vec![4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let mut b = vec![2.0, 5.0];
        c.solve_rows(&mut b);
        assert!((b[0] + 0.5).abs() < 1e-12 && (b[1] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn indefinite_matrix_is_refused() {
        assert!(Cholesky::factor(vec![1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}
