//! Uplift (conditional average treatment effect) estimation for one offer: how much does
//! making the offer change this customer's conversion probability?
//!
//! Two meta-learners from Künzel, Sekhon, Bickel & Yu (2019), "Metalearners for
//! estimating heterogeneous treatment effects using machine learning", PNAS 116(10):
//! * **T-learner** — one outcome model per arm, `τ(x) = μ_T(x) − μ_C(x)`. Simple, but each
//!   model only sees its own arm, which hurts when one arm is small.
//! * **X-learner** — imputes each unit's individual effect with the *other* arm's outcome
//!   model, regresses those effects on the features per arm, and blends the two effect
//!   models by the propensity `g(x) = P(treated | x)`, leaning on the effect model whose
//!   imputations came from the well-estimated (large) arm. This is what makes it suited
//!   to holdout designs, where the control arm is typically 10% of the traffic.
//!
//! Outcome and propensity models are [`LogisticModel`]s, effect models [`RidgeModel`]s.
//! Missing feature values (`NaN`, or any non-finite value) are imputed with the training
//! column mean, both when fitting and when predicting.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::linalg::{Matrix, RaggedRow};
use super::logistic::{FitError, LogisticModel, RidgeModel};
use super::stats::Arm;

/// Fewest rows either arm needs before a model is fitted: below this the per-arm outcome
/// model is mostly noise and the estimated effects are not worth acting on.
pub const MIN_ROWS_PER_ARM: usize = 20;

/// |τ| below this is treated as "no effect" when segmenting (2 percentage points).
pub const EFFECT_THRESHOLD: f64 = 0.02;
/// With no effect, a control conversion rate at least this high is a sure thing.
pub const SURE_THING_BASE_RATE: f64 = 0.3;
/// With no effect, a treated conversion rate below this is a lost cause.
pub const LOST_CAUSE_TREATED_RATE: f64 = 0.05;

/// One customer's training example for one offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpliftRow {
    /// Numeric attributes, booleans as 0/1, missing values as NaN.
    pub features: Vec<f64>,
    /// Whether the customer received the offer (false: held out).
    pub treated: bool,
    pub converted: bool,
}

/// Which meta-learner to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Learner {
    TLearner,
    XLearner,
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
    /// Estimated effect of the offer on conversion probability, in [−1, 1].
    pub tau: f64,
    /// Estimated conversion probability if treated.
    pub mu_t: f64,
    /// Estimated conversion probability if held out.
    pub mu_c: f64,
}

/// A fitted uplift model for one offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpliftModel {
    learner: Learner,
    column_means: Vec<f64>,
    mu_t: LogisticModel,
    mu_c: LogisticModel,
    x_stage: Option<XStage>,
    n_treated: usize,
    n_control: usize,
}

/// The X-learner's second and third stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct XStage {
    tau_t: RidgeModel,
    tau_c: RidgeModel,
    propensity: LogisticModel,
}

/// Customer segments by estimated effect and baseline.
///
/// Rules, applied in order (`τ` = effect, `μ_C`/`μ_T` = conversion if held out/treated):
///
/// | segment        | rule                                         | meaning                        |
/// |----------------|----------------------------------------------|--------------------------------|
/// | `persuadable`  | `τ ≥ EFFECT_THRESHOLD` (0.02)                | converts because of the offer  |
/// | `sleeping_dog` | `τ ≤ −EFFECT_THRESHOLD`                      | the offer puts them off        |
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

/// Classifies a customer by the rules in [`Segment`]'s table.
pub fn segment(tau: f64, mu_c: f64, mu_t: f64) -> Segment {
    if tau.is_nan() || mu_c.is_nan() || mu_t.is_nan() {
        Segment::Uncertain
    } else if tau >= EFFECT_THRESHOLD {
        Segment::Persuadable
    } else if tau <= -EFFECT_THRESHOLD {
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

/// Training rows split by arm, imputed, as matrices the regressions take.
struct ArmData {
    x: Matrix,
    converted: Vec<f64>,
}

impl UpliftModel {
    /// Fits `learner` on one offer's rows. Refuses (typed error) when the rows are ragged,
    /// when either arm has fewer than [`MIN_ROWS_PER_ARM`] rows, or when either arm's
    /// outcome never varies (all converted or none did).
    pub fn fit(rows: &[UpliftRow], learner: Learner) -> Result<Self, UpliftError> {
        let width = rows.first().map_or(0, |r| r.features.len());
        check_width(rows, width)?;
        check_arms(rows)?;
        let column_means = column_means(rows, width);
        let (treated, control) = split_arms(rows, &column_means);
        let mu_t = fit_logistic(&treated.x, &treated.converted, Stage::TreatedOutcome)?;
        let mu_c = fit_logistic(&control.x, &control.converted, Stage::ControlOutcome)?;
        let x_stage = match learner {
            Learner::TLearner => None,
            Learner::XLearner => Some(fit_x_stage(&treated, &control, &mu_t, &mu_c)?),
        };
        let (n_treated, n_control) = (treated.x.rows(), control.x.rows());
        Ok(Self { learner, column_means, mu_t, mu_c, x_stage, n_treated, n_control })
    }

    /// Effect and per-arm conversion estimates for one customer. Missing (non-finite)
    /// values, and features beyond the end of a short vector, take the training mean.
    pub fn predict(&self, features: &[f64]) -> UpliftPrediction {
        let x = self.impute(features);
        let (mu_t, mu_c) = (self.mu_t.predict(&x), self.mu_c.predict(&x));
        let tau = match &self.x_stage {
            None => mu_t - mu_c,
            Some(stage) => stage.tau(&x),
        };
        UpliftPrediction { tau: tau.clamp(-1.0, 1.0), mu_t, mu_c }
    }

    pub fn learner(&self) -> Learner {
        self.learner
    }

    /// Treated rows the model was trained on.
    pub fn n_treated(&self) -> usize {
        self.n_treated
    }

    /// Control (held-out) rows the model was trained on.
    pub fn n_control(&self) -> usize {
        self.n_control
    }

    /// Number of features the model expects.
    pub fn width(&self) -> usize {
        self.column_means.len()
    }

    /// Borrows `features` when it is already complete, so the common case allocates nothing.
    fn impute<'a>(&self, features: &'a [f64]) -> Cow<'a, [f64]> {
        let complete = features.len() == self.width() && features.iter().all(|v| v.is_finite());
        if complete {
            return Cow::Borrowed(features);
        }
        let value = |(j, mean): (usize, &f64)| features.get(j).copied().filter(|v| v.is_finite()).unwrap_or(*mean);
        Cow::Owned(self.column_means.iter().enumerate().map(value).collect())
    }
}

/// τ(x) with every sub-model folded into coefficients on the raw feature scale: the
/// form a decision evaluates per candidate (a few dot products, no standardising, no
/// allocation). It answers only for complete feature vectors; a row with a missing
/// value goes through [`UpliftModel::predict`], which imputes.
#[derive(Debug, Clone, PartialEq)]
pub struct TauScorer {
    width: usize,
    /// `(intercept, weights)` of: μ_T, μ_C (T-learner) or τ_T, τ_C, g (X-learner).
    models: Vec<(f64, Vec<f64>)>,
    x_learner: bool,
}

impl TauScorer {
    pub fn tau(&self, x: &[f64]) -> Option<f64> {
        if x.len() != self.width || !x.iter().all(|v| v.is_finite()) {
            return None;
        }
        let lp = |i: usize| {
            let (b, w) = &self.models[i];
            b + w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()
        };
        let p = |i: usize| super::logistic::sigmoid(super::logistic::bounded_logit(lp(i)));
        let tau = if self.x_learner {
            let g = p(2);
            g * lp(1) + (1.0 - g) * lp(0)
        } else {
            p(0) - p(1)
        };
        Some(tau.clamp(-1.0, 1.0))
    }
}

impl UpliftModel {
    /// The per-decision form of this model.
    pub fn scorer(&self) -> TauScorer {
        let models = match &self.x_stage {
            None => vec![self.mu_t.linear().coefficients(), self.mu_c.linear().coefficients()],
            Some(s) => vec![
                s.tau_t.linear().coefficients(),
                s.tau_c.linear().coefficients(),
                s.propensity.linear().coefficients(),
            ],
        };
        TauScorer { width: self.width(), models, x_learner: self.x_stage.is_some() }
    }
}

impl XStage {
    /// `τ(x) = g(x)·τ_C(x) + (1 − g(x))·τ_T(x)`.
    fn tau(&self, x: &[f64]) -> f64 {
        let g = self.propensity.predict(x);
        g * self.tau_c.predict(x) + (1.0 - g) * self.tau_t.predict(x)
    }
}

/// Stages 2 and 3: imputed individual effects regressed per arm, and the propensity.
fn fit_x_stage(
    treated: &ArmData,
    control: &ArmData,
    mu_t: &LogisticModel,
    mu_c: &LogisticModel,
) -> Result<XStage, UpliftError> {
    // D_T = Y − μ_C(x) on treated rows; D_C = μ_T(x) − Y on control rows.
    let d_t: Vec<f64> = treated.x.iter_rows().zip(&treated.converted).map(|(x, y)| y - mu_c.predict(x)).collect();
    let d_c: Vec<f64> = control.x.iter_rows().zip(&control.converted).map(|(x, y)| mu_t.predict(x) - y).collect();
    let tau_t =
        RidgeModel::fit(&treated.x, &d_t).map_err(|source| UpliftError::Fit { stage: Stage::TreatedEffect, source })?;
    let tau_c =
        RidgeModel::fit(&control.x, &d_c).map_err(|source| UpliftError::Fit { stage: Stage::ControlEffect, source })?;
    let propensity = fit_propensity(treated, control)?;
    Ok(XStage { tau_t, tau_c, propensity })
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

/// Mean of each column over its finite values; 0 for a column with none.
fn column_means(rows: &[UpliftRow], width: usize) -> Vec<f64> {
    let mut sums = vec![0.0; width];
    let mut counts = vec![0usize; width];
    for row in rows {
        for (j, v) in row.features.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            sums[j] += v;
            counts[j] += 1;
        }
    }
    sums.iter().zip(counts).map(|(s, c)| if c > 0 { s / c as f64 } else { 0.0 }).collect()
}

/// Imputed `(treated, control)` matrices and 0/1 outcomes.
fn split_arms(rows: &[UpliftRow], means: &[f64]) -> (ArmData, ArmData) {
    let empty = || ArmData { x: Matrix::with_cols(means.len()), converted: Vec::new() };
    let (mut treated, mut control) = (empty(), empty());
    let mut buffer = means.to_vec();
    for row in rows {
        for ((b, v), m) in buffer.iter_mut().zip(&row.features).zip(means) {
            *b = if v.is_finite() { *v } else { *m };
        }
        let arm = if row.treated { &mut treated } else { &mut control };
        arm.x.push_row(&buffer).expect("buffer has the checked width");
        arm.converted.push(f64::from(u8::from(row.converted)));
    }
    (treated, control)
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
    fn the_scorer_matches_predict() {
        let rows = simulate(4_000, 0.9, 3);
        for learner in [Learner::TLearner, Learner::XLearner] {
            let model = UpliftModel::fit(&rows, learner).unwrap();
            let scorer = model.scorer();
            for row in rows.iter().take(200) {
                let (fast, slow) = (scorer.tau(&row.features).unwrap(), model.predict(&row.features).tau);
                assert!((fast - slow).abs() < 1e-12, "{learner:?}: {fast} vs {slow}");
            }
            assert_eq!(scorer.tau(&[0.5, f64::NAN]), None, "incomplete rows take the imputing path");
            assert_eq!(scorer.tau(&[0.5]), None);
        }
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
    fn predictions_are_bounded_and_counts_recorded() {
        let rows = simulate(3_000, 0.9, 5);
        let n_control = rows.iter().filter(|r| !r.treated).count();
        for learner in [Learner::TLearner, Learner::XLearner] {
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
        let imputed = model.predict(&[f64::NAN, 1.0]);
        assert_eq!(imputed, model.predict(&[mean, 1.0]));
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
        for learner in [Learner::TLearner, Learner::XLearner] {
            let p = UpliftModel::fit(&rows, learner).unwrap().predict(&[]);
            assert!((p.tau - (rate(true) - rate(false))).abs() < 1e-9, "{learner:?}: {p:?}");
        }
    }

    #[test]
    fn segments_follow_the_documented_rules() {
        assert_eq!(segment(0.02, 0.1, 0.12), Segment::Persuadable);
        assert_eq!(segment(-0.02, 0.5, 0.48), Segment::SleepingDog);
        assert_eq!(segment(0.0, 0.3, 0.3), Segment::SureThing);
        assert_eq!(segment(0.01, 0.02, 0.049), Segment::LostCause);
        assert_eq!(segment(0.01, 0.1, 0.11), Segment::Uncertain);
        assert_eq!(segment(f64::NAN, 0.9, 0.9), Segment::Uncertain);
        assert_eq!(serde_json::to_string(&Segment::SleepingDog).unwrap(), "\"sleeping_dog\"");
        assert_eq!(serde_json::to_string(&Learner::XLearner).unwrap(), "\"x_learner\"");
    }

    #[test]
    fn model_round_trips_through_json() {
        let model = UpliftModel::fit(&simulate(500, 0.5, 4), Learner::XLearner).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: UpliftModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict(&[0.3, 1.0]), model.predict(&[0.3, 1.0]));
        let prediction = serde_json::to_value(model.predict(&[0.3, 1.0])).unwrap();
        assert!(prediction["tau"].is_number() && prediction["muT"].is_number() && prediction["muC"].is_number());
    }
}
