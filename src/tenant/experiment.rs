//! Holdout experiment aggregates, kept as decisions and outcomes happen, so a report
//! costs the same whatever the size of the log.
//!
//! The unit is the customer (holdout assignment is per customer): a customer who got a
//! decision from the flow is a sample of its arm, converted if any of its responses in
//! the flow is positive, and its revenue is the sum of their `conversionValue`s. A
//! customer seen in both arms (the holdout share changed between versions) is left out.
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

#[derive(Default)]
struct Experiment {
    customers: HashMap<Box<str>, Seen>,
    treated: ArmTotals,
    control: ArmTotals,
    in_both: usize,
}

/// One customer of one flow's experiment (what a checkpoint keeps).
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    treated: bool,
    control: bool,
    converted: bool,
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

    /// A recorded response: a positive one converts its customer in the response's flow.
    pub fn outcome(&self, r: &Response) {
        if r.classification != Classification::Positive {
            return;
        }
        let value = r.conversion_value.unwrap_or(0.0);
        self.update(&r.decision_flow_key, &r.customer_id, |s| {
            s.converted = true;
            s.revenue += value;
        });
    }

    /// (treated, control, customers in both arms) of `flow`.
    pub fn totals(&self, flow: &str) -> (ArmTotals, ArmTotals, usize) {
        let Some(e) = self.flows.get(flow) else { return Default::default() };
        let e = e.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
                s.converted |= seen.converted;
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
        totals.conversions = (totals.conversions as i64 + sign * i64::from(s.converted)) as u64;
        totals.revenue_sum += f * s.revenue;
        totals.revenue_sq_sum += f * s.revenue * s.revenue;
    }
}
