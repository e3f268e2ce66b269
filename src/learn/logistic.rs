//! Logistic regression by Newton's method (IRLS) and linear ridge regression, sharing one
//! standardisation and one normal-equations solver.
//!
//! Features are standardised internally (centred, divided by their standard deviation)
//! so a single ridge strength means the same thing for every column, Newton's Hessian is
//! well conditioned, and constant columns become all-zero columns that the ridge pins to
//! a zero weight. The intercept is never penalised: an intercept-only logistic model
//! therefore predicts exactly the training mean.
//!
//! The ridge strength is `λ = RIDGE_PER_ROW · n`, i.e. a fixed fraction of the data's own
//! curvature: negligible on well-posed data, but it keeps the optimum finite when the
//! classes are separable, where the unpenalised likelihood has no maximum.

use serde::{Deserialize, Serialize};

use super::linalg::{cholesky_factor, cholesky_solve, dot, Matrix};

/// Ridge strength per training row (see the module docs).
pub const RIDGE_PER_ROW: f64 = 1e-4;
/// Newton iterations before giving up; well-posed problems converge in under 10.
pub const MAX_ITERATIONS: usize = 25;
/// Newton stops once the penalised log-likelihood changes by less than this fraction.
pub const TOLERANCE: f64 = 1e-10;
/// Predictions clamp the linear predictor to ±this, so probabilities stay strictly in
/// (0, 1) (about 1e-13 from either end): finite data never justifies certainty.
pub const MAX_LOGIT: f64 = 30.0;
/// Step halvings tried when a full Newton step lowers the objective.
const MAX_HALVINGS: usize = 30;
/// Added to the intercept's curvature (per row) in the Newton system only. It changes the
/// step, not the optimum, and keeps the system positive definite when every prediction
/// has saturated (e.g. all labels equal).
const INTERCEPT_DAMPING: f64 = 1e-9;

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no training rows")]
    Empty,
    #[error("{targets} targets for {rows} rows")]
    TargetCount { rows: usize, targets: usize },
    #[error("non-finite feature at row {row}, column {column}")]
    NonFiniteFeature { row: usize, column: usize },
    #[error("target {value} at row {row} is not a finite number (in [0, 1] for logistic regression)")]
    BadTarget { row: usize, value: f64 },
    #[error("the normal equations are not positive definite")]
    Singular,
}

/// Tuning knobs; [`FitOptions::default`] uses the module constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    pub ridge_per_row: f64,
    pub max_iterations: usize,
    pub tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self { ridge_per_row: RIDGE_PER_ROW, max_iterations: MAX_ITERATIONS, tolerance: TOLERANCE }
    }
}

/// A linear predictor over standardised features: `b + Σ wⱼ·(xⱼ − meanⱼ)/scaleⱼ`.
///
/// What is stored (and serialised) is that form and the fit's information matrix; what
/// predictions use is derived once from it ([`Folded`]): the same predictor and its
/// variance on the raw feature scale, so a prediction is dot products with no division.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LinearData", into = "LinearData")]
pub struct LinearModel {
    data: LinearData,
    folded: Folded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinearData {
    means: Vec<f64>,
    scales: Vec<f64>,
    intercept: f64,
    weights: Vec<f64>,
    /// Lower-triangular `L` with `L·Lᵀ` = the fit's information matrix on the
    /// standardised design (`[1, z…]`), so `Var(η̂(x)) ≈ dispersion · ‖L⁻¹·[1, z]‖²`.
    #[serde(default)]
    information: Vec<f64>,
    /// 1 for logistic regression; the residual variance for ridge regression.
    #[serde(default)]
    dispersion: f64,
}

/// The raw-scale form: `η = intercept + Σ weightsⱼ·xⱼ`, and `Var(η) = dispersion ·
/// ‖M·[1, x]‖²` with `M = L⁻¹·A` (lower-triangular), `A` the affine map from `[1, x]` to
/// `[1, z]`. Missing values take the training mean.
#[derive(Debug, Clone, PartialEq)]
struct Folded {
    intercept: f64,
    weights: Vec<f64>,
    /// M in panels of four rows: panel b holds rows 4b..4b+4 over columns 0..4b+4,
    /// interleaved by column (`[M[4b][j], …, M[4b+3][j]]` for each j) and zero-padded.
    /// Four elements of `M·u` then accumulate in registers from one broadcast `u[j]`
    /// at a time; column-wise updates stored and reloaded all of `M·u` for each column
    /// and were half the cost of a decision with uplift. Empty without an information
    /// matrix.
    variance_panels: Vec<f64>,
}

impl From<LinearModel> for LinearData {
    fn from(m: LinearModel) -> LinearData {
        m.data
    }
}

impl From<LinearData> for LinearModel {
    fn from(data: LinearData) -> LinearModel {
        let weights: Vec<f64> = data.weights.iter().zip(&data.scales).map(|(w, s)| w / s).collect();
        let intercept = data.intercept - dot(&weights, &data.means);
        let variance_panels = fold_information(&data);
        LinearModel { folded: Folded { intercept, weights, variance_panels }, data }
    }
}

/// `L⁻¹·A` in panels (see [`Folded`]), or nothing without a usable information matrix.
fn fold_information(data: &LinearData) -> Vec<f64> {
    let d = data.weights.len() + 1;
    if data.information.len() != d * d {
        return Vec::new();
    }
    let l = &data.information;
    // L⁻¹ by forward substitution of the unit vectors (d is small: tens of columns).
    let mut inv = vec![0.0; d * d];
    for j in 0..d {
        for i in j..d {
            let mut sum = if i == j { 1.0 } else { 0.0 };
            for k in j..i {
                sum -= l[i * d + k] * inv[k * d + j];
            }
            inv[i * d + j] = sum / l[i * d + i];
        }
    }
    // z₀ = 1, zⱼ = (xⱼ − mⱼ)/sⱼ: column 0 of A is [1, −m/s…], its diagonal [1, 1/s…].
    let m = |i: usize, k: usize| match k {
        0 => inv[i * d] - (1..=i).map(|j| inv[i * d + j] * data.means[j - 1] / data.scales[j - 1]).sum::<f64>(),
        k => inv[i * d + k] / data.scales[k - 1],
    };
    let mut panels = Vec::new();
    for b in 0..d.div_ceil(PANEL) {
        for k in 0..PANEL * (b + 1) {
            panels.extend((PANEL * b..PANEL * (b + 1)).map(|i| if i < d && k <= i { m(i, k) } else { 0.0 }));
        }
    }
    panels
}

/// Rows per panel of the variance factor: four f64 lanes.
const PANEL: usize = 4;

/// Widest padded `[1, x]` whose variance is computed without allocating: 32 features,
/// plus the intercept, rounded up to whole panels (the uplift learners' stack width).
const STACK_WIDTH: usize = (32 + 1usize).next_multiple_of(PANEL);

/// A dot product with four independent sums, so the additions pipeline (a single running
/// sum waits on every add). The order of summation differs from `dot`'s.
#[inline]
fn fast_dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0; 4];
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `P(y = 1 | x)` as a fitted logistic model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogisticModel {
    linear: LinearModel,
    iterations: usize,
    converged: bool,
}

/// `E[y | x]` as a fitted ridge-regression model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RidgeModel {
    linear: LinearModel,
}

impl LinearModel {
    /// The value of feature j for a prediction: `x[j]`, or the training mean when it is
    /// missing (non-finite, or beyond the end of `x`) — the same imputation the uplift
    /// learners use — so a malformed row degrades the prediction instead of poisoning it.
    #[inline]
    fn value(&self, x: &[f64], j: usize) -> f64 {
        match x.get(j) {
            Some(&v) if v.is_finite() => v,
            _ => self.data.means[j],
        }
    }

    /// Whether `x` needs no imputation: the common case of an encoded uplift input.
    #[inline]
    fn complete(&self, x: &[f64]) -> bool {
        x.len() == self.data.weights.len() && x.iter().all(|v| v.is_finite())
    }

    /// The linear predictor.
    pub fn linear_predictor(&self, x: &[f64]) -> f64 {
        let f = &self.folded;
        if self.complete(x) {
            return f.intercept + fast_dot(&f.weights, x);
        }
        f.intercept + f.weights.iter().enumerate().map(|(j, w)| w * self.value(x, j)).sum::<f64>()
    }

    /// The approximate variance of the linear predictor at `x` (the delta method's input):
    /// `dispersion · zᵀ·I⁻¹·z` with `z = [1, standardised x]`, missing values at the mean.
    /// 0 for a model restored without its information matrix.
    pub fn predictor_variance(&self, x: &[f64]) -> f64 {
        let panels = &self.folded.variance_panels;
        if panels.is_empty() {
            return 0.0;
        }
        let d = self.data.weights.len() + 1;
        let padded = d.next_multiple_of(PANEL);
        let mut stack = [0.0; STACK_WIDTH];
        let mut heap = Vec::new();
        let u: &mut [f64] = if padded <= STACK_WIDTH {
            &mut stack[..padded]
        } else {
            heap.resize(padded, 0.0);
            &mut heap
        };
        // u = [1, x, 0…] with missing values imputed; then ‖M·u‖², four rows at a time.
        u[0] = 1.0;
        if self.complete(x) {
            u[1..d].copy_from_slice(x);
        } else {
            for (j, uj) in u[1..d].iter_mut().enumerate() {
                *uj = self.value(x, j);
            }
        }
        let mut start = 0;
        let mut sum = 0.0;
        for width in (PANEL..=padded).step_by(PANEL) {
            let panel = &panels[start..start + PANEL * width];
            let mut y = [0.0; PANEL];
            for (column, &uk) in panel.chunks_exact(PANEL).zip(&u[..width]) {
                for r in 0..PANEL {
                    y[r] += column[r] * uk;
                }
            }
            sum += (y[0] * y[0] + y[1] * y[1]) + (y[2] * y[2] + y[3] * y[3]);
            start += PANEL * width;
        }
        self.data.dispersion * sum
    }

    /// Coefficients on the original feature scale: `(intercept, weights)` such that the
    /// linear predictor is `intercept + Σ weightⱼ·xⱼ`.
    pub fn coefficients(&self) -> (f64, Vec<f64>) {
        (self.folded.intercept, self.folded.weights.clone())
    }

    /// Number of features the model was trained on.
    pub fn width(&self) -> usize {
        self.data.weights.len()
    }
}

impl LogisticModel {
    /// Fits with the default [`FitOptions`]. `labels` are 0/1 (fractions in [0, 1] are
    /// accepted and treated as soft labels).
    pub fn fit(x: &Matrix, labels: &[f64]) -> Result<Self, FitError> {
        Self::fit_with(x, labels, &FitOptions::default())
    }

    pub fn fit_with(x: &Matrix, labels: &[f64], options: &FitOptions) -> Result<Self, FitError> {
        validate(x, labels, |v| (0.0..=1.0).contains(&v))?;
        let (means, scales) = standardisation(x);
        let design = design_matrix(x, &means, &scales);
        let lambda = options.ridge_per_row * x.rows() as f64;
        let fit = newton(&design, labels, lambda, options)?;
        let information = logistic_information(&design, &fit.beta, lambda)?;
        let linear = LinearModel::from_beta(means, scales, &fit.beta, information, 1.0);
        Ok(Self { linear, iterations: fit.iterations, converged: fit.converged })
    }

    /// `P(y = 1 | x)`, strictly inside (0, 1).
    pub fn predict(&self, x: &[f64]) -> f64 {
        sigmoid(bounded_logit(self.linear.linear_predictor(x)))
    }

    pub fn linear(&self) -> &LinearModel {
        &self.linear
    }

    /// Newton iterations taken.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Whether the log-likelihood settled before [`FitOptions::max_iterations`].
    pub fn converged(&self) -> bool {
        self.converged
    }
}

impl RidgeModel {
    /// Least squares with the default ridge strength.
    pub fn fit(x: &Matrix, targets: &[f64]) -> Result<Self, FitError> {
        Self::fit_with(x, targets, &FitOptions::default())
    }

    /// Least squares `min Σ(y − b − w·z)² + λ‖w‖²`, solved in one step from the normal
    /// equations (only `ridge_per_row` of `options` applies).
    pub fn fit_with(x: &Matrix, targets: &[f64], options: &FitOptions) -> Result<Self, FitError> {
        validate(x, targets, f64::is_finite)?;
        let (means, scales) = standardisation(x);
        let design = design_matrix(x, &means, &scales);
        let mut system = NormalEquations::new(design.cols());
        for (row, &y) in design.iter_rows().zip(targets) {
            system.add_row(row, 1.0, y);
        }
        let zero = vec![0.0; design.cols()];
        system.add_ridge(options.ridge_per_row * x.rows() as f64, &zero);
        let information = cholesky_factor(&system.hessian, system.dim).ok_or(FitError::Singular)?;
        let beta = system.solve()?;
        let rss: f64 = design.iter_rows().zip(targets).map(|(row, y)| (y - dot(&beta, row)).powi(2)).sum();
        let dispersion = rss / (x.rows().saturating_sub(design.cols())).max(1) as f64;
        Ok(Self { linear: LinearModel::from_beta(means, scales, &beta, information, dispersion) })
    }

    pub fn predict(&self, x: &[f64]) -> f64 {
        self.linear.linear_predictor(x)
    }

    pub fn linear(&self) -> &LinearModel {
        &self.linear
    }
}

impl LinearModel {
    /// From `beta = [intercept, weights…]` on the standardised scale.
    fn from_beta(means: Vec<f64>, scales: Vec<f64>, beta: &[f64], information: Vec<f64>, dispersion: f64) -> Self {
        LinearData { means, scales, intercept: beta[0], weights: beta[1..].to_vec(), information, dispersion }.into()
    }
}

/// Checks shape and finiteness up front so the numerical code can assume clean input.
fn validate(x: &Matrix, targets: &[f64], target_ok: impl Fn(f64) -> bool) -> Result<(), FitError> {
    if x.rows() == 0 {
        return Err(FitError::Empty);
    }
    if targets.len() != x.rows() {
        return Err(FitError::TargetCount { rows: x.rows(), targets: targets.len() });
    }
    if let Some((row, column)) = x.first_non_finite() {
        return Err(FitError::NonFiniteFeature { row, column });
    }
    match targets.iter().position(|&v| !target_ok(v)) {
        Some(row) => Err(FitError::BadTarget { row, value: targets[row] }),
        None => Ok(()),
    }
}

/// Per-column mean and (population) standard deviation. A constant column gets scale 1:
/// centred, it is all zeros, and the ridge keeps its weight at 0.
fn standardisation(x: &Matrix) -> (Vec<f64>, Vec<f64>) {
    let n = x.rows() as f64;
    let mut means = vec![0.0; x.cols()];
    for row in x.iter_rows() {
        means.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    means.iter_mut().for_each(|m| *m /= n);
    let mut scales = vec![0.0; x.cols()];
    for row in x.iter_rows() {
        scales.iter_mut().zip(row.iter().zip(&means)).for_each(|(s, (v, m))| *s += (v - m) * (v - m));
    }
    for (s, m) in scales.iter_mut().zip(&means) {
        let sd = (*s / n).sqrt();
        *s = if sd > 1e-12 * (1.0 + m.abs()) { sd } else { 1.0 };
    }
    (means, scales)
}

/// Standardised features with a leading column of ones, so every row is `[1, z₁, …]` and
/// the intercept is simply the first coefficient.
fn design_matrix(x: &Matrix, means: &[f64], scales: &[f64]) -> Matrix {
    let mut design = Matrix::with_cols(x.cols() + 1);
    let mut buffer = vec![1.0; x.cols() + 1];
    for row in x.iter_rows() {
        for (j, v) in row.iter().enumerate() {
            buffer[j + 1] = (v - means[j]) / scales[j];
        }
        design.push_row(&buffer).expect("buffer has the design width");
    }
    design
}

/// The Newton system `H·step = g`, accumulated row by row (upper triangle of `H` only).
struct NormalEquations {
    dim: usize,
    hessian: Vec<f64>,
    gradient: Vec<f64>,
}

impl NormalEquations {
    fn new(dim: usize) -> Self {
        Self { dim, hessian: vec![0.0; dim * dim], gradient: vec![0.0; dim] }
    }

    /// Adds `weight·x·xᵀ` to the Hessian and `residual·x` to the gradient.
    fn add_row(&mut self, x: &[f64], weight: f64, residual: f64) {
        for a in 0..self.dim {
            self.gradient[a] += residual * x[a];
            let wa = weight * x[a];
            let h_row = &mut self.hessian[a * self.dim..(a + 1) * self.dim];
            for (h, xb) in h_row[a..].iter_mut().zip(&x[a..]) {
                *h += wa * xb;
            }
        }
    }

    /// The ridge penalty `λ/2·‖w‖²` (intercept excluded) at coefficients `beta`.
    fn add_ridge(&mut self, lambda: f64, beta: &[f64]) {
        for (j, b) in beta.iter().enumerate().skip(1) {
            self.hessian[j * self.dim + j] += lambda;
            self.gradient[j] -= lambda * b;
        }
    }

    fn solve(self) -> Result<Vec<f64>, FitError> {
        cholesky_solve(&self.hessian, &self.gradient).ok_or(FitError::Singular)
    }
}

struct NewtonFit {
    beta: Vec<f64>,
    iterations: usize,
    converged: bool,
}

/// Maximises the penalised log-likelihood from an intercept-only start at the logit of
/// the mean label, with step halving so every accepted step increases the objective.
fn newton(design: &Matrix, labels: &[f64], lambda: f64, options: &FitOptions) -> Result<NewtonFit, FitError> {
    let mut beta = initial_beta(design.cols(), labels);
    let mut objective = penalised_log_likelihood(design, labels, &beta, lambda);
    for iteration in 1..=options.max_iterations {
        let step = newton_step(design, labels, &beta, lambda)?;
        let Some((next, next_objective)) = line_search(design, labels, &beta, &step, objective, lambda) else {
            // No step improves the objective: we are at the optimum to working precision.
            return Ok(NewtonFit { beta, iterations: iteration, converged: true });
        };
        let change = next_objective - objective;
        (beta, objective) = (next, next_objective);
        if change.abs() <= options.tolerance * (objective.abs() + options.tolerance) {
            return Ok(NewtonFit { beta, iterations: iteration, converged: true });
        }
    }
    Ok(NewtonFit { beta, iterations: options.max_iterations, converged: false })
}

fn initial_beta(dim: usize, labels: &[f64]) -> Vec<f64> {
    let mean = labels.iter().sum::<f64>() / labels.len() as f64;
    let clipped = mean.clamp(1e-6, 1.0 - 1e-6);
    let mut beta = vec![0.0; dim];
    beta[0] = (clipped / (1.0 - clipped)).ln();
    beta
}

/// One pass over the rows: gradient and Fisher information at `beta`, solved for the step.
fn newton_step(design: &Matrix, labels: &[f64], beta: &[f64], lambda: f64) -> Result<Vec<f64>, FitError> {
    let mut system = NormalEquations::new(design.cols());
    for (row, &y) in design.iter_rows().zip(labels) {
        let p = sigmoid(dot(beta, row));
        system.add_row(row, p * (1.0 - p), y - p);
    }
    system.add_ridge(lambda, beta);
    system.hessian[0] += INTERCEPT_DAMPING * design.rows() as f64;
    system.solve()
}

/// The Cholesky factor of the penalised Fisher information at the optimum: its inverse
/// is the coefficients' approximate covariance.
fn logistic_information(design: &Matrix, beta: &[f64], lambda: f64) -> Result<Vec<f64>, FitError> {
    let mut system = NormalEquations::new(design.cols());
    for row in design.iter_rows() {
        let p = sigmoid(bounded_logit(dot(beta, row)));
        system.add_row(row, p * (1.0 - p), 0.0);
    }
    system.add_ridge(lambda, beta);
    system.hessian[0] += INTERCEPT_DAMPING * design.rows() as f64;
    cholesky_factor(&system.hessian, system.dim).ok_or(FitError::Singular)
}

/// Tries `beta + t·step` for `t = 1, ½, ¼, …` and returns the first that does not lower
/// the objective; `None` if none does.
fn line_search(
    design: &Matrix,
    labels: &[f64],
    beta: &[f64],
    step: &[f64],
    objective: f64,
    lambda: f64,
) -> Option<(Vec<f64>, f64)> {
    let mut t = 1.0;
    for _ in 0..MAX_HALVINGS {
        let candidate: Vec<f64> = beta.iter().zip(step).map(|(b, s)| b + t * s).collect();
        let value = penalised_log_likelihood(design, labels, &candidate, lambda);
        if value >= objective {
            return Some((candidate, value));
        }
        t *= 0.5;
    }
    None
}

/// `Σ [y·η − log(1 + e^η)] − λ/2·‖w‖²`, the quantity Newton maximises.
fn penalised_log_likelihood(design: &Matrix, labels: &[f64], beta: &[f64], lambda: f64) -> f64 {
    let log_likelihood: f64 = design
        .iter_rows()
        .zip(labels)
        .map(|(row, &y)| {
            let eta = dot(beta, row);
            y * eta - softplus(eta)
        })
        .sum();
    log_likelihood - 0.5 * lambda * dot(&beta[1..], &beta[1..])
}

/// Clamps to ±[`MAX_LOGIT`]. NaN (only reachable when features near ±1e300 overflow to
/// opposite infinities) maps to 0, i.e. "no information", rather than a NaN probability.
pub(crate) fn bounded_logit(eta: f64) -> f64 {
    if eta.is_nan() {
        0.0
    } else {
        eta.clamp(-MAX_LOGIT, MAX_LOGIT)
    }
}

/// `log(1 + e^x)` without overflow for large `x` or loss of precision for very negative `x`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `1 / (1 + e^−x)`, evaluated on the side where the exponential cannot overflow.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::rng::SplitMix64;

    /// The folded raw-scale variance is `dispersion · zᵀ·H⁻¹·z`, H the information matrix,
    /// computed here the long way (rebuild H = L·Lᵀ, solve, dot).
    #[test]
    fn the_folded_variance_is_the_quadratic_form_of_the_inverse_information() {
        let (x, y) = simulate_logistic(3_000, 4);
        let ridge_targets: Vec<f64> = y.iter().zip(x.iter_rows()).map(|(y, r)| y + 0.3 * r[0]).collect();
        let models = [LogisticModel::fit(&x, &y).unwrap().linear, RidgeModel::fit(&x, &ridge_targets).unwrap().linear];
        for m in models {
            let d = m.width() + 1;
            let l = &m.data.information;
            let mut h = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    h[i * d + j] = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
                }
            }
            for point in [[0.5, 1.0, 3.0], [-1.9, 0.0, 9.5], [f64::NAN, 1.0, 0.0]] {
                let z: Vec<f64> = std::iter::once(1.0)
                    .chain((0..3).map(|j| (m.value(&point, j) - m.data.means[j]) / m.data.scales[j]))
                    .collect();
                let v = cholesky_solve(&h, &z).unwrap();
                let expected = m.data.dispersion * dot(&z, &v);
                let got = m.predictor_variance(&point);
                assert!((got - expected).abs() <= 1e-9 * expected.abs().max(1e-12), "{got} vs {expected}");
                assert!(got > 0.0);
            }
            let (b, w) = m.coefficients();
            let lp = b + dot(&w, &[0.5, 1.0, 3.0]);
            assert!((lp - m.linear_predictor(&[0.5, 1.0, 3.0])).abs() < 1e-12);
        }
    }

    fn simulate_logistic(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        // True model: logit p = -0.5 + 1.0·x1 − 0.8·x2 + 0.15·x3.
        let mut rng = SplitMix64::new(seed);
        let mut x = Matrix::with_cols(3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row = [rng.uniform() * 4.0 - 2.0, f64::from(u8::from(rng.bernoulli(0.5))), rng.uniform() * 10.0];
            let p = sigmoid(-0.5 + row[0] - 0.8 * row[1] + 0.15 * row[2]);
            y.push(f64::from(u8::from(rng.bernoulli(p))));
            x.push_row(&row).unwrap();
        }
        (x, y)
    }

    #[test]
    fn recovers_known_coefficients() {
        let (x, y) = simulate_logistic(20_000, 7);
        let model = LogisticModel::fit(&x, &y).unwrap();
        assert!(model.converged() && model.iterations() < 10, "iterations {}", model.iterations());
        let (intercept, weights) = model.linear().coefficients();
        let truth = [-0.5, 1.0, -0.8, 0.15];
        let fitted = [intercept, weights[0], weights[1], weights[2]];
        // Standard errors at n = 20k are ~0.01–0.04; allow about three of them.
        for (k, (f, t)) in fitted.iter().zip(truth).enumerate() {
            assert!((f - t).abs() < 0.1, "coefficient {k}: fitted {f}, true {t} ({fitted:?})");
        }
    }

    #[test]
    fn intercept_only_model_predicts_the_mean_rate() {
        let labels: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i % 8 < 3))).collect();
        let mean = labels.iter().sum::<f64>() / 100.0;
        let x = Matrix::from_rows(&vec![Vec::new(); 100]).unwrap();
        let model = LogisticModel::fit(&x, &labels).unwrap();
        assert!((model.predict(&[]) - mean).abs() < 1e-12, "{} vs {mean}", model.predict(&[]));
    }

    #[test]
    fn separable_data_stays_finite() {
        let rows: Vec<[f64; 1]> = (-50..50).map(|i| [f64::from(i) / 10.0]).collect();
        let labels: Vec<f64> = rows.iter().map(|r| f64::from(u8::from(r[0] > 0.0))).collect();
        let model = LogisticModel::fit(&Matrix::from_rows(&rows).unwrap(), &labels).unwrap();
        let (intercept, weights) = model.linear().coefficients();
        assert!(intercept.is_finite() && weights[0].is_finite() && weights[0] > 0.0);
        assert!(model.predict(&[-1.0]) < 0.05 && model.predict(&[1.0]) > 0.95);
        for x in [-1e300, -1e6, -1.0, 0.0, 1.0, 1e6, 1e300] {
            let p = model.predict(&[x]);
            assert!(p > 0.0 && p < 1.0, "p({x}) = {p}");
        }
    }

    #[test]
    fn constant_labels_and_columns_do_not_break_the_fit() {
        let rows: Vec<[f64; 2]> = (0..50).map(|i| [f64::from(i), 3.0]).collect();
        let x = Matrix::from_rows(&rows).unwrap();
        let zeros = LogisticModel::fit(&x, &[0.0; 50]).unwrap();
        let p = zeros.predict(&[10.0, 3.0]);
        assert!(p > 0.0 && p < 1e-4, "{p}");
        let labels: Vec<f64> = (0..50).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
        let model = LogisticModel::fit(&x, &labels).unwrap();
        assert_eq!(model.linear().coefficients().1[1], 0.0);
    }

    #[test]
    fn predictions_impute_missing_features_as_the_training_mean() {
        let (x, y) = simulate_logistic(2_000, 11);
        let model = LogisticModel::fit(&x, &y).unwrap();
        let mean_x3 = x.iter_rows().map(|r| r[2]).sum::<f64>() / 2_000.0;
        let expected = model.predict(&[0.5, 1.0, mean_x3]);
        assert!((model.predict(&[0.5, 1.0, f64::NAN]) - expected).abs() < 1e-12);
        assert!((model.predict(&[0.5, 1.0]) - expected).abs() < 1e-12);
    }

    #[test]
    fn ridge_recovers_linear_coefficients() {
        let mut rng = SplitMix64::new(3);
        let mut x = Matrix::with_cols(2);
        let mut y = Vec::new();
        for _ in 0..5_000 {
            let row = [rng.uniform(), f64::from(u8::from(rng.bernoulli(0.3)))];
            y.push(2.0 + 3.0 * row[0] - row[1] + 0.1 * (rng.uniform() - 0.5));
            x.push_row(&row).unwrap();
        }
        let (intercept, weights) = RidgeModel::fit(&x, &y).unwrap().linear().coefficients();
        assert!((intercept - 2.0).abs() < 0.01 && (weights[0] - 3.0).abs() < 0.01 && (weights[1] + 1.0).abs() < 0.01);
    }

    #[test]
    fn ridge_without_features_is_the_mean() {
        let x = Matrix::from_rows(&vec![Vec::new(); 4]).unwrap();
        let model = RidgeModel::fit(&x, &[1.0, 2.0, 3.0, 6.0]).unwrap();
        assert!((model.predict(&[]) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn invalid_input_is_a_typed_error() {
        let x = Matrix::from_rows(&[[1.0], [f64::NAN]]).unwrap();
        assert_eq!(LogisticModel::fit(&x, &[0.0, 1.0]), Err(FitError::NonFiniteFeature { row: 1, column: 0 }));
        let x = Matrix::from_rows(&[[1.0], [2.0]]).unwrap();
        assert_eq!(LogisticModel::fit(&x, &[0.0]), Err(FitError::TargetCount { rows: 2, targets: 1 }));
        assert_eq!(LogisticModel::fit(&x, &[0.0, 2.0]), Err(FitError::BadTarget { row: 1, value: 2.0 }));
        assert!(RidgeModel::fit(&x, &[0.0, 2.0]).is_ok());
        assert_eq!(RidgeModel::fit(&Matrix::with_cols(1), &[]), Err(FitError::Empty));
    }

    #[test]
    fn sigmoid_and_softplus_are_stable() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) <= 1.0);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(800.0), 800.0);
        assert!(softplus(-800.0) >= 0.0);
    }
}
