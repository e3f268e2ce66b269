//! Holdout statistics: did the treated arm convert (and earn) more than the control arm?
//!
//! Everything here is a pure function of two [`ArmTotals`] accumulators, so totals can be
//! summed per shard, merged, and analysed at any time. Quantities that are mathematically
//! undefined for the data at hand (a z-score with zero pooled variance, a relative uplift
//! over a zero control rate, a variance from one sample) come back as `None`, which
//! serialises as `null` — never as NaN, which JSON cannot carry.
//!
//! Methods and the reference they match (statsmodels 0.15, see the vector test):
//! * pooled two-proportion z-test, two-sided (`proportions_ztest`);
//! * Wilson score interval per arm (`proportion_confint(method="wilson")`);
//! * Newcombe hybrid-score interval for the difference (method 10 of Newcombe 1998,
//!   `confint_proportions_2indep(method="newcomb", compare="diff")`), chosen because it
//!   keeps sensible coverage at small rates where the Wald interval collapses;
//! * a normal-approximation (Welch-style, unequal variances) interval for the difference
//!   in revenue per customer.

use serde::{Deserialize, Serialize};

use super::normal::two_sided_p;

/// Two-sided 95% standard normal quantile, `Φ⁻¹(0.975)`.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Below this many samples in either arm the result is flagged `insufficient_data`: the
/// normal approximations behind the z-test and the revenue interval are not trustworthy.
pub const MIN_SAMPLES_PER_ARM: u64 = 50;

/// Which side of the experiment a total belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    Treated,
    Control,
}

/// Totals that make the arm's statistics inconsistent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("{arm:?} arm has {conversions} conversions but only {samples} samples")]
    ConversionsExceedSamples { arm: Arm, conversions: u64, samples: u64 },
    #[error("{arm:?} arm has a non-finite revenue total")]
    NonFiniteRevenue { arm: Arm },
}

/// Running totals for one arm. Sums rather than means so shards merge by addition; the
/// sum of squares is what the revenue variance needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmTotals {
    /// Customers in the arm (converted or not).
    pub samples: u64,
    /// Customers who converted.
    pub conversions: u64,
    /// Σ revenue over all customers (non-converters contribute 0).
    pub revenue_sum: f64,
    /// Σ revenue² over all customers.
    pub revenue_sq_sum: f64,
}

/// A closed interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// Result of the pooled two-proportion z-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZTest {
    pub z: f64,
    /// Two-sided p-value `2·(1 − Φ(|z|))`.
    pub p_value: f64,
}

/// Conversion statistics for one arm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmStats {
    pub samples: u64,
    pub conversions: u64,
    pub conversion_rate: Option<f64>,
    /// Wilson 95% score interval for the conversion rate.
    pub wilson: Option<Interval>,
}

/// Revenue per customer in each arm and what the treatment added.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevenueUplift {
    pub per_customer_treated: Option<f64>,
    pub per_customer_control: Option<f64>,
    /// Treated minus control revenue per customer.
    pub per_customer_diff: Option<f64>,
    /// 95% normal-approximation interval for `per_customer_diff`; needs ≥ 2 samples per arm.
    pub per_customer_diff_interval: Option<Interval>,
    /// `per_customer_diff × treated samples`: revenue the treatment earned over holding out.
    pub incremental_revenue: Option<f64>,
}

/// Everything the holdout report shows for one experiment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStats {
    pub treated: ArmStats,
    pub control: ArmStats,
    /// Treated rate minus control rate.
    pub absolute_uplift: Option<f64>,
    /// `(treated − control) / control`; `None` when the control rate is 0.
    pub relative_uplift: Option<f64>,
    /// Pooled z statistic; `None` when the pooled standard error is 0.
    pub z: Option<f64>,
    pub p_value: Option<f64>,
    /// Newcombe hybrid-score 95% interval for the absolute uplift.
    pub uplift_interval: Option<Interval>,
    /// Set when either arm has fewer than `min_samples_per_arm` samples. The numbers are
    /// still reported; readers should not act on them.
    pub insufficient_data: bool,
    pub min_samples_per_arm: u64,
    pub revenue: RevenueUplift,
}

impl ArmTotals {
    /// Totals with conversions only (no revenue tracked).
    pub fn from_counts(conversions: u64, samples: u64) -> Self {
        Self { samples, conversions, ..Self::default() }
    }

    /// Adds one customer's outcome; `revenue` is 0 for a non-converter.
    pub fn record(&mut self, converted: bool, revenue: f64) {
        self.samples += 1;
        self.conversions += u64::from(converted);
        self.revenue_sum += revenue;
        self.revenue_sq_sum += revenue * revenue;
    }

    /// Folds another shard's totals into these.
    pub fn merge(&mut self, other: &ArmTotals) {
        self.samples += other.samples;
        self.conversions += other.conversions;
        self.revenue_sum += other.revenue_sum;
        self.revenue_sq_sum += other.revenue_sq_sum;
    }

    /// Conversions / samples; `None` with no samples or inconsistent counts.
    pub fn conversion_rate(&self) -> Option<f64> {
        proportion(self.conversions, self.samples)
    }

    /// Mean revenue per customer; `None` with no samples.
    pub fn revenue_per_customer(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.revenue_sum / self.samples as f64)
    }

    /// Unbiased sample variance of revenue per customer, `(Σx² − (Σx)²/n)/(n − 1)`;
    /// `None` below 2 samples. Clamped at 0 because the subtraction can round negative
    /// when every customer spent the same amount.
    pub fn revenue_variance(&self) -> Option<f64> {
        if self.samples < 2 {
            return None;
        }
        let n = self.samples as f64;
        let centred = self.revenue_sq_sum - self.revenue_sum * self.revenue_sum / n;
        Some((centred / (n - 1.0)).max(0.0))
    }

    fn validate(&self, arm: Arm) -> Result<(), StatsError> {
        if self.conversions > self.samples {
            let (conversions, samples) = (self.conversions, self.samples);
            return Err(StatsError::ConversionsExceedSamples { arm, conversions, samples });
        }
        if !self.revenue_sum.is_finite() || !self.revenue_sq_sum.is_finite() {
            return Err(StatsError::NonFiniteRevenue { arm });
        }
        Ok(())
    }
}

/// All holdout statistics with the default [`MIN_SAMPLES_PER_ARM`] threshold.
pub fn experiment_stats(treated: &ArmTotals, control: &ArmTotals) -> Result<ExperimentStats, StatsError> {
    experiment_stats_with(treated, control, MIN_SAMPLES_PER_ARM)
}

/// All holdout statistics, flagging `insufficient_data` below `min_samples_per_arm`.
pub fn experiment_stats_with(
    treated: &ArmTotals,
    control: &ArmTotals,
    min_samples_per_arm: u64,
) -> Result<ExperimentStats, StatsError> {
    treated.validate(Arm::Treated)?;
    control.validate(Arm::Control)?;
    let test = pooled_z_test(treated, control);
    Ok(ExperimentStats {
        treated: arm_stats(treated),
        control: arm_stats(control),
        absolute_uplift: absolute_uplift(treated, control),
        relative_uplift: relative_uplift(treated, control),
        z: test.map(|t| t.z),
        p_value: test.map(|t| t.p_value),
        uplift_interval: newcombe_diff_interval(treated, control, Z_95),
        insufficient_data: treated.samples.min(control.samples) < min_samples_per_arm,
        min_samples_per_arm,
        revenue: revenue_uplift(treated, control, Z_95),
    })
}

fn arm_stats(arm: &ArmTotals) -> ArmStats {
    ArmStats {
        samples: arm.samples,
        conversions: arm.conversions,
        conversion_rate: arm.conversion_rate(),
        wilson: wilson_interval(arm.conversions, arm.samples, Z_95),
    }
}

/// `successes / trials`, or `None` when that is not a proportion.
fn proportion(successes: u64, trials: u64) -> Option<f64> {
    (trials > 0 && successes <= trials).then(|| successes as f64 / trials as f64)
}

/// Treated rate minus control rate.
pub fn absolute_uplift(treated: &ArmTotals, control: &ArmTotals) -> Option<f64> {
    Some(treated.conversion_rate()? - control.conversion_rate()?)
}

/// Uplift relative to the control rate; `None` when the control rate is 0 (or unknown).
pub fn relative_uplift(treated: &ArmTotals, control: &ArmTotals) -> Option<f64> {
    let c = control.conversion_rate().filter(|&c| c > 0.0)?;
    Some((treated.conversion_rate()? - c) / c)
}

/// Pooled two-proportion z-test, `z = (p_t − p_c) / √(p(1−p)(1/n_t + 1/n_c))` with `p`
/// the pooled rate. `None` when the pooled standard error is 0 (no conversions at all, or
/// all customers converted): the statistic is 0/0 there, not a finding.
pub fn pooled_z_test(treated: &ArmTotals, control: &ArmTotals) -> Option<ZTest> {
    let (pt, pc) = (treated.conversion_rate()?, control.conversion_rate()?);
    let pooled = proportion(treated.conversions + control.conversions, treated.samples + control.samples)?;
    let inverse_n = 1.0 / treated.samples as f64 + 1.0 / control.samples as f64;
    let se = (pooled * (1.0 - pooled) * inverse_n).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let z = (pt - pc) / se;
    Some(ZTest { z, p_value: two_sided_p(z) })
}

/// Wilson score interval for `successes / trials` at normal quantile `z`. Unlike the Wald
/// interval it stays inside [0, 1] and does not collapse to a point at 0 or 1 successes.
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> Option<Interval> {
    let p = proportion(successes, trials)?;
    let n = trials as f64;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Interval { lower: (centre - half).max(0.0), upper: (centre + half).min(1.0) })
}

/// Newcombe's hybrid-score interval for `p_t − p_c`: combines each arm's Wilson limits,
/// `d − √((p_t − l_t)² + (u_c − p_c)²)` to `d + √((u_t − p_t)² + (p_c − l_c)²)`.
pub fn newcombe_diff_interval(treated: &ArmTotals, control: &ArmTotals, z: f64) -> Option<Interval> {
    let (p1, p2) = (treated.conversion_rate()?, control.conversion_rate()?);
    let w1 = wilson_interval(treated.conversions, treated.samples, z)?;
    let w2 = wilson_interval(control.conversions, control.samples, z)?;
    let d = p1 - p2;
    let lower = d - (p1 - w1.lower).hypot(w2.upper - p2);
    let upper = d + (w1.upper - p1).hypot(p2 - w2.lower);
    Some(Interval { lower, upper })
}

/// Revenue per customer per arm, their difference with a normal-approximation interval
/// `diff ± z·√(var_t/n_t + var_c/n_c)`, and the total incremental revenue.
pub fn revenue_uplift(treated: &ArmTotals, control: &ArmTotals, z: f64) -> RevenueUplift {
    let per_customer_treated = treated.revenue_per_customer();
    let per_customer_control = control.revenue_per_customer();
    let per_customer_diff = per_customer_treated.zip(per_customer_control).map(|(t, c)| t - c);
    RevenueUplift {
        per_customer_treated,
        per_customer_control,
        per_customer_diff,
        per_customer_diff_interval: revenue_diff_interval(treated, control, z),
        incremental_revenue: per_customer_diff.map(|d| d * treated.samples as f64),
    }
}

fn revenue_diff_interval(treated: &ArmTotals, control: &ArmTotals, z: f64) -> Option<Interval> {
    let diff = treated.revenue_per_customer()? - control.revenue_per_customer()?;
    let var_t = treated.revenue_variance()? / treated.samples as f64;
    let var_c = control.revenue_variance()? / control.samples as f64;
    let half = z * (var_t + var_c).sqrt();
    Some(Interval { lower: diff - half, upper: diff + half })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Reference vectors computed with statsmodels, kept
    /// in the repository so a checkout on its own runs every test.
    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stats-vectors.json");
    const TOLERANCE: f64 = 1e-6;

    /// Compares one reference field, recording a readable failure instead of panicking so
    /// a single run lists every mismatch.
    fn check(failures: &mut Vec<String>, case: usize, field: &str, got: Option<f64>, expected: &Value) {
        let ok = match (got, expected.as_f64()) {
            (Some(g), Some(e)) => (g - e).abs() <= TOLERANCE,
            (None, None) => expected.is_null(),
            _ => false,
        };
        if !ok {
            failures.push(format!("case {case} field {field}: got {got:?}, expected {expected}"));
        }
    }

    fn check_interval(failures: &mut Vec<String>, case: usize, field: &str, got: Option<Interval>, expected: &Value) {
        check(failures, case, &format!("{field}[0]"), got.map(|i| i.lower), &expected[0]);
        check(failures, case, &format!("{field}[1]"), got.map(|i| i.upper), &expected[1]);
    }

    fn totals(pair: &Value) -> ArmTotals {
        let count = |i: usize| pair[i].as_u64().expect("counts are non-negative integers");
        ArmTotals::from_counts(count(0), count(1))
    }

    #[test]
    fn reproduces_every_statsmodels_reference_vector() {
        let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("reading {VECTORS}: {e}"));
        let json: Value = serde_json::from_str(&text).expect("vectors are valid JSON");
        let cases = json["cases"].as_array().expect("`cases` array");
        assert!(!cases.is_empty());
        let mut failures = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let (t, c) = (totals(&case["treated"]), totals(&case["control"]));
            let stats = experiment_stats(&t, &c).expect("reference counts are consistent");
            check(&mut failures, i, "z_pooled", stats.z, &case["z_pooled"]);
            check(&mut failures, i, "p_two_sided", stats.p_value, &case["p_two_sided"]);
            check_interval(&mut failures, i, "wilson_treated", stats.treated.wilson, &case["wilson_treated"]);
            check_interval(&mut failures, i, "wilson_control", stats.control.wilson, &case["wilson_control"]);
            check_interval(&mut failures, i, "newcombe_diff", stats.uplift_interval, &case["newcombe_diff"]);
        }
        assert!(failures.is_empty(), "reference mismatches:\n{}", failures.join("\n"));
    }

    #[test]
    fn z_is_undefined_without_pooled_variance() {
        let none = ArmTotals::from_counts(0, 100);
        let all = ArmTotals::from_counts(100, 100);
        assert_eq!(pooled_z_test(&none, &none), None);
        assert_eq!(pooled_z_test(&all, &all), None);
        assert_eq!(pooled_z_test(&ArmTotals::default(), &none), None);
        let stats = experiment_stats(&all, &all).unwrap();
        assert_eq!((stats.z, stats.p_value), (None, None));
    }

    #[test]
    fn rates_and_uplifts() {
        let (t, c) = (ArmTotals::from_counts(30, 200), ArmTotals::from_counts(20, 200));
        assert_eq!(t.conversion_rate(), Some(0.15));
        assert!((absolute_uplift(&t, &c).unwrap() - 0.05).abs() < 1e-15);
        assert!((relative_uplift(&t, &c).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(relative_uplift(&t, &ArmTotals::from_counts(0, 200)), None);
        assert_eq!(ArmTotals::default().conversion_rate(), None);
    }

    #[test]
    fn insufficient_data_follows_the_threshold() {
        let (small, big) = (ArmTotals::from_counts(5, 49), ArmTotals::from_counts(50, 500));
        assert!(experiment_stats(&small, &big).unwrap().insufficient_data);
        assert!(experiment_stats(&big, &small).unwrap().insufficient_data);
        assert!(!experiment_stats(&big, &big).unwrap().insufficient_data);
        assert!(!experiment_stats_with(&small, &big, 40).unwrap().insufficient_data);
    }

    #[test]
    fn wilson_stays_in_unit_interval_at_the_edges() {
        let all = wilson_interval(10, 10, Z_95).unwrap();
        assert!(all.upper <= 1.0 && all.upper > 1.0 - 1e-12);
        assert!(all.lower > 0.6 && all.lower < 0.8);
        assert_eq!(wilson_interval(0, 0, Z_95), None);
        assert_eq!(wilson_interval(3, 2, Z_95), None);
    }

    #[test]
    fn newcombe_is_antisymmetric_in_the_arms() {
        let (t, c) = (ArmTotals::from_counts(36, 300), ArmTotals::from_counts(30, 310));
        let forward = newcombe_diff_interval(&t, &c, Z_95).unwrap();
        let backward = newcombe_diff_interval(&c, &t, Z_95).unwrap();
        assert!((forward.lower + backward.upper).abs() < 1e-15);
        assert!((forward.upper + backward.lower).abs() < 1e-15);
    }

    fn arm_with_revenues(revenues: &[f64]) -> ArmTotals {
        let mut arm = ArmTotals::default();
        for &r in revenues {
            arm.record(r > 0.0, r);
        }
        arm
    }

    #[test]
    fn revenue_uplift_matches_hand_computation() {
        // Treated: mean 4, sample variance 64/3. Control: mean 1, sample variance 4/3.
        let t = arm_with_revenues(&[0.0, 8.0, 0.0, 8.0]);
        let c = arm_with_revenues(&[0.0, 2.0, 0.0, 2.0]);
        assert_eq!(t.conversions, 2);
        assert!((t.revenue_variance().unwrap() - 64.0 / 3.0).abs() < 1e-12);
        let r = revenue_uplift(&t, &c, Z_95);
        assert_eq!((r.per_customer_treated, r.per_customer_control), (Some(4.0), Some(1.0)));
        assert_eq!((r.per_customer_diff, r.incremental_revenue), (Some(3.0), Some(12.0)));
        let half = Z_95 * ((64.0 / 3.0) / 4.0 + (4.0 / 3.0) / 4.0_f64).sqrt();
        let interval = r.per_customer_diff_interval.unwrap();
        assert!((interval.lower - (3.0 - half)).abs() < 1e-12);
        assert!((interval.upper - (3.0 + half)).abs() < 1e-12);
    }

    #[test]
    fn revenue_interval_needs_two_samples_per_arm() {
        let one = arm_with_revenues(&[5.0]);
        let many = arm_with_revenues(&[1.0, 2.0, 3.0]);
        let r = revenue_uplift(&one, &many, Z_95);
        assert_eq!(r.per_customer_diff, Some(3.0));
        assert_eq!(r.per_customer_diff_interval, None);
        assert_eq!(revenue_uplift(&ArmTotals::default(), &many, Z_95).per_customer_diff, None);
    }

    #[test]
    fn constant_revenue_has_zero_not_negative_variance() {
        // Σx² − (Σx)²/n rounds to ±ulps when every value is equal; it must never go negative.
        for value in [0.1, 0.3, 7.77, 1e6 / 3.0] {
            let variance = arm_with_revenues(&[value; 7]).revenue_variance().unwrap();
            assert!((0.0..1e-9 * value * value).contains(&variance), "{value}: {variance}");
        }
    }

    #[test]
    fn merge_equals_recording_everything_once() {
        let mut left = arm_with_revenues(&[1.0, 0.0]);
        left.merge(&arm_with_revenues(&[3.0]));
        assert_eq!(left, arm_with_revenues(&[1.0, 0.0, 3.0]));
    }

    #[test]
    fn inconsistent_totals_are_rejected() {
        let ok = ArmTotals::from_counts(1, 10);
        let err = experiment_stats(&ArmTotals::from_counts(11, 10), &ok).unwrap_err();
        assert_eq!(err, StatsError::ConversionsExceedSamples { arm: Arm::Treated, conversions: 11, samples: 10 });
        let nan = ArmTotals { revenue_sum: f64::NAN, ..ok };
        assert_eq!(experiment_stats(&ok, &nan).unwrap_err(), StatsError::NonFiniteRevenue { arm: Arm::Control });
    }

    #[test]
    fn serialises_camel_case_with_nulls() {
        let zero = ArmTotals::from_counts(0, 60);
        let json = serde_json::to_value(experiment_stats(&zero, &zero).unwrap()).unwrap();
        assert!(json["z"].is_null() && json["pValue"].is_null() && json["relativeUplift"].is_null());
        assert_eq!(json["insufficientData"], Value::Bool(false));
        assert_eq!(json["treated"]["conversionRate"], 0.0);
        assert!(json["upliftInterval"]["lower"].is_number());
        assert!(json["revenue"]["perCustomerDiffInterval"]["upper"].is_number());
        assert_eq!(json["revenue"]["incrementalRevenue"], 0.0);
    }
}
