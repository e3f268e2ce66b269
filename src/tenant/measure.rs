//! Measurement from the decision log: holdout experiment results and uplift training.
//! Both read the stored interactions and responses of one flow — never the request
//! path — so they always agree with what was recorded, including after a restart.
//!
//! * The experiment's unit is the customer (holdout assignment is per customer): a
//!   customer who got a decision from the flow is a sample of its arm, and converted if
//!   any of its responses in the flow is positive; its revenue is the sum of the
//!   `conversionValue`s of those responses.
//! * An uplift training row is one (decision, offer) pair: treated when the offer was
//!   shown, control when the customer was held out and the offer is one it would have
//!   been shown; converted when a positive response names that offer. Features are the
//!   ones logged with the decision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::interaction::{Classification, Interaction, Response};
use super::learning::{FlowUplift, OfferUplift};
use crate::engine::CompiledFlow;
use crate::learn::stats::{experiment_stats, ArmTotals};
use crate::learn::uplift::{Learner, UpliftModel, UpliftRow};
use crate::store::keys::{self, Kind};
use crate::store::{Storage, StoreError};

/// A flow's logged decisions with their responses.
pub struct FlowLog {
    pub decisions: Vec<(Interaction, Vec<Response>)>,
}

impl FlowLog {
    /// Reads the flow's records page by page (parsing as it goes, keeping only this
    /// flow's), so the read never holds up the tenant's writes for long.
    pub fn load(store: &dyn Storage, tenant: &str, flow_key: &str) -> Result<FlowLog, StoreError> {
        let mut responses: HashMap<String, Vec<Response>> = HashMap::new();
        for_each_record(store, &keys::prefix(tenant, Kind::Response), |bytes| {
            if let Ok(r) = serde_json::from_slice::<Response>(bytes) {
                if r.decision_flow_key == flow_key {
                    responses.entry(r.interaction_id.clone()).or_default().push(r);
                }
            }
        })?;
        let mut decisions = Vec::new();
        for_each_record(store, &keys::prefix(tenant, Kind::Interaction), |bytes| {
            if let Ok(i) = serde_json::from_slice::<Interaction>(bytes) {
                if i.decision_flow_key == flow_key {
                    let r = responses.remove(&i.id).unwrap_or_default();
                    decisions.push((i, r));
                }
            }
        })?;
        Ok(FlowLog { decisions })
    }

    /// Per-arm customer totals: (treated, control, customers left out). A customer seen
    /// in both arms (the holdout share changed between versions) is left out: which arm
    /// its conversions belong to is unknowable.
    pub fn arm_totals(&self) -> (ArmTotals, ArmTotals, usize) {
        #[derive(Default)]
        struct Seen {
            control: bool,
            treated: bool,
            converted: bool,
            revenue: f64,
        }
        let mut customers: HashMap<&str, Seen> = HashMap::new();
        for (i, responses) in &self.decisions {
            let c = customers.entry(&i.customer_id).or_default();
            c.control |= i.control_group;
            c.treated |= !i.control_group;
            for r in responses.iter().filter(|r| r.classification == Classification::Positive) {
                c.converted = true;
                c.revenue += r.conversion_value.unwrap_or(0.0);
            }
        }
        let (mut treated, mut control, mut both) = (ArmTotals::default(), ArmTotals::default(), 0);
        for c in customers.into_values() {
            match (c.treated, c.control) {
                (true, true) => both += 1,
                (false, _) => control.record(c.converted, c.revenue),
                (true, false) => treated.record(c.converted, c.revenue),
            }
        }
        (treated, control, both)
    }

    /// Uplift training rows per offer id, features in `names` order (NaN if missing).
    pub fn uplift_rows(&self, names: &[Arc<str>]) -> HashMap<String, Vec<UpliftRow>> {
        let mut rows: HashMap<String, Vec<UpliftRow>> = HashMap::new();
        for (i, responses) in &self.decisions {
            let x: Vec<f64> = names.iter().map(|n| i.features.get(&**n).copied().unwrap_or(f64::NAN)).collect();
            let converted: HashSet<&str> = responses
                .iter()
                .filter(|r| r.classification == Classification::Positive)
                .map(|r| r.offer_id.as_str())
                .collect();
            for o in &i.offers {
                rows.entry(o.offer_id.clone()).or_default().push(UpliftRow {
                    features: x.clone(),
                    treated: !i.control_group,
                    converted: converted.contains(o.offer_id.as_str()),
                });
            }
        }
        rows
    }
}

/// Records a page this size are read under one short store read.
const PAGE: usize = 1_024;

/// Calls `each` with every record under `prefix`, a page at a time.
pub fn for_each_record(store: &dyn Storage, prefix: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_page(prefix, after.as_deref(), PAGE)?;
        for (_, value) in &page {
            each(value);
        }
        match page.last() {
            Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
            _ => return Ok(()),
        }
    }
}

/// The `/experiments/{flowKey}/results` body.
pub fn experiment_results(flow: &CompiledFlow, log: &FlowLog) -> Value {
    let (treated, control, in_both_arms) = log.arm_totals();
    let stats = match experiment_stats(&treated, &control) {
        Ok(s) => s,
        Err(e) => return json!({"flowKey": &*flow.key, "error": e.to_string()}),
    };
    let significant = stats.p_value.map(|p| !stats.insufficient_data && p < 0.05);
    let n = stats.treated.samples as f64;
    let r = &stats.revenue;
    json!({
        "flowKey": &*flow.key,
        "flowId": &*flow.flow_id,
        "holdoutPercent": flow.holdout_percent(),
        "unit": "customer",
        "conversion": "a customer with at least one positive outcome in this flow",
        "customersInBothArms": in_both_arms,
        "treated": stats.treated,
        "control": stats.control,
        "treatmentConversionRate": stats.treated.conversion_rate,
        "holdoutConversionRate": stats.control.conversion_rate,
        "uplift": stats.absolute_uplift,
        "relativeUplift": stats.relative_uplift,
        "upliftInterval95": stats.uplift_interval,
        "zScore": stats.z,
        "pValue": stats.p_value,
        "significant": significant,
        "insufficientData": stats.insufficient_data,
        "minSamplesPerArm": stats.min_samples_per_arm,
        "revenue": {
            "perCustomerTreated": r.per_customer_treated,
            "perCustomerControl": r.per_customer_control,
            "incrementalPerTreatedCustomer": r.per_customer_diff,
            "incrementalPerTreatedCustomerInterval95": r.per_customer_diff_interval,
            "incrementalTotal": r.incremental_revenue,
            "incrementalTotalInterval95": r.per_customer_diff_interval
                .map(|i| json!({"lower": i.lower * n, "upper": i.upper * n})),
        },
    })
}

/// The learner whose τ the score's U factor uses: the X-learner, built for designs
/// where one arm (the holdout) is much smaller than the other.
pub const SCORING: Learner = Learner::XLearner;

/// Fits both learners for every offer of the flow that has enough data.
pub fn train(flow: &Arc<CompiledFlow>, log: &FlowLog) -> FlowUplift {
    let names = flow.feature_names.clone();
    let mut offers = HashMap::new();
    let mut skipped = Vec::new();
    let mut rows = log.uplift_rows(&names);
    for (id, _) in flow.offer_ids() {
        let Some(rows) = rows.remove(&**id) else {
            skipped.push((id.clone(), "no logged decisions include this offer".to_string()));
            continue;
        };
        match UpliftModel::fit(&rows, Learner::TLearner) {
            Ok(t_learner) => {
                let x_learner = UpliftModel::fit(&rows, Learner::XLearner).ok();
                offers.insert(id.clone(), OfferUplift::new(t_learner, x_learner, SCORING));
            }
            Err(e) => skipped.push((id.clone(), e.to_string())),
        }
    }
    FlowUplift::new(flow, offers, skipped, log.decisions.len(), SCORING)
}

/// The algorithm-model record of a flow's uplift models.
pub fn model_summary(flow: &CompiledFlow, models: Option<&FlowUplift>) -> Value {
    let offers: Vec<Value> = match models {
        None => Vec::new(),
        Some(m) => flow
            .offer_ids()
            .map(|(id, name)| match m.offers.get(id) {
                Some(o) => json!({"offerId": &**id, "offerName": &**name, "trained": true,
                    "nTreated": o.t_learner.n_treated(), "nControl": o.t_learner.n_control(),
                    "xLearner": o.x_learner.is_some()}),
                None => {
                    let why = m.skipped.iter().find(|(s, _)| s == id).map(|(_, w)| w.as_str());
                    json!({"offerId": &**id, "offerName": &**name, "trained": false, "reason": why})
                }
            })
            .collect(),
    };
    json!({
        "id": &*flow.flow_id,
        "key": format!("uplift:{}", flow.key),
        "name": format!("Uplift — {}", flow.key),
        "modelType": "uplift",
        "flowKey": &*flow.key,
        "status": if models.is_some() { "trained" } else { "untrained" },
        "trainedAt": models.map(|m| m.trained_at.clone()),
        "interactions": models.map(|m| m.interactions),
        "features": &*flow.feature_names.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        "scoringMethod": "x_learner",
        "offers": offers,
    })
}

/// Per offer τ, μ_T, μ_C and segment for one customer.
pub fn customer_uplift(flow: &CompiledFlow, models: Option<&FlowUplift>, customer_id: &str, learner: Learner) -> Value {
    let x = flow.current_features(customer_id);
    let features: serde_json::Map<String, Value> = flow
        .feature_names
        .iter()
        .zip(&x)
        .map(|(n, v)| (n.to_string(), if v.is_finite() { json!(v) } else { Value::Null }))
        .collect();
    let method = match learner {
        Learner::TLearner => "t_learner",
        Learner::XLearner => "x_learner",
    };
    let offers: Vec<Value> = flow
        .offer_ids()
        .map(|(id, name)| match models.and_then(|m| m.offers.get(id)) {
            Some(o) => {
                let model = o.model(learner);
                let p = model.predict(&x);
                json!({"offerId": &**id, "offerName": &**name, "tau": p.tau, "muT": p.mu_t, "muC": p.mu_c,
                    "segment": p.segment(), "method": method,
                    "nTreated": model.n_treated(), "nControl": model.n_control()})
            }
            None => json!({"offerId": &**id, "offerName": &**name, "tau": null, "muT": null, "muC": null,
                "segment": "uncertain", "method": method, "nTreated": 0, "nControl": 0,
                "reason": models.and_then(|m| m.skipped.iter().find(|(s, _)| s == id)).map(|(_, w)| w.clone())
                    .unwrap_or_else(|| "not trained yet".into())}),
        })
        .collect();
    json!({
        "modelId": &*flow.flow_id,
        "flowKey": &*flow.key,
        "customerId": customer_id,
        "method": method,
        "trainedAt": models.map(|m| m.trained_at.clone()),
        "features": features,
        "offers": offers,
    })
}
