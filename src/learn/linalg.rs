//! The little linear algebra the learners need: a row-major dense matrix and a Cholesky
//! solver for the small symmetric positive-definite systems of Newton's method.
//!
//! Systems are (features + 1)² — tens of unknowns — so a straightforward O(d³)
//! factorisation is plenty; the cost of fitting is in the O(n·d²) passes over the rows.

/// A row whose width differs from the matrix's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row} has {found} values, expected {expected}")]
pub struct RaggedRow {
    pub row: usize,
    pub expected: usize,
    pub found: usize,
}

/// Dense row-major matrix. Rows are stored in one allocation so passes over the data are
/// cache-friendly and selecting a subset of rows is a single copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// An empty matrix whose rows will have `cols` values.
    pub fn with_cols(cols: usize) -> Self {
        Self { rows: 0, cols, data: Vec::new() }
    }

    /// Copies `rows`, all of which must have the same width (the first row's; 0 if none).
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self, RaggedRow> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut matrix = Self::with_cols(cols);
        matrix.data.reserve(cols * rows.len());
        for row in rows {
            matrix.push_row(row.as_ref())?;
        }
        Ok(matrix)
    }

    /// Appends one row.
    pub fn push_row(&mut self, row: &[f64]) -> Result<(), RaggedRow> {
        if row.len() != self.cols {
            return Err(RaggedRow { row: self.rows, expected: self.cols, found: row.len() });
        }
        self.data.extend_from_slice(row);
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`. Panics when `i` is out of range, like slice indexing.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Rows in order. (Not `chunks_exact`, which rejects a width of 0: intercept-only
    /// models have no feature columns.)
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f64]> + '_ {
        (0..self.rows).map(move |i| self.row(i))
    }

    /// The first non-finite entry as `(row, column)`, if any.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        let at = self.data.iter().position(|v| !v.is_finite())?;
        Some((at / self.cols, at % self.cols))
    }
}

/// Solves `A·x = b` for a symmetric positive-definite `A` (row-major, `d×d`, only the
/// upper triangle is read) by Cholesky factorisation. `None` when `A` is not positive
/// definite to working precision — the caller decides what that means.
pub fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let d = b.len();
    debug_assert_eq!(a.len(), d * d);
    let l = cholesky_factor(a, d)?;
    let y = forward_substitute(&l, b);
    Some(back_substitute(&l, y))
}

/// Lower-triangular `L` with `L·Lᵀ = A`, row-major.
pub fn cholesky_factor(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for j in 0..d {
        let diag = a[j * d + j] - dot(&l[j * d..j * d + j], &l[j * d..j * d + j]);
        if !diag.is_finite() || diag <= 0.0 {
            return None;
        }
        let pivot = diag.sqrt();
        l[j * d + j] = pivot;
        for i in j + 1..d {
            // A is symmetric and we keep its upper triangle: A[i][j] = A[j][i] for i > j.
            let off = a[j * d + i] - dot(&l[i * d..i * d + j], &l[j * d..j * d + j]);
            l[i * d + j] = off / pivot;
        }
    }
    Some(l)
}

/// Solves `L·y = b`.
fn forward_substitute(l: &[f64], b: &[f64]) -> Vec<f64> {
    let d = b.len();
    let mut y = vec![0.0; d];
    for i in 0..d {
        y[i] = (b[i] - dot(&l[i * d..i * d + i], &y[..i])) / l[i * d + i];
    }
    y
}

/// Solves `Lᵀ·x = y` in place.
fn back_substitute(l: &[f64], mut x: Vec<f64>) -> Vec<f64> {
    let d = x.len();
    for i in (0..d).rev() {
        let tail: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (x[i] - tail) / l[i * d + i];
    }
    x
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_known_spd_system() {
        // A = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]], x = [1, -2, 0.5].
        let a = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let x = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3).map(|i| dot(&a[i * 3..i * 3 + 3], &x)).collect();
        let solved = cholesky_solve(&a, &b).unwrap();
        for (s, e) in solved.iter().zip(x) {
            assert!((s - e).abs() < 1e-12, "{solved:?}");
        }
    }

    #[test]
    fn reads_only_the_upper_triangle() {
        let a = [2.0, 1.0, f64::NAN, 2.0];
        let solved = cholesky_solve(&a, &[3.0, 3.0]).unwrap();
        assert!((solved[0] - 1.0).abs() < 1e-12 && (solved[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_indefinite_and_singular_matrices() {
        assert_eq!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]), None);
        assert_eq!(cholesky_solve(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0]), None);
        assert_eq!(cholesky_solve(&[], &[]), Some(vec![]));
    }

    #[test]
    fn matrix_rows_and_shape_errors() {
        let m = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 2));
        assert_eq!(m.row(1), &[3.0, 4.0]);
        let err = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]).unwrap_err();
        assert_eq!(err, RaggedRow { row: 1, expected: 2, found: 1 });
        let empty_rows = Matrix::from_rows(&[Vec::<f64>::new(), Vec::new()]).unwrap();
        assert_eq!((empty_rows.rows(), empty_rows.iter_rows().count()), (2, 2));
    }

    #[test]
    fn finds_non_finite_entries() {
        let m = Matrix::from_rows(&[[1.0, 2.0], [3.0, f64::INFINITY]]).unwrap();
        assert_eq!(m.first_non_finite(), Some((1, 1)));
    }
}
