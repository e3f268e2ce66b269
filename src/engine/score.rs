//! Score methods. `formula` is PRIE-U:
//! `P^Wp · R^Wr · I^Wi · E^We · U^Wu × fitMultiplier`, with `U = clamp(1 + τ, 0.01, 2)`.
//! R, I and E do not depend on the request, so `R^Wr · I^Wi · E^We` is computed per
//! offer at compile time; a decision pays only for P and U.

use super::contact::Contact;
use crate::model::flow::{ScoreMethod, Weights};
use crate::rules::OfferFacts;

/// What a decision reads from outside the compiled flow: uplift models and the
/// customer's contact history. Propensity is not here: it comes from outcome counters
/// the compiled flow holds directly.
pub trait Signals: Send + Sync {
    /// The offer's CATE estimate τ for a customer with these uplift features (in
    /// `CompiledFlow::feature_names` order), if there is a model. `index` is the offer's
    /// position in the flow.
    fn uplift(&self, index: usize, offer: &OfferFacts, features: &[f64]) -> Option<f64>;
    /// Calls `visit` with the customer's recorded contacts (oldest first).
    fn contacts(&self, customer_id: &str, visit: &mut dyn FnMut(&[Contact]));
    /// The current time, Unix seconds (contact periods and cooldowns).
    fn now(&self) -> i64 {
        crate::ids::unix_now()
    }
}

/// No learned signals: no uplift, no contacts.
pub struct NoSignals;

pub use crate::learn::propensity::DEFAULT_PROPENSITY;

impl Signals for NoSignals {
    fn uplift(&self, _: usize, _: &OfferFacts, _: &[f64]) -> Option<f64> {
        None
    }
    fn contacts(&self, _: &str, visit: &mut dyn FnMut(&[Contact])) {
        visit(&[])
    }
}

/// One way of scoring: a method and (for `formula`) its weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScorePlan {
    pub method: ScoreMethod,
    pub weights: Weights,
    /// A rule-language formula replacing PRIE-U (index into the flow's formulas).
    pub formula: Option<usize>,
}

/// Relevance: 1.0 until a relevance signal exists (SPEC: "1.0 unless a signal applies").
pub const RELEVANCE: f64 = 1.0;

impl ScorePlan {
    /// The request-independent part of the score for one offer.
    pub fn static_factor(&self, offer: &OfferFacts) -> f64 {
        match self.method {
            ScoreMethod::PriorityWeighted => (offer.priority / 100.0) * (offer.weight / 100.0),
            ScoreMethod::Propensity => 1.0,
            ScoreMethod::Formula => {
                let w = &self.weights;
                RELEVANCE.powf(w.relevance_weight)
                    * impact(offer).powf(w.impact_weight)
                    * emphasis(offer).powf(w.emphasis_weight)
            }
        }
    }

    /// The full score given the static factor, the learned inputs and the fit multiplier.
    #[inline]
    pub fn score(&self, static_factor: f64, propensity: f64, tau: Option<f64>, fit: f64) -> f64 {
        self.score_factored(static_factor, self.propensity_factor(propensity), tau, fit)
    }

    /// The propensity's factor of the score: P^Wp for a formula. A decision computes it once
    /// per distinct propensity (offers without outcomes yet all have the default).
    #[inline]
    pub fn propensity_factor(&self, propensity: f64) -> f64 {
        match self.method {
            ScoreMethod::PriorityWeighted => 1.0,
            ScoreMethod::Propensity => propensity,
            ScoreMethod::Formula if self.weights.propensity_weight == 0.0 => 1.0,
            ScoreMethod::Formula => propensity.powf(self.weights.propensity_weight),
        }
    }

    /// [`ScorePlan::score`] with the propensity factor already computed.
    #[inline]
    pub fn score_factored(&self, static_factor: f64, propensity_factor: f64, tau: Option<f64>, fit: f64) -> f64 {
        match self.method {
            ScoreMethod::PriorityWeighted => static_factor * fit,
            ScoreMethod::Propensity => propensity_factor * fit,
            ScoreMethod::Formula => {
                let w = &self.weights;
                let p = propensity_factor;
                // No τ means U = 1, and 1^Wu = 1: skip the pow.
                let u = match tau {
                    Some(_) if w.uplift_weight != 0.0 => uplift_factor(tau).powf(w.uplift_weight),
                    _ => 1.0,
                };
                p * static_factor * u * fit
            }
        }
    }

    pub fn needs_propensity(&self) -> bool {
        match self.method {
            ScoreMethod::PriorityWeighted => false,
            ScoreMethod::Propensity => true,
            ScoreMethod::Formula => self.weights.propensity_weight != 0.0,
        }
    }

    pub fn needs_uplift(&self) -> bool {
        self.method == ScoreMethod::Formula && self.weights.uplift_weight != 0.0
    }
}

pub fn impact(offer: &OfferFacts) -> f64 {
    offer.business_value / 100.0
}

pub fn emphasis(offer: &OfferFacts) -> f64 {
    offer.priority / 100.0
}

/// `U = clamp(1 + τ, 0.01, 2)`; τ = 0 without a signal, so U = 1 changes nothing.
pub fn uplift_factor(tau: Option<f64>) -> f64 {
    (1.0 + tau.unwrap_or(0.0)).clamp(0.01, 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(priority: f64, business_value: f64) -> OfferFacts {
        OfferFacts { priority, business_value, ..crate::demo::sample_offer() }
    }

    fn formula(wp: f64, wr: f64, wi: f64, we: f64, wu: f64) -> ScorePlan {
        let weights = Weights {
            propensity_weight: wp,
            relevance_weight: wr,
            impact_weight: wi,
            emphasis_weight: we,
            uplift_weight: wu,
        };
        ScorePlan { method: ScoreMethod::Formula, weights, formula: None }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn tutorial_card_score_by_hand() {
        // 0.5^0.4 · 1^0.15 · 0.8^0.35 · 0.8^0.1 = 0.685454285 (computed independently).
        let plan = formula(0.4, 0.15, 0.35, 0.1, 0.5);
        let o = offer(80.0, 80.0);
        let s = plan.score(plan.static_factor(&o), 0.5, None, 1.0);
        close(s, 0.5f64.powf(0.4) * 0.8f64.powf(0.45));
        assert!((s - 0.685_454_285).abs() < 1e-9, "{s}");
    }

    #[test]
    fn uplift_moves_the_score() {
        let plan = formula(0.4, 0.15, 0.35, 0.1, 0.5);
        let o = offer(70.0, 40.0);
        let base = plan.score(plan.static_factor(&o), 0.5, None, 1.0);
        close(plan.score(plan.static_factor(&o), 0.5, Some(0.0), 1.0), base);
        close(plan.score(plan.static_factor(&o), 0.5, Some(0.44), 1.0), base * 1.2);
        close(plan.score(plan.static_factor(&o), 0.5, Some(-5.0), 1.0), base * 0.1);
        close(plan.score(plan.static_factor(&o), 0.5, Some(3.0), 1.0), base * 2f64.sqrt());
    }

    #[test]
    fn zero_factor_zeroes_unless_its_weight_is_zero() {
        let o = offer(0.0, 50.0);
        let plan = formula(0.5, 0.0, 0.5, 0.0, 0.0);
        close(plan.score(plan.static_factor(&o), 0.5, None, 1.0), 0.5f64.powf(0.5) * 0.5f64.powf(0.5));
        let plan = formula(0.5, 0.0, 0.4, 0.1, 0.0);
        close(plan.score(plan.static_factor(&o), 0.5, None, 1.0), 0.0);
    }

    #[test]
    fn priority_weighted_and_propensity() {
        let mut o = offer(80.0, 10.0);
        o.weight = 50.0;
        let pw = ScorePlan { method: ScoreMethod::PriorityWeighted, weights: Weights::DEFAULT, formula: None };
        close(pw.score(pw.static_factor(&o), 0.9, None, 0.5), 0.8 * 0.5 * 0.5);
        let pr = ScorePlan { method: ScoreMethod::Propensity, weights: Weights::DEFAULT, formula: None };
        close(pr.score(pr.static_factor(&o), 0.3, None, 0.5), 0.15);
    }
}
