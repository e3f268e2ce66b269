//! Score methods. `formula` is PRIE-U:
//! `P^Wp · R^Wr · I^Wi · E^We · U^Wu × fitMultiplier`, with `U = clamp(1 + τ, 0.01, 2)`.
//! R, I and E do not depend on the request, so `R^Wr · I^Wi · E^We` is computed per
//! offer at compile time; a decision pays only for P and U. `incremental_value` ranks by
//! `value × τ × fitMultiplier` (value = revenueValue, else businessValue).
//!
//! Where the uplift term is on, the customer's segment acts ([`SegmentActions`]): by
//! default sleeping dogs and lost causes are removed and sure things sink (U at its floor).

use super::contact::Contact;
use crate::learn::uplift::Segment;
use crate::model::flow::{ScoreMethod, SegmentAction, UpliftSegments, Weights};
use crate::rules::OfferFacts;

/// What an uplift model says about one offer for this customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpliftSignal {
    /// The effect on conversion probability (shrunk by its uncertainty).
    pub tau: f64,
    /// Its standard error.
    pub se: f64,
    /// Conversion probability if shown / if held out.
    pub mu_t: f64,
    pub mu_c: f64,
    /// The segment that acts: from `tau`, or under Thompson exploration from a draw of
    /// the effect's posterior.
    pub segment: Segment,
}

/// What each uplift segment does to an offer, as bit masks over [`Segment`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentActions {
    remove: u8,
    sink: u8,
}

impl SegmentActions {
    pub fn from_config(c: &UpliftSegments) -> SegmentActions {
        let mask =
            |a: SegmentAction| c.actions().filter(|(_, action)| *action == a).fold(0u8, |m, (s, _)| m | 1 << s as u8);
        SegmentActions { remove: mask(SegmentAction::Remove), sink: mask(SegmentAction::Sink) }
    }

    pub fn removes(&self, s: Segment) -> bool {
        self.remove & (1 << s as u8) != 0
    }

    pub fn sinks(&self, s: Segment) -> bool {
        self.sink & (1 << s as u8) != 0
    }
}

impl Default for SegmentActions {
    fn default() -> Self {
        SegmentActions::from_config(&UpliftSegments::default())
    }
}

/// U's floor: where a sunk offer's uplift factor sits.
pub const UPLIFT_FLOOR: f64 = 0.01;

/// What a decision reads from outside the compiled flow: uplift models and the
/// customer's contact history. Propensity is not here: it comes from outcome counters
/// the compiled flow holds directly.
pub trait Signals: Send + Sync {
    /// The offer's CATE estimate τ for a customer with this model input (see
    /// [`Signals::encode`]), if there is a model. `index` is the offer's
    /// position in the flow.
    fn uplift(&self, index: usize, offer: &OfferFacts, features: &[f64]) -> Option<UpliftSignal>;
    /// The uplift models' input from a decision's numeric and categorical features,
    /// once per decision (the input `uplift` then gets). By default the numeric features
    /// as they are.
    fn encode(&self, features: &[f64], _categories: &[Option<std::sync::Arc<str>>], out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(features);
    }
    /// Calls `visit` with the customer's recorded contacts (oldest first).
    fn contacts(&self, customer_id: &str, visit: &mut dyn FnMut(&[Contact]));
    /// The offer's impressions across all customers this day, week and month, which
    /// `budget_exhausted` policies read. By default none.
    fn impressions(&self, _offer_id: &str) -> [u32; 3] {
        [0; 3]
    }
    /// Calls `visit` with the customer's recorded outcomes (oldest first), which
    /// `outcome_based` policies read. By default none.
    fn outcomes(&self, _customer_id: &str, visit: &mut dyn FnMut(&[super::contact::OutcomeEvent])) {
        visit(&[])
    }
    /// The current time, Unix seconds (contact periods and cooldowns).
    fn now(&self) -> i64 {
        crate::ids::unix_now()
    }
}

/// No learned signals: no uplift, no contacts.
pub struct NoSignals;

pub use crate::learn::propensity::DEFAULT_PROPENSITY;

impl Signals for NoSignals {
    fn uplift(&self, _: usize, _: &OfferFacts, _: &[f64]) -> Option<UpliftSignal> {
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
            ScoreMethod::IncrementalValue => offer.revenue_value.unwrap_or(offer.business_value),
            ScoreMethod::Formula => {
                let w = &self.weights;
                RELEVANCE.powf(w.relevance_weight)
                    * impact(offer).powf(w.impact_weight)
                    * emphasis(offer).powf(w.emphasis_weight)
            }
        }
    }

    /// The full score given the static factor, the learned inputs and the fit multiplier.
    /// `uplift` is what the model says; a segment that sinks takes U to its floor.
    #[inline]
    pub fn score(&self, static_factor: f64, propensity: f64, uplift: Option<UpliftSignal>, fit: f64) -> f64 {
        let u = uplift.map(|s| self.uplift_base(&s, &SegmentActions::default()));
        self.score_factored(static_factor, self.propensity_factor(propensity), u, uplift.map(|s| s.tau), fit)
    }

    /// U before its exponent: `clamp(1 + τ, 0.01, 2)`, or the floor for a sinking segment.
    #[inline]
    pub fn uplift_base(&self, s: &UpliftSignal, actions: &SegmentActions) -> f64 {
        if actions.sinks(s.segment) {
            UPLIFT_FLOOR
        } else {
            uplift_factor(Some(s.tau))
        }
    }

    /// The propensity's factor of the score: P^Wp for a formula. A decision computes it once
    /// per distinct propensity (offers without outcomes yet all have the default).
    #[inline]
    pub fn propensity_factor(&self, propensity: f64) -> f64 {
        match self.method {
            ScoreMethod::PriorityWeighted => 1.0,
            ScoreMethod::Propensity | ScoreMethod::IncrementalValue => propensity,
            ScoreMethod::Formula if self.weights.propensity_weight == 0.0 => 1.0,
            ScoreMethod::Formula => propensity.powf(self.weights.propensity_weight),
        }
    }

    /// [`ScorePlan::score`] with the propensity factor and U's base already computed.
    /// `incremental_value` scores `value × τ` (0 for τ ≤ 0); without a τ yet, the
    /// propensity stands in for it (expected value) so a new flow ranks sensibly.
    #[inline]
    pub fn score_factored(
        &self,
        static_factor: f64,
        propensity_factor: f64,
        u: Option<f64>,
        tau: Option<f64>,
        fit: f64,
    ) -> f64 {
        match self.method {
            ScoreMethod::PriorityWeighted => static_factor * fit,
            ScoreMethod::Propensity => propensity_factor * fit,
            ScoreMethod::IncrementalValue => static_factor * tau.unwrap_or(propensity_factor).max(0.0) * fit,
            ScoreMethod::Formula => {
                let w = &self.weights;
                let p = propensity_factor;
                // No τ means U = 1, and 1^Wu = 1: skip the pow.
                let u = match u {
                    Some(u) if w.uplift_weight != 0.0 => u.powf(w.uplift_weight),
                    _ => 1.0,
                };
                p * static_factor * u * fit
            }
        }
    }

    pub fn needs_propensity(&self) -> bool {
        match self.method {
            ScoreMethod::PriorityWeighted => false,
            ScoreMethod::Propensity | ScoreMethod::IncrementalValue => true,
            ScoreMethod::Formula => self.weights.propensity_weight != 0.0,
        }
    }

    /// Whether τ enters the score (and so the customer's segment acts).
    pub fn needs_uplift(&self) -> bool {
        match self.method {
            ScoreMethod::Formula => self.weights.uplift_weight != 0.0,
            ScoreMethod::IncrementalValue => true,
            ScoreMethod::PriorityWeighted | ScoreMethod::Propensity => false,
        }
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
        let with = |tau: f64, segment: Segment| Some(UpliftSignal { tau, se: 0.01, mu_t: 0.5, mu_c: 0.5, segment });
        close(plan.score(plan.static_factor(&o), 0.5, with(0.0, Segment::Uncertain), 1.0), base);
        close(plan.score(plan.static_factor(&o), 0.5, with(0.44, Segment::Persuadable), 1.0), base * 1.2);
        close(plan.score(plan.static_factor(&o), 0.5, with(-5.0, Segment::Uncertain), 1.0), base * 0.1);
        close(plan.score(plan.static_factor(&o), 0.5, with(3.0, Segment::Persuadable), 1.0), base * 2f64.sqrt());
        // A sure thing sinks to U's floor whatever its τ.
        close(plan.score(plan.static_factor(&o), 0.5, with(0.01, Segment::SureThing), 1.0), base * 0.1);
    }

    #[test]
    fn incremental_value_is_value_times_tau() {
        let plan = ScorePlan { method: ScoreMethod::IncrementalValue, weights: Weights::DEFAULT, formula: None };
        let mut o = offer(70.0, 40.0);
        let signal =
            |tau: f64| Some(UpliftSignal { tau, se: 0.01, mu_t: 0.5, mu_c: 0.4, segment: Segment::Persuadable });
        close(plan.score(plan.static_factor(&o), 0.3, signal(0.1), 0.5), 40.0 * 0.1 * 0.5);
        o.revenue_value = Some(250.0);
        close(plan.score(plan.static_factor(&o), 0.3, signal(0.1), 1.0), 25.0);
        close(plan.score(plan.static_factor(&o), 0.3, signal(-0.1), 1.0), 0.0);
        // Before any model: expected value, value × propensity.
        close(plan.score(plan.static_factor(&o), 0.3, None, 1.0), 75.0);
    }

    #[test]
    fn default_segment_actions_remove_and_sink() {
        let a = SegmentActions::default();
        assert!(a.removes(Segment::SleepingDog) && a.removes(Segment::LostCause));
        assert!(a.sinks(Segment::SureThing) && !a.removes(Segment::SureThing));
        assert!(!a.removes(Segment::Persuadable) && !a.sinks(Segment::Persuadable));
        assert!(!a.removes(Segment::Uncertain) && !a.sinks(Segment::Uncertain));
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
