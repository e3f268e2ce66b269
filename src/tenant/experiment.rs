//! Holdout experiment aggregates, kept as decisions and outcomes happen, so a report
//! costs the same whatever the size of the log.
//!
//! The unit is the customer (holdout assignment is per customer): a customer who got a
//! decision from the flow is a sample of its arm, converted if any of its responses in
//! the flow is one of the flow's `conversionOutcomes`, and its revenue is the sum of the
//! `conversionValue`s of its positive responses. A customer seen in both arms (the
//! holdout share changed between versions) is left out. Each customer keeps the set of
//! outcomes it had (a bit per outcome type), so a change of `conversionOutcomes`
//! recounts the totals from the customers instead of needing the log again.
//! Each change to a customer takes its old contribution out of its arm's totals and puts
//! the new one in, so the totals are always those `FlowLog::arm_totals` computes from the
//! whole log (`tests/experiment_aggregates.rs` checks they agree).

use std::collections::HashMap;
use std::sync::Mutex;

use dashmap::DashMap;

use super::interaction::{Classification, Response};
use crate::learn::stats::ArmTotals;

/// Every flow's experiment, by flow key.
#[derive(Default)]
pub struct Experiments {
    flows: DashMap<Box<str>, Mutex<Experiment>>,
}

struct Experiment {
    customers: HashMap<Box<str>, Seen>,
    /// The outcome bits the totals count as a conversion.
    conversions: u16,
    treated: ArmTotals,
    control: ArmTotals,
    in_both: usize,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            customers: HashMap::new(),
            conversions: super::interaction::DEFAULT_CONVERSIONS,
            treated: ArmTotals::default(),
            control: ArmTotals::default(),
            in_both: 0,
        }
    }
}

/// One customer of one flow's experiment (what a checkpoint keeps).
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    treated: bool,
    control: bool,
    /// Bit i: the customer had an outcome of type i (`interaction::outcome_bit`).
    outcomes: u16,
    revenue: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Arm {
    Treated,
    Control,
    Both,
    /// Outcomes whose decision is not known (dropped by retention): no arm.
    Neither,
}

impl Seen {
    fn arm(&self) -> Arm {
        match (self.treated, self.control) {
            (true, true) => Arm::Both,
            (true, false) => Arm::Treated,
            (false, true) => Arm::Control,
            (false, false) => Arm::Neither,
        }
    }
}

impl Experiments {
    /// A decision of `flow` for `customer`, in the control group or not.
    pub fn decision(&self, flow: &str, customer: &str, control: bool) {
        self.update(flow, customer, |s| {
            s.control |= control;
            s.treated |= !control;
        });
    }

    /// A recorded response: its outcome is remembered for its customer in the response's
    /// flow; a positive one's value adds to the customer's revenue.
    pub fn outcome(&self, r: &Response) {
        let bit = super::interaction::outcome_bit(&r.outcome);
        let value = match r.classification {
            Classification::Positive => r.conversion_value.unwrap_or(0.0),
            _ => 0.0,
        };
        if bit == 0 && value == 0.0 {
            return;
        }
        self.update(&r.decision_flow_key, &r.customer_id, |s| {
            s.outcomes |= bit;
            s.revenue += value;
        });
    }

    /// (treated, control, customers in both arms) of `flow`, counting a customer as
    /// converted when it had one of the `conversions` outcome bits.
    pub fn totals(&self, flow: &str, conversions: u16) -> (ArmTotals, ArmTotals, usize) {
        let Some(e) = self.flows.get(flow) else { return Default::default() };
        let mut e = e.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if e.conversions != conversions {
            e.recount(conversions);
        }
        (e.treated, e.control, e.in_both)
    }

    /// Every flow's customers, for a checkpoint.
    pub fn export(&self) -> Vec<(String, Vec<(String, Seen)>)> {
        self.flows
            .iter()
            .map(|e| {
                let x = e.value().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                (e.key().to_string(), x.customers.iter().map(|(c, s)| (c.to_string(), *s)).collect())
            })
            .collect()
    }

    /// Adds what a checkpoint kept of one flow's customers.
    pub fn import(&self, flow: &str, customers: Vec<(String, Seen)>) {
        for (customer, seen) in customers {
            self.update(flow, &customer, |s| {
                s.treated |= seen.treated;
                s.control |= seen.control;
                s.outcomes |= seen.outcomes;
                s.revenue += seen.revenue;
            });
        }
    }

    fn update(&self, flow: &str, customer: &str, change: impl FnOnce(&mut Seen)) {
        let entry = match self.flows.get(flow) {
            Some(e) => e,
            None => self.flows.entry(flow.into()).or_default().downgrade(),
        };
        let mut e = entry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = e.customers.get(customer).copied().unwrap_or_default();
        let mut after = before;
        change(&mut after);
        e.count(&before, -1);
        e.count(&after, 1);
        match e.customers.get_mut(customer) {
            Some(s) => *s = after,
            None => {
                e.customers.insert(customer.into(), after);
            }
        }
    }
}

impl Experiment {
    /// The totals again from every customer, with another set of conversion outcomes.
    fn recount(&mut self, conversions: u16) {
        self.conversions = conversions;
        (self.treated, self.control, self.in_both) = Default::default();
        let customers = std::mem::take(&mut self.customers);
        for s in customers.values() {
            self.count(s, 1);
        }
        self.customers = customers;
    }

    /// Adds (`sign` 1) or takes out (−1) one customer's contribution to its arm.
    fn count(&mut self, s: &Seen, sign: i64) {
        let totals = match s.arm() {
            Arm::Treated => &mut self.treated,
            Arm::Control => &mut self.control,
            Arm::Both => {
                self.in_both = (self.in_both as i64 + sign) as usize;
                return;
            }
            Arm::Neither => return,
        };
        let f = sign as f64;
        totals.samples = (totals.samples as i64 + sign) as u64;
        let converted = s.outcomes & self.conversions != 0;
        totals.conversions = (totals.conversions as i64 + sign * i64::from(converted)) as u64;
        totals.revenue_sum += f * s.revenue;
        totals.revenue_sq_sum += f * s.revenue * s.revenue;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::interaction::{outcome_mask, DEFAULT_CONVERSIONS};

    fn response(customer: &str, outcome: &str, value: Option<f64>) -> Response {
        Response {
            response_id: String::new(),
            interaction_id: String::new(),
            customer_id: customer.into(),
            offer_id: "o".into(),
            category: String::new(),
            channel: None,
            rank: 1,
            outcome: outcome.into(),
            classification: crate::tenant::interaction::classification_of(outcome),
            control_group: false,
            decision_flow_key: "f".into(),
            conversion_value: value,
            timestamp: String::new(),
            idempotency_key: String::new(),
        }
    }

    /// Only the flow's conversion outcomes convert a customer; a change of them recounts
    /// the totals from the customers kept, with no log needed.
    #[test]
    fn conversions_follow_the_flows_conversion_outcomes() {
        let e = Experiments::default();
        for (c, control) in [("a", false), ("b", false), ("c", true)] {
            e.decision("f", c, control);
        }
        e.outcome(&response("a", "click", None));
        e.outcome(&response("b", "convert", Some(40.0)));
        e.outcome(&response("c", "click", None));
        let (t, c, _) = e.totals("f", DEFAULT_CONVERSIONS);
        assert_eq!((t.samples, t.conversions, c.samples, c.conversions), (2, 1, 1, 0));
        assert_eq!(t.revenue_sum, 40.0);
        let clicks = outcome_mask(&["click", "convert"]);
        let (t, c, _) = e.totals("f", clicks);
        assert_eq!((t.conversions, c.conversions), (2, 1));
        // Later outcomes count under the set in force, and switching back recounts.
        e.outcome(&response("c", "convert", None));
        assert_eq!(e.totals("f", clicks).1.conversions, 1);
        let (t, c, _) = e.totals("f", DEFAULT_CONVERSIONS);
        assert_eq!((t.conversions, c.conversions), (1, 1));
    }
}
