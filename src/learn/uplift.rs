//! Uplift (conditional average treatment effect) estimation for one offer: how much does
//! making the offer change this customer's conversion probability?
//!
//! Three meta-learners, all built from the same outcome models μ_T(x) and μ_C(x):
//! * **T-learner** — one outcome model per arm, `τ(x) = μ_T(x) − μ_C(x)` (Künzel, Sekhon,
//!   Bickel & Yu 2019, PNAS 116(10)). Simple; each model only sees its own arm.
//! * **X-learner** (same paper) — imputes each unit's individual effect with the *other*
//!   arm's outcome model, regresses those effects on the features per arm, and blends the
//!   two effect models by the propensity `g(x) = P(treated | x)`.
//! * **DR-learner** (Kennedy 2023, "Towards optimal doubly robust estimation of
//!   heterogeneous causal effects") — regresses the doubly robust pseudo-outcome
//!   `ψ = μ_T − μ_C + T·(Y − μ_T)/e − (1 − T)·(Y − μ_C)/(1 − e)` on the features, with the
//!   outcome models cross-fitted on the other half of the rows.
//!
//! [`fit_selected`] scores all three by 5-fold cross-validated R-loss (Nie & Wager
//! 2021; fewer folds for a small arm): each fold is scored by the learners fitted on the
//! other folds, with nuisances
//! fitted on the fold alone. The T-learner is kept unless another learner's R-loss is
//! lower by at least [`SWITCH_Z`] standard errors of the paired difference; decisions use
//! the kept learner fitted on every row.
//!
//! Every τ comes with a standard error (the delta method on the fitted models'
//! information matrices), and is shrunk toward the offer's average effect by how well it
//! is known: `τ = τ̄ + w·(τ̂ − τ̄)` with `w = s²/(s² + se²)`, where `s²` is how much the
//! true effect varies between customers (the spread of τ̂ less its noise). A model fitted
//! on little data says little more than the average effect.
//!
//! Missing feature values (`NaN`, any non-finite value) take the training column mean,
//! and a column that had missing values in training gets a 0/1 "was missing" indicator,
//! so a missing value can carry information of its own.

use serde::{Deserialize, Serialize};

use super::linalg::{Matrix, RaggedRow};
use super::logistic::{FitError, LogisticModel, RidgeModel};
use super::stats::Arm;

/// Fewest rows either arm needs before a model is fitted: below this the per-arm outcome
/// model is mostly noise and the estimated effects are not worth acting on.
pub const MIN_ROWS_PER_ARM: usize = 20;

/// τ at or above this is a persuadable when segmenting (2 percentage points); any τ
/// below 0 is a sleeping dog.
pub const EFFECT_THRESHOLD: f64 = 0.02;
/// With no effect, a control conversion rate at least this high is a sure thing.
pub const SURE_THING_BASE_RATE: f64 = 0.3;
/// With no effect, a treated conversion rate below this is a lost cause.
pub const LOST_CAUSE_TREATED_RATE: f64 = 0.05;
/// Rows the shrinkage prior's spread is estimated on (evenly spaced).
const PRIOR_ROWS: usize = 4_000;
/// Widest encoded feature vector handled without allocating.
const STACK_WIDTH: usize = 32;

/// One customer's training example for one offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpliftRow {
    /// Numeric attributes, booleans and one-hot categories as 0/1, missing values as NaN.
    pub features: Vec<f64>,
    /// Whether the customer received the offer (false: held out).
    pub treated: bool,
    pub converted: bool,
}

/// Which meta-learner to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Learner {
    TLearner,
    XLearner,
    DrLearner,
}

impl Learner {
    pub const ALL: [Learner; 3] = [Learner::TLearner, Learner::XLearner, Learner::DrLearner];

    pub fn name(self) -> &'static str {
        match self {
            Learner::TLearner => "t_learner",
            Learner::XLearner => "x_learner",
            Learner::DrLearner => "dr_learner",
        }
    }

    pub fn parse(name: &str) -> Option<Learner> {
        Learner::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// The sub-model a fitting failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    TreatedOutcome,
    ControlOutcome,
    TreatedEffect,
    ControlEffect,
    Propensity,
    DoublyRobustEffect,
}

/// Why an uplift model was not fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpliftError {
    #[error(transparent)]
    Ragged(#[from] RaggedRow),
    #[error("{arm:?} arm has {found} rows; at least {required} are needed")]
    TooFewRows { arm: Arm, found: usize, required: usize },
    #[error("every {arm:?} row has the same outcome, so its conversion model is undefined")]
    NoVariation { arm: Arm },
    #[error("fitting the {stage:?} model: {source}")]
    Fit { stage: Stage, source: FitError },
}

/// What the model says about one customer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpliftPrediction {
    /// Estimated effect of the offer on conversion probability, in [−1, 1], shrunk
    /// toward the offer's average effect by how uncertain the estimate is.
    pub tau: f64,
    /// Standard error of `tau`.
    pub se: f64,
    /// The learner's estimate before shrinkage.
    pub raw_tau: f64,
    /// Estimated conversion probability if treated.
    pub mu_t: f64,
    /// Estimated conversion probability if held out.
    pub mu_c: f64,
}

/// How raw features become the models' input: imputation and missing indicators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Encoding {
    /// Training mean of each input column (over its finite values).
    means: Vec<f64>,
    /// Input columns that had missing values in training: each adds a 0/1 column.
    indicators: Vec<usize>,
}

impl Encoding {
    fn of(rows: &[UpliftRow], width: usize) -> Encoding {
        let mut sums = vec![0.0; width];
        let mut counts = vec![0usize; width];
        for row in rows {
            for (j, v) in row.features.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                sums[j] += v;
                counts[j] += 1;
            }
        }
        let means = sums.iter().zip(&counts).map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 }).collect();
        let indicators = (0..width).filter(|&j| counts[j] < rows.len()).collect();
        Encoding { means, indicators }
    }

    fn width(&self) -> usize {
        self.means.len() + self.indicators.len()
    }

    /// Writes the encoded `x` into `out` (of [`Encoding::width`]). Features beyond the
    /// end of a short vector count as missing.
    fn encode_into(&self, x: &[f64], out: &mut [f64]) {
        let value = |j: usize| x.get(j).copied().filter(|v| v.is_finite());
        for (j, (o, m)) in out.iter_mut().zip(&self.means).enumerate() {
            *o = value(j).unwrap_or(*m);
        }
        for (o, &j) in out[self.means.len()..].iter_mut().zip(&self.indicators) {
            *o = f64::from(u8::from(value(j).is_none()));
        }
    }

    /// Calls `with` on the encoded `x`, on the stack for the usual widths.
    fn with_encoded<R>(&self, x: &[f64], with: impl FnOnce(&[f64]) -> R) -> R {
        let w = self.width();
        if w <= STACK_WIDTH {
            let mut buf = [0.0; STACK_WIDTH];
            self.encode_into(x, &mut buf[..w]);
            with(&buf[..w])
        } else {
            let mut buf = vec![0.0; w];
            self.encode_into(x, &mut buf);
            with(&buf)
        }
    }
}

/// A fitted uplift model for one offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpliftModel {
    learner: Learner,
    encoding: Encoding,
    mu_t: LogisticModel,
    mu_c: LogisticModel,
    effect: Effect,
    prior: Prior,
    n_treated: usize,
    n_control: usize,
}

/// The learner's effect stage on top of the outcome models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Effect {
    /// T-learner: μ_T − μ_C.
    Difference,
    /// X-learner: `g·τ_C + (1 − g)·τ_T`.
    Crossed(Box<Crossed>),
    /// DR-learner: a regression of the doubly robust pseudo-outcome.
    DoublyRobust { tau: RidgeModel },
}

/// The X-learner's effect models and propensity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Crossed {
    tau_t: RidgeModel,
    tau_c: RidgeModel,
    propensity: LogisticModel,
}

/// What a τ is shrunk toward, and how far the truth spreads around it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prior {
    /// The offer's average effect: treated minus control conversion rate.
    mean: f64,
    /// The sampling variance of `mean`.
    #[serde(default)]
    mean_variance: f64,
    /// Between-customer variance of the true effect (estimated; ≥ a small floor).
    variance: f64,
}

/// Smallest between-customer variance the prior assumes: (0.5 pp)².
const PRIOR_VARIANCE_FLOOR: f64 = 2.5e-5;

/// Customer segments by estimated effect and baseline.
///
/// Rules, applied in order (`τ` = effect, `μ_C`/`μ_T` = conversion if held out/treated):
///
/// | segment        | rule                                         | meaning                        |
/// |----------------|----------------------------------------------|--------------------------------|
/// | `persuadable`  | `τ ≥ EFFECT_THRESHOLD` (0.02)                | converts because of the offer  |
/// | `sleeping_dog` | `τ < 0`                                      | the offer puts them off        |
/// | `sure_thing`   | `μ_C ≥ SURE_THING_BASE_RATE` (0.3)           | converts anyway                |
/// | `lost_cause`   | `μ_T < LOST_CAUSE_TREATED_RATE` (0.05)       | won't convert either way       |
/// | `uncertain`    | anything else, or a NaN input                | no clear call                  |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    Persuadable,
    SureThing,
    LostCause,
    SleepingDog,
    Uncertain,
}

impl Segment {
    pub fn name(self) -> &'static str {
        match self {
            Segment::Persuadable => "persuadable",
            Segment::SureThing => "sure_thing",
            Segment::LostCause => "lost_cause",
            Segment::SleepingDog => "sleeping_dog",
            Segment::Uncertain => "uncertain",
        }
    }
}

/// Classifies a customer by the rules in [`Segment`]'s table.
pub fn segment(tau: f64, mu_c: f64, mu_t: f64) -> Segment {
    if tau.is_nan() || mu_c.is_nan() || mu_t.is_nan() {
        Segment::Uncertain
    } else if tau >= EFFECT_THRESHOLD {
        Segment::Persuadable
    } else if tau < 0.0 {
        // The platform's rule (τ < 0): τ is the posterior mean, so a negative one means the
        // offer is expected to cost this customer's conversion, however small.
        Segment::SleepingDog
    } else if mu_c >= SURE_THING_BASE_RATE {
        Segment::SureThing
    } else if mu_t < LOST_CAUSE_TREATED_RATE {
        Segment::LostCause
    } else {
        Segment::Uncertain
    }
}

impl UpliftPrediction {
    pub fn segment(&self) -> Segment {
        segment(self.tau, self.mu_c, self.mu_t)
    }
}

/// Training rows split by arm, encoded, as matrices the regressions take.
struct ArmData {
    x: Matrix,
    converted: Vec<f64>,
}

/// The rows of one fit, encoded once.
struct Encoded {
    encoding: Encoding,
    treated: ArmData,
    control: ArmData,
}

impl Encoded {
    fn new(rows: &[UpliftRow], encoding: Encoding) -> Encoded {
        let empty = || ArmData { x: Matrix::with_cols(encoding.width()), converted: Vec::new() };
        let (mut treated, mut control) = (empty(), empty());
        let mut buffer = vec![0.0; encoding.width()];
        for row in rows {
            encoding.encode_into(&row.features, &mut buffer);
            let arm = if row.treated { &mut treated } else { &mut control };
            arm.x.push_row(&buffer).expect("buffer has the encoded width");
            arm.converted.push(f64::from(u8::from(row.converted)));
        }
        Encoded { encoding, treated, control }
    }

    /// Share of rows treated: the design's propensity (the holdout split is random).
    fn treated_share(&self) -> f64 {
        let (t, c) = (self.treated.x.rows() as f64, self.control.x.rows() as f64);
        t / (t + c)
    }
}

impl UpliftModel {
    /// Fits `learner` on one offer's rows. Refuses (typed error) when the rows are ragged,
    /// when either arm has fewer than [`MIN_ROWS_PER_ARM`] rows, or when either arm's
    /// outcome never varies (all converted or none did).
    pub fn fit(rows: &[UpliftRow], learner: Learner) -> Result<Self, UpliftError> {
        Self::fit_each(rows, &[learner])?.remove(0)
    }

    /// Fits each of `learners` on the same rows, sharing the checks, the encoding and the
    /// outcome models (every learner builds on μ_T and μ_C). The outer error is one that
    /// stops them all; the inner ones are each learner's own effect stage.
    pub fn fit_each(rows: &[UpliftRow], learners: &[Learner]) -> Result<Vec<Result<Self, UpliftError>>, UpliftError> {
        let width = rows.first().map_or(0, |r| r.features.len());
        check_width(rows, width)?;
        check_arms(rows)?;
        let data = Encoded::new(rows, Encoding::of(rows, width));
        let mu_t = fit_logistic(&data.treated.x, &data.treated.converted, Stage::TreatedOutcome)?;
        let mu_c = fit_logistic(&data.control.x, &data.control.converted, Stage::ControlOutcome)?;
        let (n_treated, n_control) = (data.treated.x.rows(), data.control.x.rows());
        let rate = |a: &ArmData| a.converted.iter().sum::<f64>() / a.converted.len() as f64;
        let (p_t, p_c) = (rate(&data.treated), rate(&data.control));
        let mean_variance = p_t * (1.0 - p_t) / n_rows(&data.treated) + p_c * (1.0 - p_c) / n_rows(&data.control);
        let prior = Prior { mean: p_t - p_c, mean_variance, variance: PRIOR_VARIANCE_FLOOR };
        let fit_one = |learner: Learner| {
            let effect = match learner {
                Learner::TLearner => Effect::Difference,
                Learner::XLearner => fit_crossed(&data, &mu_t, &mu_c)?,
                Learner::DrLearner => fit_doubly_robust(&data, &mu_t, &mu_c)?,
            };
            let (mu_t, mu_c, encoding) = (mu_t.clone(), mu_c.clone(), data.encoding.clone());
            let mut model = Self { learner, encoding, mu_t, mu_c, effect, prior, n_treated, n_control };
            model.prior.variance = model.effect_spread(rows);
            Ok(model)
        };
        Ok(learners.iter().map(|&l| fit_one(l)).collect())
    }

    /// Effect and per-arm conversion estimates for one customer. Allocates nothing for
    /// up to 32 encoded features.
    pub fn predict(&self, features: &[f64]) -> UpliftPrediction {
        self.encoding.with_encoded(features, |x| self.predict_encoded(x))
    }

    fn raw(&self, x: &[f64]) -> (f64, f64, f64, f64) {
        let (mu_t, mu_c) = (self.mu_t.predict(x), self.mu_c.predict(x));
        let (tau, variance) = match &self.effect {
            Effect::Difference => {
                let (dt, dc) = (mu_t * (1.0 - mu_t), mu_c * (1.0 - mu_c));
                let v = dt * dt * self.mu_t.linear().predictor_variance(x)
                    + dc * dc * self.mu_c.linear().predictor_variance(x);
                (mu_t - mu_c, v)
            }
            Effect::Crossed(c) => {
                let Crossed { tau_t, tau_c, propensity } = &**c;
                let g = propensity.predict(x);
                let v = g * g * tau_c.linear().predictor_variance(x)
                    + (1.0 - g) * (1.0 - g) * tau_t.linear().predictor_variance(x);
                (g * tau_c.predict(x) + (1.0 - g) * tau_t.predict(x), v)
            }
            Effect::DoublyRobust { tau } => (tau.predict(x), tau.linear().predictor_variance(x)),
        };
        (tau.clamp(-1.0, 1.0), variance, mu_t, mu_c)
    }

    fn predict_encoded(&self, x: &[f64]) -> UpliftPrediction {
        let (raw_tau, variance, mu_t, mu_c) = self.raw(x);
        let s2 = self.prior.variance;
        let w = if variance > 0.0 { s2 / (s2 + variance) } else { 1.0 };
        let tau = (self.prior.mean + w * (raw_tau - self.prior.mean)).clamp(-1.0, 1.0);
        // The customer's deviation from the average is known to `w·variance`; the average
        // itself only to `mean_variance`, which weighs in as far as τ leans on it.
        let se = (w * variance + (1.0 - w) * (1.0 - w) * self.prior.mean_variance).sqrt();
        UpliftPrediction { tau, se, raw_tau, mu_t, mu_c }
    }

    /// How much the true effect varies between customers: the variance of τ̂ over (up to
    /// [`PRIOR_ROWS`] of) the training rows, less its mean sampling variance.
    fn effect_spread(&self, rows: &[UpliftRow]) -> f64 {
        let step = (rows.len() / PRIOR_ROWS).max(1);
        let raw: Vec<(f64, f64)> = rows
            .iter()
            .step_by(step)
            .map(|r| self.encoding.with_encoded(&r.features, |x| self.raw(x)))
            .map(|(tau, v, _, _)| (tau, v))
            .collect();
        let n = raw.len() as f64;
        let mean = raw.iter().map(|r| r.0).sum::<f64>() / n;
        let spread = raw.iter().map(|r| (r.0 - mean).powi(2)).sum::<f64>() / n;
        let noise = raw.iter().map(|r| r.1).sum::<f64>() / n;
        (spread - noise).max(PRIOR_VARIANCE_FLOOR)
    }

    pub fn learner(&self) -> Learner {
        self.learner
    }

    /// The offer's average effect, toward which uncertain estimates are shrunk.
    pub fn average_effect(&self) -> f64 {
        self.prior.mean
    }

    /// Treated rows the model was trained on.
    pub fn n_treated(&self) -> usize {
        self.n_treated
    }

    /// Control (held-out) rows the model was trained on.
    pub fn n_control(&self) -> usize {
        self.n_control
    }

    /// Number of (raw) features the model expects.
    pub fn width(&self) -> usize {
        self.encoding.means.len()
    }
}

fn n_rows(a: &ArmData) -> f64 {
    a.x.rows() as f64
}

/// X-learner stages 2 and 3: imputed individual effects regressed per arm, and the
/// propensity.
fn fit_crossed(data: &Encoded, mu_t: &LogisticModel, mu_c: &LogisticModel) -> Result<Effect, UpliftError> {
    let (treated, control) = (&data.treated, &data.control);
    // D_T = Y − μ_C(x) on treated rows; D_C = μ_T(x) − Y on control rows.
    let d_t: Vec<f64> = treated.x.iter_rows().zip(&treated.converted).map(|(x, y)| y - mu_c.predict(x)).collect();
    let d_c: Vec<f64> = control.x.iter_rows().zip(&control.converted).map(|(x, y)| mu_t.predict(x) - y).collect();
    let tau_t = fit_ridge(&treated.x, &d_t, Stage::TreatedEffect)?;
    let tau_c = fit_ridge(&control.x, &d_c, Stage::ControlEffect)?;
    let propensity = fit_propensity(treated, control)?;
    Ok(Effect::Crossed(Box::new(Crossed { tau_t, tau_c, propensity })))
}

/// DR-learner: the pseudo-outcome of each row uses outcome models fitted on the other
/// half of the rows (cross-fitting), so a row's own noise does not leak into its ψ.
/// When a half is too small to fit, the full-data outcome models stand in.
fn fit_doubly_robust(data: &Encoded, mu_t: &LogisticModel, mu_c: &LogisticModel) -> Result<Effect, UpliftError> {
    let e = data.treated_share();
    let half = |arm: &ArmData, parity: usize| {
        let mut x = Matrix::with_cols(arm.x.cols());
        let mut y = Vec::new();
        for (i, (row, label)) in arm.x.iter_rows().zip(&arm.converted).enumerate() {
            if i % 2 == parity {
                x.push_row(row).expect("same width");
                y.push(*label);
            }
        }
        (x, y)
    };
    let fit_half = |arm: &ArmData, parity: usize, full: &LogisticModel| {
        let (x, y) = half(arm, parity);
        let varied = y.iter().any(|v| *v > 0.5) && y.iter().any(|v| *v < 0.5);
        let fitted = (y.len() >= MIN_ROWS_PER_ARM && varied).then(|| LogisticModel::fit(&x, &y).ok()).flatten();
        fitted.unwrap_or_else(|| full.clone())
    };
    // Models fitted on the even (0) and odd (1) rows of each arm.
    let t_models = [fit_half(&data.treated, 0, mu_t), fit_half(&data.treated, 1, mu_t)];
    let c_models = [fit_half(&data.control, 0, mu_c), fit_half(&data.control, 1, mu_c)];
    let mut x = Matrix::with_cols(data.treated.x.cols());
    let mut psi = Vec::with_capacity(data.treated.x.rows() + data.control.x.rows());
    for (arm, treated) in [(&data.treated, true), (&data.control, false)] {
        for (i, (row, &y)) in arm.x.iter_rows().zip(&arm.converted).enumerate() {
            // A row of parity p is predicted by the models fitted on the other parity.
            let other = 1 - i % 2;
            let (mt, mc) = (t_models[other].predict(row), c_models[other].predict(row));
            let correction = if treated { (y - mt) / e } else { -(y - mc) / (1.0 - e) };
            psi.push(mt - mc + correction);
            x.push_row(row).expect("same width");
        }
    }
    Ok(Effect::DoublyRobust { tau: fit_ridge(&x, &psi, Stage::DoublyRobustEffect)? })
}

/// `g(x) = P(treated | x)` on all rows. Under a fixed random split it is nearly constant,
/// but fitting it keeps the estimator honest when assignment depended on the features.
fn fit_propensity(treated: &ArmData, control: &ArmData) -> Result<LogisticModel, UpliftError> {
    let mut all = Matrix::with_cols(treated.x.cols());
    for row in treated.x.iter_rows().chain(control.x.iter_rows()) {
        all.push_row(row)?;
    }
    let mut labels = vec![1.0; treated.x.rows()];
    labels.resize(all.rows(), 0.0);
    fit_logistic(&all, &labels, Stage::Propensity)
}

fn fit_logistic(x: &Matrix, labels: &[f64], stage: Stage) -> Result<LogisticModel, UpliftError> {
    LogisticModel::fit(x, labels).map_err(|source| UpliftError::Fit { stage, source })
}

fn fit_ridge(x: &Matrix, targets: &[f64], stage: Stage) -> Result<RidgeModel, UpliftError> {
    RidgeModel::fit(x, targets).map_err(|source| UpliftError::Fit { stage, source })
}

fn check_width(rows: &[UpliftRow], width: usize) -> Result<(), RaggedRow> {
    match rows.iter().position(|r| r.features.len() != width) {
        Some(row) => Err(RaggedRow { row, expected: width, found: rows[row].features.len() }),
        None => Ok(()),
    }
}

/// Enough rows in both arms, and outcomes that vary within each.
fn check_arms(rows: &[UpliftRow]) -> Result<(), UpliftError> {
    for (arm, treated) in [(Arm::Treated, true), (Arm::Control, false)] {
        let (n, conversions) = rows
            .iter()
            .filter(|r| r.treated == treated)
            .fold((0, 0), |(n, c), r| (n + 1, c + usize::from(r.converted)));
        if n < MIN_ROWS_PER_ARM {
            return Err(UpliftError::TooFewRows { arm, found: n, required: MIN_ROWS_PER_ARM });
        }
        if conversions == 0 || conversions == n {
            return Err(UpliftError::NoVariation { arm });
        }
    }
    Ok(())
}

/// One learner's score on the validation rows.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub learner: Learner,
    /// Mean R-loss `((Y − m(x)) − (T − e)·τ(x))²` over the rows, each scored by the
    /// learner fitted on the other folds (lower is better); `null` when the learner could
    /// not be fitted on some fold.
    pub r_loss: Option<f64>,
    /// How much lower than the T-learner's the R-loss is, in standard errors of the
    /// paired difference (positive: better than the T-learner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z_vs_t_learner: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The learners fitted for one offer, and which one decisions use.
#[derive(Debug, Clone)]
pub struct Selected {
    pub chosen: Learner,
    /// Every learner that fitted on all rows (the chosen one among them).
    pub models: Vec<UpliftModel>,
    pub validation: Vec<Validation>,
    pub validation_rows: usize,
    /// Why no validation was possible (the T-learner is then chosen).
    pub note: Option<String>,
}

impl Selected {
    pub fn model(&self, learner: Learner) -> Option<&UpliftModel> {
        self.models.iter().find(|m| m.learner == learner)
    }

    pub fn chosen_model(&self) -> &UpliftModel {
        self.model(self.chosen).expect("the chosen learner fitted")
    }
}

/// Folds of the cross-validation that picks a learner, at most: fewer (down to 2) when
/// the smaller arm cannot give every fold [`MIN_ROWS_PER_ARM`] rows for its nuisance.
const FOLDS: usize = 5;
/// A learner replaces the T-learner only when its R-loss is lower by this many standard
/// errors of the paired difference: R-loss differences between reasonable learners are
/// small next to their noise, and the simplest learner is the safer bet when the data
/// cannot tell them apart.
pub const SWITCH_Z: f64 = 2.0;

/// Fits every learner and picks one by cross-validated R-loss (see the module docs and
/// [`SWITCH_Z`]). Fails as [`UpliftModel::fit`] does when even the T-learner cannot be
/// fitted on all rows.
pub fn fit_selected(rows: &[UpliftRow]) -> Result<Selected, UpliftError> {
    // The T-learner's effect stage cannot fail: where the outcome models fit, it does.
    let models: Vec<UpliftModel> = UpliftModel::fit_each(rows, &Learner::ALL)?.into_iter().flatten().collect();
    let fitted = |l: Learner| models.iter().any(|m| m.learner == l);
    let losses = match cross_validated_losses(rows) {
        Ok(l) => l,
        Err(e) => {
            let note = format!("too few rows to validate ({e}): the T-learner is used");
            return Ok(Selected {
                chosen: Learner::TLearner,
                models,
                validation: Vec::new(),
                validation_rows: 0,
                note: Some(note),
            });
        }
    };
    let t_losses = losses[0].1.as_ref().expect("the T-learner fits wherever its nuisance did");
    let validation: Vec<Validation> = losses
        .iter()
        .map(|(learner, l)| match l {
            Ok(l) => Validation {
                learner: *learner,
                r_loss: Some(mean(l)),
                z_vs_t_learner: (*learner != Learner::TLearner).then(|| paired_z(t_losses, l)),
                error: None,
            },
            Err(e) => Validation { learner: *learner, r_loss: None, z_vs_t_learner: None, error: Some(e.clone()) },
        })
        .collect();
    let chosen = validation
        .iter()
        .filter(|v| fitted(v.learner) && v.z_vs_t_learner.is_some_and(|z| z >= SWITCH_Z))
        .max_by(|a, b| a.z_vs_t_learner.unwrap_or(0.0).total_cmp(&b.z_vs_t_learner.unwrap_or(0.0)))
        .map_or(Learner::TLearner, |v| v.learner);
    Ok(Selected { chosen, models, validation, validation_rows: t_losses.len(), note: None })
}

/// Per learner, each row's loss, or why the learner could not be fitted on a fold.
type FoldLosses = Vec<(Learner, Result<Vec<f64>, String>)>;

/// Per learner, each row's R-loss when scored by the learner fitted on the other folds,
/// with nuisances (m, e) fitted on the row's own fold only. Fails when a fold's
/// nuisance cannot be fitted.
fn cross_validated_losses(rows: &[UpliftRow]) -> Result<FoldLosses, UpliftError> {
    let mut out: FoldLosses = Learner::ALL.into_iter().map(|l| (l, Ok(Vec::with_capacity(rows.len())))).collect();
    let treated = rows.iter().filter(|r| r.treated).count();
    let smaller = treated.min(rows.len() - treated);
    let folds = (smaller / MIN_ROWS_PER_ARM).clamp(2, FOLDS);
    // Stratified by arm: each fold gets its share of the (small) control arm.
    let mut seen = [0usize; 2];
    let fold_of: Vec<usize> = rows
        .iter()
        .map(|r| {
            let k = &mut seen[usize::from(r.treated)];
            *k += 1;
            (*k - 1) % folds
        })
        .collect();
    for fold in 0..folds {
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for (r, &f) in rows.iter().zip(&fold_of) {
            if f == fold { &mut valid } else { &mut train }.push(r.clone());
        }
        let nuisance = UpliftModel::fit(&valid, Learner::TLearner)?;
        let e = valid.iter().filter(|r| r.treated).count() as f64 / valid.len() as f64;
        // Per validation row, the residuals the R-loss compares every learner's τ with:
        // (Y − m(x), T − e), with m = e·μ_T + (1 − e)·μ_C from the fold's nuisance.
        let residuals: Vec<(f64, f64)> = valid
            .iter()
            .map(|r| {
                let n = nuisance.predict(&r.features);
                let (y, t) = (f64::from(u8::from(r.converted)), f64::from(u8::from(r.treated)));
                (y - (e * n.mu_t + (1.0 - e) * n.mu_c), t - e)
            })
            .collect();
        let fitted = UpliftModel::fit_each(&train, &Learner::ALL);
        for (k, (_, losses)) in out.iter_mut().enumerate() {
            let Ok(acc) = losses else { continue };
            let model = match &fitted {
                Ok(models) => models[k].as_ref().map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match model {
                Ok(m) => acc.extend(valid.iter().zip(&residuals).map(|(r, (y, t))| {
                    let tau = m.predict(&r.features).tau;
                    (y - t * tau).powi(2)
                })),
                Err(err) => *losses = Err(format!("fold {fold}: {err}")),
            }
        }
    }
    Ok(out)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `mean(base − other) / se`: how many standard errors `other`'s losses are below `base`'s.
fn paired_z(base: &[f64], other: &[f64]) -> f64 {
    let d: Vec<f64> = base.iter().zip(other).map(|(a, b)| a - b).collect();
    let m = mean(&d);
    let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len().max(2) - 1) as f64;
    let se = (var / d.len() as f64).sqrt();
    if se > 0.0 {
        m / se
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::logistic::sigmoid;
    use crate::learn::rng::SplitMix64;

    /// Ground truth: μ_C(x) = σ(−2 + 1.5·x1); τ(x) = +0.15 if x2 = 1 else −0.05.
    fn true_mu_c(x: &[f64]) -> f64 {
        sigmoid(-2.0 + 1.5 * x[0])
    }

    fn true_tau(x: &[f64]) -> f64 {
        if x[1] > 0.5 {
            0.15
        } else {
            -0.05
        }
    }

    /// `n` customers with x1 ~ U(0, 1), x2 ~ Bernoulli(0.5), treated with `p_treat`.
    fn simulate(n: usize, p_treat: f64, seed: u64) -> Vec<UpliftRow> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let features = vec![rng.uniform(), f64::from(u8::from(rng.bernoulli(0.5)))];
                let treated = rng.bernoulli(p_treat);
                let mu_c = true_mu_c(&features);
                let p = if treated { (mu_c + true_tau(&features)).clamp(0.0, 1.0) } else { mu_c };
                UpliftRow { converted: rng.bernoulli(p), features, treated }
            })
            .collect()
    }

    /// RMSE of estimated against true τ on a fixed grid: x1 ∈ {0.05, 0.15, …, 0.95} × x2 ∈ {0, 1}.
    fn grid_rmse(model: &UpliftModel) -> f64 {
        let grid: Vec<[f64; 2]> = (0..10).flat_map(|i| [0.0, 1.0].map(|x2| [0.05 + 0.1 * f64::from(i), x2])).collect();
        let sq: f64 = grid.iter().map(|x| (model.predict(x).tau - true_tau(x)).powi(2)).sum();
        (sq / grid.len() as f64).sqrt()
    }

    fn rmse_at(n: usize, p_treat: f64, learner: Learner) -> f64 {
        let model = UpliftModel::fit(&simulate(n, p_treat, 42 + n as u64), learner).unwrap();
        let rmse = grid_rmse(&model);
        println!("{learner:?} p_treat={p_treat} n={n}: tau RMSE {rmse:.4}");
        rmse
    }

    fn assert_converges(p_treat: f64, learner: Learner) {
        let (small, large) = (rmse_at(2_000, p_treat, learner), rmse_at(40_000, p_treat, learner));
        assert!(large < small, "{learner:?} p_treat={p_treat}: RMSE {large} at 40k not below {small} at 2k");
        assert!(large < 0.05, "{learner:?} p_treat={p_treat}: RMSE {large} at 40k");
    }

    #[test]
    fn standard_errors_shrink_with_data_and_shrinkage_pulls_toward_the_average() {
        for learner in Learner::ALL {
            let small = UpliftModel::fit(&simulate(1_000, 0.8, 3), learner).unwrap();
            let large = UpliftModel::fit(&simulate(40_000, 0.8, 3), learner).unwrap();
            let x = [0.5, 1.0];
            let (s, l) = (small.predict(&x), large.predict(&x));
            assert!(l.se < s.se && l.se > 0.0, "{learner:?}: se {} at 1k, {} at 40k", s.se, l.se);
            // The shrunk τ lies between the raw estimate and the offer's average effect.
            for (m, p) in [(&small, s), (&large, l)] {
                let (lo, hi) = (m.average_effect().min(p.raw_tau), m.average_effect().max(p.raw_tau));
                assert!(p.tau >= lo - 1e-12 && p.tau <= hi + 1e-12, "{learner:?}: {p:?}");
            }
            // With much data the estimate is trusted: little shrinkage.
            assert!((l.tau - l.raw_tau).abs() < 0.01, "{learner:?}: {l:?}");
        }
    }

    /// The kept learner is the T-learner unless another is significantly better, and
    /// then the most significantly better one.
    fn check_rule(selected: &Selected) {
        let best = selected
            .validation
            .iter()
            .filter(|v| v.z_vs_t_learner.is_some_and(|z| z >= SWITCH_Z))
            .max_by(|a, b| a.z_vs_t_learner.unwrap().total_cmp(&b.z_vs_t_learner.unwrap()));
        assert_eq!(selected.chosen, best.map_or(Learner::TLearner, |v| v.learner), "{:?}", selected.validation);
    }

    #[test]
    fn selection_keeps_the_t_learner_when_the_data_cannot_tell_them_apart() {
        // Too few rows for the 1.7× RMSE difference to show in the R-loss.
        let rows = simulate(5_000, 0.8, 11);
        let selected = fit_selected(&rows).unwrap();
        assert_eq!(selected.validation.len(), 3);
        assert!(selected.validation.iter().all(|v| v.r_loss.is_some()), "{:?}", selected.validation);
        assert_eq!(selected.validation_rows, rows.len(), "every row validates once");
        let t = &selected.validation[0];
        assert_eq!((t.learner, t.z_vs_t_learner), (Learner::TLearner, None));
        check_rule(&selected);
        assert_eq!(selected.chosen, Learner::TLearner, "{:?}", selected.validation);
    }

    #[test]
    fn selection_switches_to_a_learner_that_is_clearly_better() {
        // The base rate is a step in x1 that neither arm's logistic model can follow,
        // and the arms differ in how far off they are, while the effect is a plain
        // +0.25 in x2 = 1 (and 0 elsewhere). The effect stages fit that directly.
        let mut rng = SplitMix64::new(12);
        let rows: Vec<UpliftRow> = (0..40_000)
            .map(|_| {
                let x = vec![rng.uniform(), f64::from(u8::from(rng.bernoulli(0.5)))];
                let treated = rng.bernoulli(0.5);
                let base = if x[0] > 0.5 { 0.6 } else { 0.05 };
                let tau = if x[1] > 0.5 { 0.25 } else { 0.0 };
                let p = if treated { base + tau } else { base };
                UpliftRow { converted: rng.bernoulli(p), features: x, treated }
            })
            .collect();
        let selected = fit_selected(&rows).unwrap();
        let truth = |x: &[f64]| if x[1] > 0.5 { 0.25 } else { 0.0 };
        let rmse = |l: Learner| {
            let m = selected.model(l).unwrap();
            let sq: f64 =
                rows.iter().take(5_000).map(|r| (m.predict(&r.features).tau - truth(&r.features)).powi(2)).sum();
            (sq / 5_000.0).sqrt()
        };
        println!("chosen {:?}: {:?} {:?}", selected.chosen, Learner::ALL.map(rmse), selected.validation);
        check_rule(&selected);
        assert_ne!(selected.chosen, Learner::TLearner, "{:?}", selected.validation);
        assert!(rmse(selected.chosen) < rmse(Learner::TLearner));
    }

    #[test]
    fn t_learner_converges_with_balanced_assignment() {
        assert_converges(0.5, Learner::TLearner);
    }

    #[test]
    fn x_learner_converges_with_balanced_assignment() {
        assert_converges(0.5, Learner::XLearner);
    }

    #[test]
    fn t_learner_converges_with_a_ten_percent_holdout() {
        assert_converges(0.9, Learner::TLearner);
    }

    #[test]
    fn x_learner_converges_with_a_ten_percent_holdout() {
        assert_converges(0.9, Learner::XLearner);
    }

    #[test]
    fn dr_learner_converges_with_balanced_assignment() {
        assert_converges(0.5, Learner::DrLearner);
    }

    #[test]
    fn predictions_are_bounded_and_counts_recorded() {
        let rows = simulate(3_000, 0.9, 5);
        let n_control = rows.iter().filter(|r| !r.treated).count();
        for learner in Learner::ALL {
            let model = UpliftModel::fit(&rows, learner).unwrap();
            assert_eq!((model.n_treated(), model.n_control()), (3_000 - n_control, n_control));
            for x in [[0.0, 0.0], [1.0, 1.0], [-1e9, 1.0], [1e9, 0.0]] {
                let p = model.predict(&x);
                assert!(p.tau.abs() <= 1.0 && p.mu_t > 0.0 && p.mu_t < 1.0 && p.mu_c > 0.0 && p.mu_c < 1.0);
            }
        }
    }

    #[test]
    fn missing_values_are_imputed_with_the_column_mean() {
        let mut rows = simulate(1_000, 0.5, 9);
        for row in rows.iter_mut().step_by(7) {
            row.features[0] = f64::NAN;
        }
        let model = UpliftModel::fit(&rows, Learner::XLearner).unwrap();
        let finite: Vec<f64> = rows.iter().map(|r| r.features[0]).filter(|v| v.is_finite()).collect();
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        assert_eq!(model.encoding.means[0], mean);
        assert_eq!(model.encoding.indicators, [0], "x1 had missing values, x2 none");
        let mut encoded = [0.0; 3];
        model.encoding.encode_into(&[f64::NAN, 1.0], &mut encoded);
        assert_eq!(encoded, [mean, 1.0, 1.0]);
        model.encoding.encode_into(&[0.25, 1.0], &mut encoded);
        assert_eq!(encoded, [0.25, 1.0, 0.0]);
        // A short vector takes the mean for the absent trailing features too.
        let x2_mean = rows.iter().filter(|r| r.features[1] > 0.5).count() as f64 / rows.len() as f64;
        assert_eq!(model.predict(&[mean]), model.predict(&[mean, x2_mean]));
        assert_eq!(model.predict(&[]), model.predict(&[f64::NAN, f64::INFINITY]));
    }

    #[test]
    fn refuses_small_or_degenerate_arms() {
        let mut rows = simulate(400, 0.5, 1);
        let few: Vec<UpliftRow> = rows
            .iter()
            .filter(|r| r.treated)
            .cloned()
            .chain(rows.iter().filter(|r| !r.treated).take(19).cloned())
            .collect();
        let err = UpliftModel::fit(&few, Learner::TLearner).unwrap_err();
        assert_eq!(err, UpliftError::TooFewRows { arm: Arm::Control, found: 19, required: MIN_ROWS_PER_ARM });
        assert!(matches!(
            UpliftModel::fit(&[], Learner::XLearner),
            Err(UpliftError::TooFewRows { arm: Arm::Treated, .. })
        ));
        rows.iter_mut().filter(|r| r.treated).for_each(|r| r.converted = false);
        assert_eq!(
            UpliftModel::fit(&rows, Learner::XLearner).unwrap_err(),
            UpliftError::NoVariation { arm: Arm::Treated }
        );
        rows[3].features.push(1.0);
        assert_eq!(
            UpliftModel::fit(&rows, Learner::XLearner).unwrap_err(),
            UpliftError::Ragged(RaggedRow { row: 3, expected: 2, found: 3 })
        );
    }

    #[test]
    fn works_without_features() {
        let mut rows = simulate(1_000, 0.5, 2);
        rows.iter_mut().for_each(|r| r.features.clear());
        let rate = |treated: bool| {
            let arm: Vec<&UpliftRow> = rows.iter().filter(|r| r.treated == treated).collect();
            arm.iter().filter(|r| r.converted).count() as f64 / arm.len() as f64
        };
        for learner in Learner::ALL {
            let p = UpliftModel::fit(&rows, learner).unwrap().predict(&[]);
            // The DR-learner's cross-fitted pseudo-outcomes average to the difference only
            // approximately.
            let tolerance = if learner == Learner::DrLearner { 0.01 } else { 1e-9 };
            assert!((p.tau - (rate(true) - rate(false))).abs() < tolerance, "{learner:?}: {p:?}");
        }
    }

    #[test]
    fn segments_follow_the_documented_rules() {
        assert_eq!(segment(0.02, 0.1, 0.12), Segment::Persuadable);
        assert_eq!(segment(-0.02, 0.5, 0.48), Segment::SleepingDog);
        assert_eq!(segment(-0.001, 0.05, 0.049), Segment::SleepingDog, "any expected harm");
        assert_eq!(segment(0.0, 0.02, 0.02), Segment::LostCause);
        assert_eq!(segment(0.0, 0.3, 0.3), Segment::SureThing);
        assert_eq!(segment(0.01, 0.02, 0.049), Segment::LostCause);
        assert_eq!(segment(0.01, 0.1, 0.11), Segment::Uncertain);
        assert_eq!(segment(f64::NAN, 0.9, 0.9), Segment::Uncertain);
        assert_eq!(serde_json::to_string(&Segment::SleepingDog).unwrap(), "\"sleeping_dog\"");
        assert_eq!(serde_json::to_string(&Learner::XLearner).unwrap(), "\"x_learner\"");
        for l in Learner::ALL {
            assert_eq!(serde_json::to_value(l).unwrap(), l.name());
            assert_eq!(Learner::parse(l.name()), Some(l));
        }
    }

    #[test]
    fn model_round_trips_through_json() {
        let model = UpliftModel::fit(&simulate(500, 0.5, 4), Learner::XLearner).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: UpliftModel = serde_json::from_str(&json).unwrap();
        // serde_json's float parsing may differ from the value written in the last bit.
        let (a, b) = (back.predict(&[0.3, 1.0]), model.predict(&[0.3, 1.0]));
        for (x, y) in [(a.tau, b.tau), (a.se, b.se), (a.mu_t, b.mu_t), (a.mu_c, b.mu_c)] {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
        let prediction = serde_json::to_value(model.predict(&[0.3, 1.0])).unwrap();
        assert!(prediction["tau"].is_number() && prediction["muT"].is_number() && prediction["muC"].is_number());
        assert!(prediction["se"].as_f64().unwrap() > 0.0);
    }
}
